"""Generator handlers streamed through real gateway and replica processes (tests/fixtures/streaming)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading

import httpx
import pytest
from conftest import FIXTURES, STEADY, start_instance, stop_with_children, wait_for

from steadyserve import AsyncClient, Client, HandlerFailed, StreamInterrupted

pytestmark = pytest.mark.integration

SPEC = """\
deployments:
  streams:
    service: {service}
    replicas: 2
    streaming:
      chunk_timeout_s: 2
      timeout_s: 4
  single:
    service: {service}
    replicas: 1
    handler_timeout_s: 1
    admission:
      max_ongoing_requests: 1
      queue_timeout_s: 60
  solo:
    service: {service}
    replicas: 1
    rollout:
      bake_s: 0.5
      max_bake_s: 1
gateway:
  processes: 1
"""


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    spec = root / "steady.yaml"
    spec.write_text(SPEC.format(service=FIXTURES / "streaming"))
    instance = start_instance(spec, root / "state", command="up")
    yield instance
    stop_with_children(instance)


@pytest.fixture
def ready(inst):
    """Every replica up (a test before may have killed one on purpose)."""
    wait_for(inst.all_ready, 90, "every process ready")
    return inst


def events(response: httpx.Response) -> list[tuple[str, object]]:
    """(event type, decoded data) of each Server-Sent Event of a whole answer."""
    out = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        kind, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)
        out.append((kind, json.loads("\n".join(data))))
    return out


def state(inst, deployment: str = "single") -> dict[str, int]:
    return httpx.post(f"{inst.url}/{deployment}/state", timeout=30).json()


def metric(inst, name: str, **labels: str) -> float:
    text = httpx.get(f"{inst.url}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_generator_streams_typed_items_as_server_sent_events(ready):
    response = httpx.post(f"{ready.url}/streams/tokens", json={"count": 4}, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-request-id"]
    assert events(response) == [("message", {"index": i, "text": f"t{i}"}) for i in range(4)]


def test_items_arrive_while_the_generator_still_runs(ready):
    """A generator that never ends still delivers: nothing waits for the end of the answer."""
    with httpx.stream("POST", f"{ready.url}/streams/endless", json={}, timeout=30) as response:
        lines = response.iter_lines()
        seen = [line for line, _ in zip(lines, range(10), strict=False) if line.startswith("data: ")]
    assert seen[:3] == ["data: 0", "data: 1", "data: 2"]


def test_ndjson_and_raw_streams(ready):
    ndjson = httpx.post(f"{ready.url}/streams/numbers", json={"count": 3}, timeout=30)
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert ndjson.text == "0\n1\n2\n"
    raw = httpx.post(f"{ready.url}/streams/text", json={"count": 3, "size": 4}, timeout=30)
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.text == "000011112222"


def test_an_http_1_0_client_gets_the_stream_unchunked(ready):
    with socket.create_connection(("127.0.0.1", ready.port), timeout=30) as sock:
        body = b'{"count": 3}'
        sock.sendall(b"POST /streams/numbers HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        received = b""
        while chunk := sock.recv(65536):  # the stream ends when the gateway closes the connection
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert payload == b"0\n1\n2\n"


@pytest.mark.parametrize("handler, good", [("fails_after", 2), ("wrong_item", 1)])
def test_a_handler_failing_mid_stream_ends_it_with_an_error_event(ready, handler, good):
    response = httpx.post(f"{ready.url}/streams/{handler}", json={}, timeout=30)
    got = events(response)
    assert [kind for kind, _ in got] == ["message"] * good + ["error"]
    error = got[-1][1]
    assert handler in error["error"] and error["error_id"] and error["request_id"]
    wait_for(lambda: metric(ready, "steady_streams_total", deployment="streams", handler=handler,
                            outcome="handler_error") >= 1, 30, "the failed stream counted as a handler error")
    assert metric(ready, "steady_requests_total", deployment="streams", handler=handler, code="500") >= 1


def test_a_failing_ndjson_stream_ends_with_an_error_line(ready):
    lines = httpx.post(f"{ready.url}/streams/fails_after_ndjson", json={}, timeout=30).text.splitlines()
    assert lines[:2] == ["0", "1"]
    last = json.loads(lines[2])
    assert last["error"]["type"] == "stream_error" and "broke after 2 items" in last["error"]["message"]


def test_a_failing_raw_stream_is_cut_never_complete_looking(ready):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # incomplete chunks, or a reset
        httpx.post(f"{ready.url}/streams/fails_after_raw", json={}, timeout=30)


def test_a_failing_raw_stream_to_an_http_1_0_client_ends_with_a_reset(ready):
    """No length, no chunks: only a reset (not a close) tells this client the body is incomplete."""
    with socket.create_connection(("127.0.0.1", ready.port), timeout=30) as sock:
        sock.sendall(b"POST /streams/fails_after_raw HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}")
        received = b""
        with pytest.raises(ConnectionResetError):
            while data := sock.recv(65536):
                received += data
    assert b"x0\n" in received  # what came before the failure arrived


def test_the_sdk_raises_what_ended_a_stream(ready):
    with Client(ready.url, max_retries=0) as client:
        assert list(client.stream("streams", "numbers", count=3)) == [0, 1, 2]
        got = []
        with pytest.raises(HandlerFailed, match="broke after 2 items"):
            for item in client.stream("streams", "fails_after"):
                got.append(item)
        assert got == [0, 1]
        with pytest.raises(StreamInterrupted):
            list(client.stream("streams", "fails_after_raw"))


def test_the_async_sdk_streams(ready):
    import asyncio

    async def scenario():
        async with AsyncClient(ready.url) as client:
            items = [item async for item in client.stream("streams", "tokens", count=3)]
            answer = await client.call("streams", "state")
        return items, answer

    items, answer = asyncio.run(scenario())
    assert [item["index"] for item in items] == [0, 1, 2]
    assert "open" in answer


def test_steady_call_prints_items_as_they_come(ready):
    result = subprocess.run([*STEADY, "call", "streams", "tokens", "--json", '{"count": 3}', "--stream",
                             "--url", ready.url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["index"] for line in result.stdout.splitlines()] == [0, 1, 2]


def replica_pids(inst, deployment: str) -> dict[str, int]:
    return {r["id"]: r["pid"] for r in inst.status() if r["kind"] == "replica" and r["deployment"] == deployment}


def wait_replaced(inst, deployment: str, replica: str, old_pid: int) -> None:
    """Until the supervisor has replaced a replica a test killed (so the next test finds it serving)."""
    wait_for(lambda: replica_pids(inst, deployment).get(replica) not in (None, old_pid) and inst.all_ready(), 90,
             f"{deployment}/{replica} replaced")


def test_a_replica_dying_mid_stream_ends_it_with_an_error_event_and_no_retry(ready):
    pids = replica_pids(ready, "streams")
    response = httpx.post(f"{ready.url}/streams/die_after", json={"good": 2}, timeout=30)
    got = events(response)
    assert got[:2] == [("message", 0), ("message", 1)]  # once: not replayed from another replica
    assert [kind for kind, _ in got] == ["message", "message", "error"]
    error = got[2][1]
    assert error["replica"] == response.headers["x-steady-replica"]
    assert "went away mid-stream" in error["error"]
    wait_for(lambda: metric(ready, "steady_streams_total", deployment="streams", handler="die_after",
                            outcome="replica_lost") >= 1, 30, "the lost stream counted")
    assert metric(ready, "steady_requests_total", deployment="streams", handler="die_after", code="502") >= 1
    wait_replaced(ready, "streams", error["replica"], pids[error["replica"]])


def test_a_replica_dying_before_the_first_item_is_retried_on_another(ready, tmp_path):
    flag = tmp_path / "died-once"
    pids = replica_pids(ready, "streams")
    response = httpx.post(f"{ready.url}/streams/dies_first", json={"flag": str(flag), "count": 3}, timeout=60)
    assert flag.exists()  # one replica took it and died
    assert response.status_code == 200, response.text
    assert events(response) == [("message", 0), ("message", 1), ("message", 2)]
    survivor = response.headers["x-steady-replica"]
    dead = next(r for r in pids if r != survivor)
    wait_replaced(ready, "streams", dead, pids[dead])


def test_a_client_that_leaves_stops_the_generator_and_frees_its_slot(ready):
    before = state(ready)
    with socket.create_connection(("127.0.0.1", ready.port), timeout=30) as sock:
        sock.sendall(b"POST /single/endless HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        received = b""
        while b"data: 0" not in received:
            received += sock.recv(65536)
    wait_for(lambda: state(ready)["closed"] == before["closed"] + 1, 30, "GeneratorExit in the handler")
    assert state(ready)["open"] == 0
    wait_for(lambda: metric(ready, "steady_inflight_requests", deployment="single") == 0, 30,
             "the slot given back")


def test_an_async_generator_sees_the_client_leave(ready):
    before = state(ready)
    with httpx.stream("POST", f"{ready.url}/single/numbers", json={"count": 1000, "delay_s": 0.05},
                      timeout=30) as response:
        assert next(response.iter_lines()) == "0"
    wait_for(lambda: state(ready)["closed"] == before["closed"] + 1, 30, "cancellation in the async generator")


def test_a_stream_holds_its_replica_slot_until_it_ends(ready):
    """`single` takes one call at a time: a second call waits while a stream is open, and goes when it closes."""
    answers = []
    with httpx.stream("POST", f"{ready.url}/single/endless", json={}, timeout=60) as response:
        lines = response.iter_lines()  # kept: a dropped line iterator closes the connection
        assert next(lines).startswith("data: ")
        waiter = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{ready.url}/single/numbers", json={"count": 2}, timeout=60)))
        waiter.start()
        wait_for(lambda: metric(ready, "steady_queued_requests", deployment="single") == 1, 30,
                 "the second call queued behind the stream")
        assert not answers
    waiter.join(60)
    assert answers and answers[0].status_code == 200 and answers[0].text == "0\n1\n"


def test_a_slow_reader_holds_the_stream_back_instead_of_buffering(ready):
    """The client reads nothing: the generator stops once the buffers on the way are full, then
    goes on, every item in order, as soon as the client reads."""
    pad_bytes = 4096
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        sock.settimeout(60)
        sock.connect(("127.0.0.1", ready.port))
        body = json.dumps({"pad": pad_bytes}).encode()
        sock.sendall(b"POST /solo/endless HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        readings: list[int] = []

        def stalled() -> bool:
            readings.append(state(ready, "solo")["produced"])
            return len(readings) > 20 and readings[-1] == readings[-21] > 0

        wait_for(stalled, 120, "the generator held back by the unread stream")
        held = readings[-1]
        # Socket buffers and the gateway's high-water mark hold a few MiB at most, not an unbounded backlog.
        assert held * pad_bytes < 64 * 1024 * 1024
        received = b""
        while received.count(b"\n\n") < held + 100:  # everything held, and the stream goes on
            received += sock.recv(1 << 20)
    numbers = re.findall(rb'data: {"i":(\d+),', received)
    assert [int(n) for n in numbers[: held + 100]] == list(range(held + 100))


def test_a_stream_silent_past_its_chunk_timeout_ends_with_an_error_event(ready):
    response = httpx.post(f"{ready.url}/streams/stall", json={"before": 1}, timeout=30)
    got = events(response)
    assert got[0] == ("message", 0)
    assert got[-1][0] == "error" and "streaming.chunk_timeout_s (2s)" in got[-1][1]["error"]


def test_each_step_of_a_generator_is_bound_by_the_handler_timeout(ready):
    response = httpx.post(f"{ready.url}/single/stall", json={"before": 2}, timeout=30)
    got = events(response)
    assert got[:2] == [("message", 0), ("message", 1)]
    assert got[-1][0] == "error" and "handler_timeout_s (1s)" in got[-1][1]["error"]


def test_the_openapi_document_describes_streams(ready):
    document = httpx.get(f"{ready.url}/streams/openapi.json", timeout=30).json()
    tokens = document["paths"]["/tokens"]["post"]
    assert tokens["x-steady-stream"] == "sse"
    content = tokens["responses"]["200"]["content"]["text/event-stream"]
    assert content["x-steady-item-schema"]["required"] == ["index", "text"]
    assert "application/x-ndjson" in document["paths"]["/numbers"]["post"]["responses"]["200"]["content"]


def test_a_stream_past_its_overall_timeout_ends_with_an_error_event(ready):
    response = httpx.post(f"{ready.url}/streams/tokens", json={"count": 1000, "delay_s": 0.2}, timeout=30)
    got = events(response)
    assert 0 < len(got) - 1 < 1000
    assert got[-1][0] == "error" and "streaming.timeout_s (4s)" in got[-1][1]["error"]


def test_stream_metrics_count_first_chunk_chunks_and_how_streams_ended(ready):
    before = metric(ready, "steady_stream_chunks_total", deployment="streams", handler="numbers")
    httpx.post(f"{ready.url}/streams/numbers", json={"count": 7}, timeout=30)
    wait_for(lambda: metric(ready, "steady_stream_chunks_total", deployment="streams", handler="numbers")
             == before + 7, 30, "7 more chunks counted")
    assert metric(ready, "steady_streams_total", deployment="streams", handler="numbers", outcome="complete") >= 1
    assert metric(ready, "steady_stream_first_chunk_seconds_count", deployment="streams", handler="numbers") >= 1
    assert metric(ready, "steady_stream_duration_seconds_count", deployment="streams", handler="numbers") >= 1


def test_a_rollout_lets_the_old_replicas_open_stream_finish(ready):
    """The old replica drains (no new calls) while its stream goes on to the end, within the grace period."""
    old_pid = replica_pids(ready, "solo")["r0"]
    spec = ready.state_dir.parent / "steady.yaml"
    with httpx.stream("POST", f"{ready.url}/solo/tokens", json={"count": 30, "delay_s": 0.2},
                      timeout=60) as response:
        assert response.headers["x-steady-replica"] == "r0"
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        spec.write_text(spec.read_text().replace("  solo:\n", "  solo:\n    env: {ROLLED: '1'}\n"))
        deploying = threading.Thread(target=ready.cli, args=("deploy", "-f", str(spec)))
        deploying.start()
        wait_for(lambda: any(r["pid"] == old_pid and r["state"] in ("leaving", "draining") for r in ready.status()),
                 60, "the streaming replica retiring")
        rest = [line for line in lines if line]
    deploying.join(120)
    assert not any(line.startswith("event: error") for line in rest), rest[-2:]
    assert [json.loads(line[6:])["index"] for line in rest] == list(range(1, 30))
    wait_for(lambda: old_pid not in replica_pids(ready, "solo").values() and ready.all_ready(), 90,
             "the rollout done")
