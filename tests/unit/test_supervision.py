"""The supervised process lifecycle as a pure state machine."""

from __future__ import annotations

import pytest

from steadyserve.control.supervision import (
    Kill,
    Observation,
    ProcState,
    Slot,
    Start,
    SupervisionPolicy,
    backoff_s,
    step,
)

POLICY = SupervisionPolicy(failure_threshold=3, startup_timeout_s=30, backoff_base_s=0.5,
                           backoff_max_s=4, min_uptime_s=10, crash_loop_after=3)


def advance(slot: Slot, **obs):
    return step(slot, Observation(**obs), POLICY)


def ready_slot(now: float = 0.0) -> Slot:
    s = advance(Slot("replica", "r0"), now=now).slot
    return advance(s, now=now + 1, alive=True, ready=True).slot


def test_pending_slot_is_started():
    result = advance(Slot("replica", "r0"), now=0.0)
    assert result.slot.state == ProcState.STARTING
    assert result.actions == [Start(1)]


def test_becomes_ready_when_probe_says_ready():
    slot = advance(Slot("replica", "r0"), now=0.0).slot
    assert advance(slot, now=1.0, alive=True, ready=False).slot.state == ProcState.STARTING
    result = advance(slot, now=1.0, alive=True, ready=True)
    assert result.slot.state == ProcState.READY
    assert [e.type for e in result.events] == ["ready"]


def test_exit_after_long_uptime_restarts_at_once():
    slot = ready_slot()
    result = advance(slot, now=100.0, exit_code=-9)
    assert result.slot.state == ProcState.BACKOFF and result.slot.backoff_until == 100.0
    assert "SIGKILL" in result.events[0].message
    assert advance(result.slot, now=100.0).actions == [Start(2)]


def test_repeated_crashes_back_off_and_are_named_a_crash_loop():
    slot = Slot("replica", "r0")
    now = 0.0
    for crash in range(1, 5):
        slot = advance(slot, now=now).slot  # (re)start
        result = advance(slot, now=now + 0.2, exit_code=3, error="setup failed: ValueError: boom")
        slot = result.slot
        assert slot.crashes == crash
        assert slot.backoff_until - (now + 0.2) == pytest.approx(backoff_s(crash, POLICY))
        now = slot.backoff_until
    assert slot.state == ProcState.CRASH_LOOP
    assert slot.last_error == "setup failed: ValueError: boom"
    assert "crash_loop" in [e.type for e in result.events]
    assert backoff_s(10, POLICY) == 4


def test_failed_probe_takes_out_of_rotation_then_recovers():
    slot = ready_slot()
    result = advance(slot, now=20.0, alive=False)
    assert result.slot.state == ProcState.UNHEALTHY and not result.actions
    back = advance(result.slot, now=20.5, alive=True)
    assert back.slot.state == ProcState.READY
    assert [e.type for e in back.events] == ["recovered"]


def test_hung_replica_is_killed_after_threshold():
    slot = ready_slot()
    actions = []
    for i in range(3):
        result = advance(slot, now=20.0 + i, alive=False)
        slot, actions = result.slot, result.actions
    assert len(actions) == 1 and isinstance(actions[0], Kill)


def test_not_ready_within_startup_timeout_is_killed():
    slot = advance(Slot("replica", "r0"), now=0.0).slot
    result = advance(slot, now=31.0, alive=True, ready=False)
    assert isinstance(result.actions[0], Kill)
    assert "not ready within 30s" in result.actions[0].reason


def test_probe_failures_before_listening_do_not_count():
    slot = advance(Slot("replica", "r0"), now=0.0).slot
    for i in range(5):
        slot = advance(slot, now=0.1 * i, alive=False).slot
    assert slot.state == ProcState.STARTING and slot.probe_failures == 0


def test_retiring_a_ready_slot_drains_then_stops():
    from dataclasses import replace

    from steadyserve.control.supervision import Terminate

    slot = replace(ready_slot(), retiring=True)
    draining = advance(slot, now=50.0, alive=True)
    assert draining.slot.state == ProcState.DRAINING and draining.actions == [Terminate()]
    assert advance(draining.slot, now=51.0).actions == []
    stuck = advance(draining.slot, now=50.0 + POLICY.drain_timeout_s + 1)
    assert isinstance(stuck.actions[0], Kill)
    done = advance(draining.slot, now=52.0, exit_code=0)
    assert done.slot.state == ProcState.STOPPED and [e.type for e in done.events] == ["stopped"]


def test_retiring_a_slot_without_process_stops_at_once():
    from dataclasses import replace

    slot = replace(Slot("replica", "r3", state=ProcState.CRASH_LOOP), retiring=True)
    assert advance(slot, now=1.0).slot.state == ProcState.STOPPED
