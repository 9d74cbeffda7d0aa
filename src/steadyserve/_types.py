"""Aliases and protocols shared across modules."""

from __future__ import annotations

from typing import NewType, Protocol

ReplicaId = NewType("ReplicaId", str)
"""Stable slot name of a replica, e.g. ``r0``; survives restarts."""

ProcessKind = str  # "replica" | "gateway"

Headers = list[tuple[bytes, bytes]]


class Clock(Protocol):
    def __call__(self) -> float: ...
