"""A replica's chunked answer read as an ``UpstreamStream``, through a fake transport.

No sockets: the test feeds the bytes a replica would send to
``UpstreamConnection.data_received`` inside a running event loop, split where it
likes, and watches what the stream hands out and what it asks of the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from steadyserve.errors import UpstreamLost, UpstreamTimeout
from steadyserve.wire.http11 import FAILED_LAST_CHUNK, LAST_CHUNK, chunk
from steadyserve.wire.upstream import (
    STREAM_HIGH_WATER_BYTES,
    UpstreamConnection,
    UpstreamPool,
    UpstreamResponse,
    UpstreamStream,
)

REQUEST = b"POST /generate HTTP/1.1\r\nhost: replica\r\ncontent-length: 0\r\n\r\n"
HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n")
ITEMS = [b"data: 1\n\n", b"data: 22\n\n", b"x" * 20]  # the last one's size line is two digits: "14"
C1, C2, C3 = (chunk(item) for item in ITEMS)
BODY = C1 + C2 + C3 + LAST_CHUNK
RESPONSE = HEAD + BODY
BUFFERED = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
CLOSING_HEAD = HEAD.replace(b"transfer-encoding", b"connection: close\r\ntransfer-encoding")


class FakeTransport:
    """What the connection calls on an asyncio transport, recorded."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.pauses = 0
        self.resumes = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def connected() -> tuple[UpstreamConnection, FakeTransport]:
    conn = UpstreamConnection()
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def stream_from(reads: list[bytes], dechunk: bool = False,
                      ) -> tuple[UpstreamStream, UpstreamConnection, FakeTransport]:
    """A connection that was sent a request and then received ``reads``; its stream."""
    conn, transport = connected()
    future = conn.send(REQUEST, 5.0, dechunk)
    for data in reads:
        conn.data_received(data)
    stream = await asyncio.wait_for(future, 5.0)
    assert isinstance(stream, UpstreamStream)
    return stream, conn, transport


async def drain(stream: UpstreamStream) -> bytes:
    """Everything still to come, up to the end (a stream that never ends fails on its read timeout)."""
    out = b""
    while data := await stream.read(5.0):
        out += data
    return out


# --- the head, and how the body passes through -------------------------------------


@pytest.mark.parametrize("dechunk, expected", [(False, C1 + C2), (True, ITEMS[0] + ITEMS[1])])
def test_the_head_and_first_chunks_in_one_read_come_out_in_one_read(dechunk, expected):
    async def scenario() -> None:
        stream, _, _ = await stream_from([HEAD + C1 + C2], dechunk)
        assert (stream.status, stream.head) == (200, HEAD)
        assert await stream.read(5.0) == expected
        assert not stream.complete

    run(scenario)


@pytest.mark.parametrize("dechunk", [False, True])
def test_the_send_resolves_as_soon_as_the_head_has_arrived(dechunk):
    async def scenario() -> None:
        conn, _ = connected()
        future = conn.send(REQUEST, 5.0, dechunk)
        conn.data_received(HEAD[:-1])
        assert not future.done()
        conn.data_received(HEAD[-1:])
        stream = await asyncio.wait_for(future, 5.0)
        assert isinstance(stream, UpstreamStream) and stream.head == HEAD
        pending = asyncio.ensure_future(stream.read(5.0))
        conn.data_received(C1)
        assert await pending == (ITEMS[0] if dechunk else C1)

    run(scenario)


@pytest.mark.parametrize("split", range(1, len(RESPONSE)))
@pytest.mark.parametrize("dechunk, expected", [(False, BODY), (True, b"".join(ITEMS))])
def test_a_response_split_anywhere_in_two_reads_comes_out_the_same(split, dechunk, expected):
    async def scenario() -> None:
        conn, _ = connected()
        future = conn.send(REQUEST, 5.0, dechunk)
        conn.data_received(RESPONSE[:split])
        got = b""
        if future.done():  # the head was in the first read: a reader waits for the rest
            stream = future.result()
            assert isinstance(stream, UpstreamStream)
            pending = asyncio.ensure_future(stream.read(5.0))
            await asyncio.sleep(0)  # let it take what is there, or start waiting
            conn.data_received(RESPONSE[split:])
            got = await asyncio.wait_for(pending, 5.0)
        else:
            conn.data_received(RESPONSE[split:])
            stream = await asyncio.wait_for(future, 5.0)
            assert isinstance(stream, UpstreamStream)
        got += await drain(stream)
        assert (stream.status, stream.head, got) == (200, HEAD, expected)
        assert stream.complete and stream.chunks == len(ITEMS) + 1

    run(scenario)


@pytest.mark.parametrize("dechunk, expected", [(False, BODY), (True, b"".join(ITEMS))])
def test_a_whole_stream_in_one_read_is_handed_over_complete(dechunk, expected):
    async def scenario() -> None:
        stream, _, _ = await stream_from([RESPONSE], dechunk)
        assert stream.head == HEAD
        assert await stream.read(5.0) == expected
        assert await stream.read(5.0) == b""
        assert stream.complete and stream.chunks == len(ITEMS) + 1

    run(scenario)


@pytest.mark.parametrize("dechunk, expected", [(False, LAST_CHUNK), (True, b"")])
def test_the_last_chunk_ends_the_stream(dechunk, expected):
    async def scenario() -> None:
        stream, conn, _ = await stream_from([HEAD + C1], dechunk)
        await stream.read(5.0)
        assert not stream.complete
        conn.data_received(LAST_CHUNK)
        assert await stream.read(5.0) == expected
        assert await stream.read(5.0) == b""
        assert stream.complete

    run(scenario)


# --- where the stream stands ------------------------------------------------------------


@pytest.mark.parametrize("reads, at_boundary", [
    pytest.param([HEAD], True, id="head only"),
    pytest.param([HEAD + C1], True, id="one chunk with the head"),
    pytest.param([HEAD, C1], True, id="one chunk after the head"),
    pytest.param([HEAD + C1[:3], C1[3:]], True, id="one chunk in two reads"),
    pytest.param([HEAD + C1 + C2], True, id="two chunks"),
    pytest.param([RESPONSE], True, id="whole stream"),
    pytest.param([HEAD + C1 + C2[:5]], False, id="mid chunk data"),
    pytest.param([HEAD + C1 + C2 + b"1"], False, id="mid chunk size line"),  # of "14\r\n"
    pytest.param([HEAD + C1 + C2 + b"14\r"], False, id="size line CR only"),
    pytest.param([HEAD + C1 + C2 + b"14\r\n"], False, id="size line, no data yet"),
    pytest.param([HEAD + C1 + C2 + b"14\r\n" + ITEMS[2]], False, id="data, no CRLF yet"),
    pytest.param([HEAD + C1 + C2 + C3[:-1]], False, id="data and CR, no LF"),
    pytest.param([HEAD + chunk(b"line\r\n")[:-2]], False, id="data ending in CRLF, chunk CRLF missing"),
    pytest.param([HEAD + C1 + C2 + C3[:-1], b"\n"], True, id="chunk's final LF alone in a read"),
    pytest.param([HEAD + C1[:-1], b"\n"], True, id="first chunk's final LF alone in a read"),
])
def test_at_boundary_says_whether_what_arrived_ends_between_chunks(reads, at_boundary):
    async def scenario() -> None:
        stream, _, _ = await stream_from(reads)
        assert stream.at_boundary is at_boundary

    run(scenario)


@pytest.mark.parametrize("reads, chunks", [
    ([HEAD], 0),
    ([HEAD + C1[:4]], 0),
    ([HEAD + C1], 1),
    ([HEAD, C1, C2[:6]], 1),
    ([HEAD + C1 + C2], 2),
    ([HEAD + C1 + C2 + C3 + b"0\r\n"], 3),
    ([RESPONSE], 4),  # the last, empty chunk counts once it is complete
])
@pytest.mark.parametrize("dechunk", [False, True])
def test_chunks_counts_the_chunks_whose_end_has_arrived(reads, chunks, dechunk):
    async def scenario() -> None:
        stream, _, _ = await stream_from(reads, dechunk)
        assert stream.chunks == chunks

    run(scenario)


# --- timeouts and losses --------------------------------------------------------------


@pytest.mark.parametrize("timeout_s", [0.0, 0.01])
def test_a_read_with_nothing_arriving_raises_upstream_timeout(timeout_s):
    async def scenario() -> None:
        stream, _, transport = await stream_from([HEAD + C1])
        assert await stream.read(5.0) == C1
        with pytest.raises(UpstreamTimeout, match=f"nothing within {timeout_s:g}s"):
            await stream.read(timeout_s)
        assert not transport.aborted  # the gateway decides what a timeout means

    run(scenario)


def test_the_send_timeout_no_longer_applies_once_the_head_has_arrived():
    async def scenario() -> None:
        conn, transport = connected()
        future = conn.send(REQUEST, 0.01, False)
        conn.data_received(HEAD)
        stream = await future
        assert isinstance(stream, UpstreamStream)
        with pytest.raises(UpstreamTimeout):
            await stream.read(0.05)  # outlives the send's 0.01 s timer
        assert not transport.aborted and not conn.closed

    run(scenario)


@pytest.mark.parametrize("dechunk, arrived", [(False, C1 + C2[:6]), (True, ITEMS[0] + b"dat")])
@pytest.mark.parametrize("reader_waiting", [False, True])
def test_a_connection_lost_mid_stream_gives_what_arrived_then_raises_upstream_lost(dechunk, arrived,
                                                                                    reader_waiting):
    async def scenario() -> None:
        stream, conn, _ = await stream_from([HEAD + C1 + C2[:6]], dechunk)
        got = b""
        if reader_waiting:
            got = await stream.read(5.0)
            pending = asyncio.ensure_future(stream.read(5.0))
            await asyncio.sleep(0)  # it waits for more
            conn.connection_lost(None)
            with pytest.raises(UpstreamLost):
                await asyncio.wait_for(pending, 5.0)
        else:
            conn.connection_lost(None)
            got = await stream.read(5.0)
            with pytest.raises(UpstreamLost):
                await stream.read(5.0)
        assert got == arrived and not stream.complete
        with pytest.raises(UpstreamLost):  # and again: the loss is not forgotten
            await stream.read(5.0)

    run(scenario)


def test_a_connection_lost_after_the_last_chunk_is_no_loss():
    async def scenario() -> None:
        stream, conn, _ = await stream_from([RESPONSE])
        conn.connection_lost(None)
        assert await drain(stream) == BODY and stream.complete

    run(scenario)


# --- back-pressure ---------------------------------------------------------------------


@pytest.mark.parametrize("dechunk", [False, True])
def test_reading_from_the_replica_pauses_above_the_high_water_mark_and_resumes_on_read(dechunk):
    big = b"y" * (STREAM_HIGH_WATER_BYTES // 2)

    async def scenario() -> None:
        stream, conn, transport = await stream_from([HEAD + chunk(big)], dechunk)
        assert transport.pauses == 0  # half the mark: still read
        conn.data_received(chunk(big) + chunk(b"z"))
        assert (transport.pauses, transport.resumes) == (1, 0)
        conn.data_received(chunk(b"w"))  # what was already in flight still arrives; paused once only
        assert transport.pauses == 1
        got = await stream.read(5.0)
        assert transport.resumes == 1
        assert len(got) > 2 * len(big)
        conn.data_received(LAST_CHUNK)
        await drain(stream)
        assert (transport.pauses, transport.resumes) == (1, 1)

    run(scenario)


# --- the connection afterwards ------------------------------------------------------------


async def pooled_stream(pool: UpstreamPool, reads: list[bytes],
                        ) -> tuple[UpstreamStream, UpstreamConnection, FakeTransport]:
    """A stream obtained through ``pool.request`` on a fake idle connection of the pool."""
    conn, transport = connected()
    pool._idle.append(conn)
    request = asyncio.ensure_future(pool.request(REQUEST, 5.0))
    await asyncio.sleep(0)  # it takes the idle connection and sends
    assert bytes(transport.written) == REQUEST
    for data in reads:
        conn.data_received(data)
    stream = await asyncio.wait_for(request, 5.0)
    assert isinstance(stream, UpstreamStream)
    return stream, conn, transport


def test_a_stream_that_ended_cleanly_returns_its_connection_to_the_pool_on_release():
    async def scenario() -> None:
        pool = UpstreamPool("unix:/nowhere")
        stream, conn, transport = await pooled_stream(pool, [RESPONSE])
        assert pool._idle == []  # the stream holds it until released
        await drain(stream)
        stream.release()
        assert pool._idle == [conn] and not transport.aborted

    run(scenario)


@pytest.mark.parametrize("reads, drained, close_pool", [
    ([HEAD + C1], False, False),  # incomplete: the replica must see the client leave
    ([HEAD + C1 + C2[:4]], False, False),  # incomplete, mid-chunk
    ([RESPONSE], True, True),  # complete, but the replica left the routing table
    ([CLOSING_HEAD + BODY], True, False),  # complete, but not keep-alive
])
def test_a_stream_released_otherwise_aborts_its_connection(reads, drained, close_pool):
    async def scenario() -> None:
        pool = UpstreamPool("unix:/nowhere")
        stream, conn, transport = await pooled_stream(pool, reads)
        if drained:
            await drain(stream)
        if close_pool:
            pool.close()
        stream.release()
        assert pool._idle == [] and transport.aborted and conn.closed

    run(scenario)


def test_a_lost_stream_released_aborts_its_connection():
    async def scenario() -> None:
        pool = UpstreamPool("unix:/nowhere")
        stream, conn, transport = await pooled_stream(pool, [HEAD + C1])
        conn.connection_lost(None)
        stream.release()
        assert pool._idle == [] and transport.aborted

    run(scenario)


@pytest.mark.parametrize("split", [None, 10, len(BUFFERED) - 1])
def test_a_buffered_response_still_resolves_to_an_upstream_response(split):
    async def scenario() -> None:
        conn, _ = connected()
        future = conn.send(REQUEST, 5.0)
        for data in ([BUFFERED] if split is None else [BUFFERED[:split], BUFFERED[split:]]):
            conn.data_received(data)
        response = await asyncio.wait_for(future, 5.0)
        assert isinstance(response, UpstreamResponse)
        assert (response.status, response.raw, response.keep_alive) == (200, BUFFERED, True)

    run(scenario)


@pytest.mark.parametrize("dechunk", [False, True])
def test_a_reused_connection_serves_a_buffered_response_and_a_stream_after_a_stream(dechunk):
    async def scenario() -> None:
        pool = UpstreamPool("unix:/nowhere")
        stream, conn, transport = await pooled_stream(pool, [RESPONSE])
        await drain(stream)
        stream.release()

        request = asyncio.ensure_future(pool.request(REQUEST, 5.0, dechunk))
        await asyncio.sleep(0)
        conn.data_received(BUFFERED)
        response = await asyncio.wait_for(request, 5.0)
        assert isinstance(response, UpstreamResponse) and response.raw == BUFFERED
        assert pool._idle == [conn]

        request = asyncio.ensure_future(pool.request(REQUEST, 5.0, dechunk))
        await asyncio.sleep(0)
        conn.data_received(HEAD + C3)
        again = await asyncio.wait_for(request, 5.0)
        assert isinstance(again, UpstreamStream) and again is not stream
        assert await again.read(5.0) == (ITEMS[2] if dechunk else C3)
        assert again.chunks == 1  # counted afresh for each stream
        conn.data_received(LAST_CHUNK)
        await drain(again)
        again.release()
        assert pool._idle == [conn] and not transport.aborted
        assert bytes(transport.written) == REQUEST * 3

    run(scenario)


@pytest.mark.parametrize("split", [None, len(HEAD) + len(C1), len(HEAD + C1 + C2) + 3])
@pytest.mark.parametrize("last, failed", [(LAST_CHUNK, False), (FAILED_LAST_CHUNK, True)])
def test_the_stream_error_trailer_marks_the_stream_failed(split, last, failed):
    response = HEAD + C1 + C2 + last
    reads = [response] if split is None else [response[:split], response[split:]]

    async def scenario() -> None:
        stream, _, _ = await stream_from(reads)
        assert await drain(stream) == C1 + C2 + last  # passed through as it came
        assert stream.failed is failed

    run(scenario)
