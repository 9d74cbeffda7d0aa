"""What a recovering controller says when the spec file differs from what runs (pure)."""

from __future__ import annotations

import pytest

from steadyserve.control.config import DeploymentConfig
from steadyserve.control.revisions import Drift, drift_changes, drift_message, revision_changes, revision_json
from steadyserve.control.spec import DeploymentSpec

APPLY = "steady deploy -f steady.yaml --state-dir .steady"


def config(**spec) -> DeploymentConfig:
    return DeploymentConfig(name="echo", target="/abs/examples/echo/service.py:Echo",
                            spec=DeploymentSpec(service="examples/echo", **spec), handlers_idempotent={"echo": True})


def test_a_replica_count_alone_is_set_with_steady_scale_not_by_applying_the_file():
    message = drift_message([Drift("echo", replicas=(3, 2))], APPLY, " --state-dir /s")
    assert message == ("kept the recorded state; the spec file differs from it: echo: replicas: 3 running -> 2"
                       " in the file. To run the file's replica count: steady scale echo 2 --state-dir /s")


def test_other_changes_keep_the_apply_hint_and_counts_get_their_own():
    drifts = [Drift("echo", ('spec.env.V: "v1" -> "v2"',), replicas=(3, 2)), Drift("two", replicas=(1, 4)),
              Drift("gone", ("running (revision 1), not in the file",))]
    message = drift_message(drifts, APPLY)
    assert message is not None
    assert ('echo: spec.env.V: "v1" -> "v2"; echo: replicas: 3 running -> 2 in the file;'
            ' two: replicas: 1 running -> 4 in the file; gone: running (revision 1), not in the file.') in message
    assert message.endswith(". To run the file's replica counts: steady scale echo 2; steady scale two 4."
                            f" To apply the file: {APPLY}")


def test_no_difference_is_no_message():
    assert drift_message([Drift("echo"), Drift("two")], APPLY) is None


def test_a_secret_in_the_file_with_another_value_is_named_never_shown():
    spec = {"secrets": {"API_KEY": {"from_env": "API_KEY"}}}
    running = config(**spec).model_copy(update={"secret_versions": {"API_KEY": 1}})
    assert drift_changes(running, config(**spec), ["API_KEY"]) == ["secret API_KEY: new value"]
    assert drift_changes(running, config(**spec), []) == []


@pytest.mark.parametrize("spec, expected", [
    ({"timeout_s": 6}, ["spec.timeout_s: 30.0 -> 6.0"]),
    ({"replicas": 5}, []),  # the count is the other hint's
])
def test_drift_changes_name_spec_paths(spec, expected):
    assert drift_changes(config(), config(**spec), []) == expected


def test_a_removed_secret_is_a_spec_change_not_a_new_value():
    with_key = config(secrets={"API_KEY": {"from_env": "API_KEY"}}).model_copy(
        update={"secret_versions": {"API_KEY": 1}})
    assert revision_changes(revision_json(with_key), revision_json(config())) == [
        'spec.secrets.API_KEY: {"from_env": "API_KEY", "from_file": null, "mount": "env"} -> (none)']
