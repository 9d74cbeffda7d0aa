"""Lifecycle of one supervised process, as a pure state machine.

``step(slot, observation, policy)`` returns the slot's next state, the actions
to apply (start, kill, terminate) and the events to record. The controller's
loop gathers observations (exit status, probe result, resident memory, the
routing table versions the gateways serve) and applies the actions; nothing
here touches a process, a socket or the clock.

A retiring process first leaves every gateway's routing table (LEAVING), and
only then is told to drain (DRAINING): no gateway sends it a call after its
SIGTERM. A replica that asks to be replaced, or outgrows its memory limit, is
marked ``replace_reason``; the deployment planner starts its replacement and
retires it once capacity is back.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, replace
from enum import StrEnum


class ProcState(StrEnum):
    PENDING = "pending"  # not started yet
    STARTING = "starting"  # process up, not ready yet
    READY = "ready"  # in rotation
    UNHEALTHY = "unhealthy"  # failed a probe: out of rotation until it passes again
    BACKOFF = "backoff"  # exited; waiting before the restart
    CRASH_LOOP = "crash_loop"  # exited repeatedly soon after start; restarting slowly
    LEAVING = "leaving"  # retiring: waiting for every gateway to stop routing to it
    DRAINING = "draining"  # retiring: out of rotation, finishing in-flight work
    STOPPED = "stopped"


RUNNING = frozenset({ProcState.STARTING, ProcState.READY, ProcState.UNHEALTHY})  # probed
HAS_PROCESS = RUNNING | {ProcState.LEAVING, ProcState.DRAINING}


@dataclass(frozen=True)
class SupervisionPolicy:
    failure_threshold: int = 3  # consecutive failed probes before a kill
    startup_timeout_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    min_uptime_s: float = 10.0  # exiting sooner than this after start counts as a crash
    crash_loop_after: int = 3  # consecutive crashes before reporting a crash loop
    drain_timeout_s: float = 15.0  # a retiring process still up after this is killed
    # A gateway that has not confirmed the table without a leaving process by then
    # no longer holds up its drain (a hung gateway must not block scale-in).
    leave_timeout_s: float = 5.0
    memory_limit_mb: int | None = None  # resident memory (process tree) above which a replica is replaced
    placement_retry_s: float = 2.0  # a replica no cluster node has room for is tried again this often


@dataclass(frozen=True)
class Slot:
    kind: str
    id: str
    state: ProcState = ProcState.PENDING
    generation: int = 0
    started_at: float = 0.0
    seen_alive: bool = False
    probe_failures: int = 0
    restarts: int = 0
    crashes: int = 0  # consecutive crashes; reset once it stays up
    backoff_until: float = 0.0
    last_error: str | None = None
    retiring: bool = False  # desired state says: stop this one for good
    draining_since: float = 0.0
    ready_at: float | None = None  # when the current process became ready
    replace_reason: str | None = None  # must be replaced: the planner starts a successor, then retires it
    replacing_since: float = 0.0
    leave_version: int = 0  # LEAVING: the first routing table version without this process
    leaving_since: float = 0.0
    kill_reason: str | None = None  # why the current process was killed, for its exit report


@dataclass(frozen=True)
class Observation:
    now: float
    exit_code: int | None = None  # set when the process has exited (negative: signal)
    alive: bool | None = None  # liveness probe result, None when not probed
    ready: bool | None = None
    error: str | None = None  # the process's own fatal error report, if any
    problem: str | None = None  # why the probe failed, when it did
    has_process: bool = True  # False: no process behind the slot (a start that did not complete)
    replace_reason: str | None = None  # the replica asked to be replaced (its /healthz)
    rss_mb: float | None = None  # resident memory of the process and its children
    routes_version: int = 0  # the latest routing table published
    in_routes: bool = False  # whether that table routes calls to this process
    # (gateway id, table version it serves, None if unknown) for every running gateway
    gateway_versions: tuple[tuple[str, int | None], ...] = ()


@dataclass(frozen=True)
class Start:
    generation: int


@dataclass(frozen=True)
class Kill:
    reason: str


@dataclass(frozen=True)
class Terminate:
    """SIGTERM: drain in-flight requests, then exit."""


@dataclass(frozen=True)
class EventNote:
    type: str
    message: str


@dataclass(frozen=True)
class Step:
    slot: Slot
    actions: list[Start | Kill | Terminate] = field(default_factory=list)
    events: list[EventNote] = field(default_factory=list)


def describe_exit(code: int) -> str:
    if code == 999:  # processes.UNKNOWN_EXIT
        return "exited (adopted process: exit status unknown)"
    if code == 998:  # processes.NODE_LOST_EXIT
        return "lost with its Ray actor or node"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def backoff_s(crashes: int, policy: SupervisionPolicy) -> float:
    if crashes <= 0:
        return 0.0
    return float(min(policy.backoff_base_s * 2.0 ** (crashes - 1), policy.backoff_max_s))


def _start(slot: Slot, now: float) -> Step:
    generation = slot.generation + 1
    started = replace(slot, state=ProcState.STARTING, generation=generation, started_at=now,
                      seen_alive=False, probe_failures=0, ready_at=None, kill_reason=None,
                      replace_reason=None)
    if generation == 1:
        return Step(started, [Start(generation)], [EventNote("starting", "starting")])
    return Step(started, [Start(generation)],
                [EventNote("restarted", f"restarting (generation {generation}, restart #{slot.restarts})")])


def _down(slot: Slot, now: float, error: str, note: EventNote, policy: SupervisionPolicy,
          crashed: bool) -> Step:
    """The slot lost its process: back off before the restart, longer after each crash in a row."""
    crashes = slot.crashes + 1 if crashed else 0
    wait = backoff_s(crashes, policy)
    state = ProcState.CRASH_LOOP if crashes >= policy.crash_loop_after else ProcState.BACKOFF
    events = [note]
    if state == ProcState.CRASH_LOOP:
        events.append(EventNote(
            "crash_loop",
            f"crash-looping: {crashes} crashes in a row, last error: {error};"
            f" next restart in {wait:g}s",
        ))
    # A slot marked for replacement stays marked: the planner retires it rather than restart it.
    nxt = replace(slot, state=state, crashes=crashes, restarts=slot.restarts + 1,
                  backoff_until=now + wait, last_error=error, probe_failures=0, kill_reason=None)
    return Step(nxt, [], events)


def _exited(slot: Slot, obs: Observation, policy: SupervisionPolicy) -> Step:
    assert obs.exit_code is not None
    how = describe_exit(obs.exit_code)
    told = how  # the event: the `killed` event before it already gave the reason
    if slot.kill_reason is not None:
        how = f"{how} ({slot.kill_reason})"
        if obs.exit_code == -signal.SIGKILL:
            told = "killed by signal SIGKILL, as decided"
    error = obs.error or how
    crashed = slot.state == ProcState.STARTING or obs.now - slot.started_at < policy.min_uptime_s
    note = EventNote("exited", f"{told}" + (f": {obs.error}" if obs.error else ""))
    return _down(slot, obs.now, error, note, policy, crashed)


def start_failed(slot: Slot, now: float, error: str, policy: SupervisionPolicy) -> Step:
    """The process could not be started at all (the launcher raised): a crash like any other."""
    reason = f"could not start: {error}"
    return _down(slot, now, reason, EventNote("start_failed", reason), policy, crashed=True)


def unplaced(slot: Slot, now: float, reason: str, policy: SupervisionPolicy) -> Step:
    """No cluster node has room for it: not a crash (no restart counted, no crash loop). It waits and is
    tried again; the event is recorded once while the reason stays the same."""
    repeated = slot.state == ProcState.BACKOFF and slot.last_error == reason
    nxt = replace(slot, state=ProcState.BACKOFF, backoff_until=now + policy.placement_retry_s, last_error=reason,
                  probe_failures=0, kill_reason=None)
    return Step(nxt, [], [] if repeated else [EventNote("unschedulable", f"{reason}; trying again as room frees")])


def _must_replace(obs: Observation, policy: SupervisionPolicy) -> str | None:
    if obs.replace_reason:
        return obs.replace_reason
    limit_mb = policy.memory_limit_mb
    if limit_mb is not None and obs.rss_mb is not None and obs.rss_mb > limit_mb:
        return f"resident memory {obs.rss_mb:.0f} MiB over the limit of {limit_mb} MiB"
    return None


def _kill(slot: Slot, reason: str, event_type: str, message: str) -> Step:
    return Step(replace(slot, kill_reason=reason), [Kill(reason)], [EventNote(event_type, message)])


def _leave(slot: Slot, obs: Observation, policy: SupervisionPolicy, events: list[EventNote]) -> Step:
    """LEAVING ends once every running gateway serves a table without this process (or the bound passed)."""
    # Still in the latest table: the next one is the first without it.
    version = max(slot.leave_version, obs.routes_version + 1 if obs.in_routes else obs.routes_version)
    slot = replace(slot, leave_version=version)
    lagging = [g for g, v in obs.gateway_versions if v is None or v < version]
    if not lagging:
        why = f"no gateway routes to it (routing table version {version})"
    elif obs.now - slot.leaving_since >= policy.leave_timeout_s:
        why = (f"gateway {', '.join(lagging)} did not confirm routing table version {version}"
               f" within {policy.leave_timeout_s:g}s; draining anyway")
    else:
        return Step(slot, [], events)
    draining = replace(slot, state=ProcState.DRAINING, draining_since=obs.now)
    return Step(draining, [Terminate()], [*events, EventNote("draining", f"{why}: finishing in-flight requests")])


def _retire(slot: Slot, obs: Observation, policy: SupervisionPolicy) -> Step:
    if slot.state not in HAS_PROCESS:
        return Step(replace(slot, state=ProcState.STOPPED), [], [EventNote("stopped", "retired")])
    if obs.exit_code is not None:
        return Step(replace(slot, state=ProcState.STOPPED), [],
                    [EventNote("stopped", f"retired ({describe_exit(obs.exit_code)})")])
    if not obs.has_process:
        return Step(replace(slot, state=ProcState.STOPPED), [], [EventNote("stopped", "retired (it had no process)")])
    if slot.state in RUNNING:
        leaving = replace(slot, state=ProcState.LEAVING, leaving_since=obs.now, leave_version=0)
        note = EventNote("leaving", "retiring: out of rotation; it drains once every gateway has stopped routing to it")
        return _leave(leaving, obs, policy, [note])
    if slot.state == ProcState.LEAVING:
        return _leave(slot, obs, policy, [])
    if obs.now - slot.draining_since > policy.drain_timeout_s:  # DRAINING
        reason = f"still draining after {policy.drain_timeout_s:g}s"
        if slot.kill_reason is None:
            return _kill(slot, reason, "killed", f"{reason}; killing")
        return Step(slot, [Kill(reason)])
    return Step(slot)


def _being_replaced(slot: Slot, obs: Observation) -> Step:
    """Its successor is on the way; the planner retires it. Killing it here would restart it in its slot."""
    if obs.alive is False and slot.state == ProcState.READY:
        why = f" ({obs.problem})" if obs.problem else ""
        return Step(replace(slot, state=ProcState.UNHEALTHY), [],
                    [EventNote("unhealthy", f"failed a liveness probe{why}; out of rotation until it is replaced")])
    if obs.alive is True and slot.state == ProcState.UNHEALTHY:
        return Step(replace(slot, state=ProcState.READY), [],
                    [EventNote("recovered", "passed its probe again; in rotation until it is replaced")])
    return Step(slot)


def step(slot: Slot, obs: Observation, policy: SupervisionPolicy) -> Step:
    """Advance one slot by one observation."""
    if slot.state == ProcState.STOPPED:
        return Step(slot)
    if slot.retiring:
        return _retire(slot, obs, policy)
    if slot.state == ProcState.PENDING:
        return _start(slot, obs.now)
    if slot.state in (ProcState.BACKOFF, ProcState.CRASH_LOOP):
        return _start(slot, obs.now) if obs.now >= slot.backoff_until else Step(slot)
    if obs.exit_code is not None:
        return _exited(slot, obs, policy)
    if not obs.has_process:  # e.g. the controller failed between deciding the start and doing it
        return start_failed(slot, obs.now, "no process behind the slot", policy)
    if slot.kill_reason is not None:  # killed: keep at it until its exit is seen
        return Step(slot, [Kill(slot.kill_reason)])

    if obs.alive is True:
        slot = replace(slot, seen_alive=True)
    if slot.replace_reason is not None:
        return _being_replaced(slot, obs)
    reason = _must_replace(obs, policy)
    if reason is not None:
        if slot.state == ProcState.STARTING or slot.kind != "replica":
            # Never served: restart it in its slot, counted as a crash (as Kubernetes does after an OOM kill).
            return _kill(slot, reason, "unhealthy", f"{reason}; killing")
        marked = replace(slot, replace_reason=reason, replacing_since=obs.now, last_error=reason,
                         state=ProcState.UNHEALTHY if obs.alive is False else slot.state)
        return Step(marked, [], [EventNote("replacing", f"{reason}; starting a replacement, then draining it")])
    if slot.state == ProcState.STARTING:
        if obs.ready:
            ready = replace(slot, state=ProcState.READY, probe_failures=0, ready_at=obs.now)
            where = "in rotation" if slot.kind == "replica" else "serving the public port"
            return Step(ready, [], [EventNote("ready", f"ready; {where}")])
        failures = slot.probe_failures + (1 if obs.alive is False and slot.seen_alive else 0)
        if failures >= policy.failure_threshold:
            reason = f"failed {failures} liveness probes while starting"
            return _kill(replace(slot, probe_failures=failures), reason, "unhealthy", f"{reason}; killing")
        if obs.now - slot.started_at > policy.startup_timeout_s:
            reason = f"not ready within {policy.startup_timeout_s:g}s"
            return _kill(slot, reason, "unhealthy", f"{reason}; killing")
        return Step(replace(slot, probe_failures=failures))

    # READY or UNHEALTHY
    if obs.alive is True:
        if slot.state == ProcState.UNHEALTHY:
            crashes = slot.crashes if obs.now - slot.started_at < policy.min_uptime_s else 0
            back = replace(slot, state=ProcState.READY, probe_failures=0, crashes=crashes)
            return Step(back, [], [EventNote("recovered", "passed its probe again; back in rotation")])
        if slot.crashes and obs.now - slot.started_at >= policy.min_uptime_s:
            return Step(replace(slot, crashes=0, probe_failures=0))
        return Step(replace(slot, probe_failures=0) if slot.probe_failures else slot)
    if obs.alive is False:
        failures = slot.probe_failures + 1
        why = f" ({obs.problem})" if obs.problem else ""
        if failures >= policy.failure_threshold:
            reason = f"failed {failures} consecutive liveness probes{why}"
            return _kill(replace(slot, state=ProcState.UNHEALTHY, probe_failures=failures), reason,
                         "killed", f"{reason}; killing and replacing")
        events = [] if slot.state == ProcState.UNHEALTHY else [
            EventNote("unhealthy", f"failed a liveness probe{why}; out of rotation")]
        return Step(replace(slot, state=ProcState.UNHEALTHY, probe_failures=failures), [], events)
    return Step(slot)
