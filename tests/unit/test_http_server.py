"""The HTTP/1.1 server's limits, driven through a fake transport and an injected clock.

No sockets and no sleeps: bytes are fed to ``HttpServerProtocol``, time moves by
setting the clock and calling ``HttpServer.sweep(now)``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from steadyserve.errors import ConfigError
from steadyserve.wire.http11 import Request, json_response, valid_request_id
from steadyserve.wire.limits import ServerLimits, add_limit_flags, limits_from_flags
from steadyserve.wire.server import LINGER_S, HttpServer

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """What the protocol calls on an asyncio transport, recorded."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closing = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.buffered = 0  # bytes the client has not taken yet
        self.pause_on_write = False  # the next write leaves the buffer above high water
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        assert not self.closing and not self.eof_written, "write after close"
        self.out += data
        if self.pause_on_write:
            self.pause_on_write = False
            self.buffered = len(data)
            self.protocol.pause_writing()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class Response:
    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.body)


def parse_responses(data: bytes, head: bool = False) -> list[Response]:
    """Split written bytes into responses (``head``: bodies were left out)."""
    responses = []
    while data:
        end = data.index(b"\r\n\r\n")
        lines = data[:end].split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        headers = {k.lower(): v for k, v in headers.items()}
        length = 0 if head or status == 100 else int(headers.get(b"content-length", b"0"))
        responses.append(Response(status, headers, data[end + 4: end + 4 + length]))
        data = data[end + 4 + length:]
    return responses


class Conn:
    """One client connection to the server under test."""

    def __init__(self, server: HttpServer) -> None:
        self.transport = FakeTransport()
        self.protocol = server.protocol_factory()
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def responses(self, head: bool = False) -> list[Response]:
        return parse_responses(bytes(self.transport.out), head)

    @property
    def closed(self) -> bool:
        return self.transport.closing


class Harness:
    """A server with a recording app, a fake clock, and a switch to hold the app's answers."""

    def __init__(self, limits: ServerLimits | None = None,
                 app: Callable[[Request], Awaitable[bytes]] | None = None) -> None:
        self.clock = Clock()
        self.seen: list[Request] = []
        self.release = asyncio.Event()
        self.release.set()
        self.server = HttpServer(app or self.app, limits or ServerLimits(), clock=self.clock)

    async def app(self, request: Request) -> bytes:
        self.seen.append(request)
        await self.release.wait()
        return json_response(200, {"method": request.method.decode(), "url": request.url.decode(),
                                   "body": request.body.decode()})

    def connect(self) -> Conn:
        return Conn(self.server)

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.server.sweep(self.clock.now)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def get(path: str = "/x", *headers: str) -> bytes:
    return ("GET " + path + " HTTP/1.1\r\nhost: t\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


def post(body: bytes, path: str = "/x", *headers: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len(body)}\r\n"
    return (head + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + body


def assert_error(response: Response, status: int, request_id: bytes | None = None) -> None:
    """A server-made answer: JSON with an error, a request id, and the connection closed after it."""
    assert response.status == status
    assert response.headers[b"content-type"] == b"application/json"
    assert response.headers[b"connection"] == b"close"
    assert valid_request_id(response.headers[b"x-request-id"])
    assert response.json()["request_id"] == response.headers[b"x-request-id"].decode()
    assert response.json()["error"]
    if request_id is not None:
        assert response.headers[b"x-request-id"] == request_id


# --- plain serving -------------------------------------------------------------
def test_pipelined_requests_are_answered_in_order() -> None:
    async def scenario() -> None:
        h = Harness()
        conn = h.connect()
        conn.send(get("/a") + post(b"hi", "/b") + get("/c"))
        await settle()
        assert [r.json()["url"] for r in conn.responses()] == ["/a", "/b", "/c"]
        assert not conn.closed

    run(scenario)


def test_unhandled_app_error_is_a_json_500_and_the_connection_stays_up() -> None:
    async def scenario() -> None:
        calls = 0

        async def app(request: Request) -> bytes:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return json_response(200, {})

        h = Harness(app=app)
        conn = h.connect()
        conn.send(get("/x", "x-request-id: caller-1") + get())
        await settle()
        first, second = conn.responses()
        assert first.status == 500 and first.headers[b"x-request-id"] == b"caller-1"
        assert first.json() == {"error": "internal server error", "request_id": "caller-1"}
        assert second.status == 200 and not conn.closed

    run(scenario)


def test_malformed_request_is_400_and_closes() -> None:
    async def scenario() -> None:
        conn = Harness().connect()
        conn.send(b"GET / HTTP/1.1\r\nbad header line\r\n\r\n")
        await settle()
        (response,) = conn.responses()
        assert_error(response, 400)
        assert conn.transport.eof_written

    run(scenario)


# --- sizes ---------------------------------------------------------------------
@pytest.mark.parametrize("pieces", [1, 7], ids=["one-read", "trickled"])
def test_request_target_over_the_limit_is_414(pieces: int) -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(max_url_bytes=100))
        conn = h.connect()
        data = get("/" + "a" * 100, "x-request-id: u-1")
        step = len(data) // pieces + 1
        for i in range(0, len(data), step):
            conn.send(data[i: i + step])
        await settle()
        (response,) = conn.responses()
        assert_error(response, 414, b"u-1")  # answered once its headers (and id) are in
        assert response.json()["limit_bytes"] == 100
        assert h.seen == []

    run(scenario)


def test_a_huge_request_target_is_refused_while_it_is_still_arriving() -> None:
    async def scenario() -> None:
        limits = ServerLimits()
        conn = Harness(limits).connect()
        conn.send(b"GET /")
        reads = 0
        while not conn.transport.out and reads < 1600:
            conn.send(b"a" * 65536)
            reads += 1
        assert reads <= limits.max_head_raw_bytes // 65536 + 2
        assert_error(conn.responses()[0], 414)

    run(scenario)


def test_request_target_at_the_limit_is_served() -> None:
    async def scenario() -> None:
        conn = Harness(ServerLimits(max_url_bytes=100)).connect()
        conn.send(get("/" + "a" * 99))
        await settle()
        assert conn.responses()[0].status == 200

    run(scenario)


@pytest.mark.parametrize(("value_bytes", "status"), [(1000 - 4 - 1 - 9, 200), (1000 - 4 - 1 - 9 + 1, 431)])
def test_header_fields_are_limited_by_names_and_values(value_bytes: int, status: int) -> None:
    async def scenario() -> None:
        # "host" + "t" + "x-padding" + value = exactly the limit, or one byte over
        conn = Harness(ServerLimits(max_header_bytes=1000)).connect()
        conn.send(get("/x", "x-padding: " + "v" * value_bytes))
        await settle()
        (response,) = conn.responses()
        if status == 200:
            assert response.status == 200
        else:
            assert_error(response, 431)
            assert response.json()["limit_bytes"] == 1000

    run(scenario)


@pytest.mark.parametrize(("count", "status"), [(10, 200), (11, 431)])
def test_header_count_is_limited(count: int, status: int) -> None:
    async def scenario() -> None:
        conn = Harness(ServerLimits(max_headers=10)).connect()
        conn.send(get("/x", *(f"x-h{i}: v" for i in range(count - 1))))  # plus host
        await settle()
        (response,) = conn.responses()
        assert response.status == status
        if status == 431:
            assert_error(response, 431)
            assert response.json()["limit_headers"] == 10

    run(scenario)


def test_a_huge_header_is_refused_while_it_is_still_arriving() -> None:
    """httptools holds a header until it is complete, so the limit must trip per read."""

    async def scenario() -> None:
        limits = ServerLimits(max_header_bytes=64 * 1024)
        conn = Harness(limits).connect()
        conn.send(b"GET / HTTP/1.1\r\nx-request-id: big-1\r\nx-big: ")
        chunk = b"a" * 65536
        reads = 0
        while not conn.transport.out and reads < 1600:  # 100 MB if it never tripped
            conn.send(chunk)
            reads += 1
        # tripped within the raw allowance plus the one read whose share is not counted
        assert reads <= limits.max_head_raw_bytes // len(chunk) + 2
        (response,) = conn.responses()
        assert_error(response, 431, b"big-1")
        conn.send(chunk)  # what still arrives is dropped
        assert len(conn.responses()) == 1

    run(scenario)


def test_huge_chunked_trailers_are_refused_while_they_arrive() -> None:
    async def scenario() -> None:
        conn = Harness().connect()
        conn.send(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-trailer: ")
        reads = 0
        while not conn.transport.out and reads < 100:
            conn.send(b"t" * 65536)
            reads += 1
        assert_error(conn.responses()[0], 431)

    run(scenario)


def test_a_chunked_body_in_many_small_chunks_is_served() -> None:
    async def scenario() -> None:
        conn = Harness().connect()
        conn.send(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(2000):
            conn.send(b"40\r\n" + b"b" * 64 + b"\r\n")
        conn.send(b"0\r\n\r\n")
        await settle()
        (response,) = conn.responses()
        assert response.status == 200 and len(response.json()["body"]) == 2000 * 64

    run(scenario)


def test_a_declared_body_over_the_limit_is_413_before_it_is_read() -> None:
    async def scenario() -> None:
        conn = Harness(ServerLimits(max_body_bytes=10)).connect()
        conn.send(b"POST / HTTP/1.1\r\ncontent-length: 11\r\nx-request-id: r.1\r\n\r\n")
        (response,) = conn.responses()
        assert_error(response, 413, b"r.1")
        assert response.json()["limit_bytes"] == 10

    run(scenario)


# --- request ids on the server's own answers -----------------------------------------
@pytest.mark.parametrize(
    ("given", "kept"),
    [(b"abc-123", True), (b"A.b_c:d-9", True), (b"x" * 128, True), (b"", False), (b"x" * 129, False),
     (b"has space", False), (b"semi;colon", False), (b"caf\xc3\xa9", False)],
)
def test_valid_request_id(given: bytes, kept: bool) -> None:
    assert valid_request_id(given) is kept


@pytest.mark.parametrize("given", [b"has space", b"x" * 200])
def test_an_invalid_request_id_is_replaced_on_server_errors(given: bytes) -> None:
    async def scenario() -> None:
        conn = Harness(ServerLimits(max_url_bytes=10)).connect()
        conn.send(b"GET /x HTTP/1.1\r\nx-request-id: " + given + b"\r\ncontent-length: oops\r\n\r\n")
        (response,) = conn.responses()
        assert_error(response, 400)
        assert response.headers[b"x-request-id"] != given

    run(scenario)


# --- timeouts ------------------------------------------------------------------
def test_headers_must_be_complete_within_the_header_timeout_from_the_first_byte() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(header_timeout_s=10))
        conn = h.connect()
        conn.send(b"GET / HTTP/1.1\r\nx-request-id: slow-1\r\n")
        for _ in range(9):  # trickling bytes does not extend it
            h.advance(1.0)
            conn.send(b"x")
        assert not conn.transport.out
        h.advance(1.01)
        (response,) = conn.responses()
        assert_error(response, 408, b"slow-1")
        assert response.json()["timeout_s"] == 10
        assert conn.transport.eof_written and not conn.closed  # lingering: the client reads the answer
        h.advance(LINGER_S + 0.01)
        assert conn.closed

    run(scenario)


def test_body_must_arrive_within_the_body_timeout_after_the_headers() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(header_timeout_s=10, body_timeout_s=30))
        conn = h.connect()
        conn.send(b"POST / HTTP/1.1\r\ncontent-length: 100\r\n\r\n" + b"b" * 10)
        h.advance(29.9)
        assert not conn.transport.out
        h.advance(0.2)
        (response,) = conn.responses()
        assert_error(response, 408)
        assert "body" in response.json()["error"]

    run(scenario)


def test_an_idle_keepalive_connection_is_closed_silently() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(keepalive_timeout_s=60))
        conn = h.connect()
        conn.send(get())
        await settle()
        written = bytes(conn.transport.out)
        h.advance(59.9)
        assert not conn.closed
        h.advance(0.2)
        assert conn.closed and bytes(conn.transport.out) == written

    run(scenario)


def test_a_connection_that_never_sends_is_closed_after_the_header_timeout() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(header_timeout_s=10, keepalive_timeout_s=60))
        conn = h.connect()
        h.advance(10.1)
        assert conn.closed and not conn.transport.out

    run(scenario)


def test_no_timeout_runs_while_the_app_works() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(keepalive_timeout_s=5))
        h.release.clear()
        conn = h.connect()
        conn.send(get())
        await settle()
        h.advance(1000)
        assert not conn.closed and not conn.transport.out
        h.release.set()
        await settle()
        assert conn.responses()[0].status == 200
        h.advance(5.1)  # the keep-alive clock starts once the answer is written
        assert conn.closed

    run(scenario)


def test_a_header_timeout_behind_a_request_in_progress_is_answered_after_it() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(header_timeout_s=10))
        h.release.clear()
        conn = h.connect()
        conn.send(get("/first") + b"GET /second HTTP/1.1\r\n")
        await settle()
        h.advance(10.1)
        assert not conn.transport.out  # the first answer goes first
        h.release.set()
        await settle()
        first, second = conn.responses()
        assert first.status == 200 and first.json()["url"] == "/first"
        assert_error(second, 408)

    run(scenario)


def test_the_sweep_expires_only_connections_past_their_deadline() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(header_timeout_s=10))
        early = h.connect()
        h.clock.now += 5
        late = h.connect()
        h.advance(5.1)
        assert early.closed and not late.closed

    run(scenario)


# --- connections -------------------------------------------------------------------
def test_connections_over_the_limit_get_503_and_are_closed_at_once() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(max_connections=2))
        first, second = h.connect(), h.connect()
        extra = h.connect()
        (response,) = extra.responses()
        assert_error(response, 503)
        assert response.headers[b"retry-after"] == b"1"
        assert extra.closed and h.server.refused_connections == 1
        first.send(get())
        await settle()
        assert first.responses()[0].status == 200  # existing connections are served
        second.protocol.close()
        await settle()
        assert not h.connect().closed  # room again

    run(scenario)


# --- back-pressure -------------------------------------------------------------------
def test_a_client_that_does_not_read_stops_reading_and_the_next_request() -> None:
    async def scenario() -> None:
        h = Harness()
        conn = h.connect()
        conn.transport.pause_on_write = True  # the first answer fills the buffer
        conn.send(get("/a") + get("/b"))
        await settle()
        assert [r.json()["url"] for r in conn.responses()] == ["/a"]
        assert not conn.transport.reading
        assert [r.url for r in h.seen] == [b"/a"]  # /b does not start while /a's answer waits
        conn.transport.buffered = 0
        conn.protocol.resume_writing()
        await settle()
        assert [r.json()["url"] for r in conn.responses()] == ["/a", "/b"]
        assert conn.transport.reading

    run(scenario)


def test_a_client_that_never_reads_is_dropped_after_the_send_timeout() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(send_timeout_s=60))
        conn = h.connect()
        conn.transport.pause_on_write = True
        conn.send(get("/a") + get("/b"))
        await settle()
        h.advance(59.9)
        assert not conn.closed
        h.advance(0.2)
        assert conn.closed and conn.transport.aborted
        await settle()
        assert [r.url for r in h.seen] == [b"/a"]

    run(scenario)


def test_no_header_timeout_while_the_server_holds_reading() -> None:
    async def scenario() -> None:
        h = Harness(ServerLimits(header_timeout_s=10))
        h.release.clear()
        conn = h.connect()
        conn.send(get() * 66 + b"GET /partial HTTP/1.1\r\n")  # more than the pipelining window
        await settle()
        assert not conn.transport.reading
        h.advance(100)
        assert not conn.transport.out and not conn.closed
        h.release.set()
        await settle()
        assert len(conn.responses()) == 66 and conn.transport.reading
        h.advance(10.1)  # reading again: now it is the client's turn
        assert_error(conn.responses()[-1], 408)

    run(scenario)


# --- Expect: 100-continue -----------------------------------------------------------
def test_expect_100_continue_is_answered_at_once_and_not_passed_on() -> None:
    async def scenario() -> None:
        h = Harness()
        conn = h.connect()
        conn.send(b"POST /x HTTP/1.1\r\nexpect: 100-Continue\r\ncontent-length: 5\r\n\r\n")
        assert bytes(conn.transport.out) == CONTINUE
        conn.send(b"hello")
        await settle()
        interim, final = conn.responses()
        assert interim.status == 100 and final.status == 200 and final.json()["body"] == "hello"
        assert h.seen[0].header(b"expect") is None

    run(scenario)


def test_expect_with_a_body_over_the_limit_is_413_instead_of_100() -> None:
    async def scenario() -> None:
        conn = Harness(ServerLimits(max_body_bytes=4)).connect()
        conn.send(b"POST /x HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
        (response,) = conn.responses()
        assert_error(response, 413)

    run(scenario)


def test_expect_from_an_http10_client_gets_no_interim_answer() -> None:
    async def scenario() -> None:
        conn = Harness().connect()
        conn.send(b"POST /x HTTP/1.0\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
        assert not conn.transport.out

    run(scenario)


def test_expect_behind_a_request_in_progress_waits_for_its_answer() -> None:
    async def scenario() -> None:
        h = Harness()
        h.release.clear()
        conn = h.connect()
        conn.send(get("/first") + b"POST /x HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
        await settle()
        assert not conn.transport.out
        h.release.set()
        await settle()
        first, interim = conn.responses()
        assert first.status == 200 and interim.status == 100

    run(scenario)


# --- HEAD ---------------------------------------------------------------------------
def test_head_is_served_as_get_without_the_body() -> None:
    async def scenario() -> None:
        h = Harness()
        conn = h.connect()
        conn.send(b"HEAD /x HTTP/1.1\r\nhost: t\r\n\r\n" + get("/after"))
        await settle()
        request = h.seen[0]
        assert request.method == b"GET" and request.head
        get_body = orjson.dumps({"method": "GET", "url": "/x", "body": ""})
        written = bytes(conn.transport.out)
        head_answer, rest = written.split(b"\r\n\r\n", 1)
        assert b"content-length: %d" % len(get_body) in head_answer
        (after,) = parse_responses(rest)  # nothing of the GET body between the two answers
        assert after.json()["url"] == "/after"

    run(scenario)


def test_a_server_error_to_a_head_has_no_body() -> None:
    async def scenario() -> None:
        conn = Harness(ServerLimits(max_url_bytes=10)).connect()
        conn.send(b"HEAD /" + b"a" * 20 + b" HTTP/1.1\r\n\r\n")
        written = bytes(conn.transport.out)
        assert written.startswith(b"HTTP/1.1 414 ") and written.endswith(b"\r\n\r\n")

    run(scenario)


# --- settings -------------------------------------------------------------------------
def test_limits_come_from_flags() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-body-bytes", type=int, default=1024)
    add_limit_flags(parser)
    limits = limits_from_flags(parser.parse_args(["--header-timeout-s", "1.5", "--max-connections", "7",
                                                  "--keepalive-timeout-s", "inf"]))
    assert limits == ServerLimits(max_body_bytes=1024, header_timeout_s=1.5, max_connections=7,
                                  keepalive_timeout_s=math.inf)


@pytest.mark.parametrize("field", ["max_url_bytes", "header_timeout_s", "max_connections"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        ServerLimits(**{field: 0})
