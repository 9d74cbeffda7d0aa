"""The controller never imports user code: a module that exits, hangs, raises or does not parse at
import is refused with its own error, and the controller keeps serving everything else."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """A private copy of the `marks_importer` fixture: its `importers` file lists who imported it."""
    copy = tmp_path_factory.mktemp("marked") / "marks_importer"
    shutil.copytree(FIXTURES / "marks_importer", copy)
    return copy


@pytest.fixture(scope="module")
def inst(tmp_path_factory, marked):
    root = tmp_path_factory.mktemp("untrusted")
    spec = root / "steady.yaml"
    spec.write_text(f"""\
deployments:
  slow:
    service: {FIXTURES / 'slow'}
    replicas: 1
  marked:
    service: {marked}
    replicas: 1
gateway:
  processes: 1
""")
    instance = start_instance(spec, root / "state", command="up")
    yield instance
    stop_instance(instance)


def importers(service_dir) -> set[int]:
    return {int(line) for line in (service_dir / "importers").read_text().split()}


def still_serving(inst) -> None:
    assert inst.proc.poll() is None, "the controller exited"
    listed = inst.api("GET", "/v1/deployments")
    assert listed.status_code == 200
    assert [d["name"] for d in listed.json()] == ["marked", "slow"]
    code, _, body = inst.post_json("/slow/work", {"ms": 1})
    assert (code, body) == (200, {"slept_ms": 1})


@pytest.mark.parametrize(("fixture", "fragments"), [
    ("exits_at_import", ["exits_at_import/service.py exited with code 7 before describing the service",
                         "giving up before the class is defined"]),
    ("hangs_at_import", ["hangs_at_import/service.py did not finish within 2 s",
                         "loading weights from a mount that never answers"]),
    ("broken_import", ["broken_import/service.py:5: JSONDecodeError"]),
    ("syntax_error", ["syntax_error/service.py:6: SyntaxError"]),
])
def test_a_module_that_fails_at_import_is_refused_with_its_error_and_nothing_else_changes(inst, fixture, fragments):
    spec = {"service": str(FIXTURES / fixture), "replicas": 1, "health": {"startup_timeout_s": 2}}
    answer = inst.api("PUT", "/v1/deployments/bad", json={"spec": spec})
    assert answer.status_code == 422, answer.text
    for fragment in fragments:
        assert fragment in answer.json()["error"]
    still_serving(inst)
    assert not [r for r in inst.status() if r["deployment"] == "bad"]


def test_the_cli_reports_the_childs_error_too(inst, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"deployments:\n  bad:\n    service: {FIXTURES / 'exits_at_import'}\n")
    result = inst.cli("deploy", "-f", str(spec))
    assert result.returncode == 1
    assert "422: importing" in result.stderr and "exited with code 7" in result.stderr
    still_serving(inst)


def test_the_controller_process_never_imports_a_service(inst, marked, tmp_path):
    # At start-up (`steady up` resolved `marked`) ...
    code, _, replica_pid = inst.post_json("/marked/pid", {})
    assert code == 200
    at_start = importers(marked)
    assert replica_pid in at_start and inst.proc.pid not in at_start
    # ... and when a deployment is added through the control API.
    added = tmp_path / "marks_importer"
    shutil.copytree(FIXTURES / "marks_importer", added)
    answer = inst.api("PUT", "/v1/deployments/added", json={"spec": {"service": str(added), "replicas": 1}})
    assert answer.status_code == 200, answer.text
    code, _, replica_pid = wait_for(lambda: (r := inst.post_json("/added/pid", {}))[0] == 200 and r, 60,
                                    "the added deployment to serve")
    through_api = importers(added)
    assert replica_pid in through_api and len(through_api) >= 2  # its describer child, then its replica
    assert inst.proc.pid not in through_api
    assert inst.api("DELETE", "/v1/deployments/added").status_code == 202
    wait_for(lambda: not [r for r in inst.status() if r["deployment"] == "added"], 60, "added to be gone")
