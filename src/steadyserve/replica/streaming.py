"""A generator handler's call: its items sent one by one as it yields them.

The first item is produced before anything is sent, so a handler that fails at
once is an ordinary error answer (and one that never started is a retryable
503). From then on the call is a ``StreamReply``: each item is validated,
encoded in the handler's format and framed as one chunk; the server pulls the
next item only when the client has taken the last (back-pressure). Each step is
bounded by ``handler_timeout_s``; a failure after the first item ends the stream
with an error event (SSE, NDJSON) or, for raw bytes, a cut connection, never a
body that looks complete. When the stream ends early (the client left, a step
failed) the generator is closed: the handler sees ``GeneratorExit`` (or, for an
async generator cut mid-step, ``CancelledError``), and only then is its slot freed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from ..errors import HandlerFailed
from ..media import OCTET_STREAM, STREAM_MEDIA_TYPES, error_event
from ..service import HandlerSpec
from ..wire.http11 import (
    FAILED_LAST_CHUNK,
    LAST_CHUNK,
    Request,
    StreamAborted,
    StreamReply,
    chunk,
    stream_head,
)
from .replies import Reply, to_json_default

if TYPE_CHECKING:
    from .app import ReplicaApp

log = logging.getLogger("steadyserve.replica")
_END = object()  # the generator is exhausted
CLOSE_RETRY_S = 0.2  # a sync generator still running a step cannot be closed yet: try again


class StreamFailed(StreamAborted):
    """A stream cannot go on; ``body`` is the error object its last event carries."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.body = body


class ItemEncoder:
    """One yielded item -> the bytes of its event (unframed); pure."""

    def __init__(self, spec: HandlerSpec) -> None:
        assert spec.stream is not None
        self.format = spec.stream
        self.handler = spec.name
        self.output_type = spec.output_type
        self.adapter: TypeAdapter[Any] | None = spec.output_adapter

    def __call__(self, item: Any) -> bytes:
        if self.format == "raw":
            if isinstance(item, str):
                return item.encode()
            if isinstance(item, (bytes, bytearray, memoryview)):
                return bytes(item)
            raise HandlerFailed(f"handler {self.handler!r} streams raw bytes but yielded a"
                                f" {type(item).__name__}; yield bytes or str", uuid.uuid4().hex[:12])
        if self.adapter is not None:
            try:
                data = self.adapter.dump_json(self.adapter.validate_python(item))
            except ValidationError as exc:
                raise HandlerFailed(
                    f"handler {self.handler!r} yielded an item that does not match its annotated item type"
                    f" {self.output_type!r}: {exc.errors(include_url=False)[0]['msg']}", uuid.uuid4().hex[:12],
                ) from exc
            except Exception as exc:  # noqa: BLE001 - valid but not serialisable (an object inside a dict)
                raise self._unserialisable(item, exc) from exc
        else:
            try:
                data = orjson.dumps(item, default=to_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
            except TypeError as exc:
                raise self._unserialisable(item, exc) from exc
        return b"data: " + data + b"\n\n" if self.format == "sse" else data + b"\n"

    def _unserialisable(self, item: Any, exc: Exception) -> HandlerFailed:
        return HandlerFailed(f"handler {self.handler!r} yielded a {type(item).__name__} that cannot be sent as JSON:"
                             f" {exc}", uuid.uuid4().hex[:12])

    def error(self, body: dict[str, Any]) -> bytes | None:
        """The event that ends a failed stream; None for raw bytes (the connection is cut instead)."""
        return error_event(self.format, body)

    def media_type(self, spec: HandlerSpec) -> bytes:
        return STREAM_MEDIA_TYPES.get(self.format) or (spec.media_type or OCTET_STREAM).encode()

    def end(self) -> bytes:
        """What follows the last item when the generator ends well (nothing, in our own formats)."""
        return b""


class Stepper:
    """Advances one generator a step at a time, on a worker thread (sync) or the loop (async)."""

    def __init__(self, app: ReplicaApp, spec: HandlerSpec, generator: Any) -> None:
        self._app = app
        self._spec = spec
        self._generator = generator
        self._async = spec.is_async
        self.closed = False

    async def step(self) -> Any:
        """The next item, or ``_END``."""
        if self._async:
            try:
                return await self._generator.__anext__()
            except StopAsyncIteration:
                return _END
        return await self._app.workers.run(self._spec.name, functools.partial(next, self._generator, _END),
                                           None, self._app.bound_of(asyncio.current_task()))

    async def close(self) -> None:
        """Close the generator (its ``finally`` runs); a sync one mid-step is closed once the step ends."""
        if self.closed:
            return
        self.closed = True
        if self._async:
            try:
                await self._generator.aclose()
            except Exception:  # its cleanup failed: the stream is over anyway
                log.exception("closing the stream of handler %s failed", self._spec.name)
            return
        # Its cleanup (`finally`) is user code that may block: on a thread of its own, never the loop,
        # and not waited for: the slot is free once the generator stops yielding.
        threading.Thread(target=self._close_sync, name=f"close-{self._spec.name}", daemon=True).start()

    def _close_sync(self) -> None:
        give_up_at = time.monotonic() + self._app.handler_timeout_s + self._app.stuck_grace_s
        while True:
            try:
                self._generator.close()  # GeneratorExit at its yield
                return
            except ValueError:  # "generator already executing": a timed-out step is still on its worker
                if time.monotonic() >= give_up_at:
                    return
                time.sleep(CLOSE_RETRY_S)
            except Exception:
                log.exception("closing the stream of handler %s failed", self._spec.name)
                return


def start_generator(service: Any, spec: HandlerSpec, kwargs: dict[str, Any]) -> Any:
    """Calling a generator function runs none of its code: safe on the loop."""
    return getattr(service, spec.name)(**kwargs)


class StreamCall:
    """The pieces of one streaming call after its first item, an async iterator the server drains.

    It holds the replica slot until ``aclose`` (which the server always calls, also for a
    stream it never started to send): then the generator is closed and the call counted.
    """

    def __init__(self, app: ReplicaApp, spec: HandlerSpec, request_id: bytes, stepper: Stepper,
                 encoder: ItemEncoder, first: bytes, started: float, *, chunked: bool) -> None:
        self.app = app
        self.spec = spec
        self.request_id = request_id
        self.stepper = stepper
        self.encoder = encoder
        self.started = started
        self.chunked = chunked
        self._pending: bytes | None = self._frame(first) if first else None
        self._done = False
        self._finished = False
        self._status = 500  # until it ends well

    def __aiter__(self) -> StreamCall:
        return self

    async def __anext__(self) -> bytes:
        if self._pending is not None:
            piece, self._pending = self._pending, None
            return piece
        if self._done:
            raise StopAsyncIteration
        try:
            while True:
                item = await self._next()
                if item is _END:
                    self._done = True
                    self._status = 200
                    await self.aclose()
                    tail = self.encoder.end()
                    if tail:
                        self._pending = LAST_CHUNK if self.chunked else None
                        return self._frame(tail)
                    if self.chunked:
                        return LAST_CHUNK
                    raise StopAsyncIteration
                data = self._encode(item)
                if data:  # an empty chunk would end the body
                    return self._frame(data)
        except StreamFailed as failed:
            self._done = True
            await self.aclose()
            event = self.encoder.error(failed.body)
            if not self.chunked:
                if event is None:
                    raise  # raw bytes to an HTTP/1.0 client: the server cuts the connection
                return event
            if event is None:  # raw bytes: no event can say it; the trailer does (the gateway then cuts)
                return FAILED_LAST_CHUNK
            self._pending = FAILED_LAST_CHUNK
            return self._frame(event)

    async def aclose(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._done = True
        try:
            await self.stepper.close()
        finally:
            self.app.stream_ended(self.spec, self._status, time.perf_counter() - self.started)

    def _frame(self, data: bytes) -> bytes:
        return chunk(data) if self.chunked else data

    def _encode(self, item: Any) -> bytes:
        try:
            return self.encoder(item)
        except HandlerFailed as exc:
            log.error("handler %s failed error_id=%s request_id=%s: %s", self.spec.name, exc.error_id,
                      self.request_id.decode("ascii", "replace"), exc)
            raise StreamFailed({"error": str(exc), "error_id": exc.error_id,
                                "request_id": self.request_id.decode("ascii", "replace")}) from exc

    async def _next(self) -> Any:
        outcome = await self.app.bounded(self.spec, self.request_id, None, self.stepper.step())
        if not isinstance(outcome, Reply):
            return outcome.value
        body = orjson.loads(outcome.body)  # an error reply: what went wrong, as the last event
        body.setdefault("request_id", self.request_id.decode("ascii", "replace"))
        raise StreamFailed(body)


async def open_stream(app: ReplicaApp, spec: HandlerSpec, request: Request, request_id: bytes,
                      kwargs: dict[str, Any], deadline: float | None, extra: bytes,
                      encoder: ItemEncoder | None = None) -> StreamReply | Reply:
    """Start the generator and take its first item: the stream to send, or the error answer."""
    started = time.perf_counter()
    stepper = Stepper(app, spec, getattr(app.service, spec.name)(**kwargs))  # runs none of its code yet
    handed_over = False
    try:
        outcome = await app.bounded(spec, request_id, deadline, stepper.step())
        if isinstance(outcome, Reply):
            return outcome
        encoder = encoder or ItemEncoder(spec)
        first = b""
        if outcome.value is not _END:
            try:
                first = encoder(outcome.value)
            except HandlerFailed as exc:
                log.error("handler %s failed error_id=%s: %s", spec.name, exc.error_id, exc)
                return Reply(500, orjson.dumps({"error": str(exc), "error_id": exc.error_id}))
        call = StreamCall(app, spec, request_id, stepper, encoder, first, started, chunked=request.chunked_ok)
        if outcome.value is _END:
            call._done, call._status = True, 200
            ending = encoder.end()
            ending = call._frame(ending) if ending else b""
            call._pending = (call._pending or b"") + ending + (LAST_CHUNK if request.chunked_ok else b"")
        head = stream_head(200, encoder.media_type(spec), extra, chunked=request.chunked_ok)
        handed_over = True
        return StreamReply(200, head, call, close_after=not request.chunked_ok)
    finally:
        if not handed_over:
            await stepper.close()
