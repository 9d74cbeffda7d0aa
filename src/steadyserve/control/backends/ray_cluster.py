"""The Ray backend: each replica a Ray actor on a cluster node, reached over TCP with its credential.

The controller is a Ray driver. Placement is decided here (``placement.place``: spread
over nodes, capacity respected) and pinned with a hard node affinity, so Ray's
scheduler reserves the replica's resources on the node we chose. Actors are detached
and named after this instance, the replica and its generation: a restarted controller
finds and adopts them, as it adopts local replica processes. Ray's own restarts are
off: a dead actor is a crashed replica, restarted by our supervisor with its backoff.

A replica's log is copied here (``logs/<deployment>-<id>.log``, so `steady logs`, log
search and alerts see it). Its metrics shard stays on its node: the gateways' metrics
(calls, latency, errors per replica) cover it, the replica's own handler metrics do not.

The controller's loop does not wait on the cluster in steady state: actor calls are issued
as Ray futures and looked at with ``ray.wait(timeout=0)`` on later ticks, and the node list
is refreshed on a thread. Adoption (at start) and cleaning up a gone replica wait a few
seconds at most.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..placement import NodeView, Placed, Unplaceable, place, replica_needs
from ..processes import NODE_LOST_EXIT
from ..spec import ResourceLimits
from . import ReplicaLaunch, Unschedulable
from .ray_host import ReplicaHost

log = logging.getLogger("steadyserve.ray")
SUSPECT_NODE_S = 10.0  # after losing an actor there, a node takes new replicas only if no other has room
NODES_REFRESH_S = 1.0
KILL_ESCALATION_S = 5.0
_CALL_TIMEOUT_S = 10.0  # a blocking call the controller makes outside its loop (adoption, shutdown)
_MAX_LOG_FILE_BYTES = 256 << 20


@dataclass(frozen=True)
class Placement:
    deployment: str
    revision: int
    node: str
    need: dict[str, float]


class PlacementError(Unschedulable):
    """No Ray node has room for the replica."""


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the address, when nothing answers there (``auto`` is left to Ray)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except ValueError as exc:
        raise ConfigError(f"Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto") from exc
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start it"
                          " (ray start --head) or pass its address with --ray-address / backend.address") from exc


def _ray() -> Any:
    # Ray's C++ core logs at INFO to the driver's stderr (the controller's console): only errors there.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("the Ray backend needs Ray: pip install 'steadyserve[ray]'") from exc
    return ray


class RayReplica:
    """A replica as the controller sees it through its actor. Methods never block on the cluster."""

    def __init__(self, backend: RayBackend, actor: Any, label: str, credential: str, node: str | None,
                 started: Any | None = None, pid: int | None = None, endpoint: str | None = None) -> None:
        self._backend = backend
        self._actor = actor
        self._label = label
        self._credential = credential
        self._node = node
        self._pid = pid or 0
        self._endpoint = endpoint
        self._started = started  # the pending start() call
        self._endpoint_call: Any | None = None
        self._exit_call: Any | None = None if started is not None else actor.wait_exit.remote()
        self._exit_code: int | None = None
        self._error: str | None = None
        self._log_call: Any | None = None
        self._log_offset = 0
        self._rss_call: Any | None = None
        self._rss: int | None = None
        self._kill_sent_at: float | None = None

    # --- what the controller reads ----------------------------------------------------
    @property
    def pid(self) -> int:
        return self._pid

    @property
    def endpoint(self) -> str | None:
        return self._endpoint

    @property
    def node(self) -> str | None:
        return self._node

    @property
    def credential(self) -> str | None:
        return self._credential

    def poll(self) -> int | None:
        self.sync()
        return self._exit_code

    def fatal_error(self) -> str | None:
        return self._error

    def resident_bytes(self) -> int | None:
        ray = _ray()
        if self._rss_call is not None and _ready(ray, self._rss_call):
            self._rss = _get(ray, self._rss_call, None)
            self._rss_call = None
        if self._rss_call is None and self._exit_code is None:
            self._rss_call = self._actor.resident_bytes.remote()
        return self._rss

    # --- moving along -------------------------------------------------------------------
    def sync(self) -> None:
        ray = _ray()
        if self._started is not None and _ready(ray, self._started):
            try:
                started = ray.get(self._started)
                self._pid, self._node = int(started["pid"]), str(started["node"])
                self._exit_call = self._actor.wait_exit.remote()
            except Exception as exc:  # noqa: BLE001 - the actor died or could not be created
                self._lost(f"its Ray actor did not start: {_why(exc)}")
            self._started = None
        if self._exit_call is not None and self._exit_code is None and _ready(ray, self._exit_call):
            try:
                self._exit_code = int(ray.get(self._exit_call))
                self._error = _get(ray, self._actor.fatal_error.remote(), None)
            except Exception as exc:  # noqa: BLE001
                self._lost(f"its Ray actor was lost: {_why(exc)}")
        if self._endpoint is None and self._exit_code is None and self._started is None:
            if self._endpoint_call is not None and _ready(ray, self._endpoint_call):
                self._endpoint = _get(ray, self._endpoint_call, None)
                self._endpoint_call = None
            if self._endpoint is None and self._endpoint_call is None:
                self._endpoint_call = self._actor.endpoint.remote()
        self._pull_log(ray)

    def _lost(self, why: str) -> None:
        self._exit_code, self._error = NODE_LOST_EXIT, why
        self._backend.node_lost(self._node)

    def _pull_log(self, ray: Any, wait_s: float = 0.0) -> None:
        """Copy what the replica wrote since the last pull into this instance's logs directory."""
        if self._log_call is not None:
            if not _ready(ray, self._log_call, wait_s):
                return
            data, offset = _get(ray, self._log_call, (b"", self._log_offset))
            self._log_call = None
            if data:
                self._backend.append_log(self._label, data)
                self._log_offset = offset
        if self._exit_code is None or (self._log_call is None and wait_s == 0.0):
            self._log_call = self._actor.pull_log.remote(self._log_offset)

    # --- acting ---------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        self._actor.signal.remote(sig)

    def kill(self) -> None:
        if self._started is not None or self._exit_call is None:  # never got going: the actor itself goes
            _ray().kill(self._actor, no_restart=True)
            if self._exit_code is None:
                self._exit_code, self._error = NODE_LOST_EXIT, (
                    "killed before its replica started (had Ray placed its actor? its node may lack room)")
            self._started = None
            return
        now = time.monotonic()
        if self._kill_sent_at is None:
            self._kill_sent_at = now
        elif now - self._kill_sent_at > KILL_ESCALATION_S and self._exit_code is None:
            # The actor does not run even its kill (a stopped or hung worker): Ray kills the actor.
            _ray().kill(self._actor, no_restart=True)
            self._exit_code, self._error = -9, f"its Ray actor did not act on a kill within {KILL_ESCALATION_S:g}s;" \
                " Ray killed the actor"
            return
        self._actor.kill.remote()

    def stop_leftovers(self) -> None:
        self._actor.cleanup.remote()

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        ray = _ray()
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            calls = [c for c in (self._exit_call, self._started) if c is not None]
            if calls:
                ray.wait(calls, timeout=min(left, 0.5))
            else:
                time.sleep(min(left, 0.05))
        return self._exit_code

    def forget(self) -> None:
        """Its last log lines, then its files and the actor itself."""
        ray = _ray()
        try:
            if self._exit_code != NODE_LOST_EXIT:
                self._log_call = self._log_call or self._actor.pull_log.remote(self._log_offset)
                self._pull_log(ray, wait_s=1.0)
                ray.get(self._actor.cleanup.remote(), timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - the actor may be gone with its node
            log.debug("%s: cleanup: %s", self._label, exc)
        ray.kill(self._actor, no_restart=True)
        self._backend.released(self._label)


class RayBackend:
    """Replicas as detached, named Ray actors placed by ``placement.place``."""

    kind = "ray"

    def __init__(self, address: str, namespace: str, instance: str, logs_dir: Path) -> None:
        ray = _ray()
        self.namespace = namespace
        self.logs_dir = logs_dir
        self.instance = instance  # tells this instance's actors from another's on a shared cluster
        if not ray.is_initialized():
            check_reachable(address)  # ray.init retries an unreachable address for good, deaf to Ctrl-C
            try:
                ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING,
                         configure_logging=False)
            except Exception as exc:  # noqa: BLE001 - Ray raises several kinds for an unreachable cluster
                raise ConfigError(f"cannot join the Ray cluster at {address}: {_why(exc)}; start it (ray start"
                                  " --head) or pass its address with --ray-address / backend.address") from exc
        self._actor_class = ray.remote(ReplicaHost)
        # The cluster's nodes, read on a thread of its own: a slow or stalled head never holds up the loop.
        self._nodes: list[dict[str, Any]] = ray.nodes()
        self._stop = threading.Event()
        threading.Thread(target=self._watch_nodes, name="ray-nodes", daemon=True).start()
        self._placed: dict[str, Placement] = {}  # by replica label
        self._suspects: dict[str, float] = {}  # node -> avoided until (monotonic)

    def actor_name(self, label: str, generation: int) -> str:
        return f"steady-{self.instance}-{label}-{generation}"

    def _watch_nodes(self) -> None:
        ray = _ray()
        while not self._stop.wait(NODES_REFRESH_S):
            try:
                self._nodes = ray.nodes()
            except Exception as exc:  # noqa: BLE001 - the head is away: keep the last view
                log.warning("reading the Ray cluster's nodes: %s", _why(exc))

    def nodes(self) -> list[NodeView]:
        used: dict[str, dict[str, float]] = {}
        for p in self._placed.values():
            for name, amount in p.need.items():
                used.setdefault(p.node, {})[name] = used.get(p.node, {}).get(name, 0.0) + amount
        return [NodeView(id=n["NodeID"], address=n.get("NodeManagerAddress", ""), alive=bool(n.get("Alive")),
                         total={k: float(v) for k, v in n.get("Resources", {}).items()}, used=used.get(n["NodeID"], {}))
                for n in self._nodes]

    def start(self, launch: ReplicaLaunch) -> RayReplica:
        _ray()  # a clear error if Ray is missing
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        decision, need = self._place(launch.deployment, launch.revision, launch.resources)
        if not isinstance(decision, Placed):
            raise PlacementError(decision.reason)
        credential = secrets.token_urlsafe(32)
        name = self.actor_name(launch.label, launch.generation)
        options: dict[str, Any] = {
            "name": name, "namespace": self.namespace, "lifetime": "detached", "max_restarts": 0,
            "max_concurrency": 8,  # wait_exit blocks a thread while other calls go on
            "num_cpus": need.get("CPU", 0.0), "num_gpus": need.get("GPU", 0.0),
            "resources": {k: v for k, v in need.items() if k not in ("CPU", "GPU", "memory")},
            "scheduling_strategy": NodeAffinitySchedulingStrategy(decision.node.id, soft=False),
        }
        if "memory" in need:
            options["memory"] = need["memory"]
        actor = self._actor_class.options(**options).remote()
        env = {**launch.env, "STEADY_REPLICA_KEY": credential}
        started = actor.start.remote(list(launch.args), env, dict(launch.secret_files))
        self._placed[launch.label] = Placement(launch.deployment, launch.revision, decision.node.id, need)
        log.info("%s: placed on node %s (%s)", launch.label, decision.node.id[:12], decision.reason)
        return RayReplica(self, actor, launch.label, credential, decision.node.id, started=started)

    def _place(self, deployment: str, revision: int, res: ResourceLimits) -> tuple[Placed | Unplaceable,
                                                                                   dict[str, float]]:
        self._release_gone()
        need = replica_needs(res.cpus, res.gpus, res.memory_mb, res.custom)
        mine = [p for p in self._placed.values() if p.deployment == deployment]
        decision = place(need, self.nodes(), Counter(p.node for p in mine if p.revision == revision),
                         Counter(p.node for p in mine if p.revision != revision), avoid=self._suspect_nodes())
        return decision, need

    def placement_problem(self, deployment: str, revision: int, resources: ResourceLimits) -> str | None:
        decision, _ = self._place(deployment, revision, resources)
        return None if isinstance(decision, Placed) else decision.reason

    def node_lost(self, node: str | None) -> None:
        """A replica there was lost with its actor: avoid the node a while (Ray may not know it is dead yet)."""
        if node:
            self._suspects[node] = time.monotonic() + SUSPECT_NODE_S

    def _suspect_nodes(self) -> frozenset[str]:
        now = time.monotonic()
        self._suspects = {node: until for node, until in self._suspects.items() if until > now}
        return frozenset(self._suspects)

    def _release_gone(self) -> None:
        """Forget placements on nodes that died: their resources are gone with them."""
        alive = {n.id for n in self.nodes() if n.alive}
        for label in [label for label, p in self._placed.items() if p.node not in alive]:
            del self._placed[label]

    def released(self, label: str) -> None:
        self._placed.pop(label, None)

    def adopt(self, row: Mapping[str, Any], resources: ResourceLimits) -> RayReplica | None:
        ray = _ray()
        label = f"{row['deployment']}-{row['id']}"
        if not row["credential"] or not row["endpoint"]:
            return None
        try:
            actor = ray.get_actor(self.actor_name(label, row["generation"]), namespace=self.namespace)
            if ray.get(actor.poll.remote(), timeout=_CALL_TIMEOUT_S) is not None:
                return None
        except Exception:  # noqa: BLE001 - gone, or its node is
            return None
        replica = RayReplica(self, actor, label, row["credential"], row["node"], pid=row["pid"],
                             endpoint=row["endpoint"])
        need = replica_needs(resources.cpus, resources.gpus, resources.memory_mb, resources.custom)
        self._placed[label] = Placement(row["deployment"], row["revision"] or 0, row["node"] or "", need)
        return replica

    def append_log(self, label: str, data: bytes) -> None:
        path = self.logs_dir / f"{label}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < _MAX_LOG_FILE_BYTES:
                os.write(fd, data)
        finally:
            os.close(fd)

    def release_others(self, keep: set[str]) -> None:
        """Kill this instance's actors that hold no replica in ``keep`` (labels): leftovers of a killed
        controller (a start it never saw finish, a replica that exited while it was down)."""
        ray = _ray()
        prefix = f"steady-{self.instance}-"
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry["name"] if isinstance(entry, dict) else str(entry)
            if entry.get("namespace", self.namespace) != self.namespace or not name.startswith(prefix):
                continue
            label = name[len(prefix):].rpartition("-")[0]
            if label in keep:
                continue
            try:
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
                log.warning("killed the leftover actor %s (no replica of this instance holds it)", name)
            except Exception as exc:  # noqa: BLE001 - gone meanwhile
                log.debug("leftover actor %s: %s", name, exc)

    def close(self) -> None:
        self._stop.set()


def _ready(ray: Any, call: Any, timeout_s: float = 0.0) -> bool:
    done, _ = ray.wait([call], timeout=timeout_s)
    return bool(done)


def _get(ray: Any, call: Any, default: Any) -> Any:
    try:
        return ray.get(call, timeout=_CALL_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - the actor is gone: what it would have said is lost with it
        return default


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
