"""Processes write JSON lines that parse_line reads back; records of a call carry its request id."""

from __future__ import annotations

import contextvars
import io
import logging
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from steadyserve.logs.access import AccessEntry, AccessSampler, access_line
from steadyserve.logs.format import (
    MAX_MSG_CHARS,
    JsonFormatter,
    request_id_context,
    run_with_request_id,
)
from steadyserve.logs.records import parse_line

IDENTITY = {"deployment": "digits", "revision": "4", "replica": "r1"}


@pytest.fixture
def captured() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(IDENTITY))
    logger = logging.getLogger(f"test-json-{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, stream


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_the_process_identity(captured):
    logger, stream = captured
    logger.warning("two\nlines %d", 5)
    [doc] = _lines(stream)
    assert {k: doc[k] for k in ("level", "msg", "deployment", "revision", "replica")} == {
        "level": "warning", "msg": "two\nlines 5", "deployment": "digits", "revision": 4, "replica": "r1"}
    assert "request_id" not in doc


def test_a_sync_handler_in_a_worker_thread_logs_with_its_calls_request_id(captured):
    logger, stream = captured
    with ThreadPoolExecutor(1) as pool, request_id_context("g0-ab-9"):
        context = contextvars.copy_context()  # as the replica's WorkerPool does
        pool.submit(context.run, logger.info, "in the handler").result()
        pool.submit(logger.info, "a thread without the call's context").result()
    with_id, without = _lines(stream)
    assert with_id["request_id"] == "g0-ab-9" and "request_id" not in without


def test_run_with_request_id_sets_the_id_for_that_call_only(captured):
    logger, stream = captured
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run_with_request_id, "rid-1", logger.info, "inside").result()
    logger.info("outside")
    inside, outside = _lines(stream)
    assert inside["request_id"] == "rid-1" and "request_id" not in outside


def test_an_exception_is_in_exc_and_the_line_reads_back_as_one_record(captured):
    logger, stream = captured
    with request_id_context("g1-x-3"):
        try:
            raise ValueError("bad input")
        except ValueError:
            logger.exception("handler failed")
    line = stream.getvalue().encode()
    assert line.count(b"\n") == 1
    record = parse_line(line, "digits-r1", 2e9)
    assert (record.level, record.request_id, record.revision) == ("error", "g1-x-3", 4)
    assert record.message.startswith("handler failed\nTraceback") and record.message.endswith("ValueError: bad input")


def test_a_huge_message_is_capped(captured):
    logger, stream = captured
    logger.info("y" * (MAX_MSG_CHARS * 3))
    assert len(_lines(stream)[0]["msg"]) == MAX_MSG_CHARS  # type: ignore[arg-type]


def test_an_unknown_identity_key_is_refused():
    with pytest.raises(ValueError, match="unknown identity keys"):
        JsonFormatter({"deploymnet": "x"})


def test_an_access_line_reads_back_as_an_access_record():
    entry = AccessEntry("POST", "/predict?api_key=k", 503, 12.04, "digits", "predict", None, "g0-q-1", 10, 0)
    record = parse_line(access_line(entry, gateway="g0", ts=1e9, sampled=100), "g0", 2e9)
    assert (record.kind, record.message, record.request_id) == ("access", "POST /predict 503 12.0ms", "g0-q-1")
    assert record.fields["sampled"] == 100 and "api_key" not in record.fields["path"]  # type: ignore[operator]


def test_every_call_is_logged_up_to_the_rate_then_one_in_n():
    sampler = AccessSampler(full_rate_per_s=3, sample_one_in=4)
    decisions = [sampler.sample(10.0 + i / 100) for i in range(11)]
    assert decisions == [1, 1, 1, 0, 0, 0, 4, 0, 0, 0, 4]
    assert sampler.sample(11.0) == 1  # a new second: every call again
