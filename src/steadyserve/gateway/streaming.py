"""A replica's streamed answer passed on to the client, chunk by chunk, as it arrives.

The call's flow (retries, failover) is over once the stream's head and first
chunk arrive; from then on the relay holds the replica slot and the call's
place in the gateway's in-flight count until the stream ends. The replica's
chunked body is passed through as it is (an HTTP/1.0 client gets it unchunked,
ended by closing the connection). Between chunks the relay waits at most
``stream_chunk_timeout_s`` and in all ``stream_timeout_s``. If the replica goes
away or a timeout passes mid-stream, an SSE or NDJSON stream ends with an error
event naming what happened; any other stream is cut (the client sees an
incomplete body, never a complete-looking one). A client that leaves aborts
the connection to the replica, which stops its generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import media
from ..errors import UpstreamError, UpstreamTimeout
from ..wire.http11 import FAILED_LAST_CHUNK, LAST_CHUNK, StreamAborted, chunk
from ..wire.upstream import UpstreamStream
from .metrics import CallNote
from .openai import openai_error_event
from .runtime import ServiceRuntime, UpstreamReplica

_SSE = b"content-type: text/event-stream"
_NDJSON = b"content-type: application/x-ndjson"


def error_event(head: bytes, body: dict[str, Any]) -> bytes | None:
    """The event that tells a client of this stream's format (from its head) why it ended; None: none can."""
    return media.error_event("sse" if _SSE in head else "ndjson" if _NDJSON in head else "raw", body)


def client_head(head: bytes, chunked: bool) -> bytes:
    """The replica's head as the client gets it: for an HTTP/1.0 client, ended by closing."""
    if chunked:
        return head
    return head.replace(b"transfer-encoding: chunked\r\n", b"connection: close\r\n", 1)


class StreamRelay:
    """The pieces of one streamed answer; the server drains it and always calls ``aclose``."""

    def __init__(self, stream: UpstreamStream, service: ServiceRuntime, replica: UpstreamReplica, note: CallNote,
                 *, request_id: bytes, started: float, first_chunk_s: float, chunked: bool,
                 clock: Callable[[], float], on_end: Callable[[StreamRelay, str], None],
                 openai: bool = False) -> None:
        self.stream = stream
        self.service = service
        self.replica = replica
        self.note = note
        self.request_id = request_id
        self.started = started  # time.perf_counter() when the call arrived
        self.first_chunk_s = first_chunk_s
        self.chunked = chunked
        self.bytes_out = 0
        self._clock = clock
        self._on_end = on_end
        route = service.route
        now = clock()
        self._chunk_timeout_s = route.stream_chunk_timeout_s
        self._stream_timeout_s = route.stream_timeout_s
        self._ends_at = now + route.stream_timeout_s
        self._pending: bytes | None = None
        self._openai = openai  # errors as OpenAI clients read them
        self._raw = error_event(stream.head, {"error": ""}) is None  # no event can end it: it is cut
        self._cut_next = False
        self._done = False
        self._closed = False
        self.outcome = "client_gone"  # until it ends otherwise
        replica.inflight += 1  # the slot stays taken while the replica streams

    def __aiter__(self) -> StreamRelay:
        return self

    async def __anext__(self) -> bytes:
        if self._pending is not None:
            piece, self._pending = self._pending, None
            return piece
        if self._cut_next:
            raise StreamAborted("the handler failed mid-stream")
        if self._done:
            raise StopAsyncIteration
        now = self._clock()
        whole_s = self._ends_at - now
        if whole_s <= 0:  # also for a client that reads slowly: the replica never had to wait for it
            return self._failed(UpstreamTimeout("the stream's time is up"), True)
        wait_s = min(self._chunk_timeout_s, whole_s)
        try:
            data = await self.stream.read(wait_s)
        except UpstreamError as err:
            return self._failed(err, whole_s <= self._chunk_timeout_s)
        if not data:
            self._done = True
            self.outcome = "handler_error" if self.stream.failed else "complete"
            await self.aclose()
            if self._raw and self.stream.failed:
                raise StreamAborted("the handler failed mid-stream")  # a raw stream can only be cut
            raise StopAsyncIteration
        if self._raw and self.stream.failed and self.stream.complete:
            # The handler failed: the replica's last chunk says so, and a raw stream can only be cut.
            self.outcome, self._done, self._cut_next = "handler_error", True, True
            data = data.removesuffix(FAILED_LAST_CHUNK)
            if not data:
                raise StreamAborted("the handler failed mid-stream")
        self.bytes_out += len(data)
        return data

    def _failed(self, err: UpstreamError, overall: bool) -> bytes:
        """End the stream after a failure mid-way: an error event, or a cut."""
        self._done = True
        if isinstance(err, UpstreamTimeout):
            self.outcome = "timed_out"
            message = (f"the stream ran past streaming.timeout_s ({self._stream_timeout_s:g}s)" if overall else
                       f"replica {self.replica.id} sent nothing for streaming.chunk_timeout_s"
                       f" ({self._chunk_timeout_s:g}s)")
        else:
            self.outcome = "replica_lost"
            message = f"replica {self.replica.id} went away mid-stream ({err}); the answer is incomplete"
        body = {"error": message, "request_id": self.request_id.decode("latin-1"), "replica": self.replica.id,
                "chunks": self.stream.chunks}
        event = None
        if self.stream.at_boundary:
            event = openai_error_event(body) if self._openai else error_event(self.stream.head, body)
        self.stream.release()  # not complete: the connection is closed, the replica stops its generator
        if event is None:
            raise StreamAborted(message)
        if self.chunked:
            event = chunk(event)
            self._pending = LAST_CHUNK
        return event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._done = True
        self.stream.release()
        self.replica.inflight -= 1
        self.service.wake_one()  # the next call in line may have the slot
        self._on_end(self, self.outcome)

    @property
    def chunks(self) -> int:
        ended = self.outcome in ("complete", "handler_error")  # less the last, empty one
        return max(0, self.stream.chunks - (1 if ended else 0))

    def duration_s(self) -> float:
        return time.perf_counter() - self.started
