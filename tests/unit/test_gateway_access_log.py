"""The gateway's access log: every call up to 200 a second, then one in 100; batched writes;
no bodies, headers or query strings."""

from __future__ import annotations

import orjson

from steadyserve.gateway.access_log import MAX_BUFFERED_BYTES, AccessLog
from steadyserve.gateway.metrics import CallNote


def _note(status: int = 200, request_id: str = "rid-1") -> CallNote:
    note = CallNote()
    note.deployment, note.handler, note.replica, note.status, note.request_id = "d", "h", "r0", status, request_id
    return note


def _log(written: list[bytes], now: list[float]) -> AccessLog:
    return AccessLog("g0", write=written.append, clock=lambda: now[0])


def test_every_call_up_to_200_a_second_then_one_in_100_marked_sampled():
    written: list[bytes] = []
    now = [1000.2]
    log = _log(written, now)
    for _ in range(1000):
        log.call(b"POST", b"/h", _note(), 0.001, 10, 20)
    log.flush()
    lines = [orjson.loads(line) for line in b"".join(written).splitlines()]
    assert len(lines) == 200 + 8  # 800 past the first 200: one line for each 100
    assert [line.get("sampled") for line in lines[200:]] == [100] * 8
    now[0] = 1001.0  # a new second: every call again
    log.call(b"POST", b"/h", _note(), 0.001, 10, 20)
    log.flush()
    assert "sampled" not in orjson.loads(written[-1])


def test_lines_are_written_in_batches():
    written: list[bytes] = []
    now = [0.0]
    log = _log(written, now)
    log.call(b"POST", b"/h", _note(), 0.001, 10, 20)
    assert written == []  # buffered until the gateway's timer flushes ...
    log.flush()
    assert len(written) == 1
    line_size = len(written[0])
    for _ in range(MAX_BUFFERED_BYTES // line_size + 1):  # ... or the buffer fills
        now[0] += 1.0  # a call a second: none sampled away
        log.call(b"POST", b"/h", _note(), 0.001, 10, 20)
    assert len(written) == 2


def test_no_query_string_body_or_header_and_scrapes_are_not_calls():
    written: list[bytes] = []
    log = _log(written, [0.0])
    log.call(b"GET", b"/h?token=SECRET", _note(), 0.001, 10, 20)
    scrape = _note()
    scrape.counted = False
    log.call(b"GET", b"/metrics", scrape, 0.001, 0, 100)
    log.flush()
    [line] = [orjson.loads(x) for x in b"".join(written).splitlines()]
    assert line["path"] == "/h" and b"SECRET" not in written[0]
    assert set(line) == {"method", "path", "status", "duration_ms", "deployment", "handler", "replica",
                         "request_id", "bytes_in", "bytes_out", "kind", "ts", "gateway"}
