"""Outlier ejection on what the gateways see: a replica answering 500 leaves every gateway's rotation."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, wait_for

pytestmark = pytest.mark.integration


def _spec(tmp_path, replicas: int) -> str:
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  svc:
    service: {FIXTURES / 'breakable'}
    replicas: {replicas}
    outlier: {{consecutive_failures: 3, base_ejection_s: 120}}
gateway:
  processes: 2
""")
    return str(spec)


def _break_one(inst, replica: str | None = None) -> str:
    """Break a replica (the first to answer, or the one named) and return its id."""
    def attempt() -> str | None:
        code, headers, _ = inst.post_json("/svc/break_me", {})
        assert code == 200
        return headers["x-steady-replica"] if replica is None or headers["x-steady-replica"] == replica else None
    return wait_for(attempt, 60, f"a break_me call to land on {replica or 'a replica'}")


def _ejected_by(inst, replica: str) -> set[str]:
    return {e["message"].split("gateway ")[1].split(" ")[0] for e in inst.events("ejected")
            if e["subject"] == replica and "answered 500" in e["message"]}


def test_a_replica_answering_500_is_ejected_by_every_gateway(serve, tmp_path):
    inst = serve(_spec(tmp_path, replicas=2), command="up")
    bad = _break_one(inst)

    def both_gateways_ejected() -> bool:
        for _ in range(10):
            inst.post_json("/svc/work", {})  # fresh connections: both gateway processes get calls
        return _ejected_by(inst, bad) == {"g0", "g1"}

    wait_for(both_gateways_ejected, 120, f"both gateways to eject {bad}")
    answers = [inst.post_json("/svc/work", {}) for _ in range(40)]
    assert [code for code, _, _ in answers] == [200] * 40
    assert {headers["x-steady-replica"] for _, headers, _ in answers} == {"r0", "r1"} - {bad}


def test_when_every_replica_fails_the_gateways_panic_and_still_route(serve, tmp_path):
    inst = serve(_spec(tmp_path, replicas=2), command="up")
    first = _break_one(inst)
    _break_one(inst, "r1" if first == "r0" else "r0")

    def all_ejected_everywhere() -> bool:
        for _ in range(10):
            inst.post_json("/svc/work", {})
        return _ejected_by(inst, "r0") == _ejected_by(inst, "r1") == {"g0", "g1"}

    wait_for(all_ejected_everywhere, 120, "both gateways to eject both replicas")
    # Panic: rather than answering "no ready replica", the gateways route to all of them.
    answers = [inst.post_json("/svc/work", {}) for _ in range(20)]
    assert {code for code, _, _ in answers} == {500}, answers[:3]
    assert all("broken" in body["error"] for _, _, body in answers)
