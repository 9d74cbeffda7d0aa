"""The base of the alerting spec models, and the duration type they share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from .durations import parse_duration_s


class Strict(BaseModel):
    # As control/spec.py's models: frozen, unknown keys rejected, no inf/NaN. ``populate_by_name``:
    # the spec writes ``for:``/``window:``, a stored revision (model_dump) holds ``for_s``/``window_s``.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


DurationS = Annotated[float, BeforeValidator(parse_duration_s)]
"""Seconds, written ``"5m"``, ``"1h30m"``, ``"3d"`` or as a number of seconds."""
