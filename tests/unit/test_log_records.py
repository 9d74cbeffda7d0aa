"""A log file line becomes one LogRecord, whatever the line holds; the file's label says who wrote it."""

from __future__ import annotations

import orjson
import pytest

from steadyserve.logs.records import MAX_MESSAGE_CHARS, parse_label, parse_line

NOW = 1_700_000_000.0


def _json(**doc: object) -> bytes:
    return orjson.dumps(doc) + b"\n"


def test_a_formatter_line_becomes_a_structured_record():
    line = _json(ts=NOW - 5, level="warning", logger="app", msg="slow\nsecond line", revision=3,
                 request_id="g0-ab12-7", deployment="digits", replica="r0")
    record = parse_line(line, "digits-r0", NOW)
    assert (record.kind, record.ts, record.level, record.deployment, record.revision, record.replica,
            record.source, record.request_id, record.message) == (
        "record", NOW - 5, "warning", "digits", 3, "r0", "digits-r0", "g0-ab12-7", "slow\nsecond line")
    assert record.fields == {"logger": "app"}


def test_an_exception_is_kept_under_its_message():
    record = parse_line(_json(ts=NOW, level="error", msg="failed", exc="Traceback ...\nValueError: bad"), "d-r1", NOW)
    assert record.message == "failed\nTraceback ...\nValueError: bad"


@pytest.mark.parametrize(("line", "level", "message"), [
    (b"hello from print\n", "info", "hello from print"),
    (b"Traceback (most recent call last):\n", "error", "Traceback (most recent call last):"),
    (b"ValueError: invalid literal\n", "error", "ValueError: invalid literal"),
    (b"mypkg.errors.ModelError: no weights\n", "error", "mypkg.errors.ModelError: no weights"),
    (b"DeprecationWarning: old api\n", "warning", "DeprecationWarning: old api"),
    (b"caf\xe9 \xff\xfe bytes\r\n", "info", "caf\ufffd \ufffd\ufffd bytes"),
    (b'{"not": "ours"}\n', "info", '{"not": "ours"}'),
    (b"[1, 2, 3]\n", "info", "[1, 2, 3]"),
    (b'{"msg": "cut off\n', "info", '{"msg": "cut off'),
])
def test_anything_else_is_a_raw_line_of_its_process(line: bytes, level: str, message: str):
    record = parse_line(line, "digits-r2", NOW)
    assert (record.kind, record.level, record.message, record.ts) == ("raw", level, message, NOW)
    assert (record.deployment, record.replica, record.source) == ("digits", "r2", "digits-r2")


@pytest.mark.parametrize(("field", "value", "attribute", "expected"), [
    ("ts", "yesterday", "ts", NOW),
    ("ts", NOW + 86400, "ts", NOW),  # a clock a day ahead: stamped on arrival
    ("ts", -1, "ts", NOW),
    ("ts", True, "ts", NOW),
    ("level", 40, "level", "info"),
    ("level", "LOUD", "level", "info"),
    ("level", "WARN", "level", "warning"),
    ("level", "Critical", "level", "critical"),
    ("revision", "7", "revision", 7),
    ("revision", "seven", "revision", None),
    ("revision", -2, "revision", None),
    ("revision", 1 << 40, "revision", None),
    ("request_id", "has space", "request_id", None),
    ("request_id", "x" * 129, "request_id", None),
    ("request_id", ["a"], "request_id", None),
    ("request_id", "ünï", "request_id", None),
])
def test_wrong_or_odd_fields_never_raise(field: str, value: object, attribute: str, expected: object):
    doc: dict[str, object] = {"ts": NOW - 1, "level": "info", "msg": "m", field: value}
    assert getattr(parse_line(_json(**doc), "d-r0", NOW), attribute) == expected


def test_an_oversized_message_is_capped():
    record = parse_line(_json(ts=NOW, msg="x" * (MAX_MESSAGE_CHARS * 2)), "d-r0", NOW)
    assert len(record.message) == MAX_MESSAGE_CHARS and record.message.endswith("…")


def test_a_replica_cannot_claim_another_deployment_or_replica():
    record = parse_line(_json(ts=NOW, msg="forged", deployment="other", replica="r9"), "digits-r0", NOW)
    assert (record.deployment, record.replica) == ("digits", "r0")


def test_a_gateway_access_line_is_searchable_text_with_its_fields():
    line = _json(kind="access", ts=NOW - 1, method="POST", path="/predict?token=secret", status=200,
                 duration_ms=3.14159, deployment="digits", handler="predict", replica="r1", request_id="g0-a-1",
                 bytes_in=120, bytes_out=33)
    record = parse_line(line, "g0", NOW)
    assert (record.kind, record.message, record.deployment, record.replica, record.request_id, record.source) == (
        "access", "POST /predict 200 3.1ms", "digits", "r1", "g0-a-1", "g0")
    assert record.fields["path"] == "/predict" and "secret" not in repr(record)
    assert record.fields["bytes_in"] == 120 and record.level == "info"


def test_a_failed_call_in_the_access_log_is_a_warning():
    record = parse_line(_json(kind="access", ts=NOW, method="GET", path="/x", status=502), "g1", NOW)
    assert record.level == "warning"


def test_only_a_gateway_writes_access_lines():
    record = parse_line(_json(kind="access", ts=NOW, msg="x", method="GET", path="/x", status=200), "digits-r0", NOW)
    assert record.kind == "record"


@pytest.mark.parametrize(("label", "deployment", "replica", "gateway"), [
    ("digits-r0", "digits", "r0", False),
    ("my-model-r12", "my-model", "r12", False),
    ("g0", None, None, True),
    ("controller", None, None, False),
])
def test_a_label_names_its_process(label: str, deployment: str | None, replica: str | None, gateway: bool):
    who = parse_label(label)
    assert (who.deployment, who.replica, who.gateway, who.source) == (deployment, replica, gateway, label)
