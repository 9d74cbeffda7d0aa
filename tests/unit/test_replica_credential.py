"""A networked replica answers only requests carrying its credential (real sockets, real HTTP server)."""

from __future__ import annotations

import asyncio

import pytest

from steadyserve.replica.credential import KEY_ENV, require_key, take_key
from steadyserve.wire.http11 import Request, json_response
from steadyserve.wire.server import HttpServer

KEY = b"k" * 43


async def _echo(request: Request) -> bytes:
    return json_response(200, {"path": request.path.decode()})


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return data


def _call(headers: bytes) -> list[bytes]:
    async def run() -> list[bytes]:
        http = HttpServer(require_key(_echo, KEY))
        server = await asyncio.get_running_loop().create_server(http.protocol_factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return [await _exchange(port, b"GET " + path + b" HTTP/1.1\r\nhost: x\r\n" + headers
                                    + b"connection: close\r\n\r\n") for path in (b"/work", b"/healthz")]
        finally:
            server.close()
            http.close_all_connections()

    return asyncio.run(run())


@pytest.mark.parametrize("headers", [
    b"", b"x-steady-replica-key: " + KEY[:-1] + b"\r\n", b"x-steady-replica-key: " + KEY + b"x\r\n",
    b"x-steady-replica-key: \r\n", b"authorization: Bearer " + KEY + b"\r\n",
])
def test_requests_without_the_exact_credential_get_401_and_never_reach_the_handler(headers):
    for answer in _call(headers):
        assert answer.startswith(b"HTTP/1.1 401 ") and b"serves only its steadyserve gateways" in answer
        assert b'"path"' not in answer


def test_the_credential_opens_every_route():
    answers = _call(b"x-steady-replica-key: " + KEY + b"\r\n")
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2
    assert b'{"path":"/work"}' in answers[0] and b'{"path":"/healthz"}' in answers[1]


def test_the_key_is_taken_out_of_the_environment_before_service_code_runs():
    environ = {KEY_ENV: "s" * 40, "PATH": "/bin"}
    assert take_key(environ) == b"s" * 40
    assert environ == {"PATH": "/bin"}
    assert take_key(environ) is None


@pytest.mark.parametrize("bad", ["short", "é" * 40, "k" * 40 + "\r\nx-injected: 1", "k" * 20 + " " + "k" * 20])
def test_a_weak_key_or_one_that_is_not_a_plain_header_value_is_refused(bad):
    with pytest.raises(ValueError, match="at least 32 characters of letters, digits"):
        take_key({KEY_ENV: bad})


def test_a_key_from_a_file_loses_its_trailing_newline():
    assert take_key({KEY_ENV: "s" * 40 + "\n"}) == b"s" * 40


def test_a_refused_connection_is_closed_not_kept_for_the_next_request():
    async def run() -> bytes:
        http = HttpServer(require_key(_echo, KEY))
        server = await asyncio.get_running_loop().create_server(http.protocol_factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /work HTTP/1.1\r\nhost: x\r\n\r\n")  # keep-alive asked for
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 10)  # returns only once the server closes
            writer.close()
            return data
        finally:
            server.close()
            http.close_all_connections()

    answer = asyncio.run(run())
    assert answer.startswith(b"HTTP/1.1 401 ") and b"connection: close" in answer.lower()
