"""Retry decisions and the retry budget, apart from any I/O.

A retry happens only when it is safe (the handler is idempotent, or the request
provably never reached a replica), attempts remain, and the budget allows it:
retries may be at most ``ratio`` of requests over a sliding window, plus a
small floor so that a quiet service can still fail over.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UpstreamError, UpstreamLost, UpstreamTimeout


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    reason: str


def decide_retry(
    error: UpstreamError, attempt: int, max_attempts: int, idempotent: bool, budget_ok: bool,
    lost_before: int = 0,
) -> RetryDecision:
    """``lost_before``: earlier attempts of this call whose replica dropped the connection mid-call."""
    if isinstance(error, UpstreamTimeout):
        return RetryDecision(False, "timed out; a retry would exceed the request deadline")
    if not (error.never_executed or idempotent):
        return RetryDecision(False, "handler is not idempotent and the request may have run")
    if isinstance(error, UpstreamLost) and lost_before >= 1:
        # A second replica died under this very call: it may be what kills them. Stop here
        # rather than take down every replica of the deployment one after another.
        return RetryDecision(False, "a second replica dropped the connection during this call; not trying a third")
    if attempt >= max_attempts:
        return RetryDecision(False, f"gave up after {attempt} attempts")
    if not budget_ok:
        return RetryDecision(False, "retry budget exhausted")
    return RetryDecision(True, "safe to retry")


class RetryBudget:
    """Counts requests and retries in 1-second buckets over a sliding window."""

    def __init__(self, ratio: float = 0.2, window_s: int = 10, min_retries: int = 10) -> None:
        self.ratio = ratio
        self.window_s = window_s
        self.min_retries = min_retries
        self._requests = [0] * window_s
        self._retries = [0] * window_s
        self._second = [0] * window_s

    def _bucket(self, now: float) -> int:
        second = int(now)
        i = second % self.window_s
        if self._second[i] != second:
            self._second[i] = second
            self._requests[i] = 0
            self._retries[i] = 0
        return i

    def _totals(self, now: float) -> tuple[int, int]:
        oldest = int(now) - self.window_s
        requests = retries = 0
        for i in range(self.window_s):
            if self._second[i] > oldest:
                requests += self._requests[i]
                retries += self._retries[i]
        return requests, retries

    def record_request(self, now: float) -> None:
        self._requests[self._bucket(now)] += 1

    def can_retry(self, now: float) -> bool:
        requests, retries = self._totals(now)
        return retries < max(self.min_retries, self.ratio * requests)

    def record_retry(self, now: float) -> None:
        self._retries[self._bucket(now)] += 1
