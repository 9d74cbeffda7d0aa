"""Client side of HTTP/1.1 to a replica: keep-alive connections and a pool.

Responses are collected as raw bytes so the gateway can forward them without
re-serialising; httptools only tells us where a message ends. Connection
errors are translated into the ``UpstreamError`` branch at this boundary.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools
import orjson

from ..errors import UpstreamDraining, UpstreamLost, UpstreamOverloaded, UpstreamTimeout, UpstreamUnreachable
from .endpoints import open_connection

CONNECT_TIMEOUT_S = 1.0  # a replica's socket answers at once or not at all
_NOT_RUN = {  # a replica's 503 that provably did not run the call
    b"x-steady-draining": UpstreamDraining("replica is draining"),
    b"x-steady-overloaded": UpstreamOverloaded("replica is at its concurrency limit"),
}


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    raw: bytes
    keep_alive: bool


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("_chunks", "_not_run", "_future", "_parser", "_timer", "closed", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self._future: asyncio.Future[UpstreamResponse] | None = None
        self._not_run: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamLost(f"connection closed before a full response ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamLost(f"malformed response from replica: {exc}"))
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        not_run = _NOT_RUN.get(name.lower())
        if not_run is not None:
            self._not_run = not_run

    def on_message_complete(self) -> None:
        future, self._future = self._future, None
        raw = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if future is None or future.done():
            return
        status = self._parser.get_status_code()
        if self._not_run is not None:
            future.set_exception(type(self._not_run)(_reason(raw) or str(self._not_run)))
            self._not_run = None
        else:
            future.set_result(UpstreamResponse(status, raw, self._parser.should_keep_alive()))

    def _fail(self, error: Exception) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_exception(error)

    def _on_timeout(self, timeout_s: float) -> None:
        self._timer = None
        self._fail(UpstreamTimeout(f"no response within {timeout_s:g}s"))
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes, timeout_s: float) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None and self._future is None
        loop = asyncio.get_running_loop()
        self._future = future = loop.create_future()
        self._chunks = []
        self._timer = loop.call_later(timeout_s, self._on_timeout, timeout_s)
        self.transport.write(data)
        return future


def _reason(raw: bytes) -> str | None:
    """The replica's own words for a refusal (``{"error": ...}``), for the caller's error message."""
    try:
        error = orjson.loads(raw.partition(b"\r\n\r\n")[2]).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return error if isinstance(error, str) else None


class UpstreamPool:
    """Idle keep-alive connections to one replica endpoint."""

    def __init__(self, endpoint: str, max_idle: int = 256) -> None:
        self.endpoint = endpoint
        self.max_idle = max_idle
        self._idle: list[UpstreamConnection] = []
        self._closed = False

    async def _acquire(self, timeout_s: float) -> UpstreamConnection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        connect_timeout_s = min(CONNECT_TIMEOUT_S, timeout_s)
        try:
            _, proto = await asyncio.wait_for(open_connection(self.endpoint, UpstreamConnection),
                                              connect_timeout_s)
        except TimeoutError as exc:
            raise UpstreamUnreachable(f"cannot connect to {self.endpoint} within {connect_timeout_s:g}s") from exc
        except OSError as exc:
            raise UpstreamUnreachable(f"cannot connect to {self.endpoint}: {exc.strerror or exc}") from exc
        return proto  # type: ignore[return-value]

    async def request(self, data: bytes, timeout_s: float) -> UpstreamResponse:
        if self._closed:  # the replica left the routing table after this call chose it
            raise UpstreamUnreachable(f"{self.endpoint} left the routing table")
        if self._idle and not self._idle[-1].closed:
            conn = self._idle.pop()  # the hot path: no connect, no clock
        else:
            loop = asyncio.get_running_loop()
            started = loop.time()
            conn = await self._acquire(timeout_s)
            timeout_s = max(0.001, timeout_s - (loop.time() - started))
        try:
            response = await conn.send(data, timeout_s)
        except BaseException:
            conn.abort()  # draining, timed out, cancelled: never reuse this connection
            raise
        if response.keep_alive and not conn.closed and not self._closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        elif not conn.closed:
            conn.abort()
        return response

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.abort()
        self._idle.clear()


async def get_json(endpoint: str, path: str, timeout_s: float) -> tuple[int, bytes]:
    """One-shot GET used by probes; returns status and body."""
    pool = UpstreamPool(endpoint, max_idle=0)
    request = f"GET {path} HTTP/1.1\r\nhost: steady\r\nconnection: close\r\n\r\n".encode()
    response = await pool.request(request, timeout_s)
    head, _, body = response.raw.partition(b"\r\n\r\n")
    return response.status, body
