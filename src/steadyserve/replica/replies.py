"""What a handler call comes to inside a replica, before it becomes HTTP bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
