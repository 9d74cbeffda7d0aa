"""kill -9 the controller: traffic keeps flowing; a new controller recovers and adopts."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import FIXTURES, LoadStream, pid_alive, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


def test_controller_sigkill_loses_nothing(tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  slow:\n    service: {FIXTURES / 'slow'}\n    replicas: 2\n"
                    "gateway:\n  processes: 2\n")
    state_dir = tmp_path / "state"
    first = start_instance(spec, state_dir, command="up")
    second = None
    try:
        before = {(r["kind"], r["id"]): r["pid"] for r in first.status()}
        scaled = first.cli("scale", "slow", "3")  # desired state changed through the API
        assert scaled.returncode == 0, scaled.stderr
        wait_for(lambda: len([r for r in first.status() if r["kind"] == "replica" and r["state"] == "ready"]) == 3,
                 60, "3 ready replicas")
        before = {(r["kind"], r["id"]): r["pid"] for r in first.status()}
        with LoadStream(first.port, "/slow/work", {"ms": 10}, threads=4) as stream:
            wait_for(lambda: stream.ok > 50, 60, "traffic")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(30)
            # The data path does not depend on the controller.
            during = stream.ok
            wait_for(lambda: stream.ok > during + 100, 60, "traffic with no controller")
            assert all(pid_alive(p) for p in before.values())

            second = start_instance(spec, state_dir, command="up", port=first.port)
            wait_for(lambda: second.all_ready(), 60, "the new controller to see everything ready")
            after = {(r["kind"], r["id"]): r["pid"] for r in second.status()}
            assert after == before  # adopted, not restarted
            recovered = second.events("recovered")[-1]
            assert "adopted 5 running processes" in recovered["message"]

            # Supervision works on adopted processes: a killed replica is replaced.
            os.kill(before[("replica", "r0")], signal.SIGKILL)
            wait_for(lambda: (r := second.process("replica", "r0"))["state"] == "ready"
                     and r["pid"] != before[("replica", "r0")], 60, "r0 replaced")
            now = stream.ok
            wait_for(lambda: stream.ok > now + 50, 60, "traffic after the replacement")
        assert stream.failures == []
        assert [r["revision"] for r in second.status() if r["kind"] == "replica"] == [1, 1, 1]
    finally:
        stop_instance(second or first)
        for pid in before.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
