"""``StreamRelay``: a replica's stream passed on to the client, and how it ends.

Most tests drive the relay over a scripted fake stream and a fake clock; the last
ones go through ``Gateway.handle`` with a fake pool that answers with a real
``UpstreamStream`` (fed through a fake transport), as a replica's stream would.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from steadyserve.errors import UpstreamError, UpstreamLost, UpstreamTimeout
from steadyserve.gateway.metrics import CallNote
from steadyserve.gateway.proxy import Gateway
from steadyserve.gateway.routes import ReplicaRoute, RoutingTable, ServiceRoute
from steadyserve.gateway.runtime import ServiceRuntime, UpstreamReplica
from steadyserve.gateway.streaming import StreamRelay, client_head, error_event
from steadyserve.wire.http11 import FAILED_LAST_CHUNK, LAST_CHUNK, Request, StreamAborted, StreamReply, chunk
from steadyserve.wire.upstream import UpstreamConnection, UpstreamPool, UpstreamResponse, UpstreamStream

REQUEST_ID = b"req-1"


def head_of(content_type: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type
            + b"\r\ntransfer-encoding: chunked\r\n\r\n")


SSE = head_of(b"text/event-stream")
NDJSON = head_of(b"application/x-ndjson")
RAW = head_of(b"application/octet-stream")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStream:
    """What the relay uses of an ``UpstreamStream``: each read takes the next step of a script."""

    def __init__(self, head: bytes, script: list[bytes | UpstreamError], *, at_boundary: bool = True,
                 chunks: int = 0, failed: bool = False) -> None:
        self.head = head
        self.failed = failed  # the replica's trailer said its handler failed
        self.complete = False
        self.status = 200
        self.script = deque(script)
        self.at_boundary = at_boundary
        self.chunks = chunks
        self.releases = 0
        self.waits: list[float] = []  # the timeout_s of each read

    async def read(self, timeout_s: float) -> bytes:
        self.waits.append(timeout_s)
        step = self.script.popleft()
        if isinstance(step, Exception):
            raise step
        self.complete = not self.script or self.script[0] == b""
        return step

    def release(self) -> None:
        self.releases += 1


class Ends:
    """The relay's ``on_end``: the outcomes it was called with."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def __call__(self, relay: StreamRelay, outcome: str) -> None:
        self.outcomes.append(outcome)


def relay_over(stream: FakeStream, *, chunked: bool = True, chunk_timeout_s: float = 30.0,
               stream_timeout_s: float = 600.0, clock: Clock | None = None, inflight_before: int = 0,
               ) -> tuple[StreamRelay, ServiceRuntime, UpstreamReplica, Ends]:
    route = ServiceRoute(stream_chunk_timeout_s=chunk_timeout_s, stream_timeout_s=stream_timeout_s)
    replica = UpstreamReplica("r0", 1, "unix:/nowhere.sock")
    replica.inflight = inflight_before  # other calls of this gateway on the same replica
    service = ServiceRuntime("svc", route, [replica])
    ends = Ends()
    relay = StreamRelay(stream, service, replica, CallNote(), request_id=REQUEST_ID, started=0.0,  # type: ignore[arg-type]
                        first_chunk_s=0.01, chunked=chunked, clock=clock or Clock(), on_end=ends)
    return relay, service, replica, ends


async def served(relay: StreamRelay) -> list[bytes]:
    """Drain the relay as the server does: every piece, then ``aclose`` whatever happened."""
    pieces: list[bytes] = []
    try:
        async for piece in relay:
            pieces.append(piece)
    finally:
        await relay.aclose()
    return pieces


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


# --- pieces ---------------------------------------------------------------------------------


def test_the_replicas_pieces_pass_through_as_they_are_read():
    stream = FakeStream(SSE, [chunk(b"data: 1\n\n"), chunk(b"data: 2\n\n") + LAST_CHUNK, b""], chunks=3)
    relay, _, _, ends = relay_over(stream)
    assert run(lambda: served(relay)) == [chunk(b"data: 1\n\n"), chunk(b"data: 2\n\n") + LAST_CHUNK]
    assert relay.outcome == "complete" and ends.outcomes == ["complete"]
    assert relay.bytes_out == len(chunk(b"data: 1\n\n") + chunk(b"data: 2\n\n") + LAST_CHUNK)
    assert relay.chunks == 2  # less the last, empty one
    assert stream.releases == 1


@pytest.mark.parametrize("chunked, expected", [
    (True, SSE),
    (False, SSE.replace(b"transfer-encoding: chunked\r\n", b"connection: close\r\n")),
])
def test_an_http_1_0_client_gets_a_head_that_ends_with_the_connection(chunked, expected):
    assert client_head(SSE, chunked) == expected


# --- failures mid-stream ----------------------------------------------------------------------

LOST = UpstreamLost("connection closed before a full response (EOF)")


def sse_body(event: bytes) -> dict[str, Any]:
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    return orjson.loads(event[len(b"event: error\ndata: "):-2])  # type: ignore[no-any-return]


def test_a_replica_lost_at_a_boundary_ends_an_sse_stream_with_an_error_event_and_the_last_chunk():
    stream = FakeStream(SSE, [chunk(b"data: 1\n\n"), LOST], chunks=1)
    relay, _, _, ends = relay_over(stream)
    pieces = run(lambda: served(relay))
    assert pieces[0] == chunk(b"data: 1\n\n") and pieces[2:] == [LAST_CHUNK] and len(pieces) == 3
    size, _, rest = pieces[1].partition(b"\r\n")
    event = rest[:-2]
    assert int(size, 16) == len(event) and rest.endswith(b"\r\n")  # one whole chunk
    body = sse_body(event)
    assert body["request_id"] == "req-1" and body["replica"] == "r0" and body["chunks"] == 1
    assert "replica r0 went away mid-stream" in body["error"] and "incomplete" in body["error"]
    assert relay.outcome == "replica_lost" and ends.outcomes == ["replica_lost"]


def test_an_http_1_0_client_gets_the_error_event_unchunked_and_no_last_chunk():
    stream = FakeStream(SSE, [LOST], chunks=0)
    relay, _, _, _ = relay_over(stream, chunked=False)
    pieces = run(lambda: served(relay))
    assert len(pieces) == 1 and "went away" in sse_body(pieces[0])["error"]


def test_a_replica_lost_at_a_boundary_ends_an_ndjson_stream_with_an_error_line():
    stream = FakeStream(NDJSON, [chunk(b'{"n": 1}\n'), LOST], chunks=1)
    relay, _, _, _ = relay_over(stream)
    pieces = run(lambda: served(relay))
    assert pieces[0] == chunk(b'{"n": 1}\n') and pieces[2] == LAST_CHUNK
    line = pieces[1].partition(b"\r\n")[2][:-2]
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    error = orjson.loads(line)["error"]
    assert error["type"] == "stream_error" and "went away mid-stream" in error["message"]
    assert (error["request_id"], error["replica"], error["chunks"]) == ("req-1", "r0", 1)


@pytest.mark.parametrize("head, at_boundary", [
    (RAW, True),  # no format in which to say why: cut
    (SSE, False),  # lost mid-chunk: an event now would be garbled
    (NDJSON, False),
])
def test_a_stream_that_cannot_carry_an_error_event_is_aborted(head, at_boundary):
    stream = FakeStream(head, [chunk(b"x"), LOST], at_boundary=at_boundary, chunks=1)
    relay, _, replica, ends = relay_over(stream)

    async def scenario() -> list[bytes]:
        got: list[bytes] = []
        with pytest.raises(StreamAborted, match="went away mid-stream"):
            got = await served(relay)
        return got

    run(scenario)
    assert relay.outcome == "replica_lost" and ends.outcomes == ["replica_lost"]
    assert replica.inflight == 0


@pytest.mark.parametrize("chunk_timeout_s, stream_timeout_s, elapsed_s, waited_s, message", [
    (5.0, 600.0, 0.0, 5.0, "replica r0 sent nothing for streaming.chunk_timeout_s (5s)"),
    (30.0, 100.0, 60.0, 30.0, "replica r0 sent nothing for streaming.chunk_timeout_s (30s)"),
    (30.0, 10.0, 0.0, 10.0, "the stream ran past streaming.timeout_s (10s)"),
    (30.0, 100.0, 80.0, 20.0, "the stream ran past streaming.timeout_s (100s)"),
])
def test_a_timeout_names_the_limit_that_passed(chunk_timeout_s, stream_timeout_s, elapsed_s, waited_s, message):
    clock = Clock()
    stream = FakeStream(SSE, [UpstreamTimeout("nothing within the wait")])
    relay, _, _, ends = relay_over(stream, chunk_timeout_s=chunk_timeout_s, stream_timeout_s=stream_timeout_s,
                                   clock=clock)
    clock.now += elapsed_s
    pieces = run(lambda: served(relay))
    assert stream.waits == [pytest.approx(waited_s)]
    assert sse_body(pieces[0].partition(b"\r\n")[2][:-2])["error"] == message
    assert relay.outcome == "timed_out" and ends.outcomes == ["timed_out"]


# --- the end, however it comes ------------------------------------------------------------------

ENDINGS = {
    "complete": [chunk(b"data: 1\n\n"), LAST_CHUNK, b""],
    "replica_lost": [chunk(b"data: 1\n\n"), LOST],
    "timed_out": [chunk(b"data: 1\n\n"), UpstreamTimeout("nothing")],
}


@pytest.mark.parametrize("outcome", [*ENDINGS, "client_gone"])
@pytest.mark.parametrize("inflight_before", [0, 2])
def test_aclose_gives_the_replica_slot_back_and_reports_the_outcome_once(outcome, inflight_before):
    stream = FakeStream(SSE, ENDINGS.get(outcome, [chunk(b"data: 1\n\n")]))
    relay, service, replica, ends = relay_over(stream, inflight_before=inflight_before)
    assert replica.inflight == inflight_before + 1  # held while the replica streams

    async def scenario() -> asyncio.Future[None]:
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        service.waiters.append(waiting)  # a call in line for the slot
        if outcome == "client_gone":
            await relay.__anext__()  # then the client leaves: the server closes the relay
            await relay.aclose()
        else:
            await served(relay)
        await relay.aclose()  # closing again changes nothing
        return waiting

    waiting = run(scenario)
    assert replica.inflight == inflight_before
    assert ends.outcomes == [outcome]
    assert waiting.done()  # the next in line was woken
    assert stream.releases >= 1


def test_a_relay_closed_before_it_started_still_gives_everything_back():
    stream = FakeStream(SSE, [])
    relay, _, replica, ends = relay_over(stream)
    run(relay.aclose)
    assert (replica.inflight, ends.outcomes, stream.releases, stream.waits) == (0, ["client_gone"], 1, [])


@pytest.mark.parametrize("content_type, expected", [
    (b"text/event-stream", True), (b"application/x-ndjson", True), (b"application/octet-stream", False),
    (b"text/plain", False),
])
def test_only_sse_and_ndjson_streams_have_an_error_event(content_type, expected):
    event = error_event(head_of(content_type), {"error": "gone", "request_id": "r"})
    assert (event is not None) is expected


# --- through the gateway ------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class StreamingPool(UpstreamPool):
    """A real pool whose every connection is a fake one, on which the replica's head and ``first``
    arrive: each request is answered with a real ``UpstreamStream``."""

    def __init__(self, endpoint: str, head: bytes, first: bytes) -> None:
        super().__init__(endpoint)
        self.head = head
        self.first = first
        self.conns: list[tuple[UpstreamConnection, FakeTransport]] = []
        self.dechunk: list[bool] = []

    async def request(self, data: bytes, timeout_s: float, dechunk: bool = False,
                      ) -> UpstreamResponse | UpstreamStream:
        conn, transport = UpstreamConnection(), FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        self.conns.append((conn, transport))
        self.dechunk.append(dechunk)
        self._idle.append(conn)  # the one the real request takes
        sent = asyncio.ensure_future(super().request(data, timeout_s, dechunk))
        await asyncio.sleep(0)  # it sends
        conn.data_received(self.head + self.first)
        return await sent


def streaming_gateway(head: bytes = SSE, first: bytes = chunk(b"data: 1\n\n"),
                      ) -> tuple[Gateway, StreamingPool]:
    pools: list[StreamingPool] = []

    def factory(endpoint: str) -> StreamingPool:
        pools.append(StreamingPool(endpoint, head, first))
        return pools[-1]

    gw = Gateway("gt", pool_factory=factory)  # type: ignore[arg-type]
    route = ServiceRoute(replicas=(ReplicaRoute(id="r0", generation=1, endpoint="unix:/nowhere.sock"),))
    gw.apply_table(RoutingTable(version=1, default_service="svc", services={"svc": route}))
    return gw, pools[0]


def post(chunked_ok: bool = True) -> Request:
    return Request(b"POST", b"/generate", [], b"{}", True, chunked_ok=chunked_ok)


@pytest.mark.parametrize("ending", ["complete", "client_gone", "replica_lost"])
def test_a_stream_through_the_gateway_holds_its_place_until_it_ends(ending):
    async def scenario() -> None:
        gw, pool = streaming_gateway()
        reply = await gw.handle(post())
        assert isinstance(reply, StreamReply) and reply.status == 200 and not reply.close_after
        replica = gw.services["svc"].replicas[0]
        assert (gw.inflight, replica.inflight) == (1, 1)  # the stream is still in flight
        relay = reply.pieces
        assert await relay.__anext__() == chunk(b"data: 1\n\n")
        conn, transport = pool.conns[0]
        if ending == "complete":
            conn.data_received(chunk(b"data: 2\n\n") + LAST_CHUNK)
            rest = [piece async for piece in relay]
            assert rest == [chunk(b"data: 2\n\n") + LAST_CHUNK]
        elif ending == "replica_lost":
            conn.connection_lost(None)
            rest = [piece async for piece in relay]
            assert rest[-1] == LAST_CHUNK and b"event: error" in rest[0]
        await relay.aclose()  # the server always closes it
        assert (gw.inflight, replica.inflight) == (0, 0)
        if ending == "complete":  # its connection goes back to the pool for the next call
            assert pool._idle == [conn] and not transport.aborted
        else:  # closed: the replica sees the client leave and stops its generator
            assert pool._idle == [] and transport.aborted

    run(scenario)


def test_an_http_1_0_client_gets_the_stream_dechunked_and_closed_after():
    async def scenario() -> None:
        gw, pool = streaming_gateway(first=chunk(b"data: 1\n\n"))
        reply = await gw.handle(post(chunked_ok=False))
        assert isinstance(reply, StreamReply) and reply.close_after
        assert b"transfer-encoding" not in reply.head and b"connection: close\r\n" in reply.head
        assert pool.dechunk == [True]
        conn, _ = pool.conns[0]
        conn.data_received(chunk(b"data: 2\n\n") + LAST_CHUNK)
        pieces = [piece async for piece in reply.pieces]
        await reply.pieces.aclose()
        assert b"".join(pieces) == b"data: 1\n\ndata: 2\n\n"
        assert gw.inflight == 0

    run(scenario)


def test_a_replica_lost_after_a_chunk_whose_last_byte_came_alone_still_ends_with_an_error_event():
    first = chunk(b"data: 1\n\n")

    async def scenario() -> None:
        gw, pool = streaming_gateway(first=first[:-1])  # the chunk's final LF is still on its way
        reply = await gw.handle(post())
        assert isinstance(reply, StreamReply)
        relay = reply.pieces
        assert await relay.__anext__() == first[:-1]
        conn, _ = pool.conns[0]
        conn.data_received(b"\n")  # the chunk is whole: the stream stands between chunks
        assert await relay.__anext__() == b"\n"
        conn.connection_lost(None)
        try:
            rest = [piece async for piece in relay]
        finally:
            await relay.aclose()
        assert b"event: error" in rest[0] and rest[-1] == LAST_CHUNK
        assert gw.inflight == 0

    run(scenario)


# --- a handler that failed after its first item (the replica's stream-error trailer) -------------


def test_a_stream_whose_handler_failed_passes_its_error_event_and_counts_as_a_handler_error():
    event = chunk(b'event: error\ndata: {"error": "boom"}\n\n')
    stream = FakeStream(SSE, [chunk(b"data: 1\n\n"), event + FAILED_LAST_CHUNK, b""], chunks=3, failed=True)
    relay, _, _, ends = relay_over(stream)
    assert run(lambda: served(relay)) == [chunk(b"data: 1\n\n"), event + FAILED_LAST_CHUNK]
    assert ends.outcomes == ["handler_error"]


def test_a_raw_stream_whose_handler_failed_is_cut_without_its_last_chunk():
    stream = FakeStream(RAW, [chunk(b"x1"), chunk(b"x2") + FAILED_LAST_CHUNK, b""], chunks=3, failed=True)
    relay, _, _, ends = relay_over(stream)
    pieces: list[bytes] = []

    async def scenario() -> None:
        try:
            async for piece in relay:
                pieces.append(piece)
        finally:
            await relay.aclose()

    with pytest.raises(StreamAborted):
        run(scenario)
    assert pieces == [chunk(b"x1"), chunk(b"x2")]  # never the last chunk: the client sees a cut body
    assert ends.outcomes == ["handler_error"]


@pytest.mark.parametrize("ending, failed", [("complete", 0), ("handler_error", 1), ("replica_lost", 1),
                                            ("client_gone", 0)])
def test_a_stream_counts_for_its_revisions_rollout_judgement_when_it_ends(ending, failed):
    """Not at its first chunk: a revision whose streams break off must look failing, not healthy."""
    async def scenario() -> None:
        gw, pool = streaming_gateway()
        reply = await gw.handle(post())
        assert isinstance(reply, StreamReply)
        outcomes = gw.services["svc"].outcomes_of(0)
        assert (outcomes.requests, outcomes.failures) == (0, 0)  # undecided while it streams
        relay = reply.pieces
        await relay.__anext__()
        conn, _ = pool.conns[0]
        if ending == "complete":
            conn.data_received(LAST_CHUNK)
        elif ending == "handler_error":
            conn.data_received(chunk(b'event: error\ndata: {"error": "boom"}\n\n') + FAILED_LAST_CHUNK)
        elif ending == "replica_lost":
            conn.connection_lost(None)
        try:
            if ending != "client_gone":
                async for _ in relay:
                    pass
        except StreamAborted:
            pass
        finally:
            await relay.aclose()
        assert (outcomes.requests, outcomes.failures) == (1, failed)

    run(scenario)


def test_the_whole_stream_timeout_holds_for_a_client_that_keeps_reading_slowly():
    """Data is always waiting (the client reads slower than the replica writes): the deadline still ends it."""
    clock = Clock()
    stream = FakeStream(SSE, [chunk(b"data: 1\n\n"), chunk(b"data: 2\n\n"), chunk(b"data: 3\n\n")], chunks=3)
    relay, _, _, ends = relay_over(stream, stream_timeout_s=10.0, clock=clock)

    async def scenario() -> list[bytes]:
        pieces = [await relay.__anext__()]
        clock.now += 11.0  # the client took its time over the first piece
        pieces.append(await relay.__anext__())
        await relay.aclose()
        return pieces

    pieces = run(scenario)
    assert pieces[0] == chunk(b"data: 1\n\n")
    assert b"streaming.timeout_s (10s)" in pieces[1]
    assert ends.outcomes == ["timed_out"]
