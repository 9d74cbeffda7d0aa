"""Per-token rate limits as GCRA (the generic cell rate algorithm): the pure decision.

A token's whole state is one number, its *theoretical arrival time* (TAT): the
moment by which the calls admitted so far would have been spread out at
``rate_per_s``. A call is admitted while the TAT it leaves behind runs at most
``burst`` call intervals ahead of now. Because the state is one float compared
with a system-wide clock (``time.monotonic`` is CLOCK_MONOTONIC), every gateway
process on the machine can share it: see ``sharedcells.SharedLimiter``.
``LocalLimiter`` keeps the same state in a dict, for one process and for tests.

A TAT at or before now means "nothing owed": exactly the state of a token never
seen. So a cell whose TAT has passed can be forgotten or reused for another
token without changing any decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

_EPSILON_S = 1e-9  # float rounding must not refuse the burst-th call of a burst


@dataclass(frozen=True)
class Decision:
    allowed: bool
    tat: float  # the TAT to store (unchanged when refused)
    retry_after_s: float  # 0 when allowed; else when the next call would be admitted


def gcra(now: float, tat: float, rate_per_s: float, burst: int) -> Decision:
    """Admit one call at ``now`` for a token whose stored TAT is ``tat``?"""
    interval_s = 1.0 / rate_per_s
    horizon_s = max(1, burst) * interval_s  # how far ahead of now the TAT may run
    if not math.isfinite(tat) or tat > now + horizon_s:
        # Impossible for a state this function wrote at this rate: a lowered rate, a cell from
        # before a reboot (the monotonic clock restarted), or a torn write. Treat it as "all used".
        tat = now + horizon_s
    new_tat = max(tat, now) + interval_s
    if new_tat - now <= horizon_s + _EPSILON_S:
        return Decision(True, new_tat, 0.0)
    return Decision(False, tat, new_tat - now - horizon_s)


class RateLimiter(Protocol):
    def take(self, token_id: str, rate_per_s: float, burst: int, now: float) -> float:
        """0 if the call is admitted (and counted); else the seconds until one would be."""
        ...

    def forget(self, keep: set[str]) -> None:
        """Tokens not in ``keep`` are gone from the table: drop what this process holds for them."""
        ...


class LocalLimiter:
    """TATs of this process only (one gateway process, or a unit test)."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}

    def take(self, token_id: str, rate_per_s: float, burst: int, now: float) -> float:
        decision = gcra(now, self._tats.get(token_id, 0.0), rate_per_s, burst)
        if decision.allowed:
            self._tats[token_id] = decision.tat
        return decision.retry_after_s

    def forget(self, keep: set[str]) -> None:
        """Drop the state of tokens no longer in the table."""
        self._tats = {i: t for i, t in self._tats.items() if i in keep}


def pick_way(keys: list[bytes], tats: list[float], key: bytes, now: float) -> tuple[int, float]:
    """Which cell of a bucket holds ``key`` (or should), and the TAT to start from.

    The key's own cell if present; else the first empty or expired cell (its TAT has
    passed, so reusing it loses nothing); else the cell closest to expiring, whose
    token then starts afresh (lenient, never stricter).
    """
    for i, k in enumerate(keys):
        if k == key:
            return i, tats[i]
    for i, k in enumerate(keys):
        if not any(k) or tats[i] <= now:
            return i, 0.0
    return min(range(len(keys)), key=lambda i: tats[i]), 0.0
