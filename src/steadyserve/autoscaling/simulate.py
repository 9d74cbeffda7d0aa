"""Replay a call-rate trace through the real autoscaler, with a model of replicas.

    trace = read_trace(Path("examples/traces/periodic.csv"))
    result = simulate(trace, settings, Model(replica_rps=10, startup_s=30), policy="predictive")
    result.report()   # {"over_capacity_requests": ..., "over_capacity_s": ..., "replica_seconds": ..., ...}

The model: each ready replica serves ``replica_rps`` calls/s; a replica the autoscaler adds is ready
``startup_s`` later (and costs from its start); a removed one stops at once (a starting one first).
The autoscaler sees the trace's rate as its load in calls/s (calls over capacity count: they are shed
calls, which are demand) and decides every ``decision_s``, exactly as in the controller.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .autoscaler import Autoscaler
from .settings import AutoscalingSettings

POLICIES = ("reactive", "predictive")
MAX_TRACE_ROWS = 2_000_000
MAX_TRACE_SPAN_S = 31 * 86400.0  # the simulator steps by the second: a month takes about a minute
MAX_RATE = 1e9
SERIES_POINTS = 4000  # points kept for the plot


@dataclass(frozen=True)
class Model:
    replica_rps: float = 10.0
    startup_s: float = 30.0
    min_replicas: int = 1
    max_replicas: int = 64
    step_s: float = 1.0


@dataclass
class Result:
    policy: str
    over_capacity_requests: float = 0.0
    over_capacity_s: float = 0.0
    replica_seconds: float = 0.0
    scale_events: int = 0
    requests: float = 0.0
    duration_s: float = 0.0
    peak_replicas: int = 0
    predictive_s: float = 0.0  # time the forecast was trusted
    series: list[tuple[float, float, float, int]] = field(default_factory=list)  # (time, load, capacity, replicas)

    def report(self) -> dict[str, float | int | str]:
        return {
            "over_capacity_requests": round(self.over_capacity_requests, 1),
            "over_capacity_s": round(self.over_capacity_s, 1),
            "replica_seconds": round(self.replica_seconds, 1),
            "scale_events": self.scale_events,
            "requests": round(self.requests, 1),
            "over_capacity_percent": round(100 * self.over_capacity_requests / self.requests, 3)
            if self.requests else 0.0,
            "mean_replicas": round(self.replica_seconds / self.duration_s, 2) if self.duration_s else 0.0,
            "peak_replicas": self.peak_replicas,
            "forecast_trusted_percent": round(100 * self.predictive_s / self.duration_s, 1) if self.duration_s else 0.0,
        }


def read_trace(path: Path) -> list[tuple[float, float]]:
    """Rows of ``time,rate`` (seconds, calls/s) after that header; times strictly increasing."""
    if not path.is_file():  # not a FIFO or a device: those could hang
        raise ConfigError(f"{path}: cannot read the trace: {'no such file' if not path.exists() else 'not a regular file'}")
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # -sig: spreadsheets start CSV files with a BOM
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the trace: {exc.strerror}") from exc
    rows: list[tuple[float, float]] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != ["time", "rate"]:
                raise ConfigError(f"{path}:1: the header must be 'time,rate' (seconds, calls/s)")
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 2:
                    raise ConfigError(f"{path}:{line}: expected 2 columns (time,rate), found {len(row)}")
                try:
                    ts, rate = float(row[0]), float(row[1])
                except ValueError:
                    raise ConfigError(f"{path}:{line}: time and rate must be numbers: {','.join(row)[:80]!r}") from None
                if not (math.isfinite(ts) and math.isfinite(rate)) or not 0 <= rate <= MAX_RATE:
                    raise ConfigError(f"{path}:{line}: time must be finite and rate a number from 0 to {MAX_RATE:g}")
                if rows and ts <= rows[-1][0]:
                    raise ConfigError(f"{path}:{line}: time {ts:g} is not after the previous row's {rows[-1][0]:g}")
                if rows and ts - rows[0][0] > MAX_TRACE_SPAN_S:
                    raise ConfigError(f"{path}:{line}: the trace spans more than {MAX_TRACE_SPAN_S / 86400:g} days"
                                      " (the simulator steps by the second); cut it, or compress its time")
                rows.append((ts, rate))
                if len(rows) > MAX_TRACE_ROWS:
                    raise ConfigError(f"{path}:{line}: over {MAX_TRACE_ROWS} rows")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text; is this a CSV file?") from None
        except csv.Error as exc:
            raise ConfigError(f"{path}:{reader.line_num}: {exc}") from None
    if len(rows) < 2:
        raise ConfigError(f"{path}: a trace needs at least two rows after the header")
    return rows


def simulation_settings(settings: AutoscalingSettings, model: Model, policy: str,
                        target_utilization: float) -> AutoscalingSettings:
    """The simulator's load is calls/s: a calls/s target stays; another metric's becomes
    ``target_utilization`` x the replica's capacity. ``policy`` turns forecasts on or off."""
    target = settings.target if settings.metric == "rps" else target_utilization * model.replica_rps
    predictive = settings.predictive.model_copy(update={"enabled": policy == "predictive"})
    return settings.model_copy(update={"metric": "rps", "target": target, "predictive": predictive})


def simulate(trace: Sequence[tuple[float, float]], settings: AutoscalingSettings, model: Model,
             policy: str, progress: Callable[[float], None] | None = None) -> Result:
    start, end = trace[0][0], trace[-1][0]
    step = model.step_s
    scaler = Autoscaler(settings, start)
    result = Result(policy)
    replicas = max(1, model.min_replicas)
    ready = replicas
    starting: list[float] = []  # when each starting replica becomes ready, soonest first
    every = max(1, int((end - start) / step / SERIES_POINTS))
    row = 0
    steps = int((end - start) / step)
    for i in range(steps):
        now = start + i * step
        while row + 1 < len(trace) and trace[row + 1][0] <= now:
            row += 1
        rate = trace[row][1]
        while starting and starting[0] <= now + 1e-9:
            starting.pop(0)
            ready += 1
            scaler.started(model.startup_s)
        capacity = ready * model.replica_rps
        if rate > capacity:
            result.over_capacity_requests += (rate - capacity) * step
            result.over_capacity_s += step
        result.requests += rate * step
        result.replica_seconds += (ready + len(starting)) * step
        scaler.observe(now, rate, rate, rate * step)
        if scaler.forecaster is not None:
            job = scaler.forecaster.refit_job()
            if job is not None:
                scaler.forecaster.install(job())
        if scaler.due(now):
            decision = scaler.decide(now, replicas, ready, model.min_replicas, model.max_replicas)
            if decision.predicted is not None:
                result.predictive_s += settings.decision_s
            new = decision.replicas
            if new != replicas:
                result.scale_events += 1
                if new > replicas:
                    starting.extend([now + model.startup_s] * (new - replicas))
                else:
                    remove = replicas - new
                    while remove and starting:
                        starting.pop()
                        remove -= 1
                    ready -= remove
                scaler.applied(now, replicas, new)
                replicas = new
                result.peak_replicas = max(result.peak_replicas, replicas)
        if i % every == 0:
            result.series.append((now, rate, capacity, replicas))
        if progress is not None and i % 3600 == 0:
            progress((i + 1) / steps)
    result.duration_s = steps * step
    result.peak_replicas = max(result.peak_replicas, replicas)
    return result
