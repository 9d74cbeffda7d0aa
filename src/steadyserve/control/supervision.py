"""Lifecycle of one supervised process, as a pure state machine.

``step(slot, observation, policy)`` returns the slot's next state, the actions
to apply (start, kill) and the events to record. The controller's loop gathers
observations (exit status, probe result) and applies the actions; nothing here
touches a process, a socket or the clock.
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
    DRAINING = "draining"  # retiring: out of rotation, finishing in-flight work
    STOPPED = "stopped"


RUNNING = frozenset({ProcState.STARTING, ProcState.READY, ProcState.UNHEALTHY})  # probed
HAS_PROCESS = RUNNING | {ProcState.DRAINING}


@dataclass(frozen=True)
class SupervisionPolicy:
    failure_threshold: int = 3  # consecutive failed probes before a kill
    startup_timeout_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    min_uptime_s: float = 10.0  # exiting sooner than this after start counts as a crash
    crash_loop_after: int = 3  # consecutive crashes before reporting a crash loop
    drain_timeout_s: float = 15.0  # a retiring process still up after this is killed


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


@dataclass(frozen=True)
class Observation:
    now: float
    exit_code: int | None = None  # set when the process has exited (negative: signal)
    alive: bool | None = None  # liveness probe result, None when not probed
    ready: bool | None = None
    error: str | None = None  # the process's own fatal error report, if any
    problem: str | None = None  # why the probe failed, when it did


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
                      seen_alive=False, probe_failures=0, ready_at=None)
    if generation == 1:
        return Step(started, [Start(generation)], [EventNote("starting", "starting")])
    return Step(started, [Start(generation)],
                [EventNote("restarted", f"restarting (generation {generation}, restart #{slot.restarts})")])


def _exited(slot: Slot, obs: Observation, policy: SupervisionPolicy) -> Step:
    assert obs.exit_code is not None
    how = describe_exit(obs.exit_code)
    error = obs.error or how
    crashed = slot.state == ProcState.STARTING or obs.now - slot.started_at < policy.min_uptime_s
    crashes = slot.crashes + 1 if crashed else 0
    wait = backoff_s(crashes, policy)
    state = ProcState.CRASH_LOOP if crashes >= policy.crash_loop_after else ProcState.BACKOFF
    events = [EventNote("exited", f"{how}" + (f": {obs.error}" if obs.error else ""))]
    if state == ProcState.CRASH_LOOP:
        events.append(EventNote(
            "crash_loop",
            f"crash-looping: {crashes} crashes in a row, last error: {error};"
            f" next restart in {wait:g}s",
        ))
    nxt = replace(slot, state=state, crashes=crashes, restarts=slot.restarts + 1,
                  backoff_until=obs.now + wait, last_error=error, probe_failures=0)
    return Step(nxt, [], events)


def _retire(slot: Slot, obs: Observation, policy: SupervisionPolicy) -> Step:
    if slot.state in RUNNING:
        return Step(replace(slot, state=ProcState.DRAINING, draining_since=obs.now), [Terminate()],
                    [EventNote("draining", "retiring: out of rotation, finishing in-flight requests")])
    if slot.state == ProcState.DRAINING:
        if obs.exit_code is not None:
            return Step(replace(slot, state=ProcState.STOPPED), [],
                        [EventNote("stopped", f"retired ({describe_exit(obs.exit_code)})")])
        if obs.now - slot.draining_since > policy.drain_timeout_s:
            return Step(slot, [Kill(f"still draining after {policy.drain_timeout_s:g}s")])
        return Step(slot)
    return Step(replace(slot, state=ProcState.STOPPED), [], [EventNote("stopped", "retired")])


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

    if obs.alive is True:
        slot = replace(slot, seen_alive=True)
    if slot.state == ProcState.STARTING:
        if obs.ready:
            ready = replace(slot, state=ProcState.READY, probe_failures=0, ready_at=obs.now)
            where = "in rotation" if slot.kind == "replica" else "serving the public port"
            return Step(ready, [], [EventNote("ready", f"ready; {where}")])
        failures = slot.probe_failures + (1 if obs.alive is False and slot.seen_alive else 0)
        if failures >= policy.failure_threshold:
            return Step(replace(slot, probe_failures=failures),
                        [Kill(f"failed {failures} liveness probes while starting")],
                        [EventNote("unhealthy", f"failed {failures} liveness probes while starting; killing")])
        if obs.now - slot.started_at > policy.startup_timeout_s:
            reason = f"not ready within {policy.startup_timeout_s:g}s"
            return Step(replace(slot, last_error=reason), [Kill(reason)],
                        [EventNote("unhealthy", f"{reason}; killing")])
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
            return Step(replace(slot, state=ProcState.UNHEALTHY, probe_failures=failures),
                        [Kill(reason)], [EventNote("killed", f"{reason}; killing and replacing")])
        events = [] if slot.state == ProcState.UNHEALTHY else [
            EventNote("unhealthy", f"failed a liveness probe{why}; out of rotation")]
        return Step(replace(slot, state=ProcState.UNHEALTHY, probe_failures=failures), [], events)
    return Step(slot)
