"""``steady serve`` / ``steady up``: resolve settings once, run the controller in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from ..errors import ConfigError
from ..loading import parse_target
from . import orphans
from .api import build_api
from .backup import keep_snapshots
from .config import PlatformConfig
from .controller import ROUTES_FILE, Controller
from .launch import child_base_env
from .leftovers import is_controller_of, is_recorded_process, socket_dirs
from .log_collection import collect_logs
from .observing import Observer
from .processes import ProcessLauncher, pid_alive
from .sessions import Sessions
from .spec import AdmissionSettings, DeploymentSpec, GatewaySpec, PlatformSpec
from .statedb import DB_NAME, Event, StateDB
from .supervision import ProcState

CONTROL_SOCKET = "control.sock"  # in the private socket directory
LAST_LOG_PASS_S = 10.0  # at stop: storing the stopped processes' last lines may take this long
log = logging.getLogger(__name__)


def check_port(host: str, port: int) -> int:
    """Fail early with a clear message if the port is taken; resolve port 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the gateways do: lingering TIME_WAIT connections must not block a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use; pick another with --port") from exc
            raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
        return int(sock.getsockname()[1])


def live_controller_pid(meta: dict[str, str], state_dir: Path) -> int | None:
    """Another controller that the state DB's meta says is running, is alive, and works from
    ``state_dir`` (a DB restored from another instance names that instance's controller)."""
    pid = int(meta.get("controller_pid", "0") or 0)
    if meta.get("status") == "running" and pid and pid != os.getpid() and pid_alive(pid) \
            and is_controller_of(pid, state_dir):
        return pid
    return None


def check_state_dir_free(state_dir: Path) -> bool:
    """Whether a previous controller died while running here (then its state is recovered)."""
    if not StateDB.check(state_dir / DB_NAME):  # damaged or emptied: StateError, before ports are checked
        return False
    db = StateDB(state_dir / DB_NAME)
    try:
        meta = db.meta()
    finally:
        db.close()
    pid = live_controller_pid(meta, state_dir)
    if pid is not None:
        raise ConfigError(
            f"another steady controller (pid {pid}) is running with state dir {state_dir};"
            " stop it or pass a different --state-dir"
        )
    return meta.get("status") == "running"


def check_gateway_port(host: str, port: int, recovering: bool, state_dir: Path) -> int:
    """Like check_port, but a recovering controller's own surviving gateways may hold the port.

    Only they: a listener anyone else opened while the controller was down would receive the
    callers' requests and tokens, so recovery refuses to go on beside it.
    """
    try:
        return check_port(host, port)
    except ConfigError:
        if not recovering or port == 0:
            raise
    gateways = _recorded_gateways(state_dir)
    strangers = [pid for pid in listeners(port) if not _is_our_gateway(pid, gateways, state_dir)]
    if strangers:
        who = ", ".join("a process of another user" if pid is None else f"pid {pid}" for pid in strangers)
        raise ConfigError(f"port {port} is held by {who}, not by this instance's gateways; stop it"
                          " (it would receive callers' requests and tokens) or pick another --port")
    return port


def listeners(port: int) -> list[int | None]:
    """Pids listening on TCP ``port`` (None: a socket whose owner this user cannot see)."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    return [c.pid for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]


def _recorded_gateways(state_dir: Path) -> dict[int, str]:
    """pid -> endpoint of the gateways the state DB records."""
    db = StateDB(state_dir / DB_NAME)
    try:
        return {r["pid"]: r["endpoint"] for r in db.processes() if r["kind"] == "gateway" and r["pid"] and r["endpoint"]}
    finally:
        db.close()


def _is_our_gateway(pid: int | None, recorded: dict[int, str], state_dir: Path) -> bool:
    """A listener that is one of this instance's recorded gateways: its pid, its user, its command line."""
    if pid is None or pid not in recorded:
        return False
    resolved = state_dir.resolve()
    return any(is_recorded_process(pid, "gateway", recorded[pid], directory, resolved / ROUTES_FILE)
               for directory in socket_dirs(resolved))


def deployment_name(raw: str) -> str:
    """A valid deployment name from a directory or file name (``two_services`` -> ``two-services``)."""
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:40]
    if not name or not name[0].isalpha():
        name = f"svc-{name}"[:40].rstrip("-")
    return name


def serve_spec(target: str, *, replicas: int, policy: str, hash_key: str | None, timeout_s: float,
               max_body_bytes: int, batching: bool, host: str, port: int, gateways: int,
               tls_cert: Path | None = None, tls_key: Path | None = None, workers: int = 1,
               handler_timeout_s: float | None = None, max_ongoing: int | None = None, max_queued: int = 1024,
               queue_timeout_s: float = 2.0, adaptive: bool = False) -> tuple[str, PlatformSpec]:
    """The one-deployment spec that `steady serve PATH` stands for."""
    name = deployment_name(parse_target(target).name)
    admission = AdmissionSettings(max_ongoing_requests=max_ongoing, max_queued_requests=max_queued,
                                  queue_timeout_s=queue_timeout_s, adaptive=adaptive)
    deployment = DeploymentSpec(service=target, replicas=replicas, lb=policy, hash_key=hash_key,  # type: ignore[arg-type]
                                timeout_s=timeout_s, max_body_bytes=max_body_bytes, batching=batching,
                                workers=workers, handler_timeout_s=handler_timeout_s, admission=admission)
    gateway = GatewaySpec(host=host, port=port, processes=gateways, max_body_bytes=max_body_bytes,
                          tls_cert=tls_cert, tls_key=tls_key)
    return name, PlatformSpec(deployments={name: deployment}, gateway=gateway)


class _ApiServer(uvicorn.Server):
    """uvicorn inside the controller's loop; the controller owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def local_actor() -> str:
    """Who the audit log names for calls on the local control socket."""
    import getpass

    try:
        return f"local:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return f"local:uid{os.geteuid()}"


def _unix_listener(path: Path) -> socket.socket:
    """A listening socket only this user can connect to (0600, in a 0700 directory)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def run_platform(
    config: PlatformConfig,
    on_event: Callable[[Event], None],
    on_all_ready: Callable[[], None],
    recover: bool = False,
    secrets: dict[str, dict[str, str]] | None = None,
) -> None:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    db = StateDB(config.state_dir / DB_NAME)
    controller = Controller(config, db, ProcessLauncher(child_base_env(os.environ)), on_event=on_event,
                            collect_orphans=orphans.become_subreaper(), observer=Observer(config.state_dir))
    controller.prepare(recover=recover, secrets=secrets)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        announced = False

        def announce(event: Event) -> None:
            nonlocal announced
            on_event(event)
            if not announced and event.type == "ready" and all(
                m.slot.state == ProcState.READY for m in controller.managed.values()
            ):
                announced = True
                on_all_ready()

        controller.on_event = announce
        tls = config.gateway
        # Over TCP every call needs a token; the Unix socket in the private socket dir needs none.
        sessions = Sessions()  # dashboard logins: minted over either app, used over TCP
        tcp_app = build_api(controller, config.base_dir, sessions=sessions, secure_cookie=tls.tls_cert is not None)
        api = _ApiServer(uvicorn.Config(
            tcp_app, host=config.api_host, port=config.api_port,
            log_level="warning", lifespan="off", proxy_headers=False,  # the audit records the real peer
            ssl_certfile=str(tls.tls_cert) if tls.tls_cert else None,
            ssl_keyfile=str(tls.tls_key) if tls.tls_key else None))
        local_path = controller.socket_dir / CONTROL_SOCKET
        local = _ApiServer(uvicorn.Config(build_api(controller, config.base_dir, local_actor=local_actor(),
                                                    sessions=sessions), log_level="warning", lifespan="off",
                                          proxy_headers=False))
        local_socket = _unix_listener(local_path)
        db.set_meta(api_socket=str(local_path))
        api_tasks = [asyncio.create_task(api.serve()), asyncio.create_task(local.serve(sockets=[local_socket]))]
        if all(m.slot.state == ProcState.READY for m in controller.managed.values()):
            announced = True  # recovered with every process adopted ready: no `ready` event will come
            on_all_ready()
        snapshots = asyncio.create_task(keep_snapshots(
            db.path, config.snapshot_interval_s, config.snapshot_keep,
            lambda message: controller.record("controller", "state", "snapshot_failed", message)))
        stopped = asyncio.Event()  # every process has stopped: the log collector's last pass
        logs = asyncio.create_task(collect_logs(controller, stopped))
        try:
            await controller.run(stop)
        finally:
            stopped.set()
            try:
                await asyncio.wait_for(logs, LAST_LOG_PASS_S)
            except TimeoutError:
                log.warning("the last log collection pass did not finish within %gs", LAST_LOG_PASS_S)
            snapshots.cancel()
            api.should_exit = local.should_exit = True
            await asyncio.gather(*api_tasks)
            tcp_app.state.refusals.flush()  # refused calls of the last window, before the DB closes
            local_path.unlink(missing_ok=True)

    try:
        import uvloop

        uvloop.run(main())
    finally:
        db.close()
