"""What the controller knows about a service, learnt in a child process that imports it.

The controller never imports user code: ``control/introspect.py`` runs in a child,
imports the service the way a replica does, and sends back a ``ServiceDescription``
as JSON. This module holds that serialisable description and how it is built
from a Service class (in the child).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .service import Service, handler_specs


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HandlerDescription(_Frozen):
    """One ``@handler``: its options and the inputs it needs."""

    name: str
    idempotent: bool = True
    v2: bool = False
    batch_max_size: int | None = None  # None: not batched
    example: dict[str, Any] | None = None
    required_params: tuple[str, ...] = ()
    input_schema: dict[str, Any] | None = None  # JSON Schema of the request body; None if it has none


class ServiceDescription(_Frozen):
    """A Service class found in a file, with its handlers in definition order."""

    file: Path  # absolute
    class_name: str
    handlers: dict[str, HandlerDescription]

    @property
    def target(self) -> str:
        return f"{self.file}:{self.class_name}"


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """An ``example`` as JSON would carry it (what is not JSON becomes its str)."""
    return None if value is None else dict(json.loads(json.dumps(value, default=str)))


def _schema(model: type[BaseModel]) -> dict[str, Any] | None:
    try:
        return model.model_json_schema()
    except Exception:  # noqa: BLE001 - a type pydantic can validate but not describe: no schema
        return None


def describe_class(cls: type[Service], file: Path) -> ServiceDescription:
    """Introspect ``cls`` (raises ConfigError as ``handler_specs`` does)."""
    handlers = {
        name: HandlerDescription(
            name=name,
            idempotent=spec.options.idempotent,
            v2=spec.options.v2,
            batch_max_size=spec.options.batch.max_size if spec.options.batch else None,
            example=_jsonable(spec.options.example),
            required_params=spec.required_params,
            input_schema=_schema(spec.input_model),
        )
        for name, spec in handler_specs(cls).items()
    }
    return ServiceDescription(file=file, class_name=cls.__name__, handlers=handlers)
