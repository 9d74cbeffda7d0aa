"""Autoscaling on real deployments: real load through the gateway, real replicas started and drained.

Windows and periods are shortened in each spec so that a test takes seconds, not the defaults' minutes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, Instance, LoadStream, start_instance, stop_instance, wait_for

from steadyserve import Client

pytestmark = pytest.mark.integration

FAST = "decision_s: 1, window_s: 4, panic_window_s: 2, scale_down: {stabilization_s: 3, period_s: 2}"


def write_spec(tmp_path: Path, deployment: str, extra: str = "") -> Path:
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  slow:\n    service: {FIXTURES / 'slow'}\n{deployment}"
                    f"gateway:\n  processes: 2\n{extra}")
    return spec


def deployment(inst: Instance) -> dict[str, Any]:
    response = inst.api("GET", "/v1/deployments/slow")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def replica_rows(inst: Instance) -> list[dict[str, Any]]:
    return [r for r in inst.status() if r["kind"] == "replica"]


def autoscaled(inst: Instance) -> list[dict[str, Any]]:
    return [e for e in inst.events("autoscaled") if e["deployment"] == "slow"]


def test_load_from_1x_to_4x_scales_out_and_back_in_without_a_failed_call(tmp_path):
    spec = write_spec(tmp_path, f"    replicas: {{min: 1, max: 4}}\n    autoscaling: {{metric: inflight, target: 1,"
                                f" {FAST}}}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        with LoadStream(inst.port, "/slow/work", {"ms": 150}, threads=1) as base:
            wait_for(lambda: (deployment(inst)["autoscaling"]["load"] or 0) > 0, 60, "the autoscaler to see load")
            assert deployment(inst)["replicas"] == 1
            with LoadStream(inst.port, "/slow/work", {"ms": 150}, threads=3) as surge:
                wait_for(lambda: deployment(inst)["replicas"] >= 3 and deployment(inst)["ready"] >= 3, 90,
                         "a scale-out to the 4x load")
            wait_for(lambda: deployment(inst)["replicas"] == 1 and len(replica_rows(inst)) == 1, 90,
                     "a scale-in once the load dropped")
        assert base.ok > 0 and surge.ok > 0
        assert base.failures == [] and surge.failures == [], (base.failures + surge.failures)[:5]
        changes = autoscaled(inst)
        ups = [e for e in changes if re.match(r"replicas 1 -> [234]:", e["message"])]
        downs = [e for e in changes if re.match(r"replicas [234] -> [123]:", e["message"])]
        assert ups and downs, [e["message"] for e in changes]
        assert all("load" in e["message"] for e in downs)
        status = inst.cli("status")
        assert status.returncode == 0 and "autoscaling" in status.stdout and "1..4" in status.stdout
        assert "->" in status.stdout  # the last change and its reason
        refused = inst.cli("scale", "slow", "3")
        assert refused.returncode != 0 and "409" in refused.stderr and "autoscaled between 1 and 4" in refused.stderr
    finally:
        stop_instance(inst)


def test_scales_to_zero_when_idle_and_a_call_wakes_it(tmp_path):
    spec = write_spec(tmp_path, f"    replicas: {{min: 0, max: 2}}\n    autoscaling: {{idle_s: 2, {FAST}}}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        assert "slow: 1 replica (autoscaled 0..2, to zero when idle)" in "".join(inst.output)
        wait_for(lambda: deployment(inst)["replicas"] == 0 and not replica_rows(inst), 60, "a scale to zero")
        assert any("scaling to zero" in e["message"] for e in autoscaled(inst))
        # At zero it still takes calls: load balancers' readiness checks say so.
        assert inst.request("GET", "/v2/health/ready")[0] == 200
        # A call no replica would serve is answered at once and wakes nothing.
        status, _, body = inst.post_json("/slow/no_such_handler", {})
        assert status == 404 and "no handler 'no_such_handler'" in body["error"] and "work" in body["handlers"]
        assert deployment(inst)["replicas"] == 0
        status, headers, body = inst.post_json("/slow/work", {"ms": 1})
        assert status == 200 and body == {"slept_ms": 1}
        [cold] = [e for e in inst.events("cold_start") if e["deployment"] == "slow"]
        assert re.search(r"ready [0-9.]+ s after a call arrived", cold["message"])
        [wake] = [e for e in autoscaled(inst) if "waking" in e["message"]]  # by the good call only
        assert "calls waiting: waking from zero" in wake["message"]
        assert deployment(inst)["autoscaling"]["cold_start_s"] > 0

        def cold_starts_exposed() -> bool:
            _, _, text = inst.request("GET", "/metrics")
            found = re.search(rb'steady_cold_start_seconds_count\{deployment="slow"\} ([0-9.]+)', text)
            return found is not None and float(found.group(1)) >= 1

        wait_for(cold_starts_exposed, 60, "steady_cold_start_seconds in /metrics")
    finally:
        stop_instance(inst)


def test_calls_at_zero_get_503_with_retry_after_when_no_replica_starts_in_time(tmp_path):
    # A replica that takes minutes to get ready (its setup is slow) and a short cold-start wait.
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  stuck:\n    service: {FIXTURES / 'slow_setup'}\n    replicas: {{min: 0, max: 1}}\n"
                    "    autoscaling: {cold_start_timeout_s: 1, decision_s: 1}\n    health: {startup_timeout_s: 300}\n"
                    "gateway:\n  processes: 1\n")
    inst = start_instance(spec, tmp_path / "state", command="up", wait_ready=False)
    try:
        wait_for(lambda: inst.proc.poll() is None and (tmp_path / "state" / "routes.json").exists()
                 and any(r["kind"] == "gateway" and r["state"] == "ready" for r in inst.status()), 60, "the gateway")
        started = time.monotonic()
        status, headers, body = inst.post_json("/stuck/ping", {})
        assert status == 503 and headers["retry-after"] == "2"
        assert "cold_start_timeout_s" in body["error"] and body["cold_start"] is True
        assert time.monotonic() - started >= 1.0  # it waited for a replica before giving up
    finally:
        stop_instance(inst)


def test_wanting_more_than_the_machine_allows_is_reported_not_thrashed(tmp_path):
    spec = write_spec(
        tmp_path,
        "    replicas: {min: 1, max: 4}\n    resources: {memory_mb: 200}\n"
        f"    autoscaling: {{metric: inflight, target: 1, {FAST}}}\n"
        "    alerts: [{name: SteadyCapacityLimited, for: 0s}]\n",
        "capacity: {memory_mb: 600, reserve_memory_mb: 0}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        with LoadStream(inst.port, "/slow/work", {"ms": 150}, threads=6) as load:
            wait_for(lambda: any(e["deployment"] == "slow" for e in inst.events("capacity")), 90,
                     "a capacity event")
            [event] = [e for e in inst.events("capacity") if e["deployment"] == "slow"]
            assert re.search(r"wants [4-9] replicas, the machine's budget \(.*600 MiB for replicas\) allows 3",
                             event["message"]), event["message"]
            assert deployment(inst)["replicas"] == 3
            assert "600 MiB" in deployment(inst)["autoscaling"]["capacity"]

            def alert_firing() -> bool:
                listed = json.loads(inst.cli("alerts", "--json").stdout)
                return any(a["alertname"] == "SteadyCapacityLimited" and a["state"] == "firing"
                           for a in listed["active"])

            wait_for(alert_firing, 90, "the SteadyCapacityLimited alert")
            assert "capacity:" in inst.cli("status").stdout
            # Held at the budget: the count never went past it (no start-and-stop churn).
            assert all(not re.match(r"replicas \d -> [4-9]", e["message"]) for e in autoscaled(inst))
        assert load.failures == [] or all("503" in f for f in load.failures)
    finally:
        stop_instance(inst)


def test_a_forecast_scales_up_before_a_predictable_ramp(tmp_path):
    """A compressed day of 20 s: 12 s at 1x, 8 s at 4x, repeated. After a season the model knows
    the ramp, and a replica is added before it begins."""
    season_s, low_s = 20.0, 12.0
    spec = write_spec(
        tmp_path,
        "    replicas: {min: 1, max: 4}\n"
        "    autoscaling: {metric: rps, target: 6, decision_s: 1, window_s: 2, panic_window_s: 1,"
        " panic_threshold: 10, scale_down: {stabilization_s: 1, period_s: 1},"
        f" predictive: {{enabled: true, season_s: {season_s}, max_error: 1.0}}}}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    ramps: list[float] = []
    try:
        with LoadStream(inst.port, "/slow/work", {"ms": 200}, threads=1):
            wait_for(lambda: (deployment(inst)["autoscaling"]["rate"] or 0) > 0, 60, "the autoscaler to see calls")
            origin = time.time()
            for cycle in range(6):
                wait_for(lambda c=cycle: time.time() >= origin + c * season_s + low_s, season_s + 5, "the ramp")
                ramps.append(time.time())
                with LoadStream(inst.port, "/slow/work", {"ms": 200}, threads=3):
                    wait_for(lambda c=cycle: time.time() >= origin + (c + 1) * season_s, season_s + 5,
                             "the end of the busy part")
                if cycle >= 2 and forecast_led(inst, ramps):
                    break
        assert forecast_led(inst, ramps), [e["message"] for e in autoscaled(inst)]
        assert any("predictive scaling on" in e["message"] for e in inst.events("forecast"))
    finally:
        stop_instance(inst)


def forecast_led(inst: Instance, ramps: list[float]) -> bool:
    """A scale-up for a forecast within the quiet part before one of the later ramps."""
    for event in autoscaled(inst):
        if "forecast" not in event["message"].split(":", 1)[1][:12]:
            continue
        if any(ramp - 8.0 < event["ts"] < ramp for ramp in ramps[1:]):
            return True
    return False


def test_the_call_rate_history_survives_a_controller_restart(tmp_path):
    spec = write_spec(tmp_path, "    replicas: {min: 1, max: 2}\n    autoscaling: {metric: rps, target: 50,"
                                " decision_s: 1, predictive: {enabled: true, season_s: 10}}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        with LoadStream(inst.port, "/slow/work", {"ms": 50}, threads=1):
            wait_for(lambda: (deployment(inst)["autoscaling"]["forecast_history_seasons"] or 0) >= 1.5, 90,
                     "a season and a half of history")
    finally:
        assert stop_instance(inst) == 0
    again = start_instance(spec, tmp_path / "state", command="up")
    try:
        assert deployment(again)["autoscaling"]["forecast_history_seasons"] >= 1.0
    finally:
        stop_instance(again)


def test_changing_the_autoscaling_settings_or_the_range_rolls_nothing_out(tmp_path):
    spec = write_spec(tmp_path, "    replicas: {min: 1, max: 4}\n    autoscaling: {target: 2}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        write_spec(tmp_path, "    replicas: {min: 2, max: 3}\n    autoscaling: {target: 5, decision_s: 1}\n")
        deployed = inst.cli("deploy", "-f", str(spec))
        assert deployed.returncode == 0, deployed.stderr
        assert "updated autoscaling (no rollout)" in deployed.stdout
        after = deployment(inst)
        assert after["revision"] == 1 and after["rolling_out_from"] is None
        assert after["autoscaling"]["target"] == 5 and (after["autoscaling"]["min"], after["autoscaling"]["max"]) == (2, 3)
        assert after["replicas"] == 2  # the count moved into the new bounds
        assert not [e for e in inst.events("rollout") if e["deployment"] == "slow"]
        [settings] = [e["message"] for e in inst.events("settings") if e["deployment"] == "slow"]
        assert "autoscaling changed: " in settings and "autoscaling.target: 2.0 -> 5.0" in settings
        [moved] = [e["message"] for e in autoscaled(inst)]
        assert moved == "replicas 1 -> 2: the spec's range is now 2..3"
        # Back to a fixed count: the file's count, even from zero.
        write_spec(tmp_path, "    replicas: 1\n")
        assert inst.cli("deploy", "-f", str(spec)).returncode == 0
        assert deployment(inst)["replicas"] == 1 and deployment(inst)["autoscaling"] is None
    finally:
        stop_instance(inst)


def test_steady_call_waits_through_a_cold_start_longer_than_the_gateways_wait(tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  stuck:\n    service: {FIXTURES / 'slow_setup'}\n    env: {{SETUP_S: '3'}}\n"
                    "    replicas: {min: 0, max: 1}\n"
                    f"    autoscaling: {{idle_s: 1, cold_start_timeout_s: 1, {FAST}}}\n"
                    "gateway:\n  processes: 1\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        wait_for(lambda: not replica_rows(inst), 60, "a scale to zero")
        called = inst.cli("call", "stuck", "ping")
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout) == {"pong": True}
        assert "starting from zero replicas; trying again in 2s" in called.stderr
        # The SDK too: a cold-start 503 says the call never ran, and it waits its Retry-After.
        wait_for(lambda: not replica_rows(inst), 60, "a scale to zero again")
        with Client(f"http://127.0.0.1:{inst.port}") as client:
            assert client.call("stuck", "ping") == {"pong": True}
    finally:
        stop_instance(inst)


def test_a_call_longer_than_the_idle_time_is_not_cut_short_by_a_scale_to_zero(tmp_path):
    # calls/s is the metric: a long call makes no new arrivals, yet it holds its replica until it is done.
    spec = write_spec(tmp_path, "    replicas: {min: 0, max: 2}\n    timeout_s: 60\n"
                                f"    autoscaling: {{metric: rps, target: 5, idle_s: 1, {FAST}}}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        wait_for(lambda: deployment(inst)["replicas"] == 0 and not replica_rows(inst), 60, "a scale to zero")
        status, _, body = inst.post_json("/slow/work", {"ms": 12_000})  # past idle_s and the 10 s grace_s
        done = time.time()
        assert status == 200 and body == {"slept_ms": 12_000}
        wait_for(lambda: deployment(inst)["replicas"] == 0, 60, "the scale to zero once the call is done")
        woke = max(e["ts"] for e in autoscaled(inst) if "waking from zero" in e["message"])
        # Between the wake and the end of the call, no scale to zero.
        assert not [e for e in autoscaled(inst) if "scaling to zero" in e["message"] and woke < e["ts"] < done - 1]
        assert not [e for e in inst.events("killed") if e["deployment"] == "slow"]
    finally:
        stop_instance(inst)
