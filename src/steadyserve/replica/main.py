"""Entry point of one replica process: ``python -m steadyserve.replica.main``.

Serves HTTP on its endpoint at once (so liveness probes answer during a long
``setup``), becomes ready after ``setup`` returns, drains on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from ..entry import every, run_process
from ..loading import load_service_class, parse_target
from ..service import handler_specs
from ..wire.endpoints import create_server, listening_endpoint, write_endpoint_file
from ..wire.limits import ServerLimits
from ..wire.server import HttpServer
from .app import ReplicaApp
from .credential import require_key, take_key
from .metrics import ReplicaMetrics
from .ops import ops_handler
from .workers import WorkerPool

EXIT_SETUP_FAILED = 3
METRICS_FLUSH_S = 0.5  # how stale the gateway's /metrics may be about this replica
log = logging.getLogger("steadyserve.replica")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="steadyserve.replica")
    p.add_argument("--target", required=True, help="PATH[:Class] of the service")
    p.add_argument("--id", required=True, help="replica id, e.g. r0")
    p.add_argument("--endpoint", required=True, help="unix:/path.sock or tcp:host:port")
    p.add_argument("--error-file", type=Path, help="where to write a fatal error as JSON")
    p.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    p.add_argument("--grace-s", type=float, default=10.0, help="drain grace period on SIGTERM")
    p.add_argument("--drain-linger-s", type=float, default=0.5,
                   help="keep open connections answering 503 this long after SIGTERM")
    p.add_argument("--no-batching", action="store_true", help="run batched handlers one call at a time")
    p.add_argument("--deployment", help="deployment name (default: the service's name)")
    p.add_argument("--workers", type=int, default=1, help="threads running sync handlers")
    p.add_argument("--handler-timeout-s", type=float, default=30.0, help="one handler call at most")
    p.add_argument("--stuck-grace-s", type=float, default=5.0,
                   help="a call still running this long past its timeout makes the replica ask to be replaced")
    p.add_argument("--max-ongoing", type=int, help="calls this replica works on at once; beyond: 503")
    p.add_argument("--memory-mb", type=int,
                   help="resident memory limit; enforced by the controller (it replaces the replica), not here")
    p.add_argument("--address-space-mb", type=int, help="opt-in backstop: address-space limit (RLIMIT_AS)")
    p.add_argument("--cpu-share", type=float, help="1 = normal CPU priority; lower runs nicer")
    p.add_argument("--revision", default="0", help="the deployment revision this replica runs (a metrics label)")
    p.add_argument("--metrics-dir", type=Path, help="where to write this process's metrics shard")
    p.add_argument("--ops-port", type=int,
                   help="also serve /livez, /readyz and /metrics (no handlers, no credential) on this TCP port")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit at once when the process that started it is gone (a replica under a Ray actor)")
    p.add_argument("--endpoint-file", type=Path,
                   help="write the endpoint it listens on here (tcp:HOST:0 picks a free port)")
    return p.parse_args(argv)


def _apply_limits(args: argparse.Namespace) -> None:
    """Resource limits, set before any user code runs."""
    # No RLIMIT_AS for --memory-mb: libraries that reserve large virtual ranges (torch, onnxruntime)
    # would fail with resident memory far below it. The address-space cap is opt-in only.
    if args.address_space_mb is not None:
        limit = args.address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if args.cpu_share is not None:
        os.nice(round((1.0 - args.cpu_share) * 19))


_MAX_ERROR_CHARS = 16_000


def exit_with_parent(interval_s: float = 0.5) -> None:
    """Watch, on a thread of its own (a busy loop must not delay it), for the parent to go."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:  # re-parented: the actor, or its node, is gone
                if os.getpgid(0) == os.getpid():  # its own group: what it forked goes too
                    os.killpg(os.getpid(), signal.SIGKILL)
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _fatal(args: argparse.Namespace, phase: str, exc: BaseException) -> int:
    message = f"{phase} failed: {type(exc).__name__}: {exc}"
    log.error("%s\n%s", message, "".join(traceback.format_exception(exc)))
    if args.error_file is not None:  # the whole message is in the log above; the controller reads the start
        args.error_file.write_text(json.dumps({"phase": phase, "error": message[:_MAX_ERROR_CHARS]}))
    print(f"steady: fatal: {message}", file=sys.stderr, flush=True)
    return EXIT_SETUP_FAILED


async def _serve(args: argparse.Namespace) -> int:
    target = parse_target(args.target)
    name = args.deployment or target.name
    try:
        key = take_key(os.environ)  # before any user code runs: it never sees the credential
        if args.exit_with_parent:
            exit_with_parent()
        _apply_limits(args)
        cls = load_service_class(target)
        specs = handler_specs(cls)
        service = cls()
    except Exception as exc:
        return _fatal(args, "import", exc)
    workers = WorkerPool(max(1, args.workers))
    app = ReplicaApp(
        service, specs, replica_id=args.id, service_name=name, workers=workers,
        metrics=ReplicaMetrics(name, args.revision, args.metrics_dir), batching=not args.no_batching,
        handler_timeout_s=args.handler_timeout_s, stuck_grace_s=args.stuck_grace_s, max_ongoing=args.max_ongoing,
    )
    # No idle timeout: closing a pooled gateway connection could race its reuse and fail a call.
    http = HttpServer(app.handle if key is None else require_key(app.handle, key),
                      ServerLimits(max_body_bytes=args.max_body_bytes, keepalive_timeout_s=float("inf")))
    server = await create_server(args.endpoint, http.protocol_factory)
    endpoint = listening_endpoint(args.endpoint, server)
    if args.ops_port is not None:  # a pod's probes and scrapes; closed with the process
        host = args.endpoint.partition(":")[2].rpartition(":")[0] if args.endpoint.startswith("tcp:") else "127.0.0.1"
        ops = HttpServer(ops_handler(app), ServerLimits(max_body_bytes=1024))
        await create_server(f"tcp:{host}:{args.ops_port}", ops.protocol_factory)
    if args.endpoint_file is not None:
        write_endpoint_file(args.endpoint_file, endpoint)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("replica %s listening on %s; running setup()", args.id, endpoint)
    setup: asyncio.Future[None] = loop.run_in_executor(workers.executor, service.setup)
    stop_wait: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    await asyncio.wait([setup, stop_wait], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
    if not setup.done():  # stopped during setup: nothing to drain
        server.close()
        return 0
    if setup.exception() is not None:
        server.close()
        return _fatal(args, "setup", setup.exception())  # type: ignore[arg-type]
    app.start_batchers()
    watchdog = loop.create_task(app.watch())
    flusher = loop.create_task(every(METRICS_FLUSH_S, lambda: app.metrics.flush(app.inflight)))
    app.ready = True
    log.info("replica %s ready (handlers: %s)", args.id, ", ".join(specs))
    await stop_wait
    await _drain(app, http, server, args.grace_s, args.drain_linger_s)
    watchdog.cancel()
    flusher.cancel()
    app.metrics.flush(app.inflight)
    workers.shutdown()
    busy = workers.running()
    if busy:  # a thread stuck in user code would keep the interpreter from exiting
        log.warning("replica %s exiting with %d workers still in handlers (%s)", app.replica_id, len(busy),
                    ", ".join(sorted({c.handler for c in busy})))
        logging.shutdown()
        os._exit(0)
    return 0


async def _drain(app: ReplicaApp, http: HttpServer, server: asyncio.AbstractServer, grace_s: float,
                 linger_s: float) -> None:
    """Stop accepting, answer new requests with 503 (retryable), finish in-flight ones.

    Open keep-alive connections stay up for ``linger_s`` answering 503 draining:
    a gateway that has not yet re-read its routing table gets an answer that
    provably did not run (safe to retry even for non-idempotent handlers)
    instead of a connection closed under a request it may have just sent.
    """
    log.info("replica %s draining: %d in flight", app.replica_id, app.inflight)
    app.draining = True
    server.close()
    loop = asyncio.get_running_loop()
    linger_until = loop.time() + min(linger_s, grace_s)
    try:
        await asyncio.wait_for(app.wait_idle(), grace_s)
    except TimeoutError:
        log.warning("replica %s: grace period over with %d requests in flight", app.replica_id, app.inflight)
    if loop.time() < linger_until:
        await asyncio.sleep(linger_until - loop.time())
    await asyncio.sleep(0)  # let the last responses reach their transports
    http.close_all_connections()
    log.info("replica %s stopped", app.replica_id)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    identity = {"deployment": args.deployment or parse_target(args.target).name, "revision": args.revision,
                "replica": args.id}
    return run_process(identity, _serve(args), args.endpoint)


if __name__ == "__main__":
    sys.exit(main())
