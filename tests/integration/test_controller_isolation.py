"""What cannot work is refused up front; a slot that cannot start backs off visibly and can be deleted."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES, run_cli, wait_for

pytestmark = pytest.mark.integration


def _echo_spec(tmp_path, name: str = "echo") -> str:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"deployments:\n  {name}:\n    service: {EXAMPLES / 'echo'}\n    replicas: 1\n"
                    "gateway:\n  processes: 1\n")
    return str(spec)


@pytest.mark.parametrize("env, problem", [
    ({"MODEL_DIR": "/models\u0000/v3"}, "the value of MODEL_DIR must not contain a NUL byte"),
    ({"A\u0000B": "x"}, "must not contain a NUL byte"),
    ({"A=B": "x"}, "environment variable name 'A=B' must not contain '='"),
    ({"": "x"}, "an environment variable name must not be empty"),
])
def test_up_reports_an_env_that_cannot_reach_a_process_with_file_and_line(tmp_path, env, problem):
    import json

    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  x:\n    service: {EXAMPLES / 'echo'}\n    env: {json.dumps(env)}\n")
    result = run_cli("up", "-f", str(spec), "--state-dir", str(tmp_path / "s"), "--port", "0", "--no-auth")
    assert result.returncode == 1
    assert f"{spec}:4: deployments.x.env: " in result.stderr and problem in result.stderr, result.stderr


def test_the_control_api_rejects_such_an_env_with_422_naming_the_field(serve, tmp_path):
    inst = serve(_echo_spec(tmp_path), command="up")
    for env in ({"V": "a\u0000b"}, {"A=B": "x"}, {"": "x"}):
        answer = inst.api("PUT", "/v1/deployments/bad", json={"spec": {"service": str(EXAMPLES / "echo"), "env": env}})
        assert answer.status_code == 422, answer.text
        assert answer.json()["fields"][0]["field"] == "spec.env", answer.json()
    assert [r["deployment"] for r in inst.status() if r["kind"] == "replica"] == ["echo"]


def test_a_slot_that_cannot_start_backs_off_with_its_reason_and_its_deployment_can_be_deleted(serve, tmp_path):
    inst = serve(_echo_spec(tmp_path), command="up")
    # A directory where the replica's log file goes: every start attempt fails (IsADirectoryError).
    (inst.state_dir / "logs" / "broken-r0.log").mkdir(parents=True)
    result = inst.cli("deploy", "-f", _echo_spec(tmp_path, "broken"))
    assert result.returncode == 0, result.stderr
    row = wait_for(lambda: [r for r in inst.status() if r["deployment"] == "broken" and r["state"] == "crash_loop"],
                   60, "the broken slot to be named a crash loop")[0]
    assert "could not start: IsADirectoryError" in row["last_error"]
    failures = [e for e in inst.events("start_failed") if e["deployment"] == "broken"]
    assert failures and "IsADirectoryError" in failures[0]["message"]
    assert inst.post_json("/echo/echo", {"message": "still here"})[0] == 200  # the rest keeps working
    assert inst.cli("delete", "broken").returncode == 0
    wait_for(lambda: any(e["type"] == "deleted" and e["deployment"] == "broken" for e in inst.events()), 60,
             "the deployment to be deleted")
    assert not [r for r in inst.status() if r["deployment"] == "broken"]
    assert inst.post_json("/echo/echo", {"message": "after"})[0] == 200
