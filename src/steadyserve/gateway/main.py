"""Entry point of one gateway process: ``python -m steadyserve.gateway.main``.

Several of these share the public port (SO_REUSEPORT); each also answers probes
on its own admin endpoint and follows the routing table file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

from ..entry import every, run_process
from ..wire.endpoints import create_server
from ..wire.http11 import Request, json_response
from ..wire.limits import ServerLimits, add_limit_flags, limits_from_flags
from ..wire.server import HttpServer
from .access_log import FLUSH_S as ACCESS_FLUSH_S
from .access_log import AccessLog
from .discovery import ControllerSource, DnsSource, RouteSource
from .metrics import GatewayMetrics
from .proxy import Gateway
from .ratelimit import LocalLimiter, RateLimiter
from .refusals import STATUS_NAMES
from .routes import TableFile
from .sharedcells import Counters, LocalCounters, SharedCounters, SharedLimiter

log = logging.getLogger("steadyserve.gateway")
TABLE_POLL_S = 0.1
REFUSAL_WINDOW_S = 5.0  # refused calls are counted per key over this long, then reported
METRICS_FLUSH_S = 0.5  # how stale another gateway's /metrics may be about this process


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="steadyserve.gateway")
    p.add_argument("--id", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--routes", type=Path, help="routing table file (with --discovery dns: the table's template)")
    p.add_argument("--discovery", choices=("file", "controller", "dns"), default="file",
                   help="where replicas are learnt: the --routes file, the control API, or DNS (Kubernetes)")
    p.add_argument("--controller-url", help="with --discovery controller: the control API (token in STEADY_TOKEN)")
    p.add_argument("--replica-port", type=int, default=8000, help="with --discovery dns: the replicas' port")
    p.add_argument("--dns-suffix", default="-replicas",
                   help="with --discovery dns: deployment NAME's replicas are the addresses of NAME+suffix")
    p.add_argument("--dns-interval-s", type=float, default=2.0, help="with --discovery dns: resolve this often")
    p.add_argument("--tokens-file", type=Path,
                   help="with --discovery dns: the tokens callers may use ({id: {name, role, digest}}, digests only)")
    p.add_argument("--admin-endpoint", required=True, help="unix:/path.sock for probes")
    p.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    add_limit_flags(p)  # --max-url-bytes, --header-timeout-s, --max-connections, ...
    p.add_argument("--grace-s", type=float, default=10.0)
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--rate-limits", type=Path,
                   help="file of token rate-limit cells shared by the gateway processes (else per process)")
    p.add_argument("--metrics-dir", type=Path,
                   help="directory of every process's metrics shard: /metrics answers for all of them")
    p.add_argument("--refusal-counts", type=Path,
                   help="this slot's refusal counters, kept across restarts (else in memory)")
    return p.parse_args(argv)


def _public_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def route_source(args: argparse.Namespace) -> RouteSource:
    """The source ``--discovery`` names (see discovery.py)."""
    if args.discovery == "controller":
        if not args.controller_url:
            raise SystemExit("--discovery controller needs --controller-url")
        source: ControllerSource | DnsSource = ControllerSource(args.controller_url, os.environ.get("STEADY_TOKEN"))
        source.start()
        return source
    if args.routes is None:
        raise SystemExit(f"--discovery {args.discovery} needs --routes FILE")
    if args.discovery == "dns":
        source = DnsSource(TableFile(args.routes), args.replica_port, lambda name: name + args.dns_suffix,
                           interval_s=args.dns_interval_s, tokens_file=args.tokens_file)
        source.start()
        return source
    return TableFile(args.routes)


async def _follow_table(gateway: Gateway, table_file: RouteSource) -> None:
    while True:
        table = table_file.poll()
        if table is not None:
            gateway.apply_table(table)
            log.info("routing table v%d: %s", table.version, gateway.stats()["replicas"])
        await asyncio.sleep(TABLE_POLL_S)


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    table_file = route_source(args)
    limiter: RateLimiter = SharedLimiter(args.rate_limits) if args.rate_limits else LocalLimiter()
    counts: Counters = (SharedCounters(args.refusal_counts, STATUS_NAMES) if args.refusal_counts
                        else LocalCounters(STATUS_NAMES))

    def refresh() -> bool:
        table = table_file.poll()
        if table is not None:
            gateway.apply_table(table)
        return table is not None

    gateway = Gateway(args.id, refresh=refresh, limiter=limiter, refusal_counts=counts,
                      metrics=GatewayMetrics(args.metrics_dir), access=AccessLog(args.id))
    initial = table_file.poll()
    if initial is not None:
        gateway.apply_table(initial)
    follower = loop.create_task(_follow_table(gateway, table_file))
    # What this process counted, refused and logged leaves it in batches, off the calls' path.
    roller = loop.create_task(every(REFUSAL_WINDOW_S / 10, lambda: gateway.roll_refusals(REFUSAL_WINDOW_S)))
    flusher = loop.create_task(every(METRICS_FLUSH_S, lambda: gateway.metrics.flush(gateway.services)))
    access_flusher = loop.create_task(every(ACCESS_FLUSH_S, gateway.access.flush))

    public = HttpServer(gateway.handle, limits_from_flags(args))
    tls = None
    if args.tls_cert is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = await loop.create_server(public.protocol_factory, sock=_public_socket(args.host, args.port), ssl=tls)

    async def admin_app(request: Request) -> bytes:
        if request.path == b"/healthz":
            return json_response(200, {"status": "ok", **gateway.stats()})
        return json_response(404, {"error": "admin endpoint serves /healthz only"})

    admin = HttpServer(admin_app, ServerLimits(max_body_bytes=64 * 1024))
    admin_server = await create_server(args.admin_endpoint, admin.protocol_factory)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("gateway %s serving http://%s:%d", args.id, args.host, args.port)
    await stop.wait()
    log.info("gateway %s draining: %d in flight", args.id, gateway.inflight)
    server.close()
    public.close_idle_connections()
    deadline = loop.time() + args.grace_s
    while gateway.inflight and loop.time() < deadline:
        await asyncio.sleep(0.02)
    public.close_all_connections()
    admin_server.close()
    follower.cancel()
    table_file.close()
    roller.cancel()
    flusher.cancel()
    access_flusher.cancel()
    gateway.metrics.flush(gateway.services)
    gateway.access.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    return run_process({"gateway": args.id}, _serve(args), args.admin_endpoint)


if __name__ == "__main__":
    sys.exit(main())
