"""Deployments changed through the control API and CLI while traffic flows."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import EXAMPLES, FIXTURES, LoadStream, wait_for

pytestmark = pytest.mark.integration


def spec_text(slow_service: str = str(FIXTURES / "slow"), replicas: int = 2, env: str = "v1") -> str:
    return f"""\
deployments:
  slow:
    service: {slow_service}
    replicas: {replicas}
    env: {{VERSION: {env}}}
    rollout: {{bake_s: 1, ready_deadline_s: 60, max_error_rate: 0.2, min_requests: 10}}
gateway:
  processes: 1
"""


def api_url(inst) -> str:
    import sqlite3

    with sqlite3.connect(inst.state_dir / "state.db") as db:
        return dict(db.execute("SELECT key, value FROM meta"))["api_url"]


def revision_of_replicas(inst, deployment: str) -> set[int]:
    return {r["revision"] for r in inst.status() if r["kind"] == "replica" and r["deployment"] == deployment}


def test_crud_through_the_cli(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(spec_text(replicas=1))
    inst = serve(str(spec), command="up")
    extra = tmp_path / "more.yaml"
    extra.write_text(f"deployments:\n  echo:\n    service: {EXAMPLES / 'echo'}\n    replicas: 1\n")
    result = inst.cli("deploy", "-f", str(extra))
    assert result.returncode == 0, result.stderr
    assert "echo" in result.stdout and "created" in result.stdout
    wait_for(lambda: inst.post_json("/echo/echo", {"message": "new"})[0] == 200, 60, "echo to serve")

    assert inst.cli("scale", "echo", "3").returncode == 0
    wait_for(lambda: sum(r["state"] == "ready" for r in inst.status() if r["deployment"] == "echo") == 3,
             60, "3 ready echo replicas")

    listed = inst.api("GET", "/v1/deployments").json()
    assert [(d["name"], d["replicas"]) for d in listed] == [("echo", 3), ("slow", 1)]

    assert inst.cli("delete", "echo").returncode == 0
    wait_for(lambda: not [r for r in inst.status() if r["deployment"] == "echo"], 60, "echo replicas gone")
    wait_for(lambda: inst.post_json("/echo/echo", {"message": "x"})[0] == 404, 30, "echo route gone")
    assert any(e["type"] == "deleted" for e in inst.events())

    bad = inst.cli("scale", "nope", "2")
    assert bad.returncode == 1 and "404: no deployment 'nope'; deployments: slow" in bad.stderr
    invalid = inst.cli("rollback", "slow", "--to", "9")
    assert invalid.returncode == 1 and "no revision 9" in invalid.stderr
    # The audit log names what each call did, not only that it changed something.
    audit = json.loads(inst.cli("audit", "--json").stdout)
    actions = [(r["action"], r["target"]) for r in audit]
    assert ("deploy", "PUT /v1/deployments/echo") in actions
    assert ("scale", "POST /v1/deployments/echo/scale") in actions
    assert ("delete", "DELETE /v1/deployments/echo") in actions
    assert ("rollback", "POST /v1/deployments/slow/rollback") in actions


def test_api_validates_and_documents_itself(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(spec_text(replicas=1))
    inst = serve(str(spec), command="up")
    doc = inst.api("GET", "/openapi.json").json()
    assert "/v1/deployments/{name}/rollback" in doc["paths"]
    assert "/v1/deployments" in inst.api("GET", "/docs").text
    assert httpx.get(f"{api_url(inst)}/docs").status_code == 401  # over TCP, only with a token
    assert httpx.get(f"{api_url(inst)}/openapi.json").status_code == 401
    assert httpx.get(f"{api_url(inst)}/healthz").status_code == 200  # for load balancers
    bad = inst.api("PUT", "/v1/deployments/x", json={"spec": {"service": "nowhere", "replicas": "many"}})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "spec.replicas"
    missing = inst.api("PUT", "/v1/deployments/x", json={"spec": {"service": "/nowhere/at/all"}})
    assert missing.status_code == 422 and "no such file or directory" in missing.json()["error"]
    exists = inst.api("POST", "/v1/deployments/slow", json={"spec": {"service": str(FIXTURES / "slow")}})
    assert exists.status_code == 409
    secret_spec = {"service": str(FIXTURES / "slow"), "secrets": {"API_KEY": {"from_env": "API_KEY"}}}
    for value, problem in (("a\u0000b", "NUL"), ("x" * (64 * 1024 + 1), "64 KiB")):
        refused = inst.api("PUT", "/v1/deployments/withsecret", json={"spec": secret_spec, "secrets": {"API_KEY": value}})
        assert refused.status_code == 422, refused.text
        [field] = refused.json()["fields"]
        assert field["field"] == "secrets" and "API_KEY" in field["problem"] and problem in field["problem"]
        assert value not in refused.text  # the refusal never echoes the value
    assert "withsecret" not in [d["name"] for d in inst.api("GET", "/v1/deployments").json()]


def test_rolling_update_fails_no_request(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(spec_text())
    inst = serve(str(spec), command="up")
    with LoadStream(inst.port, "/slow/work", {"ms": 20}, threads=6) as stream:
        wait_for(lambda: stream.ok > 50, 60, "traffic")
        spec.write_text(spec_text(env="v2"))
        result = inst.cli("deploy", "-f", str(spec))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: any(e["type"] == "rollout_done" for e in inst.events()), 120, "the rollout to finish")
        wait_for(lambda: len([r for r in inst.status() if r["kind"] == "replica"]) == 2, 60, "old replicas gone")
        before = stream.ok
        wait_for(lambda: stream.ok > before + 50, 60, "traffic after the rollout")
    assert stream.failures == []
    assert revision_of_replicas(inst, "slow") == {2}
    assert [e["type"] for e in inst.events() if e["subject"] in ("r0", "r1")].count("stopped") == 2


def _deploy_broken_revision(serve, tmp_path, service: str) -> tuple[object, LoadStream, dict]:
    """Roll out a broken revision of `slow` under traffic; wait for the automatic rollback."""
    spec = tmp_path / "steady.yaml"
    spec.write_text(spec_text())
    inst = serve(str(spec), command="up")
    with LoadStream(inst.port, "/slow/work", {"ms": 5}, threads=4) as stream:
        wait_for(lambda: stream.ok > 20, 60, "traffic")
        spec.write_text(spec_text(slow_service=service))
        assert inst.cli("deploy", "-f", str(spec)).returncode == 0
        rollback = wait_for(lambda: inst.events("rollback"), 120, "an automatic rollback")[0]
        wait_for(lambda: revision_of_replicas(inst, "slow") == {1}, 60, "only revision 1 replicas")
        failed_before, ok_before = len(stream.failures), stream.ok
        wait_for(lambda: stream.ok > ok_before + 50, 60, "traffic after the rollback")
    assert len(stream.failures) == failed_before  # no failures once rolled back
    return inst, stream, rollback


def test_revision_whose_setup_raises_is_rolled_back(serve, tmp_path):
    _, stream, rollback = _deploy_broken_revision(serve, tmp_path, f"{FIXTURES / 'crashy'}:Crashy")
    assert "crash-looping" in rollback["message"] and "from revision 2 to 1" in rollback["message"]
    assert stream.failures == []  # the broken revision never became ready, so never got traffic


def test_revision_answering_500s_is_rolled_back(serve, tmp_path):
    _, stream, rollback = _deploy_broken_revision(serve, tmp_path, f"{FIXTURES / 'failing'}:Failing")
    assert "failed" in rollback["message"] and "from revision 2 to 1" in rollback["message"]
    assert all("regression in the new revision" in f for f in stream.failures)


def test_client_sdk_manages_deployments(serve, tmp_path):
    from steadyserve import Client, UnknownHandler

    spec = tmp_path / "steady.yaml"
    spec.write_text(spec_text(replicas=1))
    inst = serve(str(spec), command="up")
    created = inst.cli("token", "create", "--role", "admin", "--name", "sdk")
    assert created.returncode == 0, created.stderr
    with Client(inst.url, api_url=api_url(inst), token=created.stdout.strip()) as client:
        assert [d["name"] for d in client.deployments()] == ["slow"]
        created = client.deploy("echo", {"service": str(EXAMPLES / "echo"), "replicas": 1})
        assert created == {"name": "echo", "revision": 1, "changed": True, "created": True, "rolling_out": False,
                           "replicas": 1, "settings_changed": []}
        wait_for(lambda: client.get_deployment("echo")["ready"] == 1, 60, "echo ready")
        assert client.call("echo", "echo", message="managed") == {"message": "managed"}
        assert client.scale("echo", 2)["replicas"] == 2
        assert [r["revision"] for r in client.revisions("echo")] == [1]
        assert any(e["type"] == "scaled" for e in client.events(500))
        client.delete("echo")
        with pytest.raises(UnknownHandler, match="no deployment 'nope'"):
            client.scale("nope", 1)


def test_canary_gets_its_fixed_share_during_the_bake(serve, tmp_path):
    def text(env: str) -> str:
        return (f"deployments:\n  slow:\n    service: {FIXTURES / 'slow'}\n    replicas: 3\n"
                f"    env: {{VERSION: {env}}}\n"
                "    rollout: {bake_s: 15, canary_percent: 5}\ngateway:\n  processes: 1\n")

    spec = tmp_path / "steady.yaml"
    spec.write_text(text("v1"))
    inst = serve(str(spec), command="up")
    spec.write_text(text("v2"))
    assert inst.cli("deploy", "-f", str(spec)).returncode == 0
    canary = wait_for(lambda: [r for r in inst.status() if r["revision"] == 2 and r["state"] == "ready"], 60,
                      "the canary to be ready")[0]
    import json

    wait_for(lambda: json.loads((inst.state_dir / "routes.json").read_text())["services"]["slow"]["canary"],
             30, "the canary share in the routing table")
    wait_for(lambda: all(r["routes_version"] >= json.loads((inst.state_dir / "routes.json").read_text())["version"]
                         for r in inst.status() if r["kind"] == "gateway"), 30, "the gateway to follow")
    hits = 0
    for _ in range(300):
        _, headers, _ = inst.post_json("/slow/work", {"ms": 0})
        hits += headers["x-steady-replica"] == canary["id"]
    assert 1 <= hits <= 40  # 5 % of 300 is 15; its natural share (1 of 4) would be about 75
