"""HTTP hardening of the gateway, over raw sockets against real processes (issue 6 §3).

Default limits are checked on the port of `steady serve`. Limits that need short
settings (timeouts, connection count) are checked on extra gateway processes
started with their own flags, following the same routing table file.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLES, Instance, free_port, pid_alive, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration

READ_TIMEOUT_S = 60.0  # an upper bound for a loaded machine, never a measurement
ECHO = b'{"message": "hi"}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = start_instance(EXAMPLES / "echo", tmp_path_factory.mktemp("http-limits") / "state",
                          "--replicas", "1", "--gateways", "1")
    pids = [r["pid"] for r in inst.status() if r["pid"]]
    yield inst
    stop_instance(inst)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def extra_gateway(stack: Instance) -> Iterator[Callable[..., int]]:
    """Start one more gateway process with the given flags; returns its port."""
    sockets_dir = tempfile.mkdtemp(prefix="gw")  # short: a Unix socket path is at most 107 bytes
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> int:
        port, name = free_port(), f"gx{len(procs)}"
        with open(stack.state_dir / f"{name}.log", "wb") as log:  # the process keeps its own copy
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "steadyserve.gateway.main", "--id", name, "--port", str(port), "--routes",
                 str(stack.state_dir / "routes.json"), "--admin-endpoint", f"unix:{sockets_dir}/{name}.sock",
                 *flags],
                stdout=log, stderr=subprocess.STDOUT,
            ))
        wait_for(lambda: post_echo(port) == 200, 60, f"gateway {name} to serve")
        return port

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    shutil.rmtree(sockets_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def short_timeouts(extra_gateway: Callable[..., int]) -> int:
    return extra_gateway("--header-timeout-s", "1", "--body-timeout-s", "1", "--keepalive-timeout-s", "1")


# --- raw HTTP helpers ------------------------------------------------------------------
def post_echo(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    try:
        conn.request("POST", "/echo", body=ECHO, headers={"content-type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)


class Reader:
    """Reads HTTP/1.1 responses off a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed before a response; got {self.buffer!r}"
        raw, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        status = int(lines[0].split(" ")[1])
        length = 0 if head or status == 100 else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed inside a response body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        """True once the server has closed the connection, with nothing more sent."""
        while self._fill():
            pass
        return self.buffer == b""


def request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(port) as sock:
        sock.sendall(data)
        return Reader(sock).response()


def echo_request(*headers: str, method: str = "POST", path: str = "/echo") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: t", *headers]
    if method == "POST":
        lines.append(f"content-length: {len(ECHO)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (ECHO if method == "POST" else b"")


def assert_server_error(answer: tuple[int, dict[str, str], bytes], status: int, request_id: str | None) -> None:
    code, headers, body = answer
    assert code == status, body
    assert headers["connection"] == "close"
    doc = json.loads(body)
    assert doc["error"] and doc["request_id"] == headers["x-request-id"]
    if request_id is not None:
        assert headers["x-request-id"] == request_id
    else:
        assert 1 <= len(headers["x-request-id"]) <= 128


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


# --- sizes, on the default limits ---------------------------------------------------------
def test_a_100_mb_header_is_refused_while_it_arrives_and_the_gateway_keeps_serving(stack: Instance) -> None:
    gateway_pid = next(r["pid"] for r in stack.status() if r["kind"] == "gateway")
    peak_before_kb = peak_rss_kb(gateway_pid)
    with connect(stack.port) as sock:

        def send_huge_header() -> None:
            try:
                sock.sendall(b"GET /echo HTTP/1.1\r\nhost: t\r\nx-request-id: huge-1\r\nx-big: ")
                chunk = b"a" * (1 << 20)
                for _ in range(100):
                    sock.sendall(chunk)
            except OSError:
                pass  # the gateway closes the connection once it has answered

        sender = threading.Thread(target=send_huge_header, daemon=True)
        sender.start()
        assert_server_error(Reader(sock).response(), 431, "huge-1")
        assert post_echo(stack.port) == 200  # the process answers others meanwhile
        sender.join(READ_TIMEOUT_S)
    assert post_echo(stack.port) == 200
    # Never buffered: the peak resident memory grew by far less than the 100 MB sent.
    assert peak_rss_kb(gateway_pid) - peak_before_kb < 50 * 1024


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ((), "/echo?" + "q" * 8192, 414),
        (tuple(f"x-h{i}: v" for i in range(100)), "/echo", 431),  # 101 with host
        (("x-a: " + "a" * 40000, "x-b: " + "b" * 30000), "/echo", 431),
    ],
    ids=["url-over-8-KiB", "over-100-headers", "header-section-over-64-KiB"],
)
def test_oversized_request_heads_are_refused(stack: Instance, headers: tuple[str, ...], path: str,
                                             status: int) -> None:
    answer = request(stack.port, echo_request("x-request-id: big.1", *headers, path=path))
    assert_server_error(answer, status, "big.1")


@pytest.mark.parametrize(("given", "kept"), [("caller-7:a.b_c", True), ("not valid!", False)])
def test_server_errors_carry_the_callers_request_id_only_when_valid(stack: Instance, given: str,
                                                                    kept: bool) -> None:
    answer = request(stack.port, echo_request(f"x-request-id: {given}", path="/echo?" + "q" * 9000))
    assert_server_error(answer, 414, given if kept else None)
    assert kept or answer[1]["x-request-id"] != given


def test_malformed_request_is_a_json_400(stack: Instance) -> None:
    answer = request(stack.port, b"POST /echo HTTP/1.1\r\nx-request-id: m-1\r\ncontent-length: x\r\n\r\n")
    assert_server_error(answer, 400, "m-1")


# --- Expect: 100-continue -----------------------------------------------------------------
def test_expect_100_continue_gets_an_interim_answer_before_the_body_is_sent(stack: Instance) -> None:
    with connect(stack.port) as sock:
        reader = Reader(sock)
        sock.sendall(f"POST /echo HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: {len(ECHO)}"
                     "\r\n\r\n".encode())
        assert reader.response()[0] == 100
        sock.sendall(ECHO)
        status, _, body = reader.response()
        assert status == 200 and json.loads(body) == {"message": "hi"}


def test_expect_with_a_body_over_the_limit_gets_413_at_once(stack: Instance) -> None:
    answer = request(stack.port, b"POST /echo HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\n"
                                 b"content-length: 17000000\r\n\r\n")
    assert_server_error(answer, 413, None)
    assert json.loads(answer[2])["limit_bytes"] == 16 * 1024 * 1024


# --- HEAD ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "status"), [("/openapi.json", 200), ("/v2/health/ready", 200), ("/echo", 405)])
def test_head_is_answered_like_get_without_a_body(stack: Instance, path: str, status: int) -> None:
    with connect(stack.port) as sock:
        reader = Reader(sock)
        sock.sendall(echo_request(method="GET", path=path))
        get_status, get_headers, get_body = reader.response()
        sock.sendall(echo_request(method="HEAD", path=path) + echo_request())
        head_status, head_headers, _ = reader.response(head=True)
        assert (get_status, head_status) == (status, status)
        assert head_headers["content-length"] == get_headers["content-length"] == str(len(get_body))
        # nothing of a body follows: the next answer on the connection starts right away
        assert reader.response()[0] == 200


# --- timeouts, on a gateway with 1 s limits ----------------------------------------------------
def test_slowloris_connections_are_answered_408_by_the_header_timeout(short_timeouts: int) -> None:
    sockets = [connect(short_timeouts) for _ in range(200)]
    try:
        for i, sock in enumerate(sockets):
            sock.sendall(f"POST /echo HTTP/1.1\r\nhost: t\r\nx-request-id: slow-{i}\r\nx-slow: ".encode())
        assert post_echo(short_timeouts) == 200  # held connections do not hold up others
        for i, sock in enumerate(sockets):
            reader = Reader(sock)
            answer = reader.response()
            assert_server_error(answer, 408, f"slow-{i}")
            assert "headers" in json.loads(answer[2])["error"]
            assert reader.closed()
    finally:
        for sock in sockets:
            sock.close()
    assert post_echo(short_timeouts) == 200


def test_a_body_that_stops_arriving_is_answered_408(short_timeouts: int) -> None:
    with connect(short_timeouts) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{\"message\": ")
        answer = Reader(sock).response()
    assert_server_error(answer, 408, None)
    assert "body" in json.loads(answer[2])["error"]


def test_an_idle_keepalive_connection_is_closed_silently(short_timeouts: int) -> None:
    with connect(short_timeouts) as sock:
        reader = Reader(sock)
        sock.sendall(echo_request())
        assert reader.response()[0] == 200
        assert reader.closed()


# --- connections -------------------------------------------------------------------------------
def test_connections_beyond_the_limit_get_503_and_the_rest_are_served(extra_gateway: Callable[..., int]) -> None:
    port = extra_gateway("--max-connections", "20")
    held = [connect(port) for _ in range(20)]
    try:
        readers = [Reader(sock) for sock in held]
        for sock, reader in zip(held, readers, strict=True):  # each is accepted and counted
            sock.sendall(echo_request())
            assert reader.response()[0] == 200
        with connect(port) as extra:
            reader = Reader(extra)
            status, headers, body = reader.response()
            assert status == 503 and headers["retry-after"] == "1", body
            assert reader.closed()
        held[0].sendall(echo_request())
        assert readers[0].response()[0] == 200  # existing connections are still served
        for sock in held[:5]:
            sock.close()
        wait_for(lambda: post_echo(port) == 200, 60, "room for a new connection")
    finally:
        for sock in held:
            sock.close()


def test_a_bad_limit_flag_stops_the_gateway_before_it_serves(tmp_path: Path) -> None:
    """A limit out of range is refused at start-up, not replaced by a default."""
    result = subprocess.run(
        [sys.executable, "-m", "steadyserve.gateway.main", "--id", "g", "--port", "0", "--routes",
         str(tmp_path / "r.json"), "--admin-endpoint", f"unix:{tmp_path}/a.sock", "--max-headers", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0 and "max_headers must be > 0" in result.stderr
