"""``StreamReply`` sent by a real ``HttpServer`` on 127.0.0.1 to a raw asyncio client.

The app hands the server a ``pieces`` object the test controls, and counts what
the server does with it: how many pieces it pulled, how often it closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from steadyserve.wire.http11 import (
    LAST_CHUNK,
    Request,
    StreamAborted,
    StreamReply,
    chunk,
    response,
    stream_head,
)
from steadyserve.wire.server import HttpServer

GET = b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n"
PLAIN = b"GET /plain HTTP/1.1\r\nhost: test\r\n\r\n"
PLAIN_REPLY = response(200, b'{"plain":true}')
SERVER_LOG = "steadyserve.wire.server"


class QueuedPieces:
    """Pieces the test puts in one by one: bytes to send, None to end, an exception to raise."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.pulled = 0
        self.closes = 0
        self.closed = asyncio.Event()

    def __aiter__(self) -> QueuedPieces:
        return self

    async def __anext__(self) -> bytes:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        self.pulled += 1
        return item

    async def aclose(self) -> None:
        self.closes += 1
        self.closed.set()


class CountedPieces:
    """``total`` numbered pieces of ``size`` bytes each, framed as chunks, as fast as they are pulled."""

    def __init__(self, total: int, size: int) -> None:
        self.total = total
        self.size = size
        self.pulled = 0
        self.closes = 0
        self.closed = asyncio.Event()

    def payload(self, index: int) -> bytes:
        return b"%08d" % index + b"." * (self.size - 8)

    def __aiter__(self) -> CountedPieces:
        return self

    async def __anext__(self) -> bytes:
        if self.pulled == self.total:
            raise StopAsyncIteration
        self.pulled += 1
        return chunk(self.payload(self.pulled - 1))

    async def aclose(self) -> None:
        self.closes += 1
        self.closed.set()


App = Callable[[Request], Awaitable[bytes | StreamReply]]


def streaming_app(pieces: QueuedPieces | CountedPieces, seen: list[Request] | None = None,
                  *, close_after: bool = False) -> App:
    """``/stream`` answers with ``pieces`` (the first time it is asked); anything else with ``PLAIN_REPLY``."""

    async def app(request: Request) -> bytes | StreamReply:
        if seen is not None:
            seen.append(request)
        if request.path != b"/stream":
            return PLAIN_REPLY
        head = stream_head(200, b"text/event-stream", chunked=not close_after)
        return StreamReply(200, head, pieces, close_after=close_after)

    return app


@contextlib.asynccontextmanager
async def serving(app: App, *, sndbuf: int | None = None) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(app)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server.protocol_factory, "127.0.0.1", 0)
    if sndbuf is not None:  # accepted connections inherit it: little hides in the kernel
        listener.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    try:
        yield server, listener.sockets[0].getsockname()[1]
    finally:
        server.close_all_connections()
        listener.close()
        await listener.wait_closed()


async def connect(port: int, *, rcvbuf: int | None = None,
                  limit: int = 2 ** 16) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=limit)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk's data (b"" for the last chunk, whose trailing CRLF is read too)."""
    size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), 10), 16)
    data = await asyncio.wait_for(reader.readexactly(size + 2), 10)
    assert data.endswith(b"\r\n")
    return data[:-2]


async def read_plain(reader: asyncio.StreamReader) -> bytes:
    head = await read_head(reader)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """What the client gets until the connection ends (an abort may end it with a reset)."""
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while data := await asyncio.wait_for(reader.read(65536), 10):
            out += data
    return out


async def until_settled(count: Callable[[], int], *, quiet_polls: int = 200, deadline_s: float = 10.0) -> int:
    """Turn the event loop until ``count()`` has stopped changing for ``quiet_polls`` turns in a row."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    last, quiet = count(), 0
    while quiet < quiet_polls:
        assert loop.time() < end, f"still changing after {deadline_s:g}s (at {last})"
        await asyncio.sleep(0)
        now = count()
        quiet, last = (quiet + 1, last) if now == last else (0, now)
    return last


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


# --- a stream that ends as a whole response --------------------------------------------


def test_a_chunked_stream_arrives_whole_and_the_connection_serves_the_next_request():
    async def scenario() -> None:
        pieces = QueuedPieces()
        async with serving(streaming_app(pieces)) as (_, port):
            reader, writer = await connect(port)
            writer.write(GET)
            pieces.queue.put_nowait(chunk(b"data: one\n\n"))  # the head goes out with the first piece
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked\r\n" in head
            got = [await read_chunk(reader)]
            pieces.queue.put_nowait(chunk(b"data: two\n\n"))
            got.append(await read_chunk(reader))  # it arrives before the next piece is produced
            pieces.queue.put_nowait(LAST_CHUNK)
            pieces.queue.put_nowait(None)
            assert await read_chunk(reader) == b""
            assert got == [b"data: one\n\n", b"data: two\n\n"]
            await asyncio.wait_for(pieces.closed.wait(), 10)

            writer.write(PLAIN)  # keep-alive: the same connection answers again
            assert await read_plain(reader) == PLAIN_REPLY
            assert pieces.closes == 1
            writer.close()

    run(scenario)


def test_a_close_after_stream_ends_with_the_connection():
    async def scenario() -> None:
        pieces = QueuedPieces()
        async with serving(streaming_app(pieces, close_after=True)) as (_, port):
            reader, writer = await connect(port)
            writer.write(GET)
            for item in (b"first ", b"second"):
                pieces.queue.put_nowait(item)
            pieces.queue.put_nowait(None)
            received = await read_to_eof(reader)
            head, _, body = received.partition(b"\r\n\r\n")
            assert b"connection: close" in head and b"transfer-encoding" not in head
            assert body == b"first second"
            assert pieces.closes == 1
            writer.close()

    run(scenario)


def test_a_head_request_gets_the_head_only_and_its_pieces_are_closed_unstarted():
    async def scenario() -> None:
        pieces = QueuedPieces()
        async with serving(streaming_app(pieces)) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"HEAD /stream HTTP/1.1\r\nhost: test\r\n\r\n")
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 200 ")
            await asyncio.wait_for(pieces.closed.wait(), 10)
            writer.write(PLAIN)  # nothing of a body came between: the next answer follows the head
            assert await read_plain(reader) == PLAIN_REPLY
            assert (pieces.pulled, pieces.closes) == (0, 1)
            writer.close()

    run(scenario)


def test_a_stream_with_no_pieces_still_sends_its_head():
    async def scenario() -> None:
        pieces = CountedPieces(0, PIECE_BYTES)
        async with serving(streaming_app(pieces, close_after=True)) as (_, port):
            reader, writer = await connect(port)
            writer.write(GET)
            received = await read_to_eof(reader)
            assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\n")
            assert pieces.closes == 1
            writer.close()

    run(scenario)


@pytest.mark.parametrize("version, chunked_ok", [(b"HTTP/1.0", False), (b"HTTP/1.1", True)])
def test_chunked_ok_is_false_only_for_an_http_1_0_request(version, chunked_ok):
    async def scenario() -> None:
        seen: list[Request] = []
        async with serving(streaming_app(QueuedPieces(), seen)) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /plain " + version + b"\r\nhost: test\r\n\r\n")
            await read_plain(reader)
            assert [r.chunked_ok for r in seen] == [chunked_ok]
            writer.close()

    run(scenario)


# --- a stream that does not end as a whole response ----------------------------------------


@pytest.mark.parametrize("error, logged", [(StreamAborted("replica went away"), False),
                                           (RuntimeError("a bug in the pieces"), True)])
@pytest.mark.parametrize("pieces_before", [0, 1])
def test_pieces_that_raise_abort_the_connection_and_are_closed(error, logged, pieces_before, caplog):
    async def scenario() -> None:
        pieces = QueuedPieces()
        async with serving(streaming_app(pieces)) as (_, port):
            reader, writer = await connect(port)
            writer.write(GET)
            if pieces_before:
                pieces.queue.put_nowait(chunk(b"data: one\n\n"))
                await read_head(reader)
                assert await read_chunk(reader) == b"data: one\n\n"
            pieces.queue.put_nowait(error)
            rest = await read_to_eof(reader)
            assert rest == b""  # cut short: no last chunk, never a complete-looking body
            await asyncio.wait_for(pieces.closed.wait(), 10)
            assert pieces.closes == 1
            writer.close()

    with caplog.at_level(logging.ERROR, logger=SERVER_LOG):
        run(scenario)
    failures = [r for r in caplog.records if r.name == SERVER_LOG and r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == (["streamed response failed"] if logged else [])


def test_a_client_that_leaves_mid_stream_has_the_pieces_closed_once():
    async def scenario() -> None:
        pieces = QueuedPieces()
        async with serving(streaming_app(pieces)) as (_, port):
            reader, writer = await connect(port)
            writer.write(GET)
            pieces.queue.put_nowait(chunk(b"data: one\n\n"))
            await read_head(reader)
            assert await read_chunk(reader) == b"data: one\n\n"
            writer.close()  # the server waits for the next piece meanwhile
            await asyncio.wait_for(pieces.closed.wait(), 10)
            pieces.queue.put_nowait(chunk(b"data: two\n\n"))
            await until_settled(lambda: pieces.queue.qsize())
            assert (pieces.pulled, pieces.closes) == (1, 1)

    run(scenario)


# --- back-pressure --------------------------------------------------------------------------

PIECE_BYTES = 1024
TOTAL_PIECES = 4096  # 4 MiB: far more than the buffers between server and client hold


def test_a_client_that_stops_reading_stops_the_server_pulling_pieces():
    async def scenario() -> None:
        pieces = CountedPieces(TOTAL_PIECES, PIECE_BYTES)
        async with serving(streaming_app(pieces), sndbuf=8192) as (_, port):
            reader, writer = await connect(port, rcvbuf=8192, limit=4096)
            writer.write(GET)
            await read_head(reader)  # then read nothing for a while
            stalled_at = await until_settled(lambda: pieces.pulled)
            assert 0 < stalled_at < TOTAL_PIECES // 4
            assert pieces.closes == 0

            payloads = [await read_chunk(reader) for _ in range(TOTAL_PIECES)]
            assert payloads == [pieces.payload(i) for i in range(TOTAL_PIECES)]  # in order, none missing
            await asyncio.wait_for(pieces.closed.wait(), 10)
            assert (pieces.pulled, pieces.closes) == (TOTAL_PIECES, 1)
            writer.close()

    run(scenario)


def test_a_client_that_leaves_while_the_server_waits_for_it_to_read_has_the_pieces_closed_once():
    async def scenario() -> None:
        pieces = CountedPieces(TOTAL_PIECES, PIECE_BYTES)
        async with serving(streaming_app(pieces), sndbuf=8192) as (_, port):
            reader, writer = await connect(port, rcvbuf=8192, limit=4096)
            writer.write(GET)
            await read_head(reader)
            stalled_at = await until_settled(lambda: pieces.pulled)
            writer.close()  # with unread bytes: the server's side sees a reset
            await asyncio.wait_for(pieces.closed.wait(), 10)
            assert pieces.closes == 1 and pieces.pulled == stalled_at < TOTAL_PIECES

    run(scenario)
