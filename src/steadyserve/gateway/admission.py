"""Admission control: take a call on, queue it briefly, or shed it at once (pure).

A call is admitted when a replica has a free slot (fewer calls in flight from
this gateway than its limit). Otherwise it may wait in a bounded FIFO queue,
but only if it can expect a slot within its queue budget: a call that would
time out in the queue is shed now, so a shed answer always comes fast and no
caller waits for nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Enqueue:
    until: float  # give up waiting then


@dataclass(frozen=True, slots=True)
class Shed:
    reason: str
    retry_after_s: int


MAX_RETRY_AFTER_S = 30


def expected_wait_s(ahead: int, latency_s: float | None, slots: int) -> float:
    """How long the call behind ``ahead`` queued ones should wait: the queue drains
    ``slots`` calls per ``latency_s``. Unknown latency: assume the wait is short."""
    if latency_s is None or slots <= 0:
        return 0.0
    return (ahead + 1) * latency_s / slots


def decide_admission(*, now: float, waiting: int, max_queued: int, queue_timeout_s: float,
                     remaining_s: float, latency_s: float | None, slots: int) -> Enqueue | Shed:
    """For a call that found every replica at its limit: wait for a slot, or shed."""
    wait_s = expected_wait_s(waiting, latency_s, slots)
    retry_after_s = min(MAX_RETRY_AFTER_S, max(1, math.ceil(wait_s)))
    if waiting >= max_queued:
        return Shed(f"every replica is at its concurrency limit and {waiting} calls are already"
                    " queued (max_queued_requests)", retry_after_s)
    budget_s = min(queue_timeout_s, remaining_s)
    if wait_s > budget_s:
        return Shed(f"every replica is at its concurrency limit; the expected wait of {wait_s:.2f}s"
                    f" exceeds the {budget_s:.2f}s this call may queue", retry_after_s)
    return Enqueue(now + budget_s)


class LatencyAverage:
    """Exponentially weighted mean of attempt latencies, for the wait estimate."""

    __slots__ = ("value_s", "_alpha")

    def __init__(self, alpha: float = 0.1) -> None:
        self.value_s: float | None = None
        self._alpha = alpha

    def observe(self, latency_s: float) -> None:
        self.value_s = latency_s if self.value_s is None else self.value_s + self._alpha * (latency_s - self.value_s)
