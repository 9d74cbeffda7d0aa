"""What makes a revision, what changed between two, and how `deploy --wait` judges a rollout (pure)."""

from __future__ import annotations

import pytest

from steadyserve.control.config import DeploymentConfig
from steadyserve.control.revisions import revision_changes, revision_json, spec_changes
from steadyserve.control.spec import DeploymentSpec
from steadyserve.deploy_wait import Done, Failed, Waiting, judge


def config(service: str = "examples/echo", **spec) -> DeploymentConfig:
    return DeploymentConfig(name="echo", target="/abs/examples/echo/service.py:Echo",
                            spec=DeploymentSpec(service=service, **spec), handlers_idempotent={"echo": True})


def test_a_revision_ignores_how_the_path_was_written_and_the_replica_count():
    assert revision_json(config("examples/echo", replicas=1)) == revision_json(config("/abs/examples/echo", replicas=5))
    assert revision_json(config(timeout_s=5)) != revision_json(config(timeout_s=6))


def test_a_new_secret_value_is_a_new_revision_that_never_holds_the_value():
    first = config().model_copy(update={"secret_versions": {"API_KEY": 1}})
    second = config().model_copy(update={"secret_versions": {"API_KEY": 2}})
    assert revision_json(first) != revision_json(second)
    assert revision_changes(revision_json(first), revision_json(second)) == ["secret API_KEY: new value"]


def test_changes_name_dotted_paths_with_old_and_new_values():
    assert spec_changes({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": "x"}) == [
        "a.c: 2 -> 3", 'd: (none) -> "x"']
    assert revision_changes(None, revision_json(config())) == ["first revision"]
    assert revision_changes(revision_json(config(env={"V": "1"})), revision_json(config(env={"V": "2"}))) == [
        'spec.env.V: "1" -> "2"']


def deployment(revision=2, ready=2, replicas=2, rolling_out_from=None):
    return {"revision": revision, "ready": ready, "replicas": replicas, "rolling_out_from": rolling_out_from}


@pytest.mark.parametrize("row, events, expected", [
    (deployment(), [], Done),
    (deployment(rolling_out_from=1, ready=1), [], Waiting),
    (deployment(revision=1), [{"deployment": "echo", "type": "rollback", "message": "rolled back: 5xx"}], Failed),
    (deployment(revision=3), [], Failed),
    (None, [], Failed),
])
def test_deploy_wait_judges_done_waiting_or_failed(row, events, expected):
    assert isinstance(judge("echo", 2, row, events), expected)


def test_deploy_wait_says_why_a_rollout_failed_and_shows_trouble_while_waiting():
    rollback = {"deployment": "echo", "type": "rollback", "message": "rolled back from revision 2 to 1: crash loop"}
    assert judge("echo", 2, deployment(revision=1), [rollback]) == Failed(rollback["message"])
    exited = {"deployment": "echo", "type": "exited", "subject": "r3", "message": "exit code 1"}
    other = {"deployment": "other", "type": "rollback", "message": "not ours"}
    verdict = judge("echo", 2, deployment(ready=1, rolling_out_from=1), [exited, other])
    assert verdict == Waiting("revision 2: 1/2 replicas ready; r3 exited: exit code 1")


def crash_loop(subject: str = "r0") -> dict:
    return {"deployment": "echo", "type": "crash_loop", "subject": subject,
            "message": "crash-looping: 3 crashes in a row, last error: ValueError: weights missing; next restart in 2s"}


def test_deploy_wait_fails_at_once_when_a_replica_crash_loops_with_nothing_to_roll_back_to():
    verdict = judge("echo", 1, deployment(revision=1, ready=0), [crash_loop()])
    assert verdict == Failed("replica r0 of revision 1: " + crash_loop()["message"])


@pytest.mark.parametrize("row, events", [
    (deployment(ready=1, rolling_out_from=1), [crash_loop()]),  # a rollout: its rollback will say why
    (deployment(ready=1), [crash_loop(), {"deployment": "echo", "type": "ready", "subject": "r0", "message": ""}]),
    (deployment(ready=1), [{**crash_loop(), "deployment": "other"}]),
])
def test_deploy_wait_keeps_waiting_on_a_crash_loop_a_rollback_or_a_recovery_ends(row, events):
    assert isinstance(judge("echo", 2, row, events), Waiting)


def test_controller_only_settings_make_no_new_revision_but_are_kept(tmp_path):
    from steadyserve.control.statedb import StateDB

    plain = config()
    watched = config(alerts=[{"name": "Mine", "expr": "error_ratio", "threshold": 0.1}],
                     slo={"availability": 0.99}, prediction={"window_s": 30})
    assert revision_json(plain) == revision_json(watched)
    db = StateDB(tmp_path / "state.db")
    try:
        assert db.record_revision("echo", revision_json(plain), plain.model_dump_json()) == (1, True)
        assert db.record_revision("echo", revision_json(watched), watched.model_dump_json()) == (1, False)
        stored = DeploymentConfig.model_validate_json(db.revision_config("echo", 1))
        assert [r.name for r in stored.spec.alerts] == ["Mine"] and stored.spec.slo is not None
    finally:
        db.close()
