"""The deployment planner: scaling, replacement, rolling updates, bake, rollback; the gateway ledger."""

from __future__ import annotations

import pytest

from steadyserve.control.rollout import (
    AddSlot,
    DeploymentView,
    GatewayLedger,
    Outcomes,
    Promote,
    Retire,
    RollBack,
    SlotView,
    plan,
)
from steadyserve.control.spec import RolloutSettings
from steadyserve.control.supervision import ProcState
from steadyserve.gateway.outcomes import LATENCY_BUCKETS_S

R = ProcState.READY
SETTINGS = RolloutSettings(max_surge=1, ready_deadline_s=60, bake_s=5, max_error_rate=0.1, min_requests=10,
                           max_bake_s=30)


def slot(i: int, revision: int, state: ProcState = R, started_at: float = 0.0, ready_since: float | None = 0.0,
         replace_reason: str | None = None, replacing_since: float = 0.0) -> SlotView:
    return SlotView(f"r{i}", i, revision, state, started_at, ready_since if state == R else None,
                    replace_reason, replacing_since)


NONE = Outcomes()


def view(slots, revision=2, replicas=2, now=100.0, previous=1, settings=SETTINGS, seen=NONE,
         old=NONE, baked=False) -> DeploymentView:
    return DeploymentView(revision, replicas, tuple(slots), now, settings, previous, seen, old, baked,
                          replace_timeout_s=60.0)


def calls(requests: int, failures: int = 0, latency_s: float = 0.004) -> Outcomes:
    counts = [0] * len(LATENCY_BUCKETS_S)
    counts[next(i for i, b in enumerate(LATENCY_BUCKETS_S) if latency_s <= b)] = requests
    return Outcomes(requests, failures, tuple(counts))


# --- steady state and scaling ------------------------------------------------------------

def test_steady_state_starts_missing_replicas():
    assert plan(view([slot(0, 2)], previous=None)) == [AddSlot(2)]


def test_scale_down_retires_not_ready_then_newest():
    slots = [slot(0, 2), slot(1, 2), slot(2, 2, ProcState.STARTING), slot(3, 2)]
    assert plan(view(slots, replicas=2, previous=None)) == [Retire("r2"), Retire("r3")]


# --- replacement ---------------------------------------------------------------------------

def test_a_replica_marked_for_replacement_gets_a_successor_first_and_keeps_serving():
    slots = [slot(0, 2, replace_reason="memory", replacing_since=99.0), slot(1, 2)]
    assert plan(view(slots, previous=None)) == [AddSlot(2)]
    starting = [*slots, slot(2, 2, ProcState.STARTING, started_at=99.5)]
    assert plan(view(starting, previous=None)) == []


def test_it_retires_once_its_successor_is_ready():
    slots = [slot(0, 2, replace_reason="memory", replacing_since=99.0), slot(1, 2), slot(2, 2, ready_since=99.8)]
    assert plan(view(slots, previous=None)) == [Retire("r0")]


def test_one_out_of_rotation_retires_as_soon_as_its_successor_is_started():
    slots = [slot(0, 2, ProcState.UNHEALTHY, replace_reason="stuck", replacing_since=99.0), slot(1, 2)]
    assert plan(view(slots, previous=None)) == [AddSlot(2)]
    started = [*slots, slot(2, 2, ProcState.STARTING, started_at=99.5)]
    assert plan(view(started, previous=None)) == [Retire("r0")]


def test_one_that_exited_meanwhile_is_retired_rather_than_restarted():
    slots = [slot(0, 2, ProcState.BACKOFF, replace_reason="memory", replacing_since=99.0), slot(1, 2),
             slot(2, 2, ProcState.STARTING, started_at=99.5)]
    assert plan(view(slots, previous=None)) == [Retire("r0")]


def test_one_whose_successor_never_gets_ready_retires_after_the_bound():
    slots = [slot(0, 2, replace_reason="memory", replacing_since=30.0), slot(1, 2),
             slot(2, 2, ProcState.BACKOFF, started_at=35.0)]
    assert plan(view(slots, previous=None, now=89.0)) == []
    assert plan(view(slots, previous=None, now=90.0)) == [Retire("r0")]


# --- rolling updates -----------------------------------------------------------------------

def test_rollout_starts_one_surge_replica_and_keeps_all_old():
    assert plan(view([slot(0, 1), slot(1, 1)])) == [AddSlot(2)]
    starting = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.STARTING, started_at=99.0)]
    assert plan(view(starting)) == []


def test_the_bake_ends_only_after_bake_s_and_min_requests():
    fresh = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=98.0)]
    assert plan(view(fresh, seen=calls(50))) == []  # 2 s of 5, however many calls
    baked = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=94.0)]
    assert plan(view(baked, seen=calls(9))) == []  # 6 s, but 9 of 10 calls
    actions = plan(view(baked, seen=calls(10)))
    assert isinstance(actions[0], Promote) and "10 calls, 0 failed" in actions[0].reason
    assert actions[1:] == [AddSlot(2), Retire("r1")]


def test_once_baked_the_rollout_goes_on_without_judging_the_bake_again():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=99.0)]
    assert plan(view(slots, baked=True)) == [AddSlot(2), Retire("r1")]


@pytest.mark.parametrize("policy, expected", [("promote", Promote), ("rollback", RollBack)])
def test_too_little_traffic_by_max_bake_s_applies_the_low_traffic_policy(policy, expected):
    settings = SETTINGS.model_copy(update={"low_traffic": policy})
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=71.0)]
    assert plan(view(slots, settings=settings, seen=calls(3))) == []  # 29 s of max_bake_s 30
    action = plan(view(slots, settings=settings, seen=calls(3), now=101.0))[0]
    assert isinstance(action, expected)
    assert "saw 3 of min_requests 10 calls in max_bake_s 30s" in action.reason
    assert f"rollout.low_traffic: {policy}" in action.reason


def test_max_bake_s_is_at_least_bake_s():
    settings = SETTINGS.model_copy(update={"bake_s": 40.0, "max_bake_s": 10.0})
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=65.0)]
    assert plan(view(slots, settings=settings, seen=calls(0))) == []
    assert isinstance(plan(view(slots, settings=settings, seen=calls(0), now=105.0))[0], Promote)


def test_rollout_finishes_by_replacing_the_last_old_replica():
    slots = [slot(0, 1), slot(2, 2, ready_since=90.0), slot(3, 2, ready_since=99.0)]
    assert plan(view(slots, baked=True)) == [Retire("r0")]


# --- rollback -------------------------------------------------------------------------------

def test_crash_looping_new_revision_rolls_back():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.CRASH_LOOP)]
    actions = plan(view(slots))
    assert len(actions) == 1 and isinstance(actions[0], RollBack) and actions[0].to_revision == 1
    assert "crash-looping" in actions[0].reason


def test_new_replica_not_ready_by_deadline_rolls_back():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.STARTING, started_at=30.0)]
    assert isinstance(plan(view(slots))[0], RollBack)


def test_failures_seen_by_the_gateways_over_the_limit_roll_back():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=99.0)]
    action = plan(view(slots, seen=calls(20, failures=5, latency_s=30.0)))[0]
    assert isinstance(action, RollBack) and "failed 5 of 20 calls seen by the gateways" in action.reason


def test_few_calls_do_not_judge_the_error_rate_while_the_verdict_could_still_change():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=99.0)]
    assert plan(view(slots, seen=calls(4, failures=1))) == []  # 1 of 20 would still be within 5 %
    # 4 failures are more than 5 % of any 20 calls: rolled back without waiting for the rest.
    assert isinstance(plan(view(slots, seen=calls(4, failures=4)))[0], RollBack)


def test_failures_roll_back_even_after_the_bake():
    slots = [slot(0, 1), slot(2, 2, ready_since=50.0), slot(3, 2, ready_since=99.0)]
    assert isinstance(plan(view(slots, baked=True, seen=calls(100, failures=50)))[0], RollBack)


@pytest.mark.parametrize("new_latency_s, rolls_back", [(0.004, False), (0.009, False), (0.04, True)])
def test_optional_p99_criterion_compares_with_the_old_revision(new_latency_s, rolls_back):
    settings = SETTINGS.model_copy(update={"max_p99_ratio": 2.0})
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=99.0)]
    actions = plan(view(slots, settings=settings, seen=calls(20, latency_s=new_latency_s),
                        old=calls(40, latency_s=0.004)))
    assert (bool(actions) and isinstance(actions[0], RollBack)) == rolls_back
    if rolls_back:
        assert "p99 latency (<= 0.05s) is over 2x that of revision 1 (<= 0.005s)" in actions[0].reason


def test_p99_criterion_waits_for_min_requests_on_both_sides():
    settings = SETTINGS.model_copy(update={"max_p99_ratio": 2.0})
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=99.0)]
    assert plan(view(slots, settings=settings, seen=calls(20, latency_s=1.0), old=calls(5))) == []


def test_after_rollback_the_failed_replicas_retire():
    # active revision is 1 again; revision 2's replica is now the "old" one.
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.CRASH_LOOP)]
    assert plan(view(slots, revision=1, previous=None)) == [Retire("r2")]


# --- the gateway ledger ---------------------------------------------------------------------

def stats(instance: str, requests: int, failures: int = 0, revision: str = "2") -> dict:
    return {"instance": instance, "revisions": {"d": {revision: {
        "requests": requests, "failures": failures, "latency_counts": [requests, 0]}}}}


def test_ledger_sums_deltas_of_each_gateway_process():
    ledger = GatewayLedger()
    ledger.observe("g0", stats("a", 10, 1))
    ledger.observe("g1", stats("b", 5))
    ledger.observe("g0", stats("a", 12, 2))
    assert ledger.total("d", 2) == Outcomes(17, 2, (17, 0))
    assert ledger.total("d", 1) == Outcomes()


def test_ledger_counts_a_restarted_gateway_from_zero():
    ledger = GatewayLedger()
    ledger.observe("g0", stats("a", 10))
    ledger.observe("g0", stats("b", 3))  # a new process in the same slot
    assert ledger.total("d", 2).requests == 13
    ledger.observe("g0", stats("b", 1))  # a counter went down: restarted again, same id reported
    assert ledger.total("d", 2).requests == 14


def test_ledger_skips_reports_without_or_with_malformed_revisions():
    ledger = GatewayLedger()
    ledger.observe("g0", {"instance": "a"})
    ledger.observe("g0", {"instance": "a", "revisions": {"d": {"x": {"requests": 1}}, "e": "junk"}})
    assert ledger.total("d", 2) == Outcomes()


def test_a_revision_failing_every_call_is_rolled_back_before_min_requests():
    view = _failing_view(requests=13, failures=13, now=3.0)
    actions = plan(view)
    assert any(isinstance(a, RollBack) for a in actions), actions


def test_too_little_traffic_with_failures_is_rolled_back_even_with_promote():
    view = _failing_view(requests=3, failures=1, now=100.0, min_requests=100)
    rollback = [a for a in plan(view) if isinstance(a, RollBack)]
    assert rollback and "1 of them failed" in rollback[0].reason


def test_replacing_the_canary_does_not_restart_the_bake():
    # The canary slot was replaced (ready_since is recent), but the rollout's bake began long ago.
    view = _failing_view(requests=0, failures=0, now=100.0, ready_since=99.0, bake_since=10.0,
                         min_requests=100)
    assert any(isinstance(a, Promote) for a in plan(view))  # max_bake_s (60) counted from 10.0


def _failing_view(*, requests, failures, now, ready_since=0.0, bake_since=None, min_requests=20):
    from steadyserve.control.rollout import DeploymentView, Outcomes, SlotView
    from steadyserve.control.spec import RolloutSettings
    from steadyserve.control.supervision import ProcState

    slots = (SlotView(id="r0", index=0, revision=1, state=ProcState.READY, started_at=0.0, ready_since=0.0),
             SlotView(id="r1", index=1, revision=2, state=ProcState.READY, started_at=0.0,
                      ready_since=ready_since))
    return DeploymentView(revision=2, replicas=1, slots=slots, now=now,
                          rollout=RolloutSettings(bake_s=2, min_requests=min_requests, max_bake_s=60),
                          previous_revision=1, new_outcomes=Outcomes(requests=requests, failures=failures),
                          bake_since=bake_since)
