"""Shared by the alerting tests: histories built by hand, and a real HTTP receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from steadyserve.metrics.history import History
from steadyserve.metrics.query import labels_of

REQUESTS = "steady_requests_total"
BUCKETS = "steady_request_duration_seconds_bucket"


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, labels_of(labels)


def steady_history(step_s: float, steps: int, per_step: Mapping[tuple[str, Any], float],
                   gauges: Mapping[tuple[str, Any], float] | None = None, start: float = 0.0) -> History:
    """Counters growing ``per_step[key]`` each step from 0 at ``start``, gauges constant."""
    history = History(step_s=step_s, memory_s=(steps + 2) * step_s)
    for i in range(steps + 1):
        values = {k: rate * i for k, rate in per_step.items()}
        values.update(gauges or {})
        history.add(start + i * step_s, values)
    return history


def calls(deployment: str = "d", ok_per_step: float = 0.0, bad_per_step: float = 0.0, handler: str = "predict",
          bad_code: str = "500") -> dict[tuple[str, Any], float]:
    labels = {"deployment": deployment, "revision": "1", "handler": handler}
    found = {}
    if ok_per_step:
        found[key(REQUESTS, **labels, code="200")] = ok_per_step
    if bad_per_step:
        found[key(REQUESTS, **labels, code=bad_code)] = bad_per_step
    return found


@dataclass
class Received:
    at: float  # time.monotonic()
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class Receiver:
    """What a webhook receiver got; it answers ``fail_status`` to the first ``fail_first`` posts."""

    url: str = ""
    fail_first: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    delay_s: float = 0.0
    attempts: list[Received] = field(default_factory=list)
    delivered: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.body for r in self.delivered]


@contextmanager
def receiver(**settings: Any) -> Iterator[Receiver]:
    state = Receiver(**settings)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            got = Received(time.monotonic(), self.path, json.loads(raw or b"null"), dict(self.headers.items()))
            with state.lock:
                state.attempts.append(got)
                failing = len(state.attempts) <= state.fail_first
                if not failing:
                    state.delivered.append(got)
            if state.delay_s:
                time.sleep(state.delay_s)  # a slow receiver (the test's server thread, not the test)
            self.send_response(state.fail_status if failing else 200)
            if failing and state.retry_after is not None:
                self.send_header("retry-after", state.retry_after)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
