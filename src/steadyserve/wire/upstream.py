"""Client side of HTTP/1.1 to a replica: keep-alive connections and a pool.

Responses are collected as raw bytes so the gateway can forward them without
re-serialising; httptools only tells us where a message ends. A chunked
response is a replica's stream: it is handed over as an ``UpstreamStream`` as
soon as its head has arrived, and its body passes through as it comes (see
``UpstreamStream``). Connection errors are translated into the
``UpstreamError`` branch at this boundary.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import httptools
import orjson

from ..errors import UpstreamDraining, UpstreamLost, UpstreamOverloaded, UpstreamTimeout, UpstreamUnreachable
from .endpoints import open_connection
from .http11 import REPLICA_KEY_HEADER, STREAM_ERROR_TRAILER

CONNECT_TIMEOUT_S = 1.0  # a replica's socket answers at once or not at all
_NOT_RUN = {  # a replica's 503 that provably did not run the call
    b"x-steady-draining": UpstreamDraining("replica is draining"),
    b"x-steady-overloaded": UpstreamOverloaded("replica is at its concurrency limit"),
}
_TRANSFER_ENCODING = b"transfer-encoding"
STREAM_HIGH_WATER_BYTES = 256 * 1024  # a stream's body held for a slow client: then the replica is read no more
STREAM_LOW_WATER_BYTES = 64 * 1024


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    raw: bytes
    keep_alive: bool


class UpstreamStream:
    """A replica's streamed response, read as it arrives.

    ``head`` is its status line and headers. ``read`` returns what has arrived since the last
    read: by default the raw chunked body, passed on as it is (the replica frames each item
    as one chunk); with ``dechunk`` the chunks' data only. A slow reader holds at most about
    ``STREAM_HIGH_WATER_BYTES``: past it the connection to the replica is read no more, so
    the replica's own send buffer fills and its generator waits (back-pressure).
    """

    __slots__ = ("_buffered", "_conn", "_done", "_error", "_paused", "_pieces", "_pool", "_released", "_waiter",
                 "at_boundary", "head", "status")

    def __init__(self, conn: UpstreamConnection, status: int, head: bytes) -> None:
        self._conn = conn
        self._pool: UpstreamPool | None = None
        self._released = False
        self.status = status
        self.head = head
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._done = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.at_boundary = True  # what arrived so far ends between two chunks

    # --- fed by the connection ---------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if data:
            self._pieces.append(data)
            self._buffered += len(data)
            if self._buffered > STREAM_HIGH_WATER_BYTES and not self._paused and self._conn.transport is not None:
                self._paused = True
                self._conn.transport.pause_reading()
        self._wake()

    def _end(self, error: Exception | None) -> None:
        if not self._done and self._error is None:
            if error is None:
                self._done = True
            else:
                self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- read by the gateway ---------------------------------------------------------
    async def read(self, timeout_s: float) -> bytes:
        """What arrived since the last read; ``b""`` once the response is complete.

        Raises ``UpstreamLost`` if the replica went away before the end, ``UpstreamTimeout``
        if nothing arrives within ``timeout_s``."""
        if not self._pieces and not self._done and self._error is None:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(max(0.0, timeout_s), self._wake)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._pieces and not self._done and self._error is None:
                raise UpstreamTimeout(f"nothing within {timeout_s:g}s")
        if self._pieces:
            data = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
            self._pieces.clear()
            self._buffered = 0
            if self._paused:
                self._paused = False
                if self._conn.transport is not None:
                    self._conn.transport.resume_reading()
            return data
        if self._error is not None:
            raise self._error
        return b""

    @property
    def chunks(self) -> int:
        """Chunks whose end has arrived (the last, empty one included once the stream is complete)."""
        return self._conn.chunks_done

    @property
    def failed(self) -> bool:
        """The replica ended it with the stream-error trailer: its handler failed after the first item."""
        return self._conn.stream_failed

    @property
    def complete(self) -> bool:
        return self._done and not self._pieces

    def release(self) -> None:
        """The gateway is done with it: the connection goes back to the pool if the stream ended
        cleanly, else it is closed (the replica sees the client leave and stops its generator)."""
        if self._released:  # once: a second release must not pool (or abort) the connection again
            return
        self._released = True
        conn, pool = self._conn, self._pool
        if self._done and pool is not None and conn.reusable and not pool.closed and len(pool._idle) < pool.max_idle:
            pool._idle.append(conn)
        else:
            conn.abort()


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("_chunks", "_dechunk", "_done_early", "_early_body", "_in_body", "_tail", "chunks_done", "stream_failed", "_not_run", "_future", "_in_chunk", "_parser", "_stream",
                 "_streaming", "_timer", "closed", "reusable", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self._future: asyncio.Future[UpstreamResponse | UpstreamStream] | None = None
        self._not_run: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._streaming = False  # the response being read is chunked: a stream
        self._stream: UpstreamStream | None = None
        self._dechunk = False
        self._in_chunk = False
        self._done_early = False  # a whole stream arrived in the read that brought its head
        self._early_body: list[bytes] = []  # dechunking: the body's data in the read that brought the head
        self.chunks_done = 0  # of the stream being read
        self._tail = b""  # the last two bytes of the stream so far
        self._in_body = False  # the response's head is complete: header fields now are trailers
        self.stream_failed = False  # the stream ended with the stream-error trailer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = UpstreamLost(f"connection closed before a full response ({exc or 'EOF'})")
        if self._stream is not None:
            self._stream._end(error)
        self._fail(error)

    def data_received(self, data: bytes) -> None:
        stream = self._stream
        if stream is None:
            self._chunks.append(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            error = UpstreamLost(f"malformed response from replica: {exc}")
            if self._stream is not None:
                self._stream._end(error)
            self._fail(error)
            self.abort()
            return
        if not self._streaming:
            return
        if stream is None:  # the head arrived in this read: hand the stream over
            stream = self._start_stream()
            if stream is None:
                return
        elif not self._dechunk:
            stream._feed(data)
        # Between chunks: no chunk open, and the last bytes so far end a chunk (not a part of a size line).
        self._tail = (self._tail + data)[-2:]
        stream.at_boundary = not self._in_chunk and self._tail == b"\r\n"

    def _start_stream(self) -> UpstreamStream | None:
        raw = b"".join(self._chunks)
        self._chunks = []
        end = raw.find(b"\r\n\r\n") + 4
        stream = UpstreamStream(self, self._parser.get_status_code(), raw[:end])
        self._stream = stream
        stream._feed(b"".join(self._early_body) if self._dechunk else raw[end:])
        self._early_body = []
        if self._timer is not None:  # it answered: from here the gateway times the stream itself
            self._timer.cancel()
            self._timer = None
        future, self._future = self._future, None
        if future is None or future.done():  # nobody waits for it (timed out, cancelled)
            self.abort()
            return None
        future.set_result(stream)
        if self._done_early:
            stream._end(None)
        return stream

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if self._in_body:  # a trailer field after a stream's chunks
            if lower == STREAM_ERROR_TRAILER:
                self.stream_failed = True
            return
        if lower == _TRANSFER_ENCODING:
            self._streaming = b"chunked" in value.lower()
            return
        not_run = _NOT_RUN.get(lower)
        if not_run is not None:
            self._not_run = not_run

    def on_headers_complete(self) -> None:
        self._in_body = True

    def on_chunk_header(self) -> None:
        self._in_chunk = True

    def on_body(self, body: bytes) -> None:
        if self._dechunk and self._streaming:
            if self._stream is not None:
                self._stream._feed(body)
            else:  # the read that brought the head: kept for the stream about to start
                self._early_body.append(body)

    def on_chunk_complete(self) -> None:
        self._in_chunk = False
        self.chunks_done += 1

    def on_message_complete(self) -> None:
        if self._streaming:  # it stays set until the next send: data_received still passes this read on
            self.reusable = self._parser.should_keep_alive()
            if self._stream is not None:
                self._stream._end(None)
            else:
                self._done_early = True
            return
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

    def send(self, data: bytes, timeout_s: float, dechunk: bool = False) -> asyncio.Future[UpstreamResponse | UpstreamStream]:
        assert self.transport is not None and self._future is None
        loop = asyncio.get_running_loop()
        self._future = future = loop.create_future()
        self._chunks = []
        self._dechunk = dechunk
        self._stream = None
        self._streaming = False
        self._done_early = False
        self.chunks_done = 0
        self._tail = b""
        self._in_body = False
        self.stream_failed = False
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

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(self, data: bytes, timeout_s: float, dechunk: bool = False) -> UpstreamResponse | UpstreamStream:
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
            response = await conn.send(data, timeout_s, dechunk)
        except BaseException:
            conn.abort()  # draining, timed out, cancelled: never reuse this connection
            raise
        if type(response) is UpstreamStream:
            response._pool = self  # the connection stays with the stream until it is released
            return response
        assert isinstance(response, UpstreamResponse)
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


async def get_json(endpoint: str, path: str, timeout_s: float, credential: str | None = None) -> tuple[int, bytes]:
    """One-shot GET used by probes; returns status and body."""
    pool = UpstreamPool(endpoint, max_idle=0)
    key = b"" if credential is None else REPLICA_KEY_HEADER + b": " + credential.encode("ascii") + b"\r\n"
    request = b"GET " + path.encode() + b" HTTP/1.1\r\nhost: steady\r\n" + key + b"connection: close\r\n\r\n"
    response = await pool.request(request, timeout_s)
    if isinstance(response, UpstreamStream):
        response.release()
        raise UpstreamLost(f"{path} answered with a stream")
    head, _, body = response.raw.partition(b"\r\n\r\n")
    return response.status, body
