"""Centralised logs: every process's lines in one store, found by request id, text and level;
templates mined; payloads and tokens never logged."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chatty(tmp_path_factory):
    inst = start_instance(FIXTURES / "chatty", tmp_path_factory.mktemp("logs") / "state", "--replicas", "2",
                          "--gateways", "2")
    yield inst
    stop_instance(inst)


def _logs(inst, *args: str) -> list[dict]:
    result = inst.cli("logs", "--json", "--limit", "1000", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_a_request_id_finds_every_line_of_that_call_across_gateway_and_replica(chatty):
    for i in range(5):
        headers = {"content-type": "application/json", "x-request-id": f"trace-{i}"}
        assert chatty.post_json("/talk", {"topic": f"topic{i}"}, headers)[0] == 200
        assert chatty.post_json("/whisper", {"topic": f"quiet{i}"}, {**headers, "x-request-id": f"hush-{i}"})[0] == 200
    lines = wait_for(lambda: (found := _logs(chatty, "--request-id", "trace-3")) and len(found) >= 2 and found, 30,
                     "the gateway's and the replica's lines of trace-3")
    assert {line["request_id"] for line in lines} == {"trace-3"}
    kinds = {(line["kind"], line["source"].startswith("g")) for line in lines}
    assert ("access", True) in kinds  # the gateway's access line
    assert any("talking about topic3" in line["message"] for line in lines)  # user code, on a worker thread
    hush = wait_for(lambda: _logs(chatty, "--request-id", "hush-2", "--level", "info"), 30, "hush-2's lines")
    assert any("whispering about quiet2" in line["message"] for line in hush)  # user code, async
    # print() output is collected too (as a raw line, without a request id).
    assert wait_for(lambda: _logs(chatty, "--grep", "raw print about topic4"), 30, "the printed line")


def test_level_and_text_filters_find_the_failure(chatty):
    assert chatty.post_json("/fail", {"code": 4242}, {"content-type": "application/json",
                                                       "x-request-id": "boom-1"})[0] == 500
    errors = wait_for(lambda: _logs(chatty, "--level", "error", "--grep", "cannot handle code"), 30,
                      "the handler's error")
    assert all(line["level"] in ("error", "critical") for line in errors)
    assert any(line["request_id"] == "boom-1" for line in errors)
    # A new error template is an event.
    wait_for(lambda: [e for e in chatty.events("new_error_template") if e["deployment"] == "chatty"], 30,
             "a new_error_template event")
    # ... and a metric, which alert rules can use (expr: log_findings).
    from test_metrics import _scrape_if

    wait_for(lambda: _scrape_if(chatty, "steady_log_findings_total", 1, deployment="chatty",
                                kind="new_error_template"), 30, "the finding in /metrics")
    patterns = chatty.cli("logs", "--patterns")
    assert patterns.returncode == 0 and "talking about" in patterns.stdout


def test_payloads_and_tokens_never_reach_the_logs(chatty):
    secret = "PAYLOAD-NEVER-LOGGED-7f3a"
    token = "st_abcd1234_TOKEN-NEVER-LOGGED-9e1b"
    code, _, _ = chatty.post_json("/talk?key=QUERY-NEVER-LOGGED-55", {"topic": "safe", "secret_note": secret},
                                  {"content-type": "application/json", "authorization": f"Bearer {token}",
                                   "x-request-id": "private-1"})
    assert code == 200
    wait_for(lambda: _logs(chatty, "--request-id", "private-1"), 30, "the call's lines")
    everything = "".join(p.read_text(errors="replace") for p in (chatty.state_dir / "logs").glob("*.log"))
    stored = json.dumps(_logs(chatty))
    for text in (secret, "TOKEN-NEVER-LOGGED", "QUERY-NEVER-LOGGED"):
        assert text not in everything and text not in stored
