"""Failure prediction: a replica that leaks memory is replaced before its first failed call.

The leaky fixture fails calls (MemoryError, 500) once its resident memory reaches the same
ceiling as its deployment's resources.memory_mb. Reacting at the limit is too late (the second
test shows calls failing); forecasting the trend replaces it in time (the first).
"""

from __future__ import annotations

import pytest
from conftest import FIXTURES, LoadStream, wait_for

pytestmark = pytest.mark.integration

LIMIT_MB = 160


def _spec(tmp_path, replace: bool):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  leaky:
    service: {FIXTURES / 'leaky'}
    replicas: 2
    resources: {{memory_mb: {LIMIT_MB}}}
    env: {{LEAK_FAIL_AT_MB: "{LIMIT_MB}"}}
    prediction: {{replace: {str(replace).lower()}, window_s: 5, horizon_s: 600}}
gateway:
  processes: 1
""")
    return spec


def test_a_leaking_replica_is_replaced_before_its_first_failed_call(serve, tmp_path):
    inst = serve(str(_spec(tmp_path, replace=True)), command="up")
    with LoadStream(inst.port, "/leaky/work", {"kb": 64, "ms": 10}, threads=2) as stream:
        replaced = wait_for(lambda: [e for e in inst.events("replacing") if "predicted to fail" in e["message"]],
                            120, "a replica replaced on a forecast")[0]
        wait_for(lambda: [e for e in inst.events("stopped") if e["subject"] == replaced["subject"]], 120,
                 f"the old {replaced['subject']} to be drained and stopped")
        served = stream.ok
        wait_for(lambda: stream.ok > served + 50, 60, "calls after the replacement")
    assert stream.failures == []
    predicted = [e for e in inst.events("predicted") if e["subject"] == replaced["subject"]]
    assert predicted and "reaches the limit of 160 MiB" in predicted[0]["message"]
    assert "replacing it before it does" in predicted[0]["message"]


def test_without_prediction_the_same_leak_fails_calls_before_the_limit_is_enforced(serve, tmp_path):
    inst = serve(str(_spec(tmp_path, replace=False)), command="up")
    with LoadStream(inst.port, "/leaky/work", {"kb": 64, "ms": 10}, threads=2) as stream:
        wait_for(lambda: stream.failures, 120, "a failed call")
    assert any("MemoryError" in f for f in stream.failures), stream.failures[:3]
    # The forecast was still reported, as a warning only.
    warned = inst.events("predicted")
    assert warned and not any("replacing it" in e["message"] for e in warned)
