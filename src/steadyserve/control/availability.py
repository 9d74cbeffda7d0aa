"""The availability report of one deployment over a period (pure).

Input: the period cut into steps (calls, failed calls and ready replicas in each, from the
metrics history) and the deployment's events. Output: measured availability (successful /
all calls, and the share of time with at least one ready replica), incidents (runs of steps
with failed calls or no ready replica) with their causes from the events, MTTR, MTBF, the
failure rate, and the expected downtime D = p·E (the probability of a failure within an hour
times the mean time to recover).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

HOUR_S = 3600.0
# Event types that say why calls failed or capacity was gone.
CAUSE_TYPES = frozenset({
    "crashed", "exited", "unhealthy", "killed", "crash_loop", "start_failed", "replacing", "ejected", "rollback",
    "predicted", "error", "orphan_killed", "stopped", "oom",
})
CAUSE_LOOKBACK_S = 30.0  # a crash shortly before the first failed call caused it
MAX_CAUSES = 5
NO_CAPACITY_TOLERANCE_S = 0.01  # float residue of summed tick intervals, not an outage


@dataclass(frozen=True)
class Step:
    start: float
    end: float
    calls: float
    failed: float  # answered 5xx, or not at all
    ready: float | None  # ready replicas at the step's end; None: not recorded (controller down)
    watched_s: float = 0.0  # of the step, the time the controller watched the deployment ...
    ready_s: float = 0.0  # ... and the time it had at least one ready replica
    p50_s: float | None = None
    p99_s: float | None = None


@dataclass(frozen=True)
class EventRow:
    ts: float
    type: str
    subject: str
    message: str


@dataclass(frozen=True)
class Incident:
    start: float
    end: float
    calls: float
    failed: float
    no_capacity_s: float
    causes: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class DeploymentReport:
    deployment: str
    since: float
    until: float
    calls: float
    failed: float
    availability: float | None  # successful / all calls (None without calls)
    ready_time_fraction: float | None  # of the recorded time, the share with a ready replica
    recorded_s: float
    incidents: tuple[Incident, ...]
    mttr_s: float | None
    mtbf_s: float | None
    failure_rate_per_h: float
    failure_probability_per_h: float
    expected_downtime_s_per_h: float | None
    steps: tuple[Step, ...] = field(default=(), repr=False)

    @property
    def downtime_s(self) -> float:
        return sum(i.duration_s for i in self.incidents)


def _no_capacity_s(step: Step) -> float:
    gone_s = step.watched_s - step.ready_s
    return gone_s if gone_s > NO_CAPACITY_TOLERANCE_S else 0.0


def _bad(step: Step) -> bool:
    return step.failed > 0 or _no_capacity_s(step) > 0


def find_incidents(steps: Sequence[Step], events: Sequence[EventRow]) -> list[Incident]:
    incidents: list[Incident] = []
    run: list[Step] = []
    for step in [*steps, None]:
        if step is not None and _bad(step):
            run.append(step)
            continue
        if run:
            start, end = run[0].start, run[-1].end
            causes = _causes(events, start - CAUSE_LOOKBACK_S, end)
            incidents.append(Incident(
                start, end, sum(s.calls for s in run), sum(s.failed for s in run),
                sum(_no_capacity_s(s) for s in run), causes))
            run = []
    return incidents


def _causes(events: Sequence[EventRow], since: float, until: float) -> tuple[str, ...]:
    found: list[str] = []
    for event in events:
        if since <= event.ts <= until and event.type in CAUSE_TYPES:
            text = f"{event.subject} {event.type}: {event.message}"
            if text not in found:
                found.append(text)
    return tuple(found[:MAX_CAUSES])


def build(deployment: str, since: float, until: float, steps: Sequence[Step],
          events: Sequence[EventRow]) -> DeploymentReport:
    calls = sum(s.calls for s in steps)
    failed = sum(s.failed for s in steps)
    recorded_s = sum(s.watched_s for s in steps)
    ready_s = sum(s.ready_s for s in steps)
    incidents = find_incidents(steps, events)
    period_s = max(until - since, 1e-9)
    count = len(incidents)
    mttr = sum(i.duration_s for i in incidents) / count if count else None
    up_s = period_s - sum(i.duration_s for i in incidents)
    mtbf = up_s / count if count else None
    rate_per_h = count / (period_s / HOUR_S)
    probability = 1.0 - math.exp(-rate_per_h)  # of at least one failure within an hour (Poisson)
    return DeploymentReport(
        deployment=deployment, since=since, until=until, calls=calls, failed=failed,
        availability=(calls - failed) / calls if calls else None,
        ready_time_fraction=ready_s / recorded_s if recorded_s else None, recorded_s=recorded_s,
        incidents=tuple(incidents), mttr_s=mttr, mtbf_s=mtbf, failure_rate_per_h=rate_per_h,
        failure_probability_per_h=probability,
        expected_downtime_s_per_h=probability * mttr if mttr is not None else 0.0,
        steps=tuple(steps))
