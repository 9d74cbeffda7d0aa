"""Gathers an availability report's inputs from the metrics history and the events (I/O side)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..metrics import catalog
from ..metrics.history import History
from .availability import DeploymentReport, EventRow, Step, build
from .statedb import Event

MAX_STEPS = 600  # points per chart and per incident search
STORE_STEP_S = 60.0  # the history's durable tier holds a value a minute


def grid_for(history: History, since: float, until: float) -> list[float]:
    finest = history.step_s if since >= history.memory_since else STORE_STEP_S
    step_s = max(finest, math.ceil((until - since) / MAX_STEPS / finest) * finest)
    count = max(1, math.ceil((until - since) / step_s))
    return [until - step_s * (count - i) for i in range(count + 1)]


def deployment_steps(history: History, deployment: str, grid: list[float]) -> list[Step]:
    matchers = {"deployment": deployment}
    by_code = history.grid_increase(catalog.REQUESTS.exposed_name, matchers, grid, by=("code",))
    empty = [0.0] * (len(grid) - 1)
    calls = _summed(by_code, empty)
    failed = _summed({labels: v for labels, v in by_code.items() if dict(labels)["code"].startswith("5")}, empty)
    watched = _summed(history.grid_increase(catalog.DEPLOYMENT_SECONDS.exposed_name, matchers, grid), empty)
    ready_s = _summed(history.grid_increase(catalog.DEPLOYMENT_READY_SECONDS.exposed_name, matchers, grid), empty)
    states = history.grid_values(catalog.REPLICAS.name, matchers, grid, max_age_s=3 * (grid[1] - grid[0]))
    p50 = history.grid_quantile(0.5, catalog.REQUEST_DURATION.name, matchers, grid)
    p99 = history.grid_quantile(0.99, catalog.REQUEST_DURATION.name, matchers, grid)
    steps = []
    for i in range(len(grid) - 1):
        at_end = {dict(labels)["state"]: values[i + 1] for labels, values in states.items()}
        recorded = any(v is not None for v in at_end.values())
        ready = (at_end.get("ready") or 0.0) if recorded else None
        steps.append(Step(grid[i], grid[i + 1], calls[i], failed[i], ready, watched[i], ready_s[i], p50[i], p99[i]))
    return steps


def _summed(groups: dict[Any, list[float]], empty: list[float]) -> list[float]:
    return [sum(values) for values in zip(*groups.values(), strict=True)] if groups else empty


def reports(history: History, events: Sequence[Event], deployments: Sequence[str], since: float,
            until: float) -> list[DeploymentReport]:
    """Reports from ``since`` or the oldest recorded sample, whichever is later, until ``until``."""
    earliest = history.earliest()
    if earliest is not None and earliest < until:
        since = max(since, earliest)
    grid = grid_for(history, since, until)
    since = grid[0]
    out = []
    for name in deployments:
        rows = [EventRow(e.ts, e.type, e.subject, e.message) for e in events if e.deployment == name]
        out.append(build(name, since, until, deployment_steps(history, name, grid), rows))
    return out


def deployments_seen(history: History, since: float, until: float) -> list[str]:
    found = history.select(catalog.REQUESTS.exposed_name, None, since, until)
    found |= history.select(catalog.REPLICAS.name, None, since, until)
    return sorted({dict(labels)["deployment"] for labels in found} - {"none"})


def to_json(report: DeploymentReport, with_steps: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deployment": report.deployment, "since": report.since, "until": report.until,
        "calls": report.calls, "failed_calls": report.failed, "availability": report.availability,
        "ready_time_fraction": report.ready_time_fraction, "recorded_s": report.recorded_s,
        "downtime_s": report.downtime_s, "incidents": [
            {"start": i.start, "end": i.end, "duration_s": i.duration_s, "calls": i.calls, "failed_calls": i.failed,
             "no_capacity_s": i.no_capacity_s, "causes": list(i.causes)} for i in report.incidents],
        "mttr_s": report.mttr_s, "mtbf_s": report.mtbf_s, "failure_rate_per_h": report.failure_rate_per_h,
        "failure_probability_per_h": report.failure_probability_per_h,
        "expected_downtime_s_per_h": report.expected_downtime_s_per_h,
    }
    if with_steps:
        body["steps"] = {
            "t": [s.end for s in report.steps], "calls": [s.calls for s in report.steps],
            "failed": [s.failed for s in report.steps], "ready": [s.ready for s in report.steps],
            "p50_s": [s.p50_s for s in report.steps], "p99_s": [s.p99_s for s in report.steps],
        }
    return body


def chart_series(history: History, deployment: str, since: float, until: float) -> dict[str, list[float | None]]:
    """What the dashboard plots for a deployment: calls/s, p50/p99 (ms), error and shed ratios, ready
    replicas and the autoscaler's count."""
    earliest = history.earliest()
    if earliest is not None and since < earliest < until:
        since = earliest  # no line of zeros for the time before anything was recorded
    grid = grid_for(history, since, until)
    steps = deployment_steps(history, deployment, grid)
    admission = history.grid_increase(catalog.ADMISSION.exposed_name, {"deployment": deployment}, grid,
                                      by=("decision",))
    empty = [0.0] * (len(grid) - 1)
    shed = admission.get((("decision", "shed"),), empty)
    admitted = admission.get((("decision", "admitted"),), empty)
    step_s = grid[1] - grid[0]
    return {
        "t": [s.end for s in steps],
        "calls_per_s": [s.calls / step_s for s in steps],
        "p50_ms": [None if s.p50_s is None else s.p50_s * 1000 for s in steps],
        "p99_ms": [None if s.p99_s is None else s.p99_s * 1000 for s in steps],
        "error_ratio": [s.failed / s.calls if s.calls else None for s in steps],
        "shed_ratio": [shed[i] / (shed[i] + admitted[i]) if shed[i] + admitted[i] else None
                       for i in range(len(steps))],
        "ready": [s.ready for s in steps],
        # The autoscaler's count (absent for a fixed count): values at each step's end.
        "desired": _one_series(history.grid_values(catalog.DESIRED_REPLICAS.name, {"deployment": deployment},
                                                   grid, max_age_s=3 * step_s))[1:],
    }


def _one_series(series: dict[Any, list[float | None]]) -> list[float | None]:
    return next(iter(series.values()), [])
