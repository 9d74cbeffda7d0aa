"""Crash loops are named, and the CLI rejects bad input with one clear line."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES, FIXTURES, run_cli, wait_for

pytestmark = pytest.mark.integration


def test_setup_that_raises_is_reported_as_crash_loop(serve):
    inst = serve(FIXTURES / "crashy", "--replicas", "1", wait_ready=False)
    event = wait_for(lambda: inst.events("crash_loop"), 90, "a crash_loop event")[0]
    assert event["subject"] == "r0"
    assert "ValueError: model weights missing: /nonexistent/weights.bin" in event["message"]
    row = wait_for(lambda: (r := inst.process("replica", "r0"))["state"] == "crash_loop" and r,
                   60, "r0 in crash_loop state")
    assert "setup failed: ValueError: model weights missing" in row["last_error"]
    assert row["restarts"] >= 3
    log = inst.state_dir.resolve() / "logs" / "crashy-r0.log"
    wait_for(lambda: f"its output: {log}" in "".join(inst.output), 30, "the console to point at the log")
    assert "Traceback" in log.read_text()  # where it points has the whole story
    # The gateways stay up and answer with a clear 503 while nothing is ready.
    code, headers, raw = inst.request("POST", "/noop", b"{}")
    assert code == 503 and b"no ready replica" in raw
    assert headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("does/not/exist", "does/not/exist: no such file or directory"),
        (str(FIXTURES / "syntax_error"), "syntax_error/service.py:6: SyntaxError"),
        (str(FIXTURES / "broken_import"), "broken_import/service.py:5: JSONDecodeError"),
        (str(FIXTURES / "two_services"), "expected exactly one Service subclass, found First, Second"),
        (str(FIXTURES / "two_services") + ":Third", "no Service subclass named 'Third'"),
    ],
)
def test_serve_rejects_bad_targets_with_one_line(tmp_path, target, fragment):
    result = run_cli("serve", target, "--state-dir", str(tmp_path / "s"), "--port", "0")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_serve_picks_a_class_by_name(serve):
    inst = serve(f"{FIXTURES / 'two_services'}:Second", "--replicas", "1", "--gateways", "1")
    code, _, raw = inst.request("GET", "/b")
    assert (code, raw) == (200, b"2")


def test_bad_arguments_are_rejected(tmp_path):
    result = run_cli("serve", str(EXAMPLES / "echo"), "--replicas", "0", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--replicas" in result.stderr


def test_status_without_instance_says_what_to_do(tmp_path):
    result = run_cli("status", "--state-dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert "no steadyserve state" in result.stderr and "steady serve" in result.stderr


def test_port_in_use_is_a_clear_error(serve, tmp_path):
    inst = serve(EXAMPLES / "echo", "--replicas", "1")
    result = run_cli("serve", str(EXAMPLES / "echo"), "--port", str(inst.port), "--state-dir", str(tmp_path / "x"))
    assert result.returncode == 1
    assert f"port {inst.port} on 127.0.0.1 is already in use" in result.stderr
