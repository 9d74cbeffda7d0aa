"""The controller's loop driven with a fake launcher, a fake prober and a fake clock (real SQLite)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from steadyserve.control.config import DeploymentConfig, PlatformConfig
from steadyserve.control.controller import Controller
from steadyserve.control.probes import ProbeResult
from steadyserve.control.spec import DeploymentSpec, GatewaySpec
from steadyserve.control.statedb import StateDB
from steadyserve.control.supervision import ProcState, Slot

MIB = 1024 * 1024


class FakeProcess:
    def __init__(self, label: str, pid: int, endpoint: str) -> None:
        self.label, self.pid, self.endpoint = label, pid, endpoint
        self.exit_code: int | None = None
        self.signals: list[int] = []
        self.rss_bytes = 50 * MIB
        self.poll_error: Exception | None = None
        self.healthz: ProbeResult | None = None  # None: alive and ready
        self.table_version: int | None = None  # gateways: None follows the latest table
        self.revisions: dict[str, Any] = {}

    def poll(self) -> int | None:
        if self.poll_error is not None:
            raise self.poll_error
        return self.exit_code

    def signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGTERM:
            self.exit_code = 0  # drains at once

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.exit_code = -9

    def wait(self, timeout_s: float) -> int | None:
        return self.exit_code

    def stop_leftovers(self) -> None:
        pass

    def resident_bytes(self) -> int | None:
        return self.rss_bytes if self.exit_code is None else None


class FakeLauncher:
    def __init__(self) -> None:
        self.started: list[FakeProcess] = []
        self.refuse: dict[str, Exception] = {}  # label -> what start_module raises

    def start_module(self, module: str, args: list[str], log_path: Path,
                     extra_env: dict[str, str] | None = None) -> FakeProcess:
        label = log_path.stem
        if label in self.refuse:
            raise self.refuse[label]
        flag = "--endpoint" if "--endpoint" in args else "--admin-endpoint"
        proc = FakeProcess(label, 1000 + len(self.started), args[args.index(flag) + 1])
        self.started.append(proc)
        return proc

    def current(self, label: str) -> FakeProcess:
        return [p for p in self.started if p.label == label][-1]


class FakeProber:
    def __init__(self, launcher: FakeLauncher, routes_path: Path) -> None:
        self.launcher, self.routes_path = launcher, routes_path

    async def probe(self, endpoint: str, timeout_s: float, credential: str | None = None) -> ProbeResult:
        proc = next(p for p in self.launcher.started if p.endpoint == endpoint)
        if proc.healthz is not None:
            return proc.healthz
        stats: dict[str, Any] = {"ready": True}
        if not proc.label.startswith("d-"):  # a gateway
            latest = json.loads(self.routes_path.read_text())["version"]
            stats = {"instance": f"i{proc.pid}", "revisions": proc.revisions,
                     "table_version": latest if proc.table_version is None else proc.table_version}
        return ProbeResult(True, True, stats)


class Harness:
    def __init__(self, tmp_path: Path, replicas: int = 2, gateways: int = 1, **spec: Any) -> None:
        self.now = 0.0
        self.launcher = FakeLauncher()
        self.config = PlatformConfig(state_dir=tmp_path, gateway=GatewaySpec(processes=gateways, port=0),
                                     deployments=(self.deployment(replicas=replicas, **spec),))
        self.db = StateDB(tmp_path / "state.db")
        self.controller = Controller(self.config, self.db, self.launcher, clock=lambda: self.now,
                                     prober=FakeProber(self.launcher, tmp_path / "routes.json"))
        self.controller.prepare()

    @staticmethod
    def deployment(**spec: Any) -> DeploymentConfig:
        return DeploymentConfig(name="d", target="/nowhere/service.py:Svc", spec=DeploymentSpec(service="x", **spec),
                                handlers_idempotent={"work": True})

    def tick(self, times: int = 1, dt_s: float = 0.5) -> None:
        for _ in range(times):
            self.now += dt_s
            asyncio.run(self.controller.tick())

    def state(self, id_: str, kind: str = "replica") -> ProcState:
        return self.controller.managed[(kind, "d" if kind == "replica" else "", id_)].slot.state

    def replicas(self) -> dict[str, ProcState]:
        return {k[2]: m.slot.state for k, m in self.controller.managed.items() if k[0] == "replica"}

    def events(self, type: str | None = None, subject: str | None = None) -> list[Any]:
        return [e for e in self.db.events(limit=10_000, type=type) if subject is None or e.subject == subject]

    def row(self, id_: str) -> dict[str, Any]:
        return next(r for r in self.db.processes() if r["kind"] == "replica" and r["id"] == id_)


def test_everything_becomes_ready(tmp_path):
    h = Harness(tmp_path)
    h.tick(2)
    assert h.replicas() == {"r0": ProcState.READY, "r1": ProcState.READY}
    assert h.state("g0", "gateway") == ProcState.READY


# --- isolation -----------------------------------------------------------------------------

def test_a_slot_whose_step_raises_is_reported_once_and_the_others_go_on(tmp_path):
    h = Harness(tmp_path)
    h.tick(2)
    h.launcher.current("d-r0").poll_error = RuntimeError("poll broke")
    h.launcher.current("d-r1").exit_code = -9  # meanwhile another replica crashes
    h.tick(3)
    errors = h.events("error", "r0")
    assert [e.message for e in errors] == ["observe step failed: RuntimeError: poll broke"]
    assert errors[0].kind == "replica" and errors[0].deployment == "d"
    assert h.state("r1") == ProcState.READY and h.row("r1")["restarts"] == 1  # restarted all the same
    h.launcher.current("d-r0").poll_error = None
    h.tick()
    assert h.state("r0") == ProcState.READY


def test_a_broken_probe_counts_as_a_failed_probe_and_is_reported(tmp_path):
    h = Harness(tmp_path)
    h.tick(2)

    async def broken(endpoint: str, timeout_s: float, credential: str | None = None) -> ProbeResult:
        raise RuntimeError("prober bug")

    h.controller.prober.probe = broken  # type: ignore[method-assign]
    h.tick(2)
    assert [e.message for e in h.events("error", "r0")] == ["probe step failed: RuntimeError: prober bug"]
    assert h.state("r0") == ProcState.UNHEALTHY  # out of rotation, as for any failed probe


def test_a_gateway_report_that_cannot_be_read_does_not_stop_its_supervision(tmp_path):
    h = Harness(tmp_path)
    h.tick(2)
    gateway = h.launcher.current("g0")
    gateway.revisions = "junk"  # type: ignore[assignment]
    real_probe = h.controller.prober.probe

    async def garbled(endpoint: str, timeout_s: float, credential: str | None = None) -> ProbeResult:
        result = await real_probe(endpoint, timeout_s)
        return ProbeResult(True, True, {**result.stats, "ejections": [{"seq": "x"}]}) if endpoint == gateway.endpoint \
            else result

    h.controller.prober.probe = garbled  # type: ignore[method-assign]
    h.tick(2)
    assert [e.message.split(":")[0] for e in h.events("error", "g0")] == ["report step failed"]
    gateway.exit_code = -9
    h.tick(3)
    assert h.state("g0", "gateway") == ProcState.READY and len(h.launcher.started) == 4  # restarted


@pytest.mark.parametrize("error", [ValueError("embedded null byte"), FileNotFoundError(2, "No such file")])
def test_a_process_that_cannot_be_started_backs_off_with_its_reason(tmp_path, error):
    h = Harness(tmp_path)
    h.launcher.refuse["d-r0"] = error
    h.tick()
    assert h.state("r0") == ProcState.BACKOFF and h.state("r1") == ProcState.STARTING
    reason = f"could not start: {type(error).__name__}: {error}"
    assert h.row("r0")["last_error"] == reason
    assert [e.message for e in h.events("start_failed", "r0")] == [reason]
    h.tick(40)
    assert h.state("r0") == ProcState.CRASH_LOOP and h.state("r1") == ProcState.READY
    assert h.events("crash_loop", "r0")
    del h.launcher.refuse["d-r0"]
    h.tick(80)  # the crash-loop backoff runs out
    assert h.state("r0") == ProcState.READY


def test_delete_completes_whatever_state_the_slots_are_in(tmp_path):
    h = Harness(tmp_path, replicas=4)
    h.launcher.refuse["d-r0"] = ValueError("embedded null byte")
    h.tick()
    h.tick(6)  # r0 crash-looping
    h.launcher.refuse["d-r3"] = OSError("cannot start")
    h.launcher.current("d-r3").exit_code = 1  # r3 exits and will not start again: backoff
    starting = h.controller.managed[("replica", "d", "r2")]
    starting.proc, starting.slot = None, Slot("replica", "r2", ProcState.STARTING, generation=1)  # no process
    h.controller.scale("d", 5)
    h.tick()  # r4 pending
    h.controller.delete("d")
    h.tick(5)
    assert h.replicas() == {}
    assert "d" not in h.controller.deployments
    assert h.events("deleted")
    assert signal.SIGTERM in h.launcher.current("d-r1").signals


# --- replacement --------------------------------------------------------------------------------

def test_a_replica_that_asks_to_be_replaced_gets_a_successor_before_it_drains(tmp_path):
    h = Harness(tmp_path)
    h.tick(2)
    stuck = h.launcher.current("d-r0")
    reason = "worker 0 in 'hang' for 7s: the worker is stuck"
    stuck.healthz = ProbeResult(False, False, {}, reason, replace_reason=reason)
    h.tick()
    assert [e.message for e in h.events("replacing", "r0")] == [
        f"{reason}; starting a replacement, then draining it"]
    assert h.row("r0")["last_error"] == reason
    assert h.state("r2") == ProcState.PENDING and stuck.signals == []
    h.tick()  # r2 starts first ...
    assert h.state("r2") == ProcState.STARTING and stuck.signals == []
    h.tick(3)  # ... then r0 leaves the table, drains and stops
    assert stuck.signals == [signal.SIGTERM]
    assert set(h.replicas()) == {"r1", "r2"} and h.state("r2") == ProcState.READY
    assert [e.type for e in h.events(subject="r0")][-4:] == ["replacing", "leaving", "draining", "stopped"]


def test_a_replica_over_its_memory_limit_is_replaced_and_keeps_serving_until_then(tmp_path):
    h = Harness(tmp_path, resources={"memory_mb": 128})
    h.tick(2)
    hog = h.launcher.current("d-r0")
    hog.rss_bytes = 300 * MIB
    h.tick()
    event = h.events("replacing", "r0")[0]
    assert "resident memory 300 MiB over the limit of 128 MiB" in event.message
    assert h.state("r0") == ProcState.READY  # in rotation until its successor is ready
    h.tick(6)
    ready = h.events("ready", "r2")[0]
    draining = h.events("draining", "r0")[0]
    assert ready.seq < draining.seq and hog.signals == [signal.SIGTERM]
    assert set(h.replicas()) == {"r1", "r2"}


def test_without_a_memory_limit_resident_memory_is_not_watched(tmp_path):
    h = Harness(tmp_path)
    h.tick(2)
    h.launcher.current("d-r0").rss_bytes = 10_000 * MIB
    h.tick(3)
    assert not h.events("replacing")


# --- scale-in: leave every routing table first ---------------------------------------------------

def test_scale_in_drains_a_replica_only_after_every_gateway_confirmed_the_table_without_it(tmp_path):
    h = Harness(tmp_path, replicas=2, gateways=2)
    h.tick(2)
    lagging = h.launcher.current("g1")
    lagging.table_version = json.loads((tmp_path / "routes.json").read_text())["version"]  # g1 stops following
    h.controller.scale("d", 1)
    h.tick(3)
    leaving = h.launcher.current("d-r1")
    assert h.state("r1") == ProcState.LEAVING and leaving.signals == []
    assert all(r.id != "r1" for r in _routed(tmp_path))
    lagging.table_version = None  # g1 catches up
    h.tick()
    assert leaving.signals == [signal.SIGTERM]
    assert "no gateway routes to it" in h.events("draining", "r1")[0].message


def test_a_gateway_that_never_confirms_holds_the_drain_only_until_the_bound(tmp_path):
    h = Harness(tmp_path, replicas=2, gateways=2)
    h.tick(2)
    h.launcher.current("g1").table_version = 0
    h.controller.scale("d", 1)
    h.tick(10)  # 5 s
    assert h.launcher.current("d-r1").signals == []
    h.tick(2)
    assert h.launcher.current("d-r1").signals == [signal.SIGTERM]
    message = h.events("draining", "r1")[0].message
    assert "gateway g1 did not confirm routing table version" in message and "within 5s" in message


def test_a_gateway_that_is_not_running_does_not_block(tmp_path):
    h = Harness(tmp_path, replicas=2, gateways=2)
    h.tick(2)
    h.launcher.refuse["g1"] = OSError("cannot start")
    h.launcher.current("g1").exit_code = 1
    h.tick()
    assert h.state("g1", "gateway") == ProcState.BACKOFF
    h.controller.scale("d", 1)
    h.tick(3)
    assert h.launcher.current("d-r1").signals == [signal.SIGTERM]


def _routed(tmp_path: Path) -> list[Any]:
    from steadyserve.gateway.routes import RoutingTable

    table = RoutingTable.model_validate_json((tmp_path / "routes.json").read_text())
    return list(table.services["d"].replicas)


# --- rollouts judged on what the gateways saw ------------------------------------------------------

def revision_counts(requests: int, failures: int) -> dict[str, Any]:
    return {"requests": requests, "failures": failures, "latency_counts": [requests]}


def test_a_revision_failing_at_the_gateways_is_rolled_back(tmp_path):
    h = Harness(tmp_path, rollout={"bake_s": 1, "min_requests": 10, "max_error_rate": 0.1})
    h.tick(2)
    h.controller.apply_deployment(h.deployment(replicas=2, env={"V": "2"},
                                               rollout={"bake_s": 1, "min_requests": 10, "max_error_rate": 0.1}))
    h.tick(3)
    assert h.state("r2") == ProcState.READY  # the canary
    h.launcher.current("g0").revisions = {"d": {"1": revision_counts(50, 0), "2": revision_counts(12, 6)}}
    h.tick()
    rollback = h.events("rollback")[0]
    assert "rolled back from revision 2 to 1" in rollback.message
    assert "failed 6 of 12 calls seen by the gateways" in rollback.message
    h.tick(5)
    assert set(h.replicas()) == {"r0", "r1"}


def test_a_healthy_revision_is_promoted_after_bake_s_and_min_requests(tmp_path):
    settings = {"bake_s": 1, "min_requests": 10}
    h = Harness(tmp_path, rollout=settings)
    h.tick(2)
    h.launcher.current("g0").revisions = {"d": {"2": revision_counts(4, 0)}}  # before this rollout: not counted
    h.tick()
    h.controller.apply_deployment(h.deployment(replicas=2, env={"V": "2"}, rollout=settings))
    h.tick(6)
    assert not h.events("baked")
    h.launcher.current("g0").revisions = {"d": {"2": revision_counts(14, 0)}}
    h.tick()
    assert "the gateways saw 10 calls, 0 failed" in h.events("baked")[0].message
    h.tick(10)
    assert h.events("rollout_done")
    assert {m.revision for k, m in h.controller.managed.items() if k[0] == "replica"} == {2}


def test_a_changed_replica_count_in_the_spec_is_applied_on_deploy_without_a_new_revision(tmp_path):
    h = Harness(tmp_path)
    h.tick(3)
    h.controller.scale("d", 3)  # an operator scaled by hand ...
    result = h.controller.apply_deployment(h.deployment(replicas=4))  # ... then the spec says 4
    assert h.controller.deployments["d"].replicas == 4
    assert (result.revision, result.rolling_out, result.scaled) == (1, False, True)
    h.controller.apply_deployment(h.deployment(replicas=4, env={"V": "3"}))  # the count did not change
    assert h.controller.deployments["d"].replicas == 4


def test_applying_an_unchanged_spec_is_a_no_op(tmp_path):
    h = Harness(tmp_path)
    h.tick(3)
    h.controller.scale("d", 3)
    started = len(h.launcher.started)
    result = h.controller.apply_deployment(h.deployment(replicas=2))  # the file still says 2
    h.tick(3)
    assert (result.revision, result.rolling_out, result.scaled) == (1, False, False)
    assert h.controller.deployments["d"].replicas == 3  # a manual scale survives re-applying the same file
    assert len(h.launcher.started) == started + 1  # only the third replica: no restarts
    assert [r["revision"] for r in h.db.revisions("d")] == [1]


@pytest.mark.parametrize("change", ["deploy", "scale", "delete", "rollback"])
def test_every_acknowledged_change_is_in_the_state_db_before_it_returns(tmp_path, change):
    h = Harness(tmp_path)
    h.tick(3)
    if change == "deploy":
        h.controller.apply_deployment(h.deployment(replicas=2, env={"V": "2"}))
        expected = {"revision": 2, "previous_revision": 1}
    elif change == "scale":
        h.controller.scale("d", 5)
        expected = {"replicas": 5}
    elif change == "delete":
        h.controller.delete("d")
        expected = {"deleting": 1}
    else:
        h.controller.apply_deployment(h.deployment(replicas=2, env={"V": "2"}))
        h.controller.rollback("d", 1)
        expected = {"revision": 3}
    other = StateDB(tmp_path / "state.db")  # what a new controller would read after a kill -9 now
    row = other.desired_deployments()[0]
    other.close()
    assert {k: row[k] for k in expected} == expected


def test_a_rollback_keeps_the_secret_values_of_the_revision_it_returns_to(tmp_path):
    from steadyserve.control.spec import SecretRef

    h = Harness(tmp_path)
    secrets = {"API_KEY": SecretRef(from_env="API_KEY")}
    h.controller.apply_deployment(h.deployment(replicas=2, secrets=secrets), secrets={"API_KEY": "s3cr3t-old"})
    h.controller.apply_deployment(h.deployment(replicas=2, secrets=secrets), secrets={"API_KEY": "s3cr3t-new"})
    assert h.controller.deployments["d"].revision == 3  # revision 1 had no secrets
    h.controller.rollback("d", 2)
    config = h.controller.deployments["d"].config
    assert h.db.secret_values("d", config.secret_versions) == {"API_KEY": "s3cr3t-old"}
    assert all("s3cr3t" not in r["spec"] + (r["config"] or "") for r in h.db.revisions("d"))


def test_a_secret_without_a_value_is_refused_by_name(tmp_path):
    from steadyserve.control.spec import SecretRef
    from steadyserve.errors import ConfigError

    h = Harness(tmp_path)
    with pytest.raises(ConfigError, match="secret API_KEY has no value yet"):
        h.controller.apply_deployment(h.deployment(secrets={"API_KEY": SecretRef(from_env="K")}))
    assert h.controller.deployments["d"].revision == 1




# --- what an idle instance writes ----------------------------------------------------------

def test_an_idle_controller_writes_nothing_to_the_state_db(tmp_path):
    h = Harness(tmp_path)
    h.tick(3)
    assert h.replicas() == {"r0": ProcState.READY, "r1": ProcState.READY}
    written = h.db._conn.total_changes
    h.tick(20)
    assert h.db._conn.total_changes == written  # nothing changed, so no row was written
    h.launcher.current("d-r1").exit_code = -9
    h.tick()
    assert h.db._conn.total_changes > written  # a change still is
    assert h.row("r1")["restarts"] == 1
