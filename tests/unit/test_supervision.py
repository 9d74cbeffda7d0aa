"""The supervised process lifecycle as a pure state machine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from steadyserve.control.supervision import (
    Kill,
    Observation,
    ProcState,
    Slot,
    Start,
    Step,
    SupervisionPolicy,
    Terminate,
    backoff_s,
    start_failed,
    step,
    unplaced,
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


def test_retiring_a_slot_without_process_stops_at_once():
    slot = replace(Slot("replica", "r3", state=ProcState.CRASH_LOOP), retiring=True)
    assert advance(slot, now=1.0).slot.state == ProcState.STOPPED


# --- leaving the routing tables before draining ------------------------------------------

def leaving(now: float = 50.0, routes_version: int = 7,
            gateway_versions: tuple[tuple[str, int | None], ...] = (("g0", 7), ("g1", 7))) -> Step:
    """A ready replica told to retire while the latest table (routes_version) still routes to it."""
    slot = replace(ready_slot(), retiring=True)
    return advance(slot, now=now, routes_version=routes_version, in_routes=True,
                   gateway_versions=gateway_versions)


def test_a_retiring_replica_leaves_the_routing_tables_before_it_is_told_to_drain():
    result = leaving()
    assert result.slot.state == ProcState.LEAVING and result.actions == []
    assert result.slot.leave_version == 8  # the next table is the first without it
    assert [e.type for e in result.events] == ["leaving"]


def test_it_drains_once_every_gateway_serves_a_table_without_it():
    slot = leaving().slot
    one_behind = advance(slot, now=50.5, routes_version=8, gateway_versions=(("g0", 8), ("g1", 7)))
    assert one_behind.slot.state == ProcState.LEAVING and one_behind.actions == []
    done = advance(slot, now=51.0, routes_version=8, gateway_versions=(("g0", 8), ("g1", 9)))
    assert done.slot.state == ProcState.DRAINING and done.actions == [Terminate()]
    assert "no gateway routes to it (routing table version 8)" in done.events[0].message


def test_a_gateway_that_does_not_confirm_holds_the_drain_only_until_the_bound():
    slot = leaving(now=50.0).slot
    waiting = advance(slot, now=54.9, routes_version=8, gateway_versions=(("g0", 8), ("g1", None)))
    assert waiting.slot.state == ProcState.LEAVING
    late = advance(slot, now=50.0 + POLICY.leave_timeout_s, routes_version=8,
                   gateway_versions=(("g0", 8), ("g1", 7)))
    assert late.slot.state == ProcState.DRAINING and late.actions == [Terminate()]
    assert "gateway g1 did not confirm routing table version 8 within 5s" in late.events[0].message


def test_with_no_gateway_running_nothing_blocks_the_drain():
    slot = replace(ready_slot(), retiring=True)
    result = advance(slot, now=50.0, routes_version=3, in_routes=False, gateway_versions=())
    assert result.slot.state == ProcState.DRAINING
    assert [e.type for e in result.events] == ["leaving", "draining"]


def test_a_table_published_while_it_was_still_routed_does_not_count():
    # A table still routing to it (a failed publish, say) pushes the version to wait for.
    slot = leaving(routes_version=7).slot
    again = advance(slot, now=50.5, routes_version=8, in_routes=True, gateway_versions=(("g0", 8),))
    assert again.slot.state == ProcState.LEAVING and again.slot.leave_version == 9


def test_a_draining_process_is_killed_after_the_drain_timeout():
    slot = leaving(gateway_versions=()).slot
    assert slot.state == ProcState.DRAINING
    assert advance(slot, now=51.0).actions == []
    stuck = advance(slot, now=50.0 + POLICY.drain_timeout_s + 1)
    assert isinstance(stuck.actions[0], Kill) and [e.type for e in stuck.events] == ["killed"]
    done = advance(stuck.slot, now=70.0, exit_code=-9)
    assert done.slot.state == ProcState.STOPPED and [e.type for e in done.events] == ["stopped"]


@pytest.mark.parametrize("state", [ProcState.LEAVING, ProcState.DRAINING, ProcState.STARTING])
def test_a_retiring_slot_whose_process_is_gone_stops(state):
    slot = Slot("replica", "r0", state=state, retiring=True, generation=1)
    assert advance(slot, now=1.0, has_process=False).slot.state == ProcState.STOPPED
    assert advance(slot, now=1.0, exit_code=0).slot.state == ProcState.STOPPED


# --- processes that cannot start -------------------------------------------------------

def test_a_process_that_cannot_be_started_backs_off_with_the_reason():
    slot = advance(Slot("replica", "r0"), now=0.0).slot
    result = start_failed(slot, 0.0, "ValueError: embedded null byte", POLICY)
    assert result.slot.state == ProcState.BACKOFF
    assert result.slot.last_error == "could not start: ValueError: embedded null byte"
    assert [e.type for e in result.events] == ["start_failed"]
    assert result.slot.backoff_until == pytest.approx(backoff_s(1, POLICY))


def test_repeated_start_failures_are_named_a_crash_loop():
    slot, now = Slot("replica", "r0"), 0.0
    for _ in range(POLICY.crash_loop_after):
        slot = advance(slot, now=now).slot
        result = start_failed(slot, now, "FileNotFoundError: no such file", POLICY)
        slot, now = result.slot, result.slot.backoff_until
    assert slot.state == ProcState.CRASH_LOOP
    assert "crash_loop" in [e.type for e in result.events]


def test_a_starting_slot_without_a_process_never_stays_starting():
    slot = advance(Slot("replica", "r0"), now=0.0).slot
    result = advance(slot, now=0.5, has_process=False)
    assert result.slot.state == ProcState.BACKOFF and "no process" in (result.slot.last_error or "")


# --- replacement -------------------------------------------------------------------------

def test_a_replica_asking_to_be_replaced_is_marked_at_once_and_not_killed():
    reason = "worker 0 in 'hang' for 7s: the worker is stuck"
    result = advance(ready_slot(), now=20.0, alive=False, replace_reason=reason)
    assert result.slot.replace_reason == reason and result.slot.state == ProcState.UNHEALTHY
    assert result.actions == [] and [e.type for e in result.events] == ["replacing"]
    assert result.slot.last_error == reason
    # Further failed probes neither kill it (that would restart it in its slot) nor repeat the event.
    slot = result.slot
    for i in range(5):
        later = advance(slot, now=21.0 + i, alive=False, replace_reason=reason)
        slot = later.slot
        assert later.actions == [] and later.events == []


def test_a_replica_over_its_memory_limit_is_marked_naming_the_limit_and_the_figure():
    policy = replace(POLICY, memory_limit_mb=512)
    fine = step(ready_slot(), Observation(now=20.0, alive=True, ready=True, rss_mb=500.0), policy)
    assert fine.slot.replace_reason is None
    over = step(ready_slot(), Observation(now=20.0, alive=True, ready=True, rss_mb=812.4), policy)
    assert over.slot.state == ProcState.READY  # keeps serving until its replacement is ready
    assert over.events[0].type == "replacing"
    assert "resident memory 812 MiB over the limit of 512 MiB" in over.events[0].message


def test_a_replica_over_its_memory_limit_while_starting_is_restarted_as_a_crash():
    policy = replace(POLICY, memory_limit_mb=128)
    slot = advance(Slot("replica", "r0"), now=0.0).slot
    killed = step(slot, Observation(now=1.0, alive=True, ready=False, rss_mb=300.0), policy)
    assert isinstance(killed.actions[0], Kill)
    exited = step(killed.slot, Observation(now=1.5, exit_code=-9), policy)
    assert exited.slot.state == ProcState.BACKOFF and exited.slot.crashes == 1
    assert "over the limit of 128 MiB" in (exited.slot.last_error or "")


def test_a_hung_replica_is_still_killed_in_its_slot_after_the_threshold():
    slot = ready_slot()
    for i in range(POLICY.failure_threshold):
        result = advance(slot, now=20.0 + i, alive=False, problem="timed out")
        slot = result.slot
    assert isinstance(result.actions[0], Kill) and slot.replace_reason is None
    exited = advance(slot, now=24.0, exit_code=-9)
    assert "failed 3 consecutive liveness probes" in (exited.slot.last_error or "")


def test_a_replica_being_replaced_that_exits_stays_marked_for_the_planner_to_retire():
    marked = advance(ready_slot(), now=20.0, alive=False, replace_reason="stuck").slot
    exited = advance(marked, now=21.0, exit_code=-9)
    assert exited.slot.state == ProcState.BACKOFF and exited.slot.replace_reason == "stuck"


def test_a_killed_process_exit_does_not_repeat_the_reason_its_kill_event_gave():
    policy = SupervisionPolicy()
    slot = Slot("replica", "r0", ProcState.READY, 1, started_at=0.0, seen_alive=True, ready_at=1.0)
    for _ in range(policy.failure_threshold):
        decision = step(slot, Observation(now=100.0, exit_code=None, alive=False, ready=False, has_process=True),
                        policy)
        slot = decision.slot
    [kill_event] = decision.events
    assert kill_event.type == "killed" and "failed 3 consecutive liveness probes" in kill_event.message
    exited = step(slot, Observation(now=101.0, exit_code=-9, alive=None, ready=None, has_process=True), policy)
    [note] = [e for e in exited.events if e.type == "exited"]
    assert note.message == "killed by signal SIGKILL, as decided"
    assert "liveness probes" in (exited.slot.last_error or "")  # status still says why


def test_a_replica_no_node_has_room_for_waits_without_counting_restarts_or_crashes():
    slot = Slot("replica", "r0")
    reason = "no Ray node has room for a replica (needs CPU 4): n1 has CPU 2 free"
    waited = unplaced(slot, now=0.0, reason=reason, policy=POLICY)
    assert waited.slot.state == ProcState.BACKOFF and waited.actions == []
    assert (waited.slot.restarts, waited.slot.crashes, waited.slot.generation) == (0, 0, 0)
    assert waited.slot.backoff_until == POLICY.placement_retry_s and waited.slot.last_error == reason
    assert [e.type for e in waited.events] == ["unschedulable"]
    for i in range(10):  # tried again and again: one event, never a crash loop
        again = unplaced(waited.slot, now=2.0 * (i + 1), reason=reason, policy=POLICY)
        assert again.events == [] and again.slot.state == ProcState.BACKOFF and again.slot.crashes == 0
        waited = again
    changed = unplaced(waited.slot, now=30.0, reason=reason.replace("CPU 2", "CPU 3"), policy=POLICY)
    assert [e.type for e in changed.events] == ["unschedulable"]
    assert advance(changed.slot, now=30.0 + POLICY.placement_retry_s).actions == [Start(1)]  # room: it starts
