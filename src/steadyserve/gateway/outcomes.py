"""What each gateway process saw of each revision: calls, failures, latency.

The controller judges a rollout on these (not on what replicas say of
themselves), so timeouts and dead connections count as failures too. Counters
are cumulative for the life of one gateway process; the controller sums the
deltas per process ``instance`` (a restarted gateway starts from zero).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

# Upper bounds of the latency histogram buckets, seconds; the last catches the rest.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf,
)


class RevisionOutcomes:
    __slots__ = ("requests", "failures", "latency_counts")

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0  # 5xx answers, timeouts, transport failures
        self.latency_counts = [0] * len(LATENCY_BUCKETS_S)

    def observe(self, latency_s: float, failed: bool) -> None:
        self.requests += 1
        if failed:
            self.failures += 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "failures": self.failures, "latency_counts": list(self.latency_counts)}


def quantile_s(latency_counts: Sequence[int], q: float) -> float | None:
    """Upper bound of the bucket holding the ``q`` quantile; None without samples."""
    total = sum(latency_counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bound, count in zip(LATENCY_BUCKETS_S, latency_counts, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return LATENCY_BUCKETS_S[-1]
