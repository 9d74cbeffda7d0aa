"""An asyncio HTTP/1.1 server protocol on httptools, kept lean for the hot path.

The application is ``async (Request) -> bytes | StreamReply``: a complete response,
or one sent piece by piece as it is produced, waiting for a slow reader between
pieces. Requests on one connection are answered in order (pipelining-safe).

Every limit in ``ServerLimits`` holds while bytes arrive, so no client can make a
process buffer or wait without bound. Sizes are counted in the parser callbacks
and per read; each connection has one deadline (a float) that a single sweep per
server expires every ``SWEEP_INTERVAL_S``: no timer per request on the hot path.
Answers the server gives itself (400, 408, 413, 414, 431, 500, 503) are JSON and
carry ``x-request-id``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httptools

from ..types import Headers
from .http11 import Reply, Request, StreamAborted, StreamReply, json_response, valid_request_id
from .limits import ServerLimits

App = Callable[[Request], Awaitable[Reply]]
log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 1.0  # deadlines fire up to this late
LINGER_S = 2.0  # after an error answer, drop what the client still sends so it can read the answer
_MAX_PIPELINED = 64
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NEVER = math.inf
_IDLE, _HEAD, _BODY = 0, 1, 2  # where the parser is in the current request


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the answer is in ``_error_reply``."""


def _request_id(headers: Headers) -> bytes:
    for name, value in headers:
        if name == b"x-request-id" and valid_request_id(value):
            return value
    return uuid.uuid4().hex.encode()


def _error(status: int, message: str, headers: Headers, *, keep_alive: bool = False, extra: bytes = b"",
           **details: Any) -> bytes:
    request_id = _request_id(headers)
    return json_response(status, {"error": message, "request_id": request_id.decode(), **details},
                         extra_headers=b"x-request-id: " + request_id + b"\r\n" + extra, keep_alive=keep_alive)


def _without_body(reply: bytes) -> bytes:
    """The answer to a HEAD: status line and headers (content-length included) of the GET answer."""
    end = reply.find(b"\r\n\r\n")
    return reply if end < 0 else reply[: end + 4]


class HttpServerProtocol(asyncio.Protocol):
    __slots__ = (
        "_app",
        "_serving",
        "_armed",
        "_body",
        "_body_len",
        "_busy",
        "_clock",
        "_connections",
        "_continue_waiting",
        "_deadline",
        "_discarding",
        "_drain_waiter",
        "_error_reply",
        "_final_reply",
        "_headers",
        "_limits",
        "_lingering",
        "_loop",
        "_max_body_bytes",
        "_max_header_bytes",
        "_max_headers",
        "_max_overhead",
        "_max_url_bytes",
        "_overhead",
        "_parser",
        "_peer",
        "_pending",
        "_phase",
        "_read_len",
        "_reading_paused",
        "_server",
        "_transport",
        "_url",
        "_write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._limits = server.limits
        self._clock = server.clock
        self._connections = server.connections
        limits = server.limits
        self._max_url_bytes = limits.max_url_bytes  # the callbacks' limits, one attribute away
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._max_body_bytes = limits.max_body_bytes
        self._max_overhead = limits.max_head_raw_bytes
        self._loop = asyncio.get_event_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._peer = ""
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_len = 0
        self._read_len = 0
        self._overhead = 0  # non-body bytes of the request arriving; -1: it began in the current read
        self._phase = _IDLE
        self._armed = _IDLE  # the phase of the current request that _deadline was set for
        self._deadline = _NEVER  # monotonic time at which the sweep calls expire()
        self._pending: deque[Request] = deque()
        self._busy = False  # a _serve task owns the connection's responses
        self._serving: asyncio.Task[None] | None = None
        self._discarding = False  # refused: what still arrives is dropped
        self._lingering = False  # error answer written, write side shut: waiting for the client to go
        self._error_reply: bytes | None = None
        self._final_reply: bytes | None = None  # an error answer waiting for the responses before it
        self._write_paused = False
        self._reading_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._continue_waiting = False

    # --- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = stream = cast(asyncio.Transport, transport)
        peer = stream.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local"
        if len(self._connections) >= self._limits.max_connections:
            self._server.refused_connections += 1
            self._discarding = True
            limit = self._limits.max_connections
            stream.write(_error(503, f"too many open connections (limit {limit})", [],
                                extra=b"retry-after: 1\r\n"))
            stream.close()
            return
        self._connections.add(self)
        self._deadline = self._clock() + self._limits.header_timeout_s  # a new connection sends at once

    def connection_lost(self, exc: Exception | None) -> None:
        if self._serving is not None and not self._serving.done():
            # The caller is gone: stop its call, so the gateway gives up its upstream attempt
            # and a replica never starts (or batches) work whose answer nobody will read.
            self._serving.cancel()
        self._connections.discard(self)
        self._pending.clear()
        self._deadline = _NEVER
        self._wake_writer()

    def pause_writing(self) -> None:
        """The client reads slower than we answer: read no more from it, start no next request."""
        self._write_paused = True
        self._update_reading()
        self._rearm()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()
        self._rearm()
        self._wake_writer()

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        body_before = self._body_len
        self._read_len = len(data)
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools raises its own error family; our callbacks raise _Refused
            cause = exc.__context__
            if cause is not None and not isinstance(cause, _Refused):
                log.error("HTTP parser callback failed", exc_info=cause)
            self._refuse(self._error_reply or _error(400, f"malformed HTTP request: {exc}", self._headers))
            return
        if self._phase != _IDLE:  # a request is still arriving after this read (not the common case)
            if self._armed != self._phase:  # its header (or body) time starts now
                self._armed = self._phase
                self._deadline = self._clock() + (self._limits.header_timeout_s if self._phase == _HEAD
                                                  else self._limits.body_timeout_s)
            # httptools buffers a header until it is complete and only then calls on_header, so a
            # header still arriving is bounded here, per read: every non-body byte counts.
            if self._overhead < 0:
                self._overhead = 0  # it began in this read: its share is unknown (at most one read)
            else:
                self._overhead += len(data) - (self._body_len - body_before)
            if self._overhead > self._max_overhead + (self._body_len >> 3):  # chunk framing: 1/8 of body
                limit = self._max_header_bytes
                self._refuse(self._url_too_long() if len(self._url) > self._max_url_bytes else
                             _error(431, f"request header section over {limit} bytes"
                                    if self._phase == _HEAD else "request trailers or chunk framing too large",
                                    self._headers, limit_bytes=limit))
            elif len(self._headers) > self._max_headers:
                self._refuse(self._too_many_headers())

    # --- httptools callbacks ---------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._body_len = 0
        self._overhead = -1
        self._phase = _HEAD
        self._armed = _IDLE  # a request that arrives in one read never needs a deadline

    def on_url(self, url: bytes) -> None:
        self._url += url  # called per read while the target arrives: checked as it grows
        if len(self._url) > self._max_url_bytes:
            # Kept one byte over the limit (so it stays marked) and answered 414 once the headers,
            # with their x-request-id, are in; the raw byte count bounds what arrives meanwhile.
            self._url = self._url[: self._max_url_bytes + 1]

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted per read and once complete, not here: this runs for every header of every request.
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        if len(self._url) > self._max_url_bytes:
            self._fail(self._url_too_long())
        if len(self._headers) > self._max_headers:
            self._fail(self._too_many_headers())
        if self._overhead >= 0 or self._read_len > self._max_header_bytes:  # else the read bounds them
            self._check_header_bytes()
        expect = None
        for name, value in self._headers:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0  # httptools rejects it itself
                if size > self._max_body_bytes:
                    self._too_large(size)
            elif name == b"expect":
                expect = value
        if expect is not None:
            self._expect(expect)

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > self._max_body_bytes:
            self._too_large(self._body_len)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._phase = _IDLE  # a deadline left from its arrival expires harmlessly while it is served
        self._continue_waiting = False
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        method = self._parser.get_method()
        head = method == b"HEAD"
        request = Request(
            b"GET" if head else method, self._url, self._headers, body,
            self._parser.should_keep_alive(), self._peer, head, self._parser.get_http_version() == "1.1",
        )
        if self._busy:
            self._pending.append(request)
            if len(self._pending) > _MAX_PIPELINED:
                self._update_reading()
            return
        self._busy = True
        self._serving = self._loop.create_task(self._serve(request))

    def _expect(self, value: bytes) -> None:
        # Answered here, so never passed on: a proxy must not forward it (RFC 9110 §10.1.1).
        self._headers = [h for h in self._headers if h[0] != b"expect"]
        if value.lower() != b"100-continue" or self._parser.get_http_version() != "1.1":
            return  # no other expectation is defined; an HTTP/1.0 client cannot read a 1xx
        if self._busy:
            self._continue_waiting = True  # after the responses to the requests before it
        elif self._transport is not None:
            self._transport.write(_CONTINUE)

    def _url_too_long(self) -> bytes:
        limit = self._max_url_bytes
        return _error(414, f"request target over {limit} bytes", self._headers, limit_bytes=limit)

    def _too_many_headers(self) -> bytes:
        limit = self._max_headers
        return _error(431, f"more than {limit} request header fields", self._headers, limit_headers=limit)

    def _check_header_bytes(self) -> None:
        if sum(len(name) + len(value) for name, value in self._headers) > self._max_header_bytes:
            limit = self._max_header_bytes
            self._fail(_error(431, f"request header fields over {limit} bytes (names and values)",
                              self._headers, limit_bytes=limit))

    def _too_large(self, size: int) -> None:
        limit = self._max_body_bytes
        self._fail(_error(413, f"request body is {size} bytes; the limit is {limit} bytes", self._headers,
                          limit_bytes=limit))

    def _fail(self, reply: bytes) -> None:
        self._error_reply = reply
        raise _Refused()

    # --- serving -------------------------------------------------------------
    async def _serve(self, request: Request) -> None:
        transport = self._transport
        assert transport is not None
        while True:
            if self._write_paused:  # the client is not reading: the next response waits
                self._drain_waiter = self._loop.create_future()
                await self._drain_waiter
                if transport.is_closing():
                    return
            try:
                reply = await self._app(request)
            except Exception:
                log.exception("unhandled error while serving %r", request.url)
                reply = _error(500, "internal server error", request.headers, keep_alive=True)
            if type(reply) is not bytes:
                assert isinstance(reply, StreamReply)
                if not await self._stream(reply, request.head) or reply.close_after:
                    if not transport.is_closing():
                        self._discarding = True
                        transport.close()
                    return
            elif transport.is_closing():
                return
            else:
                transport.write(_without_body(reply) if request.head else reply)
            if not request.keep_alive:
                self._discarding = True
                transport.close()
                return
            if not self._pending:
                self._busy = False
                self._responses_done()
                return
            request = self._pending.popleft()
            if self._reading_paused and len(self._pending) == _MAX_PIPELINED:
                self._update_reading()

    async def _stream(self, reply: StreamReply, head_only: bool) -> bool:
        """Send a streamed response, waiting while the client reads slower than it is produced.
        False: it did not end as a whole response (the client left, or ``pieces`` failed)."""
        transport = self._transport
        assert transport is not None
        pieces = reply.pieces
        try:
            if transport.is_closing():
                return False
            if head_only:
                transport.write(reply.head)
                return True
            try:  # the head goes out with the first piece: one write (a stream's first piece is ready)
                first = await pieces.__anext__()
            except StopAsyncIteration:
                first = b""
            if transport.is_closing():
                return False
            transport.write(reply.head + first)
            async for piece in pieces:
                if transport.is_closing():
                    return False
                transport.write(piece)
                if self._write_paused:  # the buffer is over its high-water mark: stop pulling pieces
                    self._drain_waiter = self._loop.create_future()
                    await self._drain_waiter
            return not transport.is_closing()
        except StreamAborted:
            _reset(transport)  # cut short, so the client cannot take it for a whole body
            return False
        except Exception:
            log.exception("streamed response failed")
            _reset(transport)
            return False
        finally:
            await pieces.aclose()

    def _responses_done(self) -> None:
        if self._final_reply is not None:
            self._answer_and_close(self._final_reply)
        elif self._continue_waiting:
            self._continue_waiting = False
            assert self._transport is not None
            self._transport.write(_CONTINUE)
        elif self._phase == _IDLE and not self._write_paused:
            self._deadline = self._clock() + self._limits.keepalive_timeout_s

    def _refuse(self, reply: bytes) -> None:
        """Answer with an error and close, after the responses to earlier pipelined requests."""
        self._discarding = True
        self._headers, self._body = [], []  # what the refused request held goes now
        if self._busy:
            self._final_reply = reply
            self._deadline = _NEVER
        else:
            self._answer_and_close(reply)

    def _answer_and_close(self, reply: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._url and self._parser.get_method() == b"HEAD":
            reply = _without_body(reply)
        transport.write(reply)
        if not transport.can_write_eof():  # TLS: its close is orderly
            transport.close()
            return
        # Closing with unread request bytes would send a reset that can destroy the answer
        # before the client reads it: shut our side and drop its bytes for a while instead.
        transport.write_eof()
        self._lingering = True
        self._update_reading()
        self._rearm()

    def _update_reading(self) -> None:
        pause = self._write_paused or len(self._pending) > _MAX_PIPELINED
        if pause == self._reading_paused or self._transport is None:
            return
        self._reading_paused = pause
        if pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()
        self._rearm()

    def _rearm(self) -> None:
        """The deadline for the connection's state after a pause or resume (off the hot path)."""
        limits, now = self._limits, self._clock()
        if self._write_paused:
            self._deadline = now + limits.send_timeout_s
        elif self._lingering:
            self._deadline = now + LINGER_S
        elif self._reading_paused or self._discarding:
            self._deadline = _NEVER  # we stopped reading; the client is not late
        elif self._phase == _HEAD:
            self._armed, self._deadline = _HEAD, now + limits.header_timeout_s
        elif self._phase == _BODY:
            self._armed, self._deadline = _BODY, now + limits.body_timeout_s
        elif self._busy:
            self._deadline = _NEVER
        else:
            self._deadline = now + limits.keepalive_timeout_s

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self, now: float) -> None:
        """The deadline passed: answer 408, or close. Called by the sweep."""
        transport = self._transport
        self._deadline = _NEVER
        if transport is None or transport.is_closing():
            return
        if self._lingering or self._write_paused:
            if transport.get_write_buffer_size():
                transport.abort()  # close() would wait for a client that does not read our buffer
            else:
                transport.close()
        elif self._discarding or self._reading_paused:
            self._rearm()
        elif self._phase == _HEAD:
            timeout_s = self._limits.header_timeout_s
            self._refuse(_error(408, f"request headers not received within {timeout_s:g} s", self._headers,
                                timeout_s=timeout_s))
        elif self._phase == _BODY:
            timeout_s = self._limits.body_timeout_s
            self._refuse(_error(408, f"request body not received within {timeout_s:g} s", self._headers,
                                timeout_s=timeout_s))
        elif not self._busy:
            self._discarding = True
            transport.close()  # idle keep-alive connection (or one that never sent a byte)

    @property
    def deadline(self) -> float:
        return self._deadline

    @property
    def idle(self) -> bool:
        return not self._busy

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _reset(transport: asyncio.Transport) -> None:
    """Close with a reset, not a FIN: a body without its own end (HTTP/1.0, no chunking) must not look
    complete to the client."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class HttpServer:
    """Owns the live connections: a drain closes idle ones; one periodic sweep expires deadlines.

    With an injected ``clock`` nothing sweeps on its own: the caller calls ``sweep(now)``.
    """

    def __init__(self, app: App, limits: ServerLimits | None = None, *,
                 clock: Callable[[], float] | None = None) -> None:
        self.app = app
        self.limits = limits or ServerLimits()
        self.clock = clock or time.monotonic
        self.connections: set[HttpServerProtocol] = set()
        self.refused_connections = 0
        self._auto_sweep = clock is None
        self._sweeper: asyncio.TimerHandle | None = None

    def protocol_factory(self) -> HttpServerProtocol:
        if self._auto_sweep and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._tick)
        return HttpServerProtocol(self)

    def sweep(self, now: float) -> None:
        for conn in [c for c in self.connections if c.deadline <= now]:
            conn.expire(now)

    def _tick(self) -> None:
        try:
            self.sweep(self.clock())
        except Exception:  # the sweep must outlive any one connection's trouble
            log.exception("HTTP deadline sweep failed")
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._tick)

    def close_idle_connections(self) -> None:
        for conn in list(self.connections):
            if conn.idle:
                conn.close()

    def close_all_connections(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
            self._auto_sweep = False
        for conn in list(self.connections):
            conn.close()
