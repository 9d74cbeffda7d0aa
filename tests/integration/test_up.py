"""`steady up -f steady.yaml`: several deployments behind one gateway, with revisions."""

from __future__ import annotations

import os

import pytest
from conftest import EXAMPLES, FIXTURES, run_cli, start_instance, stop_instance

pytestmark = pytest.mark.integration


def write_spec(tmp_path, echo_replicas: int = 2) -> str:
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  echo:
    service: {os.path.relpath(EXAMPLES / 'echo', tmp_path)}   # relative to this file
    replicas: {echo_replicas}
  slow:
    service: {FIXTURES / 'slow'}:Slow
    replicas: 1
    timeout_s: 5
    idempotent: {{work: false}}
gateway:
  processes: 1
""")
    return str(spec)


def test_up_routes_each_deployment_and_records_revisions(serve, tmp_path):
    inst = serve(write_spec(tmp_path), command="up")
    code, headers, body = inst.post_json("/echo/echo", {"message": "hi"})
    assert (code, body) == (200, {"message": "hi"})
    code, _, body = inst.post_json("/slow/work", {"ms": 1})
    assert (code, body) == (200, {"slept_ms": 1})
    code, _, body = inst.post_json("/work", {"ms": 2}, headers={"x-steady-deployment": "slow"})
    assert (code, body) == (200, {"slept_ms": 2})
    code, _, body = inst.post_json("/nope/echo", {"message": "x"})
    assert code == 404 and "services: echo, slow" in body["error"]

    rows = inst.status()
    assert sorted((r["deployment"], r["id"]) for r in rows if r["kind"] == "replica") == [
        ("echo", "r0"), ("echo", "r1"), ("slow", "r0")]
    assert {r["revision"] for r in rows if r["kind"] == "replica"} == {1}
    revisions = [e for e in inst.events("revision")]
    assert sorted(e["deployment"] for e in revisions) == ["echo", "slow"]


def test_up_again_after_a_clean_stop_applies_the_file_a_new_count_is_no_new_revision(tmp_path):
    spec, state_dir = write_spec(tmp_path), tmp_path / "state"
    stop_instance(start_instance(spec, state_dir, command="up"))
    write_spec(tmp_path, echo_replicas=1)
    second = start_instance(spec, state_dir, command="up")
    try:
        replicas = [(r["deployment"], r["revision"]) for r in second.status() if r["kind"] == "replica"]
        assert sorted(replicas) == [("echo", 1), ("slow", 1)]  # one echo replica, still revision 1
    finally:
        stop_instance(second)
    (tmp_path / "steady.yaml").write_text(open(spec).read().replace("timeout_s: 5", "timeout_s: 6"))
    third = start_instance(spec, state_dir, command="up")
    try:
        revisions = {(r["deployment"], r["revision"]) for r in third.status() if r["kind"] == "replica"}
        assert revisions == {("echo", 1), ("slow", 2)}  # only slow's spec changed
    finally:
        stop_instance(third)


def test_spec_errors_name_the_file_and_line(tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text("deployments:\n  echo:\n    service: nowhere/at/all\n    replicas: 2\n")
    result = run_cli("up", "-f", str(spec), "--state-dir", str(tmp_path / "s"), "--port", "0")
    assert result.returncode == 1
    assert f"{spec}:3: deployments.echo.service: " in result.stderr
    assert "nowhere/at/all: no such file or directory" in result.stderr
    spec.write_bytes(b"deployments:\n  echo:\n    service: x\n    env: {A: \"caf\xe9\"}\n")  # Latin-1, not UTF-8
    result = run_cli("up", "-f", str(spec), "--state-dir", str(tmp_path / "s"), "--port", "0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{spec}:4: not UTF-8 text (byte 0xe9 at column 18); save the file as UTF-8" in result.stderr
    spec.write_text("deployments:\n  echo:\n    service: x\n    replicas: 2\n    colour: red\n")
    result = run_cli("up", "-f", str(spec), "--state-dir", str(tmp_path / "s"), "--port", "0")
    assert result.returncode == 1
    assert f"{spec}:5: deployments.echo.colour: unknown key; the keys here: admission, alerts," in result.stderr
    result = run_cli("up", "-f", str(tmp_path / "missing.yaml"), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1 and "missing.yaml: cannot read the spec" in result.stderr


def test_env_and_resource_limits_reach_the_replica(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  probe:
    service: {FIXTURES / 'introspect'}
    replicas: 1
    env: {{MODEL_DIR: /models/v3}}
    resources: {{memory_mb: 4096, address_space_mb: 4096, cpu_share: 0.5}}
gateway:
  processes: 1
""")
    inst = serve(str(spec), command="up")
    code, _, body = inst.post_json("/probe/environment", {})
    assert code == 200
    assert body == {"model_dir": "/models/v3", "memory_limit": 4096 * 1024 * 1024,
                    "niceness": os.nice(0) + 10}


def test_deploy_names_the_file_and_line_of_a_deployment_the_controller_refuses(serve, tmp_path):
    inst = serve(EXAMPLES / "echo", "--replicas", "1", "--gateways", "1")
    extra = tmp_path / "more.yaml"
    extra.write_text("deployments:\n  fine:\n    service: " + str(EXAMPLES / "echo") + "\n    replicas: 1\n"
                     "  broken:\n    service: /nowhere/at/all\n")
    result = inst.cli("deploy", "-f", str(extra))
    assert result.returncode == 1
    assert f"{extra}:5: deployments.broken: 422: " in result.stderr and "no such file or directory" in result.stderr
    assert "applied before the refusal (kept): fine; not applied: broken" in result.stderr


def test_a_deployment_of_the_last_run_that_the_file_leaves_out_is_named_not_dropped_silently(tmp_path):
    state_dir = tmp_path / "state"
    first = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    assert stop_instance(first) == 0
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  slow:\n    service: {FIXTURES / 'slow'}\n    replicas: 1\n"
                    "gateway:\n  processes: 1\n")
    second = start_instance(spec, state_dir, command="up")
    try:
        [dropped] = second.events("dropped")
        assert dropped["deployment"] == "echo" and "not in this spec, so not started" in dropped["message"]
        assert "echo" in "".join(second.output) and "dropped" in "".join(second.output)
        assert [d["name"] for d in second.api("GET", "/v1/deployments").json()] == ["slow"]
    finally:
        stop_instance(second)
