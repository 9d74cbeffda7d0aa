"""What a handler call comes to inside a replica, before it becomes HTTP bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def to_json_default(value: Any) -> Any:
    """orjson's fallback: numpy arrays and scalars as lists and numbers."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: bytes = b""


@dataclass(frozen=True, slots=True)
class Returned:
    """What a handler invocation returned (as opposed to the error reply that replaced it)."""

    value: Any
