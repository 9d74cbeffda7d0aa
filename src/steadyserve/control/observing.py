"""What the controller measures each tick: its own metrics, the history, shard upkeep.

The controller hands over a frozen view of its processes after each tick; this module
reads CPU and memory of each running replica (psutil), writes the controller's metrics
shard, records a history step every ``STEP_S`` and folds dead processes' shards into
the archive now and then. Nothing here decides anything about the processes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]

from ..metrics import catalog
from ..metrics.exposition import flatten
from ..metrics.history import STEP_S, History
from ..metrics.recorder import Recorder
from ..metrics.shards import ShardWriter, compact, read_merged
from ..metrics.store import OBSERVABILITY_DB, SqliteHistoryStore
from ..types import Clock
from . import prediction, private_dirs
from .launch import METRICS_DIR

log = logging.getLogger(__name__)
COMPACT_EVERY_S = 60.0
MAX_WATCHED_GAP_S = 5.0  # a controller paused longer did not watch that time
READINGS_KEPT = 4000  # per replica: a window of an hour at the fastest tick
RETAIN_S = 8 * 24 * 3600.0  # the history's durable tier: the SLOs' 3-day window and a margin


@dataclass(frozen=True)
class ReplicaView:
    deployment: str
    replica: str
    state: str
    pid: int | None  # while a process runs
    restarts: int
    memory_limit_mb: int | None
    calls: float = 0.0  # as the replica last reported them (cumulative since it started)
    errors: float = 0.0
    handler_s: float = 0.0
    prediction: prediction.Settings = prediction.Settings()


@dataclass(frozen=True)
class Predicted:
    """A forecast about one running replica, reported once while it holds."""

    deployment: str
    replica: str
    pid: int
    forecast: prediction.Forecast


class Observer:
    def __init__(self, state_dir: Path, wall_clock: Clock = time.time, step_s: float = STEP_S,
                 history: History | None = None) -> None:
        self.metrics_dir = state_dir / METRICS_DIR
        private_dirs.ensure_private_dir(self.metrics_dir, tighten=True)
        self.wall_clock = wall_clock
        self.step_s = step_s
        self.recorder = Recorder()
        self.writer = ShardWriter(self.metrics_dir, "controller", self.recorder)
        self.history = history if history is not None else History(
            step_s=step_s, store=SqliteHistoryStore(state_dir / OBSERVABILITY_DB))
        self._restarts: dict[tuple[str, str], int] = {}
        self._processes: dict[int, psutil.Process] = {}
        self._last_step = 0.0
        self._last_tick = wall_clock()
        self._served: set[str] = set()  # deployments that have had a ready replica
        self.stepped_at: float | None = None  # the last tick recorded a history step at this time
        self._last_compact = 0.0
        # Each running replica's recent readings, by (deployment, replica, pid): a restart starts afresh.
        self._readings: dict[tuple[str, str, int], deque[prediction.Reading]] = {}
        self._holding: set[tuple[str, str, int, str]] = set()  # forecasts reported and still holding
        self.cpu_seconds: dict[tuple[str, str], float] = {}  # (deployment, replica) -> CPU seconds, last tick
        self.resident_bytes: dict[tuple[str, str], float] = {}

    def close(self) -> None:
        """A last history step (the stopped processes' final counts), written through to the store."""
        self.writer.flush()
        self.history.add(self.wall_clock(), flatten(read_merged(self.metrics_dir)))
        self.history.flush()

    def after_tick(self, replicas: Sequence[ReplicaView], tick_s: float) -> list[Predicted]:
        """Measure, record, and return the forecasts that are new since the last tick."""
        self.recorder.observe(catalog.TICK_DURATION, (), tick_s)
        now = self.wall_clock()
        self._count_replicas(replicas, min(MAX_WATCHED_GAP_S, max(0.0, now - self._last_tick)))
        self._last_tick = now
        rss = self._read_processes(replicas)
        self.stepped_at = None
        if now - self._last_step >= self.step_s:
            self._last_step = self.stepped_at = now
            # Once a step, not each tick: an idle instance should write next to nothing.
            self.writer.flush()
            self.history.add(now, flatten(read_merged(self.metrics_dir)))
        if now - self._last_compact >= COMPACT_EVERY_S:
            self._last_compact = now
            compact(self.metrics_dir)
            self.history.prune_store(RETAIN_S, now)
        return self._predict(replicas, rss, now)

    def _predict(self, replicas: Sequence[ReplicaView], rss: dict[tuple[str, str], float],
                 now: float) -> list[Predicted]:
        new: list[Predicted] = []
        holding: set[tuple[str, str, int, str]] = set()
        running: set[tuple[str, str, int]] = set()
        for r in replicas:
            if not r.pid or (r.deployment, r.replica) not in rss:
                continue
            key = (r.deployment, r.replica, r.pid)
            running.add(key)
            readings = self._readings.setdefault(key, deque(maxlen=READINGS_KEPT))
            readings.append(prediction.Reading(now, rss[(r.deployment, r.replica)], r.calls, r.errors, r.handler_s))
            while readings and readings[0].ts < now - 2 * r.prediction.window_s - 60:
                readings.popleft()
            limit = r.memory_limit_mb * 1024 * 1024 if r.memory_limit_mb is not None else None
            for forecast in prediction.assess(readings, limit, r.prediction, now):
                mark = (*key, forecast.kind)
                holding.add(mark)
                if mark not in self._holding:
                    new.append(Predicted(r.deployment, r.replica, r.pid, forecast))
        for key in [k for k in self._readings if k not in running]:
            del self._readings[key]
        self._holding = holding
        return new

    def _count_replicas(self, replicas: Sequence[ReplicaView], elapsed_s: float) -> None:
        """Replicas by state; time watched and time with a ready replica (the report's time availability)."""
        for name in {r.deployment for r in replicas}:
            ready = any(r.deployment == name and r.state == "ready" for r in replicas)
            if ready:
                self._served.add(name)
            if name not in self._served:
                continue  # starting up for the first time is not an outage
            self.recorder.inc(catalog.DEPLOYMENT_SECONDS, (name,), elapsed_s)
            if ready:
                self.recorder.inc(catalog.DEPLOYMENT_READY_SECONDS, (name,), elapsed_s)
        states: dict[tuple[str, ...], float] = {}
        limits: dict[tuple[str, ...], float] = {}
        for r in replicas:
            states[(r.deployment, r.state)] = states.get((r.deployment, r.state), 0.0) + 1
            if r.memory_limit_mb is not None:
                limits[(r.deployment,)] = float(r.memory_limit_mb * 1024 * 1024)
            self.recorder.ensure(catalog.RESTARTS, (r.deployment,))
            key = (r.deployment, r.replica)
            seen = self._restarts.get(key)
            if seen is not None and r.restarts > seen:
                self.recorder.inc(catalog.RESTARTS, (r.deployment,), r.restarts - seen)
            self._restarts[key] = r.restarts if seen is None else max(seen, r.restarts)
        for key in [k for k in self._restarts if k not in {(r.deployment, r.replica) for r in replicas}]:
            del self._restarts[key]
        self.recorder.replace_live(catalog.REPLICAS, states)
        self.recorder.replace_live(catalog.REPLICA_MEMORY_LIMIT, limits)

    def _read_processes(self, replicas: Sequence[ReplicaView]) -> dict[tuple[str, str], float]:
        cpu: dict[tuple[str, ...], float] = {}
        memory: dict[tuple[str, ...], float] = {}
        running = {r.pid for r in replicas if r.pid}
        for pid in [p for p in self._processes if p not in running]:
            del self._processes[pid]
        for r in replicas:
            if not r.pid:
                continue
            reading = self._reading(r.pid)
            if reading is not None:
                cpu[(r.deployment, r.replica)], memory[(r.deployment, r.replica)] = reading
        self.recorder.replace_live(catalog.REPLICA_CPU, cpu)
        self.recorder.replace_live(catalog.REPLICA_MEMORY, memory)
        self.cpu_seconds = {(d, r): v for (d, r), v in cpu.items()}  # the autoscaler's CPU and memory readings
        self.resident_bytes = {(d, r): v for (d, r), v in memory.items()}
        return {(d, r): v for (d, r), v in memory.items()}

    def _reading(self, pid: int) -> tuple[float, float] | None:
        """CPU seconds of a replica (and its reaped children) and resident bytes of it and its children."""
        try:
            proc = self._processes.get(pid)
            if proc is None:
                proc = self._processes[pid] = psutil.Process(pid)
            times = proc.cpu_times()  # with the children it waited for: never goes down while it runs
            cpu_s = times.user + times.system + times.children_user + times.children_system
            rss = float(proc.memory_info().rss)
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # exited meanwhile
                    rss += child.memory_info().rss
            return cpu_s, rss
        except psutil.Error:
            self._processes.pop(pid, None)
            return None
