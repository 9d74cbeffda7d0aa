"""The autoscaler in the controller: each tick, gather every deployment's load and feed its
``Autoscaler``; each ``decision_s`` (at once when calls wait at zero replicas), decide, share the
machine's budget (``capacity.allocate``) and set the replica counts the planner then reaches.

A mixin of ``Controller``. What it reads: the gateways' probe stats (calls arrived and shed per
deployment, calls queued), the replicas' (calls in flight), the observer's CPU and memory readings.
Forecast fits run on a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..autoscaling.autoscaler import Autoscaler
from ..autoscaling.capacity import Budget, Claim, Grant, allocate, machine_cpus, machine_memory_mb
from ..autoscaling.forecast import FittedModel
from ..autoscaling.policy import Decision
from ..autoscaling.rate_store import RateStore
from ..autoscaling.settings import AutoscalingSettings
from ..errors import StateError
from ..metrics import catalog
from ..metrics.store import OBSERVABILITY_DB
from .config import PlatformConfig
from .desired import DeploymentState
from .observing import Observer
from .supervision import HAS_PROCESS, ProcState

if TYPE_CHECKING:
    from .controller import Key, Managed

log = logging.getLogger("steadyserve.autoscaler")
FORECAST_EVENTS_EVERY_S = 60.0
SAVE_RATES_EVERY_S = 60.0  # a kill -9 loses at most this much of the call-rate history
MIB = 1024 * 1024
_SMOOTHING = 0.2  # of per-replica CPU and per-call time readings (one a tick)


@dataclass
class Tracked:
    """The I/O side of one deployment's autoscaling: what the last tick saw."""

    scaler: Autoscaler
    last_ts: float
    queued: int = 0
    arrived: int = 0  # calls that arrived since the last tick
    inflight: float = 0.0  # calls in flight in its replicas
    fitting: bool = False
    capacity_note: str | None = None  # the budget's refusal, while it holds
    trusted: bool | None = None  # the forecast was trusted at the last decision
    woke_at: float | None = None  # a call found zero replicas; the first ready one ends the cold start
    cold_start_s: float | None = None
    call_s: float | None = None  # smoothed: calls in flight per call/s served (Little's law)
    ready_seen: set[tuple[str, int]] = field(default_factory=set)
    last_change: str = ""
    forecast_event_at: float = -FORECAST_EVENTS_EVERY_S


@dataclass
class _Costs:
    cpus: float = 0.0  # per replica, smoothed (a replica's cost in the budget)
    total_cores: float = 0.0  # all its measured replicas together, the last reading (the cpu metric's load)
    cpu_prev: dict[str, tuple[float, float]] = field(default_factory=dict)  # replica -> (time, CPU seconds)


class Scaling:
    config: PlatformConfig
    deployments: dict[str, DeploymentState]
    managed: dict[Key, Managed]
    observer: Observer | None
    record: Callable[..., None]
    _save_desired: Callable[[], None]
    _failed: Callable[..., None]
    _failing_cleared: Callable[[str, str, str], None]
    _scaling: dict[str, Tracked] | None = None
    _costs: dict[str, _Costs] | None = None
    _demand_seen: dict[str, tuple[str, dict[str, list[int]]]] | None = None  # gateway -> (instance, counts)
    _budget: Budget | None = None
    _fit_pool: ThreadPoolExecutor | None = None
    _rates: RateStore | None = None
    _rates_saved_at: float = 0.0

    # --- each tick ----------------------------------------------------------------------
    def _autoscale(self, now: float) -> None:
        tracked_all = self._scaling if self._scaling is not None else {}
        self._scaling = tracked_all
        arrived, shed, queued = self._gateway_demand()
        self._measure_costs(now)
        decisions: dict[str, Decision] = {}
        for name, dep in self.deployments.items():
            if dep.deleting or not dep.config.spec.autoscaled:
                tracked_all.pop(name, None)
                continue
            try:  # one deployment's failure (a broken reading, a damaged file) leaves the others scaling
                decision = self._autoscale_one(name, dep, now, arrived.get(name, 0), shed.get(name, 0),
                                               queued.get(name, 0))
            except Exception as exc:
                self._failed("deployment", name, name, "autoscale", exc)
                continue
            self._failing_cleared("deployment", name, "autoscale")
            if decision is not None:
                decisions[name] = decision
        if decisions:
            self._apply_decisions(decisions, now)
        self._report_gauges()
        if now - self._rates_saved_at >= SAVE_RATES_EVERY_S:
            self._rates_saved_at = now
            self._save_rates()

    def _autoscale_one(self, name: str, dep: DeploymentState, now: float, arrived: int, shed: int,
                       queued: int) -> Decision | None:
        """Feed one deployment's autoscaler this tick's readings; its decision when one is due."""
        assert self._scaling is not None
        spec = dep.config.spec
        settings = spec.scaling
        tracked = self._scaling.get(name)
        if tracked is None:
            tracked = self._scaling[name] = Tracked(Autoscaler(
                settings, now, wall_offset_s=time.time() - now,
                load_history=functools.partial(self._load_rates, name)), now)
        elif tracked.scaler.settings != settings:
            tracked.scaler.reconfigure(settings, now)
        self._observe_load(name, tracked, settings, now, arrived, shed, queued)
        self._watch_starts(name, dep, tracked, now)
        self._start_fit(name, tracked)
        # At zero, every call that arrived is demand, a call whose own timeout ended before the
        # next probe included.
        waiting = tracked.queued + tracked.arrived if dep.replicas == 0 else 0
        if not (tracked.scaler.due(now) or waiting):
            return None
        low, high = spec.replica_bounds
        return tracked.scaler.decide(now, dep.replicas, self._ready(name), low, high, waiting=waiting,
                                     busy=tracked.inflight)

    # --- the call-rate history, kept across restarts ------------------------------------------
    def _rate_store(self) -> RateStore | None:
        if self._rates is None and self.observer is not None:  # unit tests without an observer keep none
            self._rates = RateStore(self.config.state_dir / OBSERVABILITY_DB)
        return self._rates

    def _load_rates(self, name: str, bucket_s: float, since: float) -> list[tuple[float, float]]:
        """The stored history; a damaged file is reported and forecasting starts afresh."""
        try:
            store = self._rate_store()
            return store.load(name, bucket_s, since) if store is not None else []
        except (sqlite3.Error, OSError) as exc:
            self._failed("deployment", name, name, "read the call-rate history", StateError(
                f"{self.config.state_dir / OBSERVABILITY_DB}: {exc}; forecasting starts without the recorded"
                " history (remove the file to start a new one)"))
            return []

    def _save_rates(self) -> None:
        """Closed buckets of every forecaster to the store; rows older than the kept seasons go."""
        store = self._rate_store()
        if store is None:
            return
        wall = time.time()
        for name, tracked in (self._scaling or {}).items():
            kept_s = tracked.scaler.kept_s()
            if not kept_s:
                continue
            try:
                for bucket_s, rows in tracked.scaler.take_unsaved().items():
                    store.write(name, bucket_s, rows)
                store.prune(name, kept_s, wall)
            except (sqlite3.Error, OSError) as exc:  # the history is lost; scaling goes on
                self._failed("deployment", name, name, "save the call-rate history", exc)

    def _gateway_demand(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Calls arrived and shed since the last tick, and calls queued now, per deployment."""
        seen = self._demand_seen if self._demand_seen is not None else {}
        self._demand_seen = seen
        arrived: dict[str, int] = {}
        shed: dict[str, int] = {}
        queued: dict[str, int] = {}
        for (kind, _, id_), m in self.managed.items():
            if kind != "gateway" or not m.stats:
                continue
            instance = str(m.stats.get("instance", ""))
            counts = m.stats.get("demand")
            if not isinstance(counts, dict):
                continue
            before = seen.get(id_)
            previous = before[1] if before is not None and before[0] == instance else {}
            for name, pair in counts.items():
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) for v in pair)):
                    continue
                old = previous.get(name, [0, 0])
                arrived[name] = arrived.get(name, 0) + max(0, pair[0] - old[0])
                shed[name] = shed.get(name, 0) + max(0, pair[1] - old[1])
            seen[id_] = (instance, {k: v for k, v in counts.items() if isinstance(v, list)})
            waiting = m.stats.get("queued")
            if isinstance(waiting, dict):
                for name, count in waiting.items():
                    if isinstance(count, int):
                        queued[name] = queued.get(name, 0) + count
        return arrived, shed, queued

    def _observe_load(self, name: str, tracked: Tracked, settings: AutoscalingSettings, now: float,
                      arrived: int, shed: int, queued: int) -> None:
        dt = now - tracked.last_ts
        tracked.last_ts = now
        tracked.queued, tracked.arrived = queued, arrived
        if dt <= 0:
            return
        rate = arrived / dt
        shed_rate = shed / dt
        # What a replica reports is capped at what it may hold: a replica cannot claim load it could not have.
        inflight = sum(min(_count(m.stats.get("inflight")), float(m.config.max_ongoing_requests))
                       for (kind, dep, _), m in self.managed.items()
                       if kind == "replica" and dep == name and m.slot.state in HAS_PROCESS and m.config is not None)
        tracked.inflight = inflight
        served = max(0.0, rate - shed_rate)
        if served > 0 and inflight > 0:
            sample = inflight / served
            tracked.call_s = sample if tracked.call_s is None else (1 - _SMOOTHING) * tracked.call_s + _SMOOTHING * sample
        if settings.metric == "inflight":
            # Shed calls are demand: each would have been in flight for about a call's time.
            load = inflight + queued + shed_rate * (tracked.call_s or 0.1)
        elif settings.metric == "rps":
            load = rate
        elif settings.metric == "queue":
            load = queued + shed_rate
        else:  # cpu: percent of one core, all replicas together
            costs = (self._costs or {}).get(name)
            load = 100.0 * costs.total_cores if costs is not None else 0.0
        tracked.scaler.observe(now, load, rate, float(arrived))

    def _watch_starts(self, name: str, dep: DeploymentState, tracked: Tracked, now: float) -> None:
        """Start-up times (the forecast's lead) and the cold start after a call found zero replicas."""
        if dep.replicas == 0 and (tracked.queued or tracked.arrived) and tracked.woke_at is None:
            tracked.woke_at = now
        for (kind, d, id_), m in self.managed.items():
            if kind != "replica" or d != name or m.slot.ready_at is None or m.slot.state != ProcState.READY:
                continue
            key = (id_, m.slot.generation)
            if key in tracked.ready_seen:
                continue
            tracked.ready_seen.add(key)
            tracked.scaler.started(max(0.0, m.slot.ready_at - m.slot.started_at))
            if tracked.woke_at is not None:
                tracked.cold_start_s = max(0.0, m.slot.ready_at - tracked.woke_at)
                tracked.woke_at = None
                if self.observer is not None:
                    self.observer.recorder.observe(catalog.COLD_START, (name,), tracked.cold_start_s)
                self.record("deployment", name, "cold_start",
                            f"woke from zero replicas: {id_} ready {tracked.cold_start_s:.1f} s after a call"
                            " arrived", name)
        live = {(id_, m.slot.generation) for (kind, d, id_), m in self.managed.items() if kind == "replica" and d == name}
        tracked.ready_seen &= live

    # --- forecasts, off the loop -------------------------------------------------------------
    def _start_fit(self, name: str, tracked: Tracked) -> None:
        forecaster = tracked.scaler.forecaster
        if forecaster is None or tracked.fitting:
            return
        job = forecaster.refit_job()
        if job is None:
            return
        if self._fit_pool is None:
            self._fit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast")
        tracked.fitting = True
        future = self._fit_pool.submit(job)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._fitted, name, tracked, f))

    def _fitted(self, name: str, tracked: Tracked, future: Future[FittedModel]) -> None:
        tracked.fitting = False
        forecaster = tracked.scaler.forecaster
        if forecaster is None:
            return
        try:
            model = future.result()
        except Exception as exc:  # a fit that fails says so, and the next bucket tries again
            forecaster.refit_abandoned()
            self._failed("deployment", name, name, "forecast fit", exc)
            return
        forecaster.install(model)

    def stop_scaling(self) -> None:
        """At shutdown: the rate history written, fits abandoned."""
        try:
            self._save_rates()
        except Exception:  # a failed write loses at most the last minute of history
            log.exception("could not save the call-rate history")
        if self._fit_pool is not None:
            self._fit_pool.shutdown(wait=False, cancel_futures=True)

    # --- deciding and applying ----------------------------------------------------------------
    def _apply_decisions(self, decisions: dict[str, Decision], now: float) -> None:
        grants = allocate(self._machine_budget(), self._claims(decisions))
        assert self._scaling is not None
        for name, decision in decisions.items():
            dep, tracked = self.deployments[name], self._scaling[name]
            grant = grants.get(name, Grant(decision.replicas, False))
            self._report_capacity(name, tracked, grant)
            self._report_forecast(name, tracked, decision, now)
            before, after = dep.replicas, grant.replicas
            tracked.scaler.applied(now, before, after)
            if after == before:
                continue
            reason = decision.reason if after == decision.replicas else f"{decision.reason}; {grant.reason}"
            dep.replicas = after
            tracked.last_change = f"{before} -> {after}: {reason}"
            self.record("deployment", name, "autoscaled", f"replicas {before} -> {after}: {reason}", name)
            if self.observer is not None:
                self.observer.recorder.inc(catalog.SCALE_DECISIONS, (name, "up" if after > before else "down"))
            self._save_desired()

    def _claims(self, decisions: dict[str, Decision]) -> list[Claim]:
        capacity = self.config.capacity
        claims = []
        for name, dep in self.deployments.items():
            if dep.deleting:
                continue
            spec = dep.config.spec
            settings = spec.scaling
            low = spec.replica_bounds[0] if spec.autoscaled else dep.replicas
            wanted = decisions[name].replicas if name in decisions else dep.replicas
            costs = (self._costs or {}).get(name)
            cpus = settings.replica_cpus if spec.autoscaled and settings.replica_cpus is not None else (
                costs.cpus if costs is not None else 0.0)
            memory = float(spec.resources.memory_mb) if spec.resources.memory_mb is not None else (
                self._measured_memory_mb(name) or float(capacity.replica_memory_mb))
            claims.append(Claim(name, settings.priority if spec.autoscaled else 100, self._running(name),
                                low, wanted, cpus, memory))
        return claims

    def _machine_budget(self) -> Budget:
        if self._budget is None:
            capacity = self.config.capacity
            cpus = capacity.cpus if capacity.cpus is not None else machine_cpus()
            memory = capacity.memory_mb if capacity.memory_mb is not None else machine_memory_mb()
            self._budget = Budget(max(0.0, cpus - capacity.reserve_cpus),
                                  max(0.0, memory - capacity.reserve_memory_mb))
        return self._budget

    def _report_capacity(self, name: str, tracked: Tracked, grant: Grant) -> None:
        note = grant.reason if grant.limited else None
        if note is not None and tracked.capacity_note is None:
            self.record("deployment", name, "capacity", note, name)
        elif note is None and tracked.capacity_note is not None:
            self.record("deployment", name, "capacity_ok", "the machine's budget allows what it wants again", name)
        tracked.capacity_note = note

    def _report_forecast(self, name: str, tracked: Tracked, decision: Decision, now: float) -> None:
        if not decision.predictive_note:
            return
        trusted = decision.predicted is not None
        if trusted == tracked.trusted:
            return
        # A forecast whose error hovers at the limit would flip at each decision: one event a minute at most.
        if tracked.trusted is not None and now - tracked.forecast_event_at < FORECAST_EVENTS_EVERY_S:
            return
        if tracked.trusted is not None:  # the first word (learning...) does not hold back the next
            tracked.forecast_event_at = now
        self.record("deployment", name, "forecast",
                    ("predictive scaling on: " if trusted else "") + decision.predictive_note, name)
        tracked.trusted = trusted

    # --- readings -------------------------------------------------------------------------
    def _measure_costs(self, now: float) -> None:
        """Per-replica CPU (cores) of each deployment, from the observer's readings."""
        costs_all = self._costs if self._costs is not None else {}
        self._costs = costs_all
        readings = self.observer.cpu_seconds if self.observer is not None else {}
        by_deployment: dict[str, list[float]] = {}
        for (name, replica), cpu_s in readings.items():
            costs = costs_all.setdefault(name, _Costs())
            prev = costs.cpu_prev.get(replica)
            costs.cpu_prev[replica] = (now, cpu_s)
            if prev is not None and now > prev[0] and cpu_s >= prev[1]:
                by_deployment.setdefault(name, []).append((cpu_s - prev[1]) / (now - prev[0]))
        for name in costs_all.keys() - by_deployment.keys():
            costs_all[name].total_cores = 0.0  # no replica measured this tick
        for name, rates in by_deployment.items():
            costs = costs_all[name]
            costs.total_cores = sum(rates)
            sample = sum(rates) / len(rates)
            costs.cpus = (1 - _SMOOTHING) * costs.cpus + _SMOOTHING * sample if costs.cpus else sample
            live = {replica for (d, replica) in readings if d == name}
            costs.cpu_prev = {r: v for r, v in costs.cpu_prev.items() if r in live}

    def _measured_memory_mb(self, name: str) -> float | None:
        readings = [v for (d, _), v in (self.observer.resident_bytes if self.observer is not None else {}).items()
                    if d == name]
        return max(readings) / MIB if readings else None

    def _ready(self, name: str) -> int:
        return sum(1 for (kind, d, _), m in self.managed.items()
                   if kind == "replica" and d == name and m.slot.state == ProcState.READY and not m.slot.retiring)

    def _running(self, name: str) -> int:
        return sum(1 for (kind, d, _), m in self.managed.items()
                   if kind == "replica" and d == name and not m.slot.retiring and m.slot.state != ProcState.STOPPED)

    def _report_gauges(self) -> None:
        if self.observer is None or self._scaling is None:
            return
        recorder = self.observer.recorder
        recorder.replace_live(catalog.DESIRED_REPLICAS, {(n,): float(self.deployments[n].replicas)
                                                         for n in self._scaling})
        recorder.replace_live(catalog.AUTOSCALER_LOAD, {(n, t.scaler.settings.metric): m[0]
                                                        for n, t in self._scaling.items()
                                                        if (m := t.scaler.window_means()) is not None})
        recorder.replace_live(catalog.CAPACITY_LIMITED, {(n,): float(t.capacity_note is not None)
                                                         for n, t in self._scaling.items()})
        recorder.replace_live(catalog.FORECAST_RATE, {
            (n,): f.rate for n, t in self._scaling.items() if (f := t.scaler.last_forecast) is not None})

    # --- what status shows ------------------------------------------------------------------
    def autoscaling_status(self, name: str) -> dict[str, Any] | None:
        dep = self.deployments.get(name)
        if dep is None or not dep.config.spec.autoscaled:
            return None
        spec = dep.config.spec
        settings = spec.scaling
        low, high = spec.replica_bounds
        tracked = (self._scaling or {}).get(name)
        last = tracked.scaler.last if tracked is not None else None
        means = tracked.scaler.window_means() if tracked is not None else None
        return {
            "min": low, "max": high, "metric": settings.metric, "target": settings.target_value,
            "load": round(means[0], 3) if means is not None else None,  # over window_s, as decisions see it
            "rate": round(means[1], 3) if means is not None else None,
            "desired": dep.replicas,
            "mode": "panic" if last is not None and last.panic else "stable",
            "reason": last.reason if last is not None else "no decision yet",
            "last_change": tracked.last_change if tracked is not None else "",
            "predictive": (last.predictive_note if last is not None else "") if settings.predictive.enabled else "off",
            "capacity": tracked.capacity_note if tracked is not None else None,
            "cold_start_s": tracked.cold_start_s if tracked is not None else None,
            "scale_to_zero": low == 0,
            "forecast_history_seasons": round(tracked.scaler.forecaster.seasons_seen, 3)
            if tracked is not None and tracked.scaler.forecaster is not None else None,
        }


def _count(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0

