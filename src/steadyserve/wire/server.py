"""An asyncio HTTP/1.1 server protocol on httptools, kept lean for the hot path.

The application is ``async (Request) -> bytes`` returning a complete response.
Requests on one connection are answered in order (pipelining-safe).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import httptools

from .http11 import Request, json_response

App = Callable[[Request], Awaitable[bytes]]
log = logging.getLogger(__name__)

_MAX_PIPELINED = 64


class _BodyTooLarge(Exception):
    pass


class HttpServerProtocol(asyncio.Protocol):
    __slots__ = (
        "_app",
        "_peer",
        "_body",
        "_body_len",
        "_busy",
        "_connections",
        "_headers",
        "_loop",
        "_max_body_bytes",
        "_parser",
        "_pending",
        "_reject",
        "_transport",
        "_url",
    )

    def __init__(self, app: App, max_body_bytes: int, connections: set[HttpServerProtocol]):
        self._app = app
        self._max_body_bytes = max_body_bytes
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_len = 0
        self._pending: deque[Request] = deque()
        self._busy = False
        self._loop = asyncio.get_event_loop()
        self._reject: bytes | None = None
        self._peer = ""

    # --- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local"

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools raises its own error family
            if self._reject is None:
                self._reject = json_response(
                    400, {"error": f"malformed HTTP request: {exc}"}, keep_alive=False
                )
            self._write_and_close(self._reject)

    # --- httptools callbacks ---------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._body_len = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        for name, value in self._headers:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0  # httptools rejects it itself
                if size > self._max_body_bytes:
                    self._too_large(size)

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > self._max_body_bytes:
            self._too_large(self._body_len)
        self._body.append(body)

    def _too_large(self, size: int) -> None:
        self._reject = json_response(
            413,
            {
                "error": f"request body is {size} bytes; the limit is"
                f" {self._max_body_bytes} bytes",
                "limit_bytes": self._max_body_bytes,
            },
            keep_alive=False,
        )
        raise _BodyTooLarge()

    def on_message_complete(self) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            self._parser.get_method(), self._url, self._headers, body,
            self._parser.should_keep_alive(), self._peer,
        )
        if self._busy:
            self._pending.append(request)
            if len(self._pending) > _MAX_PIPELINED and self._transport is not None:
                self._transport.pause_reading()
            return
        self._busy = True
        self._loop.create_task(self._serve(request))

    # --- serving -------------------------------------------------------------
    async def _serve(self, request: Request) -> None:
        transport = self._transport
        assert transport is not None
        while True:
            try:
                reply = await self._app(request)
            except Exception:
                log.exception("unhandled error while serving %r", request.url)
                reply = json_response(500, {"error": "internal server error"})
            if transport.is_closing():
                return
            transport.write(reply)
            if not request.keep_alive:
                transport.close()
                return
            if not self._pending:
                self._busy = False
                return
            request = self._pending.popleft()
            if len(self._pending) == _MAX_PIPELINED:
                transport.resume_reading()

    def _write_and_close(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            self._transport.close()

    @property
    def idle(self) -> bool:
        return not self._busy

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class HttpServer:
    """Owns the set of live connections so a drain can close idle ones."""

    def __init__(self, app: App, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.connections: set[HttpServerProtocol] = set()

    def protocol_factory(self) -> HttpServerProtocol:
        return HttpServerProtocol(self.app, self.max_body_bytes, self.connections)

    def close_idle_connections(self) -> None:
        for conn in list(self.connections):
            if conn.idle:
                conn.close()

    def close_all_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()
