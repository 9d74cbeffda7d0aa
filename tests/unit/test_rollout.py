"""The deployment planner: scaling, rolling updates, canary bake, rollback."""

from __future__ import annotations

from steadyserve.control.rollout import AddSlot, DeploymentView, Retire, RollBack, SlotView, plan
from steadyserve.control.spec import RolloutSettings
from steadyserve.control.supervision import ProcState

R = ProcState.READY
SETTINGS = RolloutSettings(max_surge=1, ready_deadline_s=60, bake_s=5, max_error_rate=0.1, min_requests=10)


def slot(i: int, revision: int, state: ProcState = R, started_at: float = 0.0, ready_since: float | None = 0.0,
         requests: int = 0, errors: int = 0) -> SlotView:
    return SlotView(f"r{i}", i, revision, state, started_at, ready_since if state == R else None, requests, errors)


def view(slots, revision=2, replicas=2, now=100.0, previous=1) -> DeploymentView:
    return DeploymentView(revision, replicas, tuple(slots), now, SETTINGS, previous)


def test_steady_state_starts_missing_replicas():
    assert plan(view([slot(0, 2)], previous=None)) == [AddSlot(2)]


def test_scale_down_retires_not_ready_then_newest():
    slots = [slot(0, 2), slot(1, 2), slot(2, 2, ProcState.STARTING), slot(3, 2)]
    assert plan(view(slots, replicas=2, previous=None)) == [Retire("r2"), Retire("r3")]


def test_rollout_starts_one_surge_replica_and_keeps_all_old():
    assert plan(view([slot(0, 1), slot(1, 1)])) == [AddSlot(2)]
    starting = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.STARTING, started_at=99.0)]
    assert plan(view(starting)) == []


def test_old_replica_retires_only_after_the_canary_baked():
    fresh = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=98.0)]
    assert plan(view(fresh)) == []  # baking: 2 s of 5
    baked = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=94.0)]
    assert plan(view(baked)) == [AddSlot(2), Retire("r1")]


def test_rollout_finishes_by_replacing_the_last_old_replica():
    slots = [slot(0, 1), slot(2, 2, ready_since=90.0), slot(3, 2, ready_since=99.0)]
    assert plan(view(slots)) == [Retire("r0")]


def test_crash_looping_new_revision_rolls_back():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.CRASH_LOOP)]
    actions = plan(view(slots))
    assert len(actions) == 1 and isinstance(actions[0], RollBack) and actions[0].to_revision == 1
    assert "crash-looping" in actions[0].reason


def test_new_replica_not_ready_by_deadline_rolls_back():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.STARTING, started_at=30.0)]
    assert isinstance(plan(view(slots))[0], RollBack)


def test_error_rate_over_limit_during_bake_rolls_back():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=99.0, requests=20, errors=5)]
    action = plan(view(slots))[0]
    assert isinstance(action, RollBack) and "5 of 20" in action.reason


def test_few_requests_do_not_judge_the_error_rate():
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ready_since=99.0, requests=4, errors=4)]
    assert plan(view(slots)) == []


def test_after_rollback_the_failed_replicas_retire():
    # active revision is 1 again; revision 2's replica is now the "old" one.
    slots = [slot(0, 1), slot(1, 1), slot(2, 2, ProcState.CRASH_LOOP)]
    assert plan(view(slots, revision=1, previous=None)) == [Retire("r2")]
