"""The controller: desired state versus observed state, one tick at a time.

Each tick probes every running process, polls exits and resident memory,
advances each slot's pure state machine (``supervision.step``), applies the
resulting actions, plans each deployment (``rollout.plan``), persists rows and
events, and republishes the routing table when the set of ready replicas
changed. Each slot's step and each deployment's plan is isolated: a failure is
logged and recorded as an ``error`` event, and the tick goes on with the rest.
Processes, probes and the clock are passed in, so a unit test drives all of it
with fakes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from secrets import token_hex
from typing import Any, cast

from ..alerting.engine import AlertEngine
from ..gateway.routes import (
    CanaryRoute,
    write_table,
)
from ..printable import printable
from ..types import Clock
from ..wording import plural
from . import orphans, private_dirs, reports
from .backends import ReplicaBackend, ReplicaHandle, ReplicaLaunch, Unschedulable, credential_of
from .backends.local import LocalBackend, read_error_file
from .config import DeploymentConfig, PlatformConfig
from .desired import DeploymentState, DesiredState
from .launch import GATEWAY_MODULE, METRICS_DIR, gateway_args, replica_args, replica_env
from .leftovers import is_recorded_process
from .observing import Observer
from .probes import HttpProber, Prober, ProbeResult
from .processes import AdoptedProcess, Launcher, ProcessHandle, pid_alive
from .publish import build_table, canary_route, cold_start_timeout
from .rollout import (
    AddSlot,
    DeploymentView,
    GatewayLedger,
    Outcomes,
    Promote,
    Retire,
    RollBack,
    SlotView,
    plan,
)
from .scaling import Scaling
from .secrets import redact, split_by_mount
from .statedb import Event, StateDB
from .supervision import (
    HAS_PROCESS,
    RUNNING,
    Kill,
    Observation,
    ProcState,
    Slot,
    Start,
    Step,
    SupervisionPolicy,
    Terminate,
    start_failed,
    step,
    unplaced,
)
from .watching import Watching

log = logging.getLogger("steadyserve.controller")
ROUTES_FILE = "routes.json"
_MAX_REPORTED_CHARS = 4000  # of a replica's own words in one event (a 3 MB exception stays in its log)
GATEWAY_POLICY = SupervisionPolicy()

MIB = 1024 * 1024

# (kind, deployment or "", id)
Key = tuple[str, str, str]


@dataclass
class Managed:
    slot: Slot
    deployment: str = ""  # "" for gateways
    revision: int | None = None
    config: DeploymentConfig | None = None  # the revision's config this replica runs
    proc: ProcessHandle | None = None
    endpoint: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    started_wall: float | None = None
    ejections_seen: int = 0  # gateways: last ejection seq turned into an event
    timeouts_seen: int = 0  # replicas: last handler timeout turned into an event
    auth_failures_seen: int = 0  # gateways: last refused call written to the audit log
    forecast: str | None = None  # replicas: predicted to fail, and configured to be replaced before

    @property
    def label(self) -> str:
        return f"{self.deployment}-{self.slot.id}" if self.deployment else self.slot.id

    @property
    def replica(self) -> ReplicaHandle | None:
        """A replica's process as its backend started it (gateways: None)."""
        return cast(ReplicaHandle, self.proc) if self.config is not None and self.proc is not None else None


class Controller(DesiredState, Watching, Scaling):
    def __init__(
        self,
        config: PlatformConfig,
        db: StateDB,
        launcher: Launcher,
        on_event: Callable[[Event], None] = lambda event: None,
        clock: Clock = time.monotonic,
        prober: Prober | None = None,
        collect_orphans: bool = False,
        observer: Observer | None = None,
        backend: ReplicaBackend | None = None,
    ) -> None:
        self.config = config
        self.observer = observer  # metrics, history, alerts: serve.py passes one; unit tests need none
        self.alerts: AlertEngine | None = None
        # Only a controller that made itself its children's subreaper (serve.py) has orphans to collect.
        self.collect_orphans = collect_orphans
        self.db = db
        self.launcher = launcher
        self.on_event = on_event
        self.clock = clock
        self.prober: Prober = prober if prober is not None else HttpProber()
        self.ledger = GatewayLedger()  # what the gateways saw of each revision
        self.routes_path = config.state_dir / ROUTES_FILE
        self.managed: dict[Key, Managed] = {}
        self.deployments: dict[str, DeploymentState] = {}
        for i in range(config.gateway.processes):
            self.managed[("gateway", "", f"g{i}")] = Managed(Slot("gateway", f"g{i}"))
        self._routes_version = 0
        self._published: object = None
        self._routed: frozenset[tuple[str, str, int]] = frozenset()  # (deployment, id, generation) in the table
        # (kind, deployment, subject, stage) -> the failure last recorded: one event while it repeats every tick
        self._failing: dict[tuple[str, str, str, str], str] = {}
        self._persisted: dict[Key, dict[str, Any]] = {}  # process rows as last written
        self.socket_dir = config.state_dir / "sock"  # prepare() finds the private one
        self._backend = backend  # replicas run here; default (after prepare): local processes

    # --- set-up ---------------------------------------------------------------------
    def prepare(self, recover: bool = False, secrets: dict[str, dict[str, str]] | None = None) -> None:
        private_dirs.ensure_private_dir(self.config.state_dir, tighten=True)
        private_dirs.tighten_files(self.config.state_dir)
        private_dirs.ensure_private_dir(self.config.logs_dir, tighten=True)
        self.socket_dir = private_dirs.socket_dir(self.config.state_dir)
        if self._backend is None:
            self._backend = self._make_backend()
        if recover:
            self._recover()
        self.db.reset_processes()
        self.db.set_meta(
            url=self.config.url, api_url=self.config.api_url, controller_pid=str(os.getpid()), started_at=str(time.time()),
            status="running", routes_file=str(self.routes_path),
            deployments=",".join(d.name for d in self.config.deployments),
        )
        # What a killed predecessor started and no row adopts (a start it never saw finish, say) goes.
        self._guarded("controller", "controller", "", "release leftovers", functools.partial(
            self.backend.release_others, self._adopted_replicas()))
        if recover:  # what was acknowledged since the file was applied stays; the file is compared only
            self._report_drift(secrets or {})
        else:
            self._report_dropped()
            for dep in self.config.deployments:
                self.apply_deployment(dep, secrets=(secrets or {}).get(dep.name))
        self._plan_deployments(self.clock())
        self._publish_routes(force=True)
        # What runs: after a recovery, the recorded counts, not the file's.
        names = ", ".join(f"{name} ({plural(d.replicas, 'replica')})"
                          for name, d in self.deployments.items() if not d.deleting)
        self.record("controller", "controller", "started",
                    f"serving {names} with {plural(self.config.gateway.processes, 'gateway process', 'gateway processes')}"
                    f" on {self.config.url}" + (f"; replicas on the Ray cluster at {self.config.backend.address}"
                                               if self.config.backend.kind == "ray" else ""))

    def _report_dropped(self) -> None:
        """After a clean stop the file is applied as it is: say which deployments of the last run
        it leaves out (their revisions stay in the state DB)."""
        in_file = {dep.name for dep in self.config.deployments}
        for row in self.db.desired_deployments():
            if row["name"] not in in_file and not row["deleting"]:
                self.record("deployment", row["name"], "dropped",
                            f"ran (revision {row['revision']}) until the last stop; not in this spec, so not started"
                            " (its revisions are kept: deploy it again to run it)", row["name"])

    # --- recovery after the previous controller died ----------------------------------
    def _recover(self) -> None:
        """Desired state from SQLite; replicas and gateways still running are adopted, not restarted."""
        for row in self.db.desired_deployments():
            config = self._config_of(row["name"], row["revision"])
            if config is None:
                continue
            self.deployments[row["name"]] = DeploymentState(
                config, row["revision"], row["replicas"], {row["revision"]: config},
                previous_revision=row["previous_revision"], deleting=bool(row["deleting"]),
                next_index=row["next_index"], spec_replicas=row["spec_replicas"])
        now = self.clock()
        adopted = 0
        for row in self.db.processes():
            kind, name, pid = row["kind"], row["deployment"], row["pid"]
            dep = self.deployments.get(name)
            config = None
            proc: ProcessHandle | None
            if kind == "replica":
                if dep is None:
                    continue
                revision = row["revision"]
                if revision not in dep.configs:
                    found = self._config_of(name, revision)
                    if found is None:
                        continue
                    dep.configs[revision] = found
                config = dep.configs[revision]
                proc = self.backend.adopt(row, config.spec.resources)
                if proc is None:
                    continue
            else:
                if not pid or not row["endpoint"] or not pid_alive(pid) or not is_recorded_process(
                        pid, kind, row["endpoint"], self.socket_dir, self.routes_path):
                    continue
                proc = AdoptedProcess(pid)
            state = ProcState.READY if row["state"] == "ready" else ProcState.STARTING
            slot = Slot(kind, row["id"], state, row["generation"], started_at=now, seen_alive=True,
                        restarts=row["restarts"], ready_at=now if state == ProcState.READY else None)
            self.managed[(kind, name, row["id"])] = Managed(
                slot, name, row["revision"], config, proc, row["endpoint"],
                started_wall=row["started_at"])
            adopted += 1
        try:
            self._routes_version = json.loads(self.routes_path.read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
        self.record("controller", "controller", "recovered",
                    f"recovered {len(self.deployments)} deployments from the state DB;"
                    f" adopted {adopted} running processes")

    def _adopted_replicas(self) -> set[str]:
        return {f"{m.deployment}-{m.slot.id}" for (k, _, _), m in self.managed.items() if k == "replica" and m.proc}

    def _make_backend(self) -> ReplicaBackend:
        backend = self.config.backend
        if backend.kind == "ray":
            from .backends.ray_cluster import RayBackend

            assert backend.address is not None  # the spec requires it
            # Names this instance's actors on a shared cluster: random once, kept in the state DB.
            instance = self.db.meta().get("instance_id") or token_hex(6)
            self.db.set_meta(instance_id=instance)
            return RayBackend(backend.address, backend.namespace, instance, self.config.logs_dir)
        return LocalBackend(self.launcher, self.socket_dir, self.config.logs_dir, self.config.state_dir / METRICS_DIR,
                            self.routes_path)

    @property
    def backend(self) -> ReplicaBackend:
        assert self._backend is not None, "prepare() first"
        return self._backend

    def record(self, kind: str, subject: str, type: str, message: str, deployment: str = "") -> None:
        event = self.db.add_event(kind, subject, type, message, deployment)
        log.info("%s %s%s %s: %s", kind, f"{deployment}/" if deployment else "", subject, type, message)
        self.on_event(event)

    # --- the loop ---------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        interval = self.config.probe_interval_s
        if self.observer is not None:
            self.start_alerting()
        while not stop.is_set():
            started = self.clock()
            try:
                await self.tick()
            except Exception:  # the loop must never die
                log.exception("controller tick failed")
            elapsed = self.clock() - started
            if self.observer is not None:
                self._guarded("controller", "controller", "", "observe", functools.partial(self._measure, elapsed))
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, interval - elapsed))
            except TimeoutError:
                pass
        await self.shutdown()

    def _policy(self, managed: Managed) -> tuple[SupervisionPolicy, float]:
        if managed.config is not None:
            spec = managed.config.spec
            return (replace(managed.config.supervision, memory_limit_mb=spec.resources.memory_mb),
                    spec.health.probe_timeout_s)
        return GATEWAY_POLICY, 1.0

    async def tick(self) -> None:
        self._sync_replicas()
        running = {key: m for key, m in self.managed.items() if m.slot.state in RUNNING and m.endpoint}
        results = await asyncio.gather(
            *(self.prober.probe(m.endpoint, self._policy(m)[1], credential_of(m.proc))  # type: ignore[arg-type]
              for m in running.values()),
            return_exceptions=True,
        )
        probed: dict[Key, ProbeResult | BaseException] = dict(zip(running, results, strict=True))
        now = self.clock()
        # Gateways first: leaving replicas wait for the table versions the gateways report this tick.
        for key in [k for k in self.managed if k[0] == "gateway"]:
            self._step_slot(self.managed[key], probed.get(key), now, ())
        versions = self._gateway_versions()
        for key in [k for k in self.managed if k[0] != "gateway"]:
            self._step_slot(self.managed[key], probed.get(key), now, versions)
        self._guarded("controller", "controller", "", "autoscale", functools.partial(self._autoscale, self.clock()))
        self._plan_deployments(self.clock())
        self._guarded("controller", "controller", "", "publish routes", self._publish_routes)
        self._guarded("controller", "controller", "", "persist state", self._persist)
        self._guarded("controller", "controller", "", "drop retired slots", self._drop_retired)
        if self.collect_orphans:
            self._guarded("controller", "controller", "", "collect orphans", self._collect_orphans)

    def _sync_replicas(self) -> None:
        """Remote replicas: learn endpoints as they come up; copy their logs and metrics here."""
        for (_, name, id_), m in self.managed.items():
            if m.replica is not None:
                self._guarded("replica", id_, name, "sync", m.replica.sync)
                m.endpoint = m.replica.endpoint

    def _collect_orphans(self, stopping: bool = False) -> None:
        found = orphans.find()
        running = {orphans.replica_mark(m.deployment, m.slot.id, m.slot.generation)
                   for (kind, _, _), m in self.managed.items()
                   if kind == "replica" and m.proc is not None and m.proc.poll() is None}
        for orphan in orphans.to_kill(found, running, stopping):
            orphans.kill(orphan)
            why = "the controller is stopping" if stopping else "its replica is gone"
            self.record("controller", "controller", "orphan_killed",
                        f"killed {orphan.describe()}, which had left its replica's process group: {why}")
        orphans.reap(found)

    # --- one slot's step, isolated ---------------------------------------------------
    def _step_slot(self, managed: Managed, result: ProbeResult | BaseException | None, now: float,
                   versions: tuple[tuple[str, int | None], ...]) -> None:
        slot = managed.slot
        if isinstance(result, BaseException):  # a broken prober: a failed probe, and reported
            if not isinstance(result, Exception):
                raise result  # cancelled: the loop is stopping
            self._failed(slot.kind, slot.id, managed.deployment, "probe", result)
            result = ProbeResult(False, False, {}, f"probe failed: {type(result).__name__}: {result}")
        else:
            self._failing.pop((slot.kind, managed.deployment, slot.id, "probe"), None)
        if result is not None and result.alive:
            managed.stats = result.stats
            # What the process reports (events, audit, rollout counts) never holds up its supervision.
            self._guarded(slot.kind, slot.id, managed.deployment, "report", functools.partial(self._report, managed))
        stage = "observe"
        try:
            observation = self._observe(managed, result, now, versions)
            stage = "supervise"
            decision = step(managed.slot, observation, self._policy(managed)[0])
            if managed.config is not None and any(isinstance(a, Start) for a in decision.actions):
                problem = self.backend.placement_problem(managed.deployment, managed.revision or 0,
                                                         managed.config.spec.resources)
                if problem is not None:  # no room on the cluster: it waits, as it is, without a restart
                    decision = unplaced(managed.slot, now, problem, self._policy(managed)[0])
            stage = "apply"
            self._apply(managed, decision, now)
        except Exception as exc:  # one slot never stops the others
            self._failed(slot.kind, slot.id, managed.deployment, stage, exc)
        else:
            self._failing.pop((slot.kind, managed.deployment, slot.id, "step"), None)

    def _guarded(self, kind: str, subject: str, deployment: str, stage: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            self._failed(kind, subject, deployment, stage, exc)
        else:
            self._failing.pop((kind, deployment, subject, stage), None)

    def _failing_cleared(self, kind: str, deployment: str, stage: str) -> None:
        """A step that failed before succeeded: the next failure is reported again."""
        self._failing.pop((kind, deployment, deployment, stage), None)

    def _failed(self, kind: str, subject: str, deployment: str, stage: str, exc: Exception) -> None:
        """Log a failed step and record it as an ``error`` event, once while the same failure repeats."""
        message = f"{stage} step failed: {type(exc).__name__}: {exc}"
        where = f"{kind} {deployment + '/' if deployment else ''}{subject}"
        # observe/supervise/apply of one slot share a key: they are one step, cleared when it succeeds
        key = (kind, deployment, subject, "step" if stage in ("observe", "supervise", "apply") else stage)
        if self._failing.get(key) == message:  # logged with its traceback the first time
            log.debug("%s: %s (again)", where, message)
            return
        log.error("%s: %s", where, message, exc_info=exc)
        self._failing[key] = message
        try:
            self.record(kind, subject, "error", message, deployment)
        except Exception:  # the state DB itself may be what fails
            log.exception("could not record the failure as an event")

    def _report(self, managed: Managed) -> None:
        if managed.slot.kind == "gateway":
            self.ledger.observe(managed.slot.id, managed.stats)
            self._record_ejections(managed)
            self._record_auth_failures(managed)
        else:
            self._record_handler_timeouts(managed)

    def _observe(self, managed: Managed, result: ProbeResult | None, now: float,
                 versions: tuple[tuple[str, int | None], ...]) -> Observation:
        slot = managed.slot
        exit_code = managed.proc.poll() if managed.proc is not None else None
        rss_mb = None
        if (slot.kind == "replica" and slot.state in RUNNING and exit_code is None and managed.proc is not None
                and self._policy(managed)[0].memory_limit_mb is not None):
            rss = managed.proc.resident_bytes()
            rss_mb = None if rss is None else rss / MIB
        return Observation(
            now=now,
            exit_code=exit_code,
            alive=None if result is None else result.alive,
            ready=None if result is None else result.ready,
            error=self._from_process(managed, self._read_error(managed)) if exit_code is not None else None,
            problem=None if result is None else self._from_process(managed, result.problem),
            has_process=managed.proc is not None,
            replace_reason=(None if result is None else self._from_process(managed, result.replace_reason))
            or managed.forecast,
            rss_mb=rss_mb,
            routes_version=self._routes_version,
            in_routes=(managed.deployment, slot.id, slot.generation) in self._routed,
            gateway_versions=versions if slot.retiring else (),
        )

    def _gateway_versions(self) -> tuple[tuple[str, int | None], ...]:
        """The routing table version each running gateway serves (None: not reported yet)."""
        versions = []
        for (kind, _, id_), m in self.managed.items():
            if kind == "gateway" and m.slot.state in RUNNING and m.proc is not None:
                version = m.stats.get("table_version")
                versions.append((id_, version if isinstance(version, int) else None))
        return tuple(versions)

    # --- deployments -----------------------------------------------------------------
    def _plan_deployments(self, now: float) -> None:
        for name in list(self.deployments):
            self._guarded("deployment", name, name, "plan", functools.partial(self._plan_deployment, name, now))

    def _plan_deployment(self, name: str, now: float) -> None:
        dep = self.deployments[name]
        slots = {key[2]: m for key, m in self.managed.items()
                 if key[0] == "replica" and key[1] == name and not m.slot.retiring
                 and m.slot.state != ProcState.STOPPED}
        if dep.deleting:
            for m in slots.values():
                m.slot = replace(m.slot, retiring=True)
            if not any(k[0] == "replica" and k[1] == name for k in self.managed):
                del self.deployments[name]
                self.record("deployment", name, "deleted", "all replicas retired", name)
            return
        previous = dep.previous_revision
        if previous is not None:
            for m in slots.values():
                if m.revision == dep.revision and m.slot.ready_at is not None:
                    dep.bake_since = min(dep.bake_since or m.slot.ready_at, m.slot.ready_at)
        view = DeploymentView(
            revision=dep.revision, replicas=dep.replicas, now=now, rollout=dep.config.spec.rollout,
            previous_revision=previous,
            slots=tuple(SlotView(
                id=id_, index=int(id_[1:]), revision=m.revision or 0, state=m.slot.state,
                started_at=m.slot.started_at, ready_since=m.slot.ready_at,
                replace_reason=m.slot.replace_reason, replacing_since=m.slot.replacing_since,
                inflight=_calls(m.stats.get("inflight")),
            ) for id_, m in slots.items()),
            new_outcomes=self._seen(name, dep, dep.revision),
            old_outcomes=self._seen(name, dep, previous) if previous is not None else Outcomes(),
            baked=dep.baked, bake_since=dep.bake_since,
            replace_timeout_s=dep.config.spec.health.startup_timeout_s,
        )
        for action in plan(view):
            if isinstance(action, AddSlot):
                slot_id = f"r{dep.next_index}"
                dep.next_index += 1
                self.managed[("replica", name, slot_id)] = Managed(
                    Slot("replica", slot_id), name, action.revision, dep.configs[action.revision])
            elif isinstance(action, Retire):
                m = slots[action.slot_id]
                m.slot = replace(m.slot, retiring=True)
            elif isinstance(action, Promote):
                dep.baked = True
                self.record("deployment", name, "baked", action.reason, name)
            elif isinstance(action, RollBack):
                failed = dep.revision
                dep.revision, dep.config = action.to_revision, dep.configs[action.to_revision]
                dep.previous_revision, dep.baked, dep.baseline, dep.bake_since = None, False, {}, None
                self.record("deployment", name, "rollback",
                            f"rolled back from revision {failed} to {action.to_revision}: {action.reason}", name)
        if dep.previous_revision is not None and all(m.revision == dep.revision for m in slots.values()):
            self.record("deployment", name, "rollout_done", f"revision {dep.revision} fully rolled out", name)
            dep.previous_revision, dep.baked, dep.baseline, dep.bake_since = None, False, {}, None

    def _seen(self, name: str, dep: DeploymentState, revision: int) -> Outcomes:
        """What the gateways saw of a revision since the rollout began."""
        return self.ledger.total(name, revision) - dep.baseline.get(revision, Outcomes())

    def _drop_retired(self) -> None:
        for key in [k for k, m in self.managed.items() if m.slot.retiring and m.slot.state == ProcState.STOPPED]:
            del self.managed[key]
            self._persisted.pop(key, None)
            self.db.delete_process(*key)

    # --- applying decisions ---------------------------------------------------------
    def _apply(self, managed: Managed, decision: Step, now: float) -> None:
        previous = managed.slot
        managed.slot = decision.slot
        for note in decision.events:
            self.record(previous.kind, previous.id, note.type, note.message, managed.deployment)
        for action in decision.actions:
            if isinstance(action, Start):
                try:
                    self._start(managed, action.generation)
                except Unschedulable as exc:  # waiting for room on the cluster is not a crash
                    self._apply(managed, unplaced(managed.slot, now, str(exc), self._policy(managed)[0]), now)
                    return
                except Exception as exc:  # e.g. OSError (no executable, unwritable log), ValueError (bad env)
                    log.warning("%s: could not start", managed.label, exc_info=exc)
                    error = f"{type(exc).__name__}: {exc}"
                    self._apply(managed, start_failed(managed.slot, now, error, self._policy(managed)[0]), now)
                    return
            elif isinstance(action, Kill):
                if managed.proc is not None:
                    managed.proc.kill()
            elif isinstance(action, Terminate):
                if managed.proc is not None:
                    managed.proc.signal(signal.SIGTERM)
        if previous.state in HAS_PROCESS and decision.slot.state not in HAS_PROCESS:
            self._forget_process(managed)

    def _record(self, notes: list[reports.Note]) -> None:
        for n in notes:
            self.record(n.kind, n.subject, n.type, n.message, n.deployment)

    def _record_ejections(self, gateway: Managed) -> None:
        notes, gateway.ejections_seen = reports.ejections(gateway.slot.id, gateway.stats, gateway.ejections_seen)
        self._record(notes)

    def _record_handler_timeouts(self, replica: Managed) -> None:
        notes, replica.timeouts_seen = reports.handler_timeouts(replica.slot.id, replica.deployment, replica.stats,
                                                                replica.timeouts_seen)
        self._record(notes)

    def _record_auth_failures(self, gateway: Managed) -> None:
        windows = gateway.stats.get("refusals") or []
        latest = max((int(w["seq"]) for w in windows), default=0)
        if latest == gateway.auth_failures_seen:  # nothing new from this process: skip the DB
            return
        # The cursor lives in the state DB, written with the rows: exact across controller restarts.
        cursor = reports.AuditCursor.from_json(self.db.audit_cursor(gateway.slot.id))
        refused, new = reports.refused_calls(gateway.slot.id, gateway.stats, cursor, time.time())
        if new is not None and new != cursor:
            self.db.record_refusals([r.row() for r in refused], gateway.slot.id, new.to_json())
        gateway.auth_failures_seen = latest

    def _start(self, managed: Managed, generation: int) -> None:
        cfg = self.config
        if managed.config is not None:
            managed.proc = self.backend.start(self._launch(managed, generation))
            managed.endpoint = managed.proc.endpoint
        else:
            endpoint = f"unix:{self.socket_dir / f'{managed.label}-{generation}.sock'}"
            args = gateway_args(cfg.gateway, managed.slot.id, self.routes_path, endpoint, cfg.grace_s)
            managed.proc = self.launcher.start_module(GATEWAY_MODULE, args, cfg.logs_dir / f"{managed.label}.log", {})
            managed.endpoint = endpoint
        managed.stats = {}
        managed.started_wall = time.time()
        managed.ejections_seen = 0
        managed.auth_failures_seen = 0
        managed.timeouts_seen = 0
        managed.forecast = None

    def _launch(self, managed: Managed, generation: int) -> ReplicaLaunch:
        """The deployment's env and its revision's secrets (files for mount: file)."""
        assert managed.config is not None
        spec = managed.config.spec
        values = self.db.secret_values(managed.deployment, managed.config.secret_versions)
        env_secrets, file_secrets = split_by_mount(spec, values)
        args = replica_args(managed.config, managed.slot.id, self.config.grace_s, revision=managed.revision or 0)
        return ReplicaLaunch(deployment=managed.deployment, replica_id=managed.slot.id, generation=generation,
                             revision=managed.revision or 0, args=tuple(args), env=replica_env(spec.env, env_secrets), secret_files=file_secrets,
                             resources=spec.resources)

    def _forget_process(self, managed: Managed) -> None:
        if managed.replica is not None:
            managed.replica.forget()
        elif managed.proc is not None:
            managed.proc.stop_leftovers()
            if managed.endpoint:
                Path(managed.endpoint.partition(":")[2]).unlink(missing_ok=True)
        managed.proc = None
        managed.endpoint = None
        managed.stats = {}

    def _read_error(self, managed: Managed) -> str | None:
        """What the process reported before it died."""
        if managed.replica is not None:
            return managed.replica.fatal_error()
        return read_error_file(self.socket_dir / f"{managed.label}.error")

    def _from_process(self, managed: Managed, text: str | None) -> str | None:
        """Text a replica chose (its fatal error, why its probe failed, why it wants replacing), made
        fit for events and `status`, which viewers read: its deployment's secret values masked (an
        exception may quote one), no control characters, and capped."""
        if text is None:
            return None
        if managed.deployment:
            text = redact(text, self.db.all_secret_values(managed.deployment))
        return printable(text, _MAX_REPORTED_CHARS, keep="\n")

    # --- publishing ----------------------------------------------------------------
    def _publish_routes(self, force: bool = False) -> None:
        ready = tuple(
            (m.deployment, m.slot.id, m.slot.generation, m.endpoint or "", m.revision or 0, credential_of(m.proc))
            for (kind, _, _), m in self.managed.items()
            if kind == "replica" and m.slot.state == ProcState.READY and m.endpoint
        )
        canaries = {name: self._canary(name, state) for name, state in self.deployments.items()}
        # Republish when ready replicas change, or the deployments themselves do.
        key = (ready, tuple((n, d.revision, cold_start_timeout(d.config)) for n, d in sorted(self.deployments.items())),
               self.db.tokens_stamp(),
               tuple(sorted((n, c) for n, c in canaries.items() if c is not None)))
        if key == self._published and not force:
            return
        self._routes_version += 1
        table = build_table(
            version=self._routes_version, default_deployment=self.config.default_deployment,
            deployments=[state.config for state in self.deployments.values()], ready=ready,
            canaries=canaries, auth_required=self.config.auth_required, tokens=self.db.tokens(),
            gateway_processes=self.config.gateway.processes,
        )
        write_table(self.routes_path, table)
        self._published = key
        self._routed = frozenset((d, i, g) for d, i, g, *_ in ready)

    def _canary(self, name: str, dep: DeploymentState) -> CanaryRoute | None:
        new_ready = any(k == "replica" and d == name and m.revision == dep.revision
                        and m.slot.state == ProcState.READY for (k, d, _), m in self.managed.items())
        return canary_route(dep.revision, dep.previous_revision, dep.config.spec.rollout, new_ready, dep.baked)

    def _persist(self) -> None:
        """Write what changed since the last tick (an idle instance writes nothing)."""
        self._save_desired()
        rows = {}
        for key, m in self.managed.items():
            kind, deployment, id_ = key
            rows[key] = {
                "kind": kind, "deployment": deployment, "id": id_, "pid": m.proc.pid if m.proc else None,
                "state": m.slot.state.value, "generation": m.slot.generation, "endpoint": m.endpoint,
                "inflight": _calls(m.stats.get("inflight")), "requests": _calls(m.stats.get("requests")),
                "restarts": m.slot.restarts, "started_at": m.started_wall if m.proc else None,
                "last_error": m.slot.last_error,
                # gateways: the routing table version they serve with
                "routes_version": m.stats.get("table_version") if kind == "gateway" else None,
                "revision": m.revision,
                "node": getattr(m.proc, "node", None), "credential": credential_of(m.proc),
            }
        self.db.upsert_processes([row for key, row in rows.items() if self._persisted.get(key) != row])
        self._persisted = rows

    # --- shutdown ------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Gateways first (no new traffic), then replicas drain; SIGKILL what outlives grace."""
        self.record("controller", "controller", "stopping", "stopping all processes")
        self.stop_scaling()
        for kind in ("gateway", "replica"):
            group = [m for (k, _, _), m in self.managed.items() if k == kind and m.proc is not None]
            for m in group:
                m.proc.signal(signal.SIGTERM)  # type: ignore[union-attr]
            deadline = self.clock() + self.config.grace_s + 2.0
            for m in group:
                assert m.proc is not None
                code = await asyncio.to_thread(m.proc.wait, max(0.1, deadline - self.clock()))
                if code is None:
                    m.proc.kill()
                    await asyncio.to_thread(m.proc.wait, 5.0)
                    self.record(kind, m.slot.id, "killed", "did not stop within the grace period", m.deployment)
                self._forget_process(m)
                m.slot = Slot(m.slot.kind, m.slot.id, ProcState.STOPPED, m.slot.generation,
                              restarts=m.slot.restarts, last_error=m.slot.last_error)
        if self.collect_orphans:
            self._collect_orphans(stopping=True)
            await asyncio.to_thread(orphans.wait_reaped, 5.0)
        self._persist()
        self._guarded("controller", "controller", "", "release leftovers",
                      functools.partial(self.backend.release_others, set()))
        self._guarded("controller", "controller", "", "close backend", self.backend.close)
        if self.observer is not None:  # the last minute of history, which the per-minute tier has not yet
            self._guarded("controller", "controller", "", "save history", self.observer.close)
        if self.alerts is not None:
            self._guarded("controller", "controller", "", "close alerting", self.alerts.close)
        self.db.set_meta(status="stopped")
        private_dirs.remove_socket_dir(self.config.state_dir, self.socket_dir)
        self.record("controller", "controller", "stopped", "all processes stopped")


def _calls(value: object) -> int:
    """A count a process reported, made safe to store and compare (it may report anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return 0
    return int(max(0.0, min(float(value), 1e15)))
