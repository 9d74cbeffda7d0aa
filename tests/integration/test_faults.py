"""Killing or hanging any replica or gateway process under load fails no request."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import FIXTURES, LoadStream, pid_alive, stop_instance, wait_for

pytestmark = pytest.mark.integration
SLOW = FIXTURES / "slow"


def _wait_requests(stream: LoadStream, more_than: int) -> None:
    start = stream.ok
    wait_for(lambda: stream.ok > start + more_than, 60, f"{more_than} more successful requests")


def test_sigkill_replica_fails_no_request_and_is_replaced(serve):
    inst = serve(SLOW, "--replicas", "2")
    victim = inst.process("replica", "r0")
    with LoadStream(inst.port, "/work", {"ms": 20}, threads=6) as stream:
        _wait_requests(stream, 100)
        os.kill(victim["pid"], signal.SIGKILL)
        replaced = wait_for(
            lambda: (r := inst.process("replica", "r0"))["state"] == "ready" and r["pid"] != victim["pid"] and r,
            60, "r0 to be replaced and ready",
        )
        _wait_requests(stream, 100)
    assert stream.failures == []
    assert replaced["restarts"] == 1
    assert {"r0", "r1"} <= stream.replicas_seen
    exits = [e for e in inst.events("exited") if e["subject"] == "r0"]
    assert exits and "SIGKILL" in exits[-1]["message"]


def test_sigkill_gateway_keeps_serving_and_is_restarted(serve):
    inst = serve(SLOW, "--replicas", "2")
    victim = inst.process("gateway", "g0")
    # Requests in flight on (or queued for) the killed gateway process are lost
    # with it; callers using the client SDK get them retried and see no failure.
    with LoadStream(inst.port, "/slow/work", {"ms": 5}, threads=6, use_sdk=True) as stream:
        _wait_requests(stream, 100)
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(
            lambda: (r := inst.process("gateway", "g0"))["state"] == "ready" and r["pid"] != victim["pid"],
            60, "g0 to be restarted",
        )
        _wait_requests(stream, 100)
    assert stream.failures == []
    assert inst.process("gateway", "g0")["restarts"] == 1


def test_sigstop_replica_is_detected_ejected_and_replaced(serve):
    inst = serve(SLOW, "--replicas", "2")
    victim = inst.process("replica", "r1")
    with LoadStream(inst.port, "/work", {"ms": 20}, threads=6) as stream:
        _wait_requests(stream, 100)
        os.kill(victim["pid"], signal.SIGSTOP)
        wait_for(lambda: any(e["subject"] == "r1" for e in inst.events("killed")), 60,
                 "the hung replica to be killed")
        wait_for(
            lambda: (r := inst.process("replica", "r1"))["state"] == "ready" and r["pid"] != victim["pid"],
            60, "r1 to be replaced and ready",
        )
        _wait_requests(stream, 100)
    assert stream.failures == []
    assert not pid_alive(victim["pid"])
    assert [e for e in inst.events("unhealthy") if e["subject"] == "r1"]


def test_ctrl_c_stops_every_process(serve):
    inst = serve(SLOW, "--replicas", "3")
    pids = [r["pid"] for r in inst.status()]
    assert len(pids) == 5 and all(pid_alive(p) for p in pids)
    assert stop_instance(inst) == 0
    assert [p for p in pids if pid_alive(p)] == []
    assert all(r["state"] == "stopped" and r["pid"] is None for r in inst.status())


def test_replica_failing_requests_in_flight_is_ejected_and_reported(serve):
    inst = serve(SLOW, "--replicas", "2", "--gateways", "1")
    with LoadStream(inst.port, "/work", {"ms": 300}, threads=16) as stream:
        busy = wait_for(lambda: (r := inst.process("replica", "r0"))["inflight"] >= 4 and r, 60,
                        "at least 4 requests in flight on r0")
        os.kill(busy["pid"], signal.SIGKILL)
        # Its in-flight requests fail in a row at the one gateway: r0 is ejected
        # there, and the controller turns the gateway's report into an event.
        event = wait_for(lambda: [e for e in inst.events("ejected") if e["subject"] == "r0"], 60,
                         "an ejection event for r0")[0]
        _wait_requests(stream, 20)
    assert stream.failures == []
    assert "ejected by gateway g0" in event["message"] and "generation 1" in event["message"]
