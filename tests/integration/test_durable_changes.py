"""What the control plane acknowledged is kept: kill -9 of the controller right after any change loses
nothing; re-applying an unchanged spec is a no-op; `up` after a crash keeps what changed since."""

from __future__ import annotations

import json
import os

import pytest
from conftest import EXAMPLES, FIXTURES, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def echo_spec(tmp_path, name: str = "steady.yaml", replicas: int = 1, env: str = "v1", service: str | None = None,
              extra: str = "") -> str:
    service = service or str(EXAMPLES / "echo")
    # No traffic in these tests: a short bake that needs one call at most, then promote.
    rollout = "    rollout: {bake_s: 0.5, min_requests: 1, max_bake_s: 1}\n" if "rollout:" not in extra else ""
    return write(tmp_path / name, f"deployments:\n  echo:\n    service: {service}\n    replicas: {replicas}\n"
                                  f"    env: {{V: {env}}}\n{rollout}{extra}gateway:\n  processes: 1\n")


def crash_and_recover(inst, spec: str):
    """kill -9 the controller (its replicas and gateways keep running) and start it again."""
    inst.proc.kill()
    inst.proc.wait(30)
    try:
        return start_instance(spec, inst.state_dir, command="up", port=inst.port)
    except BaseException:
        kill_leftovers(inst.state_dir)
        raise


def kill_leftovers(state_dir) -> None:
    """After a failed test: the replicas and gateways a killed controller left running."""
    import os
    import signal
    import sqlite3

    with sqlite3.connect(state_dir / "state.db") as db:
        pids = [pid for (pid,) in db.execute("SELECT pid FROM processes WHERE pid IS NOT NULL")]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def deployment(inst, name: str) -> dict | None:
    found = inst.api("GET", f"/v1/deployments/{name}")
    return found.json() if found.status_code == 200 else None


def tokens(inst) -> dict[str, bool]:
    """Token name -> active, from the state DB as `steady token list` reads it."""
    import sqlite3

    with sqlite3.connect(inst.state_dir / "state.db") as db:
        return {name: revoked is None for name, revoked in db.execute("SELECT name, revoked_at FROM tokens")}


def test_every_acknowledged_change_survives_a_kill_9_of_the_controller(tmp_path):
    spec = echo_spec(tmp_path)
    temp = write(tmp_path / "temp.yaml", f"deployments:\n  temp:\n    service: {EXAMPLES / 'echo'}\n"
                                         "    replicas: 1\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        for trial in range(2):
            # scale
            assert inst.cli("scale", "echo", str(2 + trial)).returncode == 0
            inst = crash_and_recover(inst, spec)
            assert deployment(inst, "echo")["replicas"] == 2 + trial

            # deploy (a new revision)
            changed = echo_spec(tmp_path, "changed.yaml", env=f"t{trial}")
            assert inst.cli("deploy", "-f", changed).returncode == 0
            inst = crash_and_recover(inst, spec)
            dep = deployment(inst, "echo")
            assert dep["spec"]["env"] == {"V": f"t{trial}"}
            wait_for(lambda i=inst: deployment(i, "echo")["rolling_out_from"] is None, 60, "the rollout to finish")

            # rollback (a new revision with the one before's spec)
            assert inst.cli("rollback", "echo").returncode == 0
            inst = crash_and_recover(inst, spec)
            dep = deployment(inst, "echo")
            assert dep["spec"]["env"] == {"V": "v1"}  # the revision before the active one
            wait_for(lambda i=inst: deployment(i, "echo")["rolling_out_from"] is None, 60, "the rollback to finish")

            # delete
            assert inst.cli("deploy", "-f", temp).returncode == 0
            assert inst.cli("delete", "temp").returncode == 0
            inst = crash_and_recover(inst, spec)
            wait_for(lambda i=inst: deployment(i, "temp") is None, 60, "temp to stay deleted")

            # token create and revoke
            assert inst.cli("token", "create", "--role", "viewer", "--name", f"t{trial}").returncode == 0
            inst = crash_and_recover(inst, spec)
            assert tokens(inst)[f"t{trial}"] is True
            assert inst.cli("token", "revoke", f"t{trial}").returncode == 0
            inst = crash_and_recover(inst, spec)
            assert tokens(inst)[f"t{trial}"] is False
    finally:
        stop_instance(inst)


def test_applying_an_unchanged_spec_is_a_no_op_through_up_deploy_and_the_api(serve, tmp_path):
    relative = os.path.relpath(EXAMPLES / "echo", tmp_path)  # as people write it in a spec file
    spec = echo_spec(tmp_path, service=relative)
    inst = serve(spec, command="up")
    pids = {r["pid"] for r in inst.status() if r["kind"] == "replica"}

    result = inst.cli("deploy", "-f", spec)
    assert result.returncode == 0 and "unchanged" in result.stdout, result.stdout
    import yaml

    same = yaml.safe_load(open(spec))["deployments"]["echo"]
    body = {"spec": {**same, "service": str(EXAMPLES / "echo")}}  # the same spec, the path absolute
    answer = inst.api("PUT", "/v1/deployments/echo", json=body).json()
    assert (answer["revision"], answer["changed"]) == (1, False)
    assert [r["revision"] for r in inst.api("GET", "/v1/deployments/echo/revisions").json()] == [1]
    assert {r["pid"] for r in inst.status() if r["kind"] == "replica"} == pids  # nothing restarted

    scaled = inst.cli("deploy", "-f", echo_spec(tmp_path, replicas=2, service=relative))
    assert scaled.returncode == 0 and "scaled" in scaled.stdout, scaled.stdout
    wait_for(lambda: sum(r["state"] == "ready" for r in inst.status() if r["kind"] == "replica") == 2, 60,
             "a second replica")
    assert pids <= {r["pid"] for r in inst.status() if r["kind"] == "replica"}  # the first one kept running
    assert [r["revision"] for r in inst.api("GET", "/v1/deployments/echo/revisions").json()] == [1]


def test_up_after_a_crash_keeps_changes_made_since_and_says_how_the_file_differs(tmp_path):
    spec = echo_spec(tmp_path)
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        assert inst.cli("scale", "echo", "2").returncode == 0
        extra = write(tmp_path / "two.yaml", f"deployments:\n  two:\n    service: {EXAMPLES / 'echo'}\n"
                                             "    replicas: 1\n")
        assert inst.cli("deploy", "-f", extra).returncode == 0
        echo_spec(tmp_path, env="edited-in-the-file")  # the file changes too, without being applied
        inst = crash_and_recover(inst, spec)
        assert deployment(inst, "echo")["replicas"] == 2 and deployment(inst, "echo")["spec"]["env"] == {"V": "v1"}
        assert deployment(inst, "two") is not None
        drift = [e for e in inst.events("drift")]
        assert len(drift) == 1, drift
        message = drift[0]["message"]
        assert 'echo: spec.env.V: "v1" -> "edited-in-the-file"' in message
        assert "echo: replicas: 2 running -> 1 in the file" in message
        assert "two: running (revision 1), not in the file" in message
        assert f"To apply the file: steady deploy -f {spec}" in message
        # a deploy of the file keeps a count scaled since: the count has its own command
        assert f"To run the file's replica count: steady scale echo 1 --state-dir {inst.state_dir.resolve()}" in message
        wait_for(lambda: "differs" in "".join(inst.output), 30, "the drift to be printed")
    finally:
        stop_instance(inst)


def test_up_after_a_crash_shows_the_replica_count_that_runs_and_how_to_run_the_files(tmp_path):
    spec = echo_spec(tmp_path, replicas=2)
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        assert inst.cli("scale", "echo", "3").returncode == 0
        wait_for(lambda: sum(r["state"] == "ready" for r in inst.status() if r["kind"] == "replica") == 3, 60,
                 "three ready replicas")
        inst = crash_and_recover(inst, spec)
        wait_for(lambda: "echo: 3 replicas" in "".join(inst.output), 30,
                 f"the banner with the recovered count; output so far:\n{''.join(inst.output)}")
        assert "echo: 2 replicas" not in "".join(inst.output)
        assert "recovering the instance in" in "".join(inst.output) and "starting echo from" not in "".join(inst.output)
        [drift] = inst.events("drift")
        assert drift["message"].endswith(
            f"To run the file's replica count: steady scale echo 2 --state-dir {inst.state_dir.resolve()}")
        assert "steady deploy" not in drift["message"]  # nothing else differs
        assert any("serving echo (3 replicas)" in e["message"] for e in inst.events("started"))  # what runs
    finally:
        stop_instance(inst)


def test_a_secret_changed_in_the_file_is_named_in_the_drift_but_neither_shown_nor_kept(tmp_path):
    import yaml

    key = tmp_path / "api.key"
    key.write_text("first-value")
    spec = echo_spec(tmp_path, extra="    secrets: {API_KEY: {from_file: api.key}}\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        key.write_text("second-value")
        inst = crash_and_recover(inst, spec)
        [drift] = inst.events("drift")
        assert "echo: secret API_KEY: new value" in drift["message"], drift["message"]
        assert f"To apply the file: steady deploy -f {spec}" in drift["message"]
        wait_for(lambda: "differs" in "".join(inst.output), 30, "the drift to be printed")
        assert "first-value" not in "".join(inst.output) + drift["message"]
        assert "second-value" not in "".join(inst.output) + drift["message"]
        # The file's value was only compared: a deploy that keeps the stored value keeps the running one.
        same = yaml.safe_load(open(spec))["deployments"]["echo"]
        answer = inst.api("PUT", "/v1/deployments/echo", json={"spec": same}).json()
        assert (answer["revision"], answer["changed"]) == (1, False), answer
    finally:
        stop_instance(inst)


def test_deploy_wait_returns_when_rolled_out_and_fails_with_the_reason_when_rolled_back(serve, tmp_path):
    spec = echo_spec(tmp_path)
    inst = serve(spec, command="up")
    good = inst.cli("deploy", "-f", echo_spec(tmp_path, "good.yaml", env="v2"), "--wait", "--timeout-s", "50")
    assert good.returncode == 0, good.stderr
    assert "echo: rolled out (revision 2: 1/1 replicas ready)" in good.stdout

    bad = echo_spec(tmp_path, "bad.yaml", service=f"{FIXTURES / 'crashy'}",
                    extra="    rollout: {ready_deadline_s: 3, bake_s: 0.5, min_requests: 1, max_bake_s: 1}\n"
                          "    health: {startup_timeout_s: 3}\n")
    result = inst.cli("deploy", "-f", bad, "--wait", "--timeout-s", "50")
    assert result.returncode == 1
    assert "echo: rollout failed" in result.stderr and "rolled back from revision 3 to 2" in result.stderr
    revisions = json.loads(inst.cli("revisions", "echo", "--json").stdout)
    assert revisions[1]["changes"] == ['spec.env.V: "v1" -> "v2"']
    assert any(c.startswith("spec.service:") for c in revisions[2]["changes"])
