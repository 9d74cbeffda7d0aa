"""What the controller makes of a service description, and of a child that gave none (no processes here)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from steadyserve.control.config import resolve_deployment, resolve_platform
from steadyserve.control.describer import DescribeRequest, how_it_ended, last_lines, outcome
from steadyserve.control.spec import DeploymentSpec, PlatformSpec
from steadyserve.description import HandlerDescription, ServiceDescription, describe_class
from steadyserve.errors import ConfigError, ServiceLoadError
from steadyserve.loading import ServiceTarget
from steadyserve.service import Batch, Service, handler

TARGET = ServiceTarget(file=Path("/srv/model/service.py"), class_name=None, name="model")


class Model(Service):
    @handler(example={"text": "hi"})
    def embed(self, text: str, scale: float = 1.0) -> list[float]:
        return [scale]

    @handler(batch=Batch(max_size=16), idempotent=False)
    def score(self, rows: list[int]) -> list[int]:
        return rows

    @handler(v2=True)
    def infer(self, x: list[float]) -> list[float]:
        return x


def _description(file: Path = TARGET.file) -> ServiceDescription:
    return describe_class(Model, file)


class FakeDescriber:
    """Answers with a fixed description and remembers what it was asked."""

    def __init__(self, description: ServiceDescription | None = None, barrier: threading.Barrier | None = None):
        self.description = description or _description()
        self.barrier = barrier
        self.requests: list[DescribeRequest] = []
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def describe(self, request: DescribeRequest) -> ServiceDescription:
        self.requests.append(request)
        if self.barrier is not None:
            self.barrier.wait()  # every deployment's child is running at once, or this breaks
        return self.description.model_copy(update={"file": request.target.file})


def test_a_description_carries_what_the_controller_and_console_need():
    handlers = _description().handlers
    assert list(handlers) == ["embed", "score", "infer"]
    assert handlers["embed"] == HandlerDescription(
        name="embed", example={"text": "hi"}, required_params=("text",),
        input_schema=handlers["embed"].input_schema)
    assert handlers["embed"].input_schema is not None
    assert handlers["embed"].input_schema["required"] == ["text"]
    assert (handlers["score"].batch_max_size, handlers["score"].idempotent) == (16, False)
    assert handlers["infer"].v2


def test_a_description_survives_json_unchanged():
    description = _description()
    assert ServiceDescription.model_validate(json.loads(description.model_dump_json())) == description


def test_resolve_builds_the_deployment_config_from_the_description(tmp_path):
    (tmp_path / "service.py").write_text("# never imported by this process\n")
    config, service = resolve_deployment("m", DeploymentSpec(service=str(tmp_path)), tmp_path, FakeDescriber())
    assert config.target == f"{tmp_path / 'service.py'}:Model" == service.target
    assert config.handlers_idempotent == {"embed": True, "score": False, "infer": True}
    assert (config.v2_handler, config.max_batch_size) == ("infer", 16)


def test_the_child_gets_the_callers_env_under_the_deployments_and_the_startup_timeout(tmp_path):
    (tmp_path / "service.py").write_text("")
    describer = FakeDescriber()
    spec = DeploymentSpec(service="service.py", env={"MODEL_DIR": "/m", "HOME": "/srv"},
                          health={"startup_timeout_s": 7}, resources={"address_space_mb": 512, "memory_mb": 256})
    resolve_deployment("m", spec, tmp_path, describer, env={"PATH": "/bin", "HOME": "/root"})
    request = describer.requests[0]
    assert dict(request.env) == {"PATH": "/bin", "HOME": "/srv", "MODEL_DIR": "/m"}
    assert (request.timeout_s, request.address_space_mb, request.memory_mb) == (7, 512, 256)
    resolve_deployment("m", spec, tmp_path, describer, env={}, timeout_s=0.5)
    assert describer.requests[1].timeout_s == 0.5


def test_idempotent_overrides_must_name_handlers_the_child_found(tmp_path):
    (tmp_path / "service.py").write_text("")
    spec = DeploymentSpec(service=str(tmp_path), idempotent={"embed": False, "nope": True})
    with pytest.raises(ConfigError, match="idempotent names unknown handlers nope; Model has embed, score, infer"):
        resolve_deployment("m", spec, tmp_path, FakeDescriber())


def test_a_missing_file_is_refused_before_any_child_starts(tmp_path):
    describer = FakeDescriber()
    with pytest.raises(ServiceLoadError, match="no such file or directory"):
        resolve_deployment("m", DeploymentSpec(service="gone.py"), tmp_path, describer)
    assert describer.requests == []


def test_resolve_platform_describes_every_deployment_at_once(tmp_path):
    names = ["a", "b", "c"]
    for name in names:
        (tmp_path / f"{name}.py").write_text("")
    spec = PlatformSpec.model_validate({"deployments": {n: {"service": f"{n}.py"} for n in names}})
    describer = FakeDescriber(barrier=threading.Barrier(len(names), timeout=30))
    platform, services = resolve_platform(spec, tmp_path, tmp_path / "state", 0, describer=describer)
    assert [d.name for d in platform.deployments] == names
    assert {n: s.file.name for n, s in services.items()} == {n: f"{n}.py" for n in names}


def test_resolve_platform_raises_the_first_deployments_error(tmp_path):
    class Failing(FakeDescriber):
        def describe(self, request: DescribeRequest) -> ServiceDescription:
            raise ServiceLoadError(f"{request.target.file}:1: NameError: x")

    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text("")
    spec = PlatformSpec.model_validate({"deployments": {"b": {"service": "b.py"}, "a": {"service": "a.py"}}})
    describer = Failing()
    with pytest.raises(ServiceLoadError, match=r"b\.py:1: NameError"):
        resolve_platform(spec, tmp_path, tmp_path / "state", 0, describer=describer)
    assert describer.cancelled  # imports still under way are ended, not waited for


def test_the_childs_error_is_raised_as_it_wrote_it():
    with pytest.raises(ServiceLoadError) as caught:
        outcome(TARGET, 0, json.dumps({"target": str(TARGET), "error": "/srv/model/service.py:3: NameError: x"}).encode(),
                b"")
    assert str(caught.value) == "/srv/model/service.py:3: NameError: x"


def test_the_childs_description_is_returned():
    raw = json.dumps({"target": str(TARGET), "description": _description().model_dump(mode="json")}).encode()
    assert outcome(TARGET, 0, raw, b"noise") == _description()


@pytest.mark.parametrize(("returncode", "how"), [
    (7, "exited with code 7"),
    (0, "exited with code 0"),
    (-11, "was killed by signal 11 (SIGSEGV)"),
    (-9, "was killed by signal 9 (SIGKILL)"),
])
def test_a_child_that_ended_without_a_description_is_named_by_how_it_ended(returncode, how):
    stderr = b"".join(f"line {i}\n".encode() for i in range(10))
    with pytest.raises(ServiceLoadError) as caught:
        outcome(TARGET, returncode, b"", stderr)
    message = str(caught.value)
    assert message.startswith(f"importing /srv/model/service.py {how} before describing the service")
    assert message.endswith("last output:\n  line 5\n  line 6\n  line 7\n  line 8\n  line 9")


def test_a_garbled_description_is_an_error_not_a_crash():
    with pytest.raises(ServiceLoadError, match="is invalid: description.file: Field required"):
        outcome(TARGET, 0, json.dumps({"target": str(TARGET), "description": {"handlers": 3}}).encode(), b"")
    with pytest.raises(ServiceLoadError, match="unreadable description"):
        outcome(TARGET, 0, b"not json", b"")


def test_how_it_ended_names_unknown_signals_too():
    assert how_it_ended(-200) == "was killed by signal 200 (an unknown signal)"


def test_last_lines_skip_blank_ones_and_survive_bad_utf8():
    assert last_lines(b"a\n\n\xff b\n  \n", count=5) == "  a\n  \ufffd b"
    assert last_lines(b"") == ""
