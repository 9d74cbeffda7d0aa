"""`steady report`: availability, incidents and their causes, from a real instance's history and events."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import FIXTURES, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


def _report(inst, *args: str) -> list[dict]:
    result = inst.cli("report", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _slow(reports):
    return next(r for r in reports if r["deployment"] == "slow")


def test_the_report_counts_calls_finds_the_outage_and_names_its_cause(tmp_path):
    inst = start_instance(FIXTURES / "slow", tmp_path / "state", "--replicas", "1", "--gateways", "1")
    try:
        started = time.time()
        for _ in range(20):
            assert inst.post_json("/work", {"ms": 1})[0] == 200
        for _ in range(3):
            assert inst.post_json("/boom", {})[0] == 500
        # An outage: the only replica is killed; calls meanwhile find no ready replica.
        victim = inst.process("replica", "r0")["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: inst.request("POST", "/work", b'{"ms": 1}')[0] == 503, 30, "a call refused for no replica")
        wait_for(inst.all_ready, 60, "the replica to be back")
        assert inst.post_json("/work", {"ms": 1})[0] == 200
        # The history records a step every 5 s; wait until the last calls are in it.
        report = wait_for(lambda: (r := _slow(_report(inst, "--since", "10m"))) and r["calls"] >= 25 and r, 60,
                          "the calls in the report")
        assert report["failed_calls"] >= 4  # three 500s and at least one 503
        assert report["availability"] == pytest.approx((report["calls"] - report["failed_calls"]) / report["calls"])
        assert report["incidents"], report
        causes = " ".join(c for i in report["incidents"] for c in i["causes"])
        assert "r0 exited" in causes or "r0 restarted" in causes, causes
        assert report["mttr_s"] is not None and report["mttr_s"] > 0
        assert report["ready_time_fraction"] is not None and report["ready_time_fraction"] < 1
        assert report["failure_probability_per_h"] > 0
        assert report["expected_downtime_s_per_h"] == pytest.approx(
            report["failure_probability_per_h"] * report["mttr_s"])
        assert all(i["start"] >= started - 10 for i in report["incidents"]), (started, report["incidents"])
        page = tmp_path / "report.html"
        table = inst.cli("report", "--since", "10m", "--html", str(page))
        assert table.returncode == 0 and "slow" in table.stdout and "incidents of slow" in table.stdout
        html = page.read_text()
        assert "uPlot" in html and '"deployment": "slow"' in html and "http://" not in html.split("<script")[0]
    finally:
        stop_instance(inst)
    # With the controller stopped, the report reads the files (the per-minute history, the events).
    offline = _slow(_report(inst, "--since", "10m"))
    # The stopping controller writes a last step: calls made after the live report's last step count too.
    assert offline["calls"] >= report["calls"] and offline["failed_calls"] >= report["failed_calls"]
    assert offline["incidents"]


@pytest.mark.parametrize(("args", "message"), [
    (("--since", "yesterday"), "is not a time"),
    (("--since", "1m", "--until", "2m"), "must be before --until"),
])
def test_bad_periods_are_refused_with_the_forms_accepted(tmp_path, args, message):
    from conftest import run_cli

    result = run_cli("report", *args, "--state-dir", str(tmp_path))
    assert result.returncode == 2 and message in result.stderr


def test_a_deployment_never_recorded_is_an_error_not_a_row_of_zeros(tmp_path):
    inst = start_instance(FIXTURES / "slow", tmp_path / "state", "--replicas", "1", "--gateways", "1")
    try:
        result = inst.cli("report", "no-such-deployment")
        assert result.returncode == 1 and "no calls and no replicas of a deployment 'no-such-deployment'" in result.stderr
    finally:
        stop_instance(inst)


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_damaged_history_file_is_a_clear_error_not_a_traceback(tmp_path, content):
    from conftest import run_cli

    from steadyserve.control.statedb import StateDB

    StateDB(tmp_path / "state.db").close()  # an instance's state dir, stopped
    (tmp_path / "observability.db").write_bytes(content)
    result = run_cli("report", "--state-dir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "observability.db" in result.stderr, result.stderr
    result = run_cli("slo", "--state-dir", str(tmp_path))
    assert "Traceback" not in result.stderr, result.stderr
