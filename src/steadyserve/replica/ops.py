"""The replica's operations port: what a cluster's kubelet and Prometheus need, and nothing else.

A replica on a network answers calls only with its credential (credential.py). The
kubelet's probes and a Prometheus scrape carry none, so a pod serves them on a second
port: ``/livez`` and ``/readyz`` (a status code and one word: no counts, no handler
names, no error text) and ``/metrics`` (this replica's own counters). No handler is
reachable there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..wire.http11 import Request, json_response
from .app import ReplicaApp


def ops_handler(app: ReplicaApp) -> Callable[[Request], Awaitable[bytes]]:
    async def handle(request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            return json_response(405, {"error": "the operations port only answers GET"},
                                 extra_headers=b"allow: GET, HEAD\r\n")
        if request.path == b"/livez":
            alive = app.health_problem() is None
            return json_response(200 if alive else 503, {"status": "ok" if alive else "unhealthy"})
        if request.path == b"/readyz":
            return json_response(200 if app.serving else 503, {"ready": app.serving})
        if request.path == b"/metrics":
            return app.metrics_response()
        return json_response(404, {"error": "the operations port serves /livez, /readyz and /metrics"})

    return handle
