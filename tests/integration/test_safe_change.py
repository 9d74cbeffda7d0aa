"""Safe change under load: scale-in loses no call; a revision whose calls time out is rolled back."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, LoadStream, wait_for

pytestmark = pytest.mark.integration


def _replicas(inst, deployment: str = "slow") -> list[dict]:
    return [r for r in inst.status() if r["kind"] == "replica" and r["deployment"] == deployment]


def test_scale_in_under_load_fails_no_call_idempotent_or_not(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  slow:
    service: {FIXTURES / 'slow'}
    replicas: 4
gateway:
  processes: 2
""")
    inst = serve(str(spec), command="up")
    with LoadStream(inst.port, "/slow/work", {"ms": 20}, threads=3) as reads, \
            LoadStream(inst.port, "/slow/slow_charge", {"amount": 1, "ms": 20}, threads=3) as charges:
        wait_for(lambda: reads.ok > 30 and charges.ok > 30, 60, "traffic on both handlers")
        result = inst.cli("scale", "slow", "1")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: len(_replicas(inst)) == 1, 90, "three replicas retired")
        before = (reads.ok, charges.ok)
        wait_for(lambda: reads.ok > before[0] + 30 and charges.ok > before[1] + 30, 60, "traffic after scale-in")
    assert reads.failures == []
    assert charges.failures == []
    retired = {e["subject"] for e in inst.events("stopped") if e["deployment"] == "slow"}
    assert len(retired) == 3
    for subject in retired:
        types = [e["type"] for e in inst.events() if e["subject"] == subject and e["deployment"] == "slow"]
        assert types.index("leaving") < types.index("draining") < types.index("stopped"), types


def test_a_revision_whose_calls_time_out_is_rolled_back(serve, tmp_path):
    def text(service: str) -> str:
        return f"""\
deployments:
  slow:
    service: {service}
    replicas: 2
    lb: round_robin
    timeout_s: 1
    rollout: {{bake_s: 1, min_requests: 5, max_error_rate: 0.2}}
gateway:
  processes: 1
"""

    spec = tmp_path / "steady.yaml"
    spec.write_text(text(str(FIXTURES / "slow")))
    inst = serve(str(spec), command="up")
    with LoadStream(inst.port, "/slow/work", {"ms": 5}, threads=4) as stream:
        wait_for(lambda: stream.ok > 20, 60, "traffic")
        spec.write_text(text(f"{FIXTURES / 'hanging'}:Hanging"))
        assert inst.cli("deploy", "-f", str(spec)).returncode == 0
        rollback = wait_for(lambda: inst.events("rollback"), 120, "an automatic rollback")[0]
        wait_for(lambda: {r["revision"] for r in _replicas(inst)} == {1}, 60, "only revision 1 replicas")
        failed_before, ok_before = len(stream.failures), stream.ok
        wait_for(lambda: stream.ok > ok_before + 50, 60, "traffic after the rollback")
    assert len(stream.failures) == failed_before  # nothing fails once rolled back
    assert stream.failures and all(f.startswith("HTTP 504") for f in stream.failures), stream.failures[:3]
    assert "from revision 2 to 1" in rollback["message"]
    assert "calls seen by the gateways" in rollback["message"]
