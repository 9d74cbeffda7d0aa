"""Aliases and protocols shared across modules."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
"""Monotonic seconds; passed in so that tests can drive time."""

Headers = list[tuple[bytes, bytes]]
"""Raw HTTP headers, names lower-cased."""
