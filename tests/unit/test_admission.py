"""Admission decisions and the adaptive concurrency limit, as pure functions."""

from __future__ import annotations

import pytest

from steadyserve.gateway.admission import Enqueue, Shed, decide_admission, expected_wait_s
from steadyserve.gateway.concurrency import GradientSettings, initial_state, on_sample


@pytest.mark.parametrize("waiting, max_queued, latency_s, slots, remaining_s, expected", [
    (0, 10, None, 4, 30.0, Enqueue(2.0)),  # latency unknown: queue
    (9, 10, 0.05, 4, 30.0, Enqueue(2.0)),  # 10 ahead at 4 per 50 ms: 125 ms
    (10, 10, 0.05, 4, 30.0, Shed),  # queue full
    (0, 0, None, 4, 30.0, Shed),  # no queue at all
    (80, 100, 0.1, 4, 30.0, Shed),  # 81 ahead at 4 per 100 ms: 2.03 s > the 2 s budget
    (10, 100, 0.1, 4, 0.2, Shed),  # the call's own deadline is nearer than the queue timeout
    (1, 100, 0.1, 4, 0.2, Enqueue(0.2)),
])
def test_decide_admission(waiting, max_queued, latency_s, slots, remaining_s, expected):
    decision = decide_admission(now=0.0, waiting=waiting, max_queued=max_queued, queue_timeout_s=2.0,
                                remaining_s=remaining_s, latency_s=latency_s, slots=slots)
    if expected is Shed:
        assert isinstance(decision, Shed) and decision.retry_after_s >= 1 and decision.reason
    else:
        assert decision == expected


def test_expected_wait_grows_with_the_queue_and_shrinks_with_slots():
    assert expected_wait_s(0, 0.1, 1) == pytest.approx(0.1)
    assert expected_wait_s(9, 0.1, 1) == pytest.approx(1.0)
    assert expected_wait_s(9, 0.1, 10) == pytest.approx(0.1)
    assert expected_wait_s(5, None, 1) == 0.0


def test_retry_after_follows_the_expected_wait():
    decision = decide_admission(now=0.0, waiting=50, max_queued=10, queue_timeout_s=1.0, remaining_s=30.0,
                                latency_s=0.2, slots=2)
    assert isinstance(decision, Shed) and decision.retry_after_s == 6  # 51 x 0.2 s / 2


SETTINGS = GradientSettings(max_limit=16)


def run(samples: list[tuple[float, int]], state=None, start: float = 0.0):
    state = state or initial_state(SETTINGS, start)
    for i, (latency_s, inflight) in enumerate(samples):
        state = on_sample(state, latency_s, inflight, start + i * 0.01, SETTINGS)
    return state


def test_limit_grows_while_latency_stays_near_its_floor_and_the_limit_is_used():
    state = run([(0.05, 16)] * 100)
    assert state.whole_limit > 2


def test_limit_does_not_grow_when_unused():
    state = run([(0.05, 1)] * 100)
    assert state.whole_limit == 2


def test_limit_shrinks_when_latency_climbs_and_never_below_one():
    grown = run([(0.05, 16)] * 200)
    assert grown.whole_limit >= 4
    shrunk = run([(0.5, 16)] * 20, state=grown, start=2.0)
    assert shrunk.whole_limit < grown.whole_limit
    assert run([(5.0, 16)] * 50, state=shrunk, start=3.0).whole_limit == 1


def test_limit_never_exceeds_its_maximum():
    assert run([(0.05, 16)] * 5000).whole_limit == 16


def test_the_no_load_baseline_follows_a_slower_model_after_two_windows():
    fast = run([(0.01, 16)] * 50)
    # The model became 10x slower for good: after two windows the floor is the new latency.
    state = fast
    for window in range(1, 4):
        state = run([(0.1, 16)] * 20, state=state, start=window * SETTINGS.min_window_s)
    assert state.min_s == pytest.approx(0.1) and state.previous_min_s == pytest.approx(0.1)
