"""The autoscaler inside the controller: what it reads from the gateways' and replicas' stats, and
what it does with its decisions (fake processes and clock, as test_controller.py; real SQLite)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from test_controller import FakeLauncher, FakeProber

from steadyserve.autoscaling.settings import CapacitySpec
from steadyserve.control.config import DeploymentConfig, PlatformConfig
from steadyserve.control.controller import Controller
from steadyserve.control.observing import Observer
from steadyserve.control.probes import ProbeResult
from steadyserve.control.spec import DeploymentSpec, GatewaySpec
from steadyserve.control.statedb import StateDB

FAST = {"decision_s": 1, "window_s": 2, "panic_window_s": 1, "panic_threshold": 100,
        "scale_up": {"period_s": 1}, "scale_down": {"stabilization_s": 0, "period_s": 1}}


class LoadedProber(FakeProber):
    """Gateways report calls arrived and shed and calls queued; replicas report calls in flight."""

    def __init__(self, launcher: FakeLauncher, routes_path: Path) -> None:
        super().__init__(launcher, routes_path)
        self.inflight = 0  # calls in flight, spread over the running replicas
        self.queued = 0
        self.arrived = 0
        self.shed = 0
        self.instance: str | None = None  # set: the gateway restarted under a new instance id

    async def probe(self, endpoint: str, timeout_s: float, credential: str | None = None) -> ProbeResult:
        result = await super().probe(endpoint, timeout_s)
        stats = dict(result.stats)
        if "table_version" in stats:  # a gateway
            stats["demand"] = {"d": [self.arrived, self.shed]}
            stats["queued"] = {"d": self.queued}
            if self.instance is not None:
                stats["instance"] = self.instance
        else:
            running = [p for p in self.launcher.started if p.label.startswith("d-") and p.exit_code is None]
            stats["inflight"] = self.inflight / max(1, len(running))
        return ProbeResult(result.alive, result.ready, stats)


class Scaled:
    def __init__(self, tmp_path: Path, autoscaling: dict[str, Any], replicas: dict[str, int] | None = None,
                 capacity: CapacitySpec | None = None, **spec: Any) -> None:
        self.now = 0.0
        self.launcher = FakeLauncher()
        deployment = DeploymentConfig(
            name="d", target="/nowhere/service.py:Svc", handlers_idempotent={"work": True},
            spec=DeploymentSpec(service="x", replicas=replicas or {"min": 1, "max": 8}, autoscaling=autoscaling,
                                **spec))
        config = PlatformConfig(state_dir=tmp_path, gateway=GatewaySpec(processes=1, port=0),
                                deployments=(deployment,), capacity=capacity or CapacitySpec())
        self.db = StateDB(tmp_path / "state.db")
        self.prober = LoadedProber(self.launcher, tmp_path / "routes.json")
        self.controller = Controller(config, self.db, self.launcher, clock=lambda: self.now, prober=self.prober)
        self.controller.prepare()
        self.tick(4)

    def tick(self, times: int = 1, calls_per_tick: int = 0) -> None:
        for _ in range(times):
            self.now += 0.5
            self.prober.arrived += calls_per_tick
            asyncio.run(self.controller.tick())

    @property
    def replicas(self) -> int:
        return self.controller.deployments["d"].replicas

    def autoscaled(self) -> list[str]:
        return [e.message for e in self.db.events(limit=1000, type="autoscaled")]


def test_calls_in_flight_and_queued_at_the_gateways_are_the_load(tmp_path):
    h = Scaled(tmp_path, {"metric": "inflight", "target": 2, **FAST}, replicas={"min": 2, "max": 8})
    h.prober.inflight, h.prober.queued = 6, 2  # 6 + 2 = 8 calls: 4 replicas at 2 each
    h.tick(10)
    assert h.replicas == 4
    assert re.match(r"replicas \d -> 4: load 8 calls in flight", h.autoscaled()[-1]), h.autoscaled()


def test_calls_per_second_are_counted_from_the_gateways_counters(tmp_path):
    h = Scaled(tmp_path, {"metric": "rps", "target": 5, **FAST})
    h.tick(8, calls_per_tick=10)  # 10 calls each 0.5 s: 20 calls/s
    assert h.replicas == 4
    assert "load 20 calls/s" in h.autoscaled()[-1]


def test_a_restarted_gateway_counting_from_zero_is_not_a_burst_or_a_drop(tmp_path):
    h = Scaled(tmp_path, {"metric": "rps", "target": 5, **FAST})
    h.tick(8, calls_per_tick=10)
    assert h.replicas == 4
    before = h.autoscaled()
    h.prober.instance, h.prober.arrived = "restarted", 0  # its counters start again
    h.tick(8, calls_per_tick=10)
    assert h.replicas == 4 and h.autoscaled() == before


def test_queued_calls_are_the_load_of_the_queue_metric(tmp_path):
    h = Scaled(tmp_path, {"metric": "queue", "target": 1, **FAST})
    h.prober.queued = 6
    h.tick(6)
    assert h.replicas == 6


@pytest.mark.parametrize("shed", [0, 5])
def test_shed_calls_count_as_demand(tmp_path, shed):
    h = Scaled(tmp_path, {"metric": "inflight", "target": 1, **FAST}, replicas={"min": 1, "max": 8})
    h.prober.inflight = 1
    for _ in range(10):  # 10 calls arrive a tick (20/s), 1 in flight: a call takes 0.05 s
        h.prober.shed += shed
        h.tick(1, calls_per_tick=10 + shed)
    assert (h.replicas > 1) == (shed > 0)


def test_the_budget_stops_growth_and_says_so_once(tmp_path):
    h = Scaled(tmp_path, {"metric": "queue", "target": 1, **FAST}, resources={"memory_mb": 100},
               capacity=CapacitySpec(memory_mb=300, reserve_memory_mb=0, cpus=64))
    h.prober.queued = 6
    h.tick(12)
    assert h.replicas == 3
    [event] = [e.message for e in h.db.events(limit=1000, type="capacity")]
    assert re.match(r"wants [4-6] replicas, the machine's budget \(64 cores, 300 MiB for replicas\) allows 3:"
                    r" one more needs 100 MiB, 0 MiB are free", event), event
    assert "allows 3" in h.controller.autoscaling_status("d")["capacity"]
    h.prober.queued = 2
    h.tick(6)
    assert [e.message for e in h.db.events(limit=1000, type="capacity_ok")]
    assert h.controller.autoscaling_status("d")["capacity"] is None


def test_a_fixed_deployment_is_never_autoscaled(tmp_path):
    launcher = FakeLauncher()
    config = PlatformConfig(state_dir=tmp_path, gateway=GatewaySpec(processes=1, port=0), deployments=(
        DeploymentConfig(name="d", target="/nowhere/service.py:Svc", handlers_idempotent={"work": True},
                         spec=DeploymentSpec(service="x", replicas=2)),))
    db = StateDB(tmp_path / "state.db")
    prober = LoadedProber(launcher, tmp_path / "routes.json")
    prober.queued = 50
    controller = Controller(config, db, launcher, clock=lambda: 0.0, prober=prober)
    controller.prepare()
    for _ in range(6):
        asyncio.run(controller.tick())
    assert controller.deployments["d"].replicas == 2 and controller.autoscaling_status("d") is None


def test_a_deployment_at_zero_given_a_fixed_count_again_runs_that_count(tmp_path):
    h = Scaled(tmp_path, {"idle_s": 1, **FAST}, replicas={"min": 0, "max": 2})
    h.tick(6)
    assert h.replicas == 0
    fixed = h.controller.deployments["d"].config.model_copy(
        update={"spec": DeploymentSpec(service="x", replicas=1)})
    result = h.controller.apply_deployment(fixed)
    assert result.replicas == 1 and h.replicas == 1 and result.watching == ("autoscaling",)


def test_a_damaged_rate_history_is_reported_and_scaling_goes_on(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "observability.db") as db:  # a table of the name, not of the shape
        db.execute("CREATE TABLE autoscaling_rates (something_else TEXT)")
    launcher = FakeLauncher()
    config = PlatformConfig(state_dir=tmp_path, gateway=GatewaySpec(processes=1, port=0), deployments=(
        DeploymentConfig(name="d", target="/nowhere/service.py:Svc", handlers_idempotent={"work": True},
                         spec=DeploymentSpec(service="x", replicas={"min": 1, "max": 8}, autoscaling={
                             "metric": "inflight", "target": 1, **FAST,
                             "predictive": {"enabled": True, "season_s": 60}})),))
    db = StateDB(tmp_path / "state.db")
    prober = LoadedProber(launcher, tmp_path / "routes.json")
    now = [0.0]
    controller = Controller(config, db, launcher, clock=lambda: now[0], prober=prober,
                            observer=Observer(tmp_path))
    controller.prepare()
    prober.queued = 4  # 4 calls waiting: 4 replicas at 1 each
    for _ in range(12):
        now[0] += 0.5
        asyncio.run(controller.tick())
    assert controller.deployments["d"].replicas == 4
    [error] = [e.message for e in db.events(limit=1000, type="error")]
    assert error.startswith("read the call-rate history step failed: StateError: ")
    assert "observability.db" in error and "forecasting starts without the recorded history" in error


def test_a_recovering_controller_names_a_changed_range_as_drift_not_a_count_to_scale(tmp_path):
    h = Scaled(tmp_path, {"metric": "queue", "target": 1, **FAST})
    h.prober.queued = 3
    h.tick(8)
    assert h.replicas == 3
    in_file = h.controller.deployments["d"].config.model_copy(update={"spec": DeploymentSpec(
        service="x", replicas={"min": 1, "max": 2}, autoscaling={"metric": "queue", "target": 1, **FAST})})
    h.controller.config = h.controller.config.model_copy(update={"deployments": (in_file,)})
    h.controller._report_drift({})
    [drift] = [e.message for e in h.db.events(limit=1000, type="drift")]
    assert "replicas: {min: 1, max: 8} -> {min: 1, max: 2}" in drift and "steady scale" not in drift


def test_cpu_is_the_replicas_measured_cores_in_percent(tmp_path):
    h = Scaled(tmp_path, {"metric": "cpu", "target": 70, **FAST}, replicas={"min": 2, "max": 8},
               capacity=CapacitySpec(cpus=64))  # each replica is measured at a core: this machine may have 2
    h.controller.observer = Observer(tmp_path)
    used = {"r0": 0.0, "r1": 0.0}
    for _ in range(10):  # each replica busy on one whole core: 200 % in all, 3 replicas at 70 %
        for replica in used:
            used[replica] += 0.5
        h.controller.observer.cpu_seconds = {("d", replica): cpu_s for replica, cpu_s in used.items()}
        h.tick()
    assert h.replicas == 3
    assert re.match(r"replicas 2 -> 3: load \d+ % CPU", h.autoscaled()[0]), h.autoscaled()
    assert h.controller.autoscaling_status("d")["load"] == 200.0  # the window's mean, readings since complete
