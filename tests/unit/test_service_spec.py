"""Handler introspection and service loading."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES, FIXTURES

from steadyserve import Batch, Service, handler
from steadyserve.errors import ConfigError, ServiceLoadError
from steadyserve.loading import load_service_class, parse_target
from steadyserve.service import handler_specs


class Sample(Service):
    @handler
    def add(self, a: int, b: int = 1) -> int:
        return a + b

    @handler(batch=Batch(max_size=8, max_wait_ms=2), idempotent=False)
    def embed(self, text: list[str]) -> list[float]:
        return [0.0] * len(text)

    def helper(self) -> None:  # not a handler
        pass


def test_specs_cover_only_handlers():
    specs = handler_specs(Sample)
    assert set(specs) == {"add", "embed"}
    assert specs["add"].required_params == ("a",)
    assert not specs["add"].allows_get


def test_batched_handler_validates_one_item_per_request():
    spec = handler_specs(Sample)["embed"]
    assert spec.options.idempotent is False
    assert spec.input_model.model_validate({"text": "hello"}).text == "hello"


def test_batched_handler_must_take_lists():
    class Bad(Service):
        @handler(batch=Batch())
        def f(self, x: int) -> list[int]:
            return [x]

    with pytest.raises(ConfigError, match="must be annotated list"):
        handler_specs(Bad)


def test_reserved_handler_names_are_rejected():
    class Bad(Service):
        @handler
        def metrics(self) -> int:
            return 1

    with pytest.raises(ConfigError, match="reserved"):
        handler_specs(Bad)


def test_service_without_handlers_is_rejected():
    class Empty(Service):
        pass

    with pytest.raises(ConfigError, match="no @handler"):
        handler_specs(Empty)


def test_directory_target_uses_service_py_and_dir_name():
    target = parse_target(str(EXAMPLES / "echo"))
    assert target.name == "echo" and target.file.name == "service.py"
    assert load_service_class(target).__name__ == "Echo"


def test_syntax_error_names_file_and_line():
    with pytest.raises(ServiceLoadError, match=r"service.py:6: SyntaxError"):
        load_service_class(parse_target(str(FIXTURES / "syntax_error")))
