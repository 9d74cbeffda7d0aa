"""Overload and misbehaving handlers, with real processes: shed at once, no backlog, stuck workers replaced."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections import Counter

import pytest
from conftest import FIXTURES, LoadStream, pid_alive, stop_instance, wait_for

pytestmark = pytest.mark.integration

HEADERS = {"content-type": "application/json"}


def _hammer(port: int, path: str, payload: dict, threads: int, calls_each: int) -> list[tuple[int, str | None, dict]]:
    """Closed-loop clients, each on its own keep-alive connection; every answer is kept."""
    results: list[tuple[int, str | None, dict]] = []
    lock = threading.Lock()
    body = json.dumps(payload).encode()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for _ in range(calls_each):
                conn.request("POST", path, body, HEADERS)
                resp = conn.getresponse()
                answer = (resp.status, resp.getheader("retry-after"), json.loads(resp.read()))
                with lock:
                    results.append(answer)
        finally:
            conn.close()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(300)
    return results


def _replica_requests(inst) -> int:
    return sum(int(r.get("requests") or 0) for r in inst.status() if r["kind"] == "replica")


def test_overload_is_shed_at_once_with_retry_after_and_leaves_no_backlog(serve):
    # Capacity: 2 replicas x 1 call at a time; 16 closed-loop callers offer 8x that.
    inst = serve(FIXTURES / "misbehaving", "--replicas", "2", "--max-ongoing", "1", "--max-queued", "2",
                 "--timeout-s", "20")
    results = _hammer(inst.port, "/nap", {"ms": 50}, threads=16, calls_each=12)
    statuses = Counter(status for status, _, _ in results)
    assert statuses[200] > 0 and statuses[503] > 0, statuses
    assert set(statuses) == {200, 503}, statuses  # nothing sat out the 20 s timeout (no 504)
    for status, retry_after, body in results:
        if status == 503:
            assert retry_after is not None and int(retry_after) >= 1, body
            assert "overloaded" in body["error"] or "max_ongoing_requests" in body["error"], body
            assert body["request_id"]
    # Recovery is immediate: the next call is served.
    code, _, body = inst.post_json("/nap", {"ms": 1})
    assert code == 200, body
    # No backlog of abandoned work: replicas ran exactly the calls that were answered 200.
    served = statuses[200] + 1
    wait_for(lambda: _replica_requests(inst) == served, 30,
             f"replica request counters to reach the {served} calls served (now {_replica_requests(inst)})")


@pytest.mark.parametrize("timeouts", [
    ("--handler-timeout-s", "1"),  # the replica gives up before the gateway
    ("--timeout-s", "2"),  # handler_timeout_s defaults to timeout_s: both give up together
])
def test_a_handler_that_never_returns_gets_504_and_its_replica_is_replaced(serve, timeouts):
    inst = serve(FIXTURES / "misbehaving", "--replicas", "2", *timeouts)
    with LoadStream(inst.port, "/nap", {"ms": 5}, threads=2) as stream:
        wait_for(lambda: stream.ok >= 10, 60, "calls flowing")
        code, headers, body = inst.post_json("/hang", {})
        assert code == 504, body
        assert "did not return" in body["error"] or "no answer within" in body["error"], body
        stuck = headers["x-steady-replica"]
        pid = inst.process("replica", stuck)["pid"]
        # Other handlers keep working meanwhile, async ones on the stuck replica too.
        for _ in range(5):
            assert inst.post_json("/ping", {})[0] == 200
        wait_for(lambda: not pid_alive(pid), 90, f"the stuck replica {stuck} (pid {pid}) to be replaced")
        wait_for(lambda: sum(r["kind"] == "replica" and r["state"] == "ready" for r in inst.status()) == 2
                 and inst.all_ready(), 90, "two ready replicas again")
        served = stream.ok
        wait_for(lambda: stream.ok >= served + 20, 60, "calls flowing after the replacement")
    assert stream.failures == []
    reasons = [e["message"] for e in inst.events() if e["subject"] == stuck]
    assert any("stuck" in message for message in reasons), reasons
    timeouts = [e for e in inst.events("handler_timeout") if e["subject"] == stuck]
    assert timeouts and "did not return" in timeouts[0]["message"], timeouts


def test_replicas_whose_handlers_raised_memory_error_serve_until_their_successors_are_ready(serve):
    inst = serve(FIXTURES / "misbehaving", "--replicas", "2")
    with LoadStream(inst.port, "/ping", {}, threads=2) as stream:
        wait_for(lambda: stream.ok >= 10, 60, "calls flowing")
        sick: set[str] = set()

        def both_hit() -> bool:
            code, headers, body = inst.post_json("/oom", {})
            assert code == 500 and "MemoryError" in body["error"], body
            sick.add(headers["x-steady-replica"])
            return sick == {"r0", "r1"}

        wait_for(both_hit, 60, "a MemoryError on both replicas")
        pids = [inst.process("replica", r)["pid"] for r in sorted(sick)]
        for pid in pids:
            wait_for(lambda p=pid: not pid_alive(p), 120, f"pid {pid} to be replaced")
        wait_for(lambda: sum(r["kind"] == "replica" and r["state"] == "ready" for r in inst.status()) == 2
                 and inst.all_ready(), 90, "two ready replicas again")
        served = stream.ok
        wait_for(lambda: stream.ok >= served + 20, 60, "calls flowing after the replacement")
    assert stream.failures == []  # both kept serving until their successors took over
    replacing = [e for e in inst.events("replacing") if "MemoryError" in e["message"]]
    assert {e["subject"] for e in replacing} == {"r0", "r1"}


def test_a_call_whose_caller_hung_up_never_runs(serve):
    inst = serve(FIXTURES / "misbehaving", "--replicas", "1", "--gateways", "1")
    first: list = []
    holder = threading.Thread(target=lambda: first.append(inst.post_json("/nap", {"ms": 3000})))
    holder.start()  # occupies the replica's only worker
    wait_for(lambda: inst.post_json("/naps", {})[2]["started"] == 1, 30, "the first nap to start")
    # A second call queues behind it in the replica; then its caller hangs up.
    with socket.create_connection(("127.0.0.1", inst.port)) as caller:
        body = b'{"ms": 10}'
        caller.sendall(b"POST /nap HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                       b"content-length: %d\r\n\r\n%s" % (len(body), body))
        wait_for(lambda: inst.process("replica", "r0")["inflight"] == 2, 30, "the second call to reach the replica")
    holder.join(60)
    assert first[0][0] == 200
    # The worker is first come, first served: had the abandoned call run, it would come before this one.
    code, _, _ = inst.post_json("/nap", {"ms": 1})
    assert code == 200
    assert inst.post_json("/naps", {})[2]["started"] == 2


def test_processes_a_replica_started_do_not_outlive_it(serve):
    inst = serve(FIXTURES / "misbehaving", "--replicas", "1", "--gateways", "1")
    code, _, body = inst.post_json("/spawn", {})
    assert code == 200 and pid_alive(body["pid"])
    assert stop_instance(inst) == 0
    wait_for(lambda: not pid_alive(body["pid"]), 30, f"the replica's child (pid {body['pid']}) to be stopped")
