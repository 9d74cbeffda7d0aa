"""Passive outlier ejection and the panic threshold."""

from __future__ import annotations

from steadyserve.gateway.outlier import OutlierPolicy, OutlierState, on_failure, on_success, routable

POLICY = OutlierPolicy(consecutive_failures=3, base_ejection_s=2.0, max_ejection_s=10.0,
                       max_ejected_percent=50.0)


def fail_n(state: OutlierState, n: int, now: float, ejected_now: int = 0, total: int = 4):
    ejected = False
    for _ in range(n):
        state, ejected = on_failure(state, now, POLICY, ejected_now, total)
    return state, ejected


def test_ejected_after_consecutive_failures():
    state, ejected = fail_n(OutlierState(), 2, 0.0)
    assert not ejected and not state.is_ejected(0.0)
    state, ejected = fail_n(state, 1, 0.0)
    assert ejected and state.is_ejected(1.9) and not state.is_ejected(2.0)


def test_success_resets_the_count():
    state, _ = fail_n(OutlierState(), 2, 0.0)
    state = on_success(state)
    state, ejected = fail_n(state, 2, 0.0)
    assert not ejected


def test_ejection_period_doubles_on_repeat_and_is_capped():
    state = OutlierState()
    periods = []
    now = 0.0
    for _ in range(5):
        state, ejected = fail_n(state, 3, now)
        assert ejected
        periods.append(state.ejected_until - now)
        now = state.ejected_until
    assert periods == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_never_more_than_half_ejected():
    # 2 of 4 already out: a third ejection is refused.
    state, ejected = fail_n(OutlierState(), 5, 0.0, ejected_now=2, total=4)
    assert not ejected and not state.is_ejected(0.0)
    # 1 of 4 out: a second is allowed (exactly half).
    _, ejected = fail_n(OutlierState(), 3, 0.0, ejected_now=1, total=4)
    assert ejected


def test_one_replica_may_always_be_ejected():
    policy = OutlierPolicy(consecutive_failures=1, max_ejected_percent=10.0)
    _, ejected = on_failure(OutlierState(), 0.0, policy, ejected_now=0, total=4)
    assert ejected
    _, ejected = on_failure(OutlierState(), 0.0, policy, ejected_now=1, total=4)
    assert not ejected


def test_with_the_defaults_every_failing_replica_is_ejected_and_panic_follows():
    policy = OutlierPolicy()
    states = [OutlierState(), OutlierState()]
    for i in range(2):
        for _ in range(policy.consecutive_failures):
            ejected_now = sum(s.is_ejected(0.0) for s in states)
            states[i], _ = on_failure(states[i], 0.0, policy, ejected_now, 2)
    assert all(s.is_ejected(0.0) for s in states)
    # Both out: routing panics and uses both rather than refusing every call.
    assert routable([True, True], policy) == [True, True]
    # One out of two is 50 % healthy: not below the threshold, no panic.
    assert routable([True, False], policy) == [False, True]


def test_panic_routes_to_all_when_too_few_are_healthy():
    assert routable([True, False, False, False], POLICY) == [False, True, True, True]
    assert routable([True, True, False, False], POLICY) == [False, False, True, True]
    assert routable([True, True, True, False], POLICY) == [True, True, True, True]
