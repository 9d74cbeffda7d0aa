"""resources.memory_mb limits resident memory (the replica is replaced); address_space_mb is an opt-in RLIMIT_AS."""

from __future__ import annotations

import re
import resource

import pytest
from conftest import FIXTURES, LoadStream, pid_alive, wait_for

pytestmark = pytest.mark.integration


def test_a_replica_over_its_memory_limit_is_replaced_while_calls_keep_succeeding(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  hungry:
    service: {FIXTURES / 'hungry'}
    replicas: 2
    resources: {{memory_mb: 128}}
gateway:
  processes: 1
""")
    inst = serve(str(spec), command="up")
    with LoadStream(inst.port, "/hungry/ping", {}, threads=2) as stream:
        wait_for(lambda: stream.ok > 10, 60, "calls flowing")
        code, headers, body = inst.post_json("/hungry/eat", {"mb": 200})
        assert code == 200, body
        hog = headers["x-steady-replica"]
        pid = inst.process("replica", hog)["pid"]
        event = wait_for(lambda: [e for e in inst.events("replacing") if e["subject"] == hog], 60,
                         f"{hog} to be replaced")[0]
        wait_for(lambda: not pid_alive(pid), 60, f"the old {hog} (pid {pid}) to stop")
        wait_for(lambda: sum(r["kind"] == "replica" and r["state"] == "ready" for r in inst.status()) == 2
                 and inst.all_ready(), 60, "two ready replicas again")
        served = stream.ok
        wait_for(lambda: stream.ok > served + 20, 60, "calls after the replacement")
    assert stream.failures == []
    measured = re.search(r"resident memory (\d+) MiB over the limit of 128 MiB", event["message"])
    assert measured and int(measured.group(1)) > 128, event["message"]
    types = [e["type"] for e in inst.events() if e["subject"] == hog]
    assert types[-4:] == ["replacing", "leaving", "draining", "stopped"], types


def test_memory_mb_sets_no_address_space_limit_and_address_space_mb_does(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  resident:
    service: {FIXTURES / 'introspect'}
    replicas: 1
    resources: {{memory_mb: 4096}}
  capped:
    service: {FIXTURES / 'introspect'}
    replicas: 1
    resources: {{address_space_mb: 4096}}
gateway:
  processes: 1
""")
    inst = serve(str(spec), command="up")
    inherited = resource.getrlimit(resource.RLIMIT_AS)[0]
    code, _, body = inst.post_json("/resident/environment", {})
    assert (code, body["memory_limit"]) == (200, inherited)
    code, _, body = inst.post_json("/capped/environment", {})
    assert (code, body["memory_limit"]) == (200, 4096 * 1024 * 1024)
