"""Replica process behaviour: drain on SIGTERM, custom health, timeouts, idempotency."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
from conftest import FIXTURES, free_port, wait_for

pytestmark = pytest.mark.integration


def _post(port: int, path: str, payload: dict, results: list, timeout_s: float = 60) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", path, json.dumps(payload), {"content-type": "application/json"})
        resp = conn.getresponse()
        results.append((resp.status, resp.getheader("x-steady-draining"), resp.read()))
    except OSError as exc:
        results.append((None, None, repr(exc).encode()))
    finally:
        conn.close()


def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "steadyserve.replica.main", "--target", str(FIXTURES / "slow"),
         "--id", "r9", "--endpoint", f"tcp:127.0.0.1:{port}", "--grace-s", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for(lambda: _ready(port), 60, "replica ready")
        # A kept-alive connection that is idle when the drain starts.
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        idle.request("POST", "/work", '{"ms": 1}', {"content-type": "application/json"})
        assert idle.getresponse().read() == b'{"slept_ms":1}'
        results: list = []
        workers = [threading.Thread(target=_post, args=(port, "/work", {"ms": 1500}, results)) for _ in range(3)]
        for w in workers:
            w.start()
        wait_for(lambda: _stats(port)["inflight"] == 3, 30, "3 requests in flight")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: not _accepts(port), 30, "the listener to close")
        # New work is refused in a way the gateway can safely retry elsewhere:
        # the idle keep-alive connection was closed (or answers 503 draining).
        late: list = []
        try:
            idle.request("POST", "/work", '{"ms": 1}', {"content-type": "application/json"})
            resp = idle.getresponse()
            late.append((resp.status, resp.getheader("x-steady-draining")))
        except (ConnectionError, http.client.HTTPException):
            late.append("closed")
        assert late in (["closed"], [(503, "1")])
        for w in workers:
            w.join(60)
        assert [r[0] for r in results] == [200, 200, 200]
        assert proc.wait(60) == 0
        output = proc.stdout.read()
        assert "draining: 3 in flight" in output and "stopped" in output
    finally:
        if proc.poll() is None:
            proc.kill()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _stats(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_failing_custom_health_check_gets_the_replica_replaced(serve):
    inst = serve(FIXTURES / "sickly", "--replicas", "1", "--gateways", "1")
    before = inst.process("replica", "r0")
    code, _, _ = inst.post_json("/poison", {})
    assert code == 200
    event = wait_for(lambda: [e for e in inst.events("killed") if e["subject"] == "r0"], 60, "a kill event")[0]
    assert "health() returned False" in event["message"]
    wait_for(lambda: (r := inst.process("replica", "r0"))["state"] == "ready" and r["pid"] != before["pid"],
             60, "a healthy replacement")
    assert inst.post_json("/ping", {})[2] == "pong"


def test_per_request_timeout_is_504(serve):
    inst = serve(FIXTURES / "slow", "--replicas", "1", "--gateways", "1", "--timeout-s", "0.5")
    code, headers, body = inst.post_json("/work", {"ms": 3000})
    assert code == 504 and headers["x-steady-replica"] == "r0"
    # The replica answers just before the gateway's own timer, naming the handler that overran.
    assert ("handler 'work' did not return before the call's deadline" in body["error"]
            or "no answer within the call's timeout of 0.5s" in body["error"]), body
    assert headers["x-request-id"] == body["request_id"]


def _kill_replica_mid_request(inst, path: str, payload: dict) -> tuple[int, dict]:
    results: list = []
    worker = threading.Thread(target=_post, args=(inst.port, path, payload, results))
    worker.start()
    busy = wait_for(lambda: [r for r in inst.status() if r["kind"] == "replica" and r["inflight"] == 1],
                    30, "the request to be in flight")[0]
    os.kill(busy["pid"], signal.SIGKILL)
    worker.join(60)
    status, _, raw = results[0]
    return status, json.loads(raw)


def test_idempotent_request_in_flight_on_a_killed_replica_is_retried(serve):
    inst = serve(FIXTURES / "slow", "--replicas", "2", "--gateways", "1")
    status, body = _kill_replica_mid_request(inst, "/work", {"ms": 4000})
    assert (status, body) == (200, {"slept_ms": 4000})


def test_non_idempotent_request_that_may_have_run_is_not_retried(serve):
    inst = serve(FIXTURES / "slow", "--replicas", "2", "--gateways", "1")
    status, body = _kill_replica_mid_request(inst, "/slow_charge", {"amount": 5, "ms": 4000})
    assert status == 502
    assert "not idempotent" in body["reason"] and body["attempts"] == 1
