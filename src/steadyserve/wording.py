"""Counts in messages operators read: ``1 replica``, ``2 replicas``."""

from __future__ import annotations


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"
