"""Retry decisions and the retry budget."""

from __future__ import annotations

import pytest

from steadyserve.errors import UpstreamDraining, UpstreamLost, UpstreamTimeout, UpstreamUnreachable
from steadyserve.gateway.retry import RetryBudget, decide_retry


@pytest.mark.parametrize(
    ("error", "attempt", "idempotent", "budget_ok", "retry"),
    [
        (UpstreamUnreachable("x"), 1, True, True, True),
        (UpstreamLost("x"), 1, True, True, True),
        (UpstreamLost("x"), 1, False, True, False),  # may have run: not for non-idempotent
        (UpstreamUnreachable("x"), 1, False, True, True),  # provably never reached it
        (UpstreamDraining("x"), 1, False, True, True),
        (UpstreamLost("x"), 3, True, True, False),  # out of attempts
        (UpstreamLost("x"), 1, True, False, False),  # out of budget
        (UpstreamTimeout("x"), 1, True, True, False),
    ],
)
def test_decide_retry(error, attempt, idempotent, budget_ok, retry):
    decision = decide_retry(error, attempt, 3, idempotent, budget_ok)
    assert decision.retry is retry
    assert decision.reason


def test_budget_allows_a_floor_of_retries_when_quiet():
    budget = RetryBudget(ratio=0.2, window_s=10, min_retries=3)
    for _ in range(3):
        assert budget.can_retry(100.0)
        budget.record_retry(100.0)
    assert not budget.can_retry(100.0)


def test_budget_caps_retries_at_ratio_of_requests():
    budget = RetryBudget(ratio=0.2, window_s=10, min_retries=0)
    for _ in range(100):
        budget.record_request(50.5)
    allowed = 0
    while budget.can_retry(50.5):
        budget.record_retry(50.5)
        allowed += 1
    assert allowed == 20


def test_budget_window_slides():
    budget = RetryBudget(ratio=0.2, window_s=10, min_retries=0)
    for _ in range(50):
        budget.record_request(0.0)
    for _ in range(10):
        budget.record_retry(0.0)
    assert not budget.can_retry(5.0)
    for _ in range(50):
        budget.record_request(12.0)  # the old second has left the window
    assert budget.can_retry(12.0)
