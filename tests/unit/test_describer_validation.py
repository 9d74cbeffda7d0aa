"""What the controller accepts as a service's description: the child that writes it runs the service's
own module, so every answer is checked before it is believed (no processes here: ``outcome`` is pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steadyserve.control.describer import MAX_RESULT_BYTES, outcome
from steadyserve.description import describe_class
from steadyserve.errors import ConfigError, ServiceLoadError
from steadyserve.loading import ServiceTarget
from steadyserve.printable import printable
from steadyserve.service import Batch, Service, handler

FILE = Path("/srv/model/service.py")
TARGET = ServiceTarget(file=FILE, class_name="Model", name="model")


def handler_doc(name: str = "embed", **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def description_doc(*handlers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    handlers = handlers or (handler_doc(),)
    return {"file": str(FILE), "class_name": "Model", "handlers": {h["name"]: h for h in handlers}, **fields}


def answer(description: dict[str, Any] | None = None, target: ServiceTarget = TARGET, **fields: Any) -> bytes:
    return json.dumps({"target": str(target), "description": description or description_doc(), **fields}).encode()


def refusal(raw: bytes, target: ServiceTarget = TARGET) -> str:
    with pytest.raises(ServiceLoadError) as caught:
        outcome(target, 0, raw, b"")
    return str(caught.value)


def test_a_valid_answer_gives_its_description():
    description = outcome(TARGET, 0, answer(description_doc(handler_doc(batch_max_size=16, v2=True))), b"")
    assert description.target == f"{FILE}:Model"
    assert description.handlers["embed"].batch_max_size == 16


def test_a_refusal_names_the_target_and_what_was_wrong():
    message = refusal(answer(description_doc(handler_doc("../admin"))))
    assert message.startswith(f"service description from {FILE}:Model is invalid: "
                              "description.handlers['../admin'].name: handler name '../admin' is not a valid"
                              " route name: use ASCII letters, digits and _, starting with a letter")


@pytest.mark.parametrize("name", [
    "../admin", "a/b", "", "x" * 129, "_private", "1st", "café", "a b", "a\x00", "a.b", "-x", "admin\n",
])
def test_a_handler_name_the_gateway_cannot_route_is_refused(name):
    assert "is not a valid route name" in refusal(answer(description_doc(handler_doc(name))))


@pytest.mark.parametrize("name", ["healthz", "readyz", "metrics", "v2"])
def test_a_handler_name_of_a_built_in_route_is_refused(name):
    assert f"handler name '{name}' is reserved for a built-in route" in refusal(
        answer(description_doc(handler_doc(name))))


@pytest.mark.parametrize("name", ["predict", "Score_v2", "x" * 128])
def test_route_safe_handler_names_are_accepted(name):
    assert list(outcome(TARGET, 0, answer(description_doc(handler_doc(name))), b"").handlers) == [name]


@pytest.mark.parametrize(("batch_max_size", "problem"), [
    (0, "greater than or equal to 1"),
    (-3, "greater than or equal to 1"),
    (5001, "less than or equal to 5000"),
    (10**30, "less than or equal to 5000"),
    (True, "a valid integer"),
    (1.5, "a valid integer"),
    ("8", "a valid integer"),
])
def test_a_batch_size_out_of_bounds_or_of_the_wrong_type_is_refused(batch_max_size, problem):
    message = refusal(answer(description_doc(handler_doc(batch_max_size=batch_max_size))))
    assert f"batch_max_size: Input should be {problem}" in message


@pytest.mark.parametrize(("fields", "problem"), [
    ({"idempotent": "yes"}, "idempotent: Input should be a valid boolean"),
    ({"idempotent": 1}, "idempotent: Input should be a valid boolean"),
    ({"v2": "true"}, "v2: Input should be a valid boolean"),
    ({"required_params": "text"}, "required_params: Input should be a valid array"),
    ({"required_params": ["a/b"]}, "parameter name 'a/b' is not a Python identifier"),
    ({"example": [1]}, "example: Input should be an object"),
    ({"input_schema": "x"}, "input_schema: Input should be an object"),
    ({"route": "/admin"}, "handlers.embed.route: Extra inputs are not permitted"),
])
def test_handler_fields_must_have_the_types_of_the_schema(fields, problem):
    assert problem in refusal(answer(description_doc(handler_doc(**fields))))


@pytest.mark.parametrize(("document", "problem"), [
    ({"target": str(TARGET), "description": description_doc(), "admin": True}, "admin: Extra inputs"),
    ({"target": str(TARGET), "description": description_doc(extra=1)}, "description.extra: Extra inputs"),
    ({"target": str(TARGET)}, "give exactly one of description or error"),
    ({"target": str(TARGET), "description": description_doc(), "error": "x"}, "give exactly one of"),
    ({"description": description_doc()}, "target: Field required"),
    ({"target": str(TARGET), "description": description_doc(class_name="../Model")},
     "class name '../Model' is not a Python identifier"),
    ({"target": str(TARGET), "description": {**description_doc(), "handlers": {}}}, "Model has no handlers"),
    ({"target": str(TARGET), "description": {**description_doc(), "handlers": {"a": handler_doc("b")}}},
     "handler 'a' is described under the name 'b'"),
    ({"target": str(TARGET), "description": description_doc(handler_doc("a", v2=True), handler_doc("b", v2=True))},
     "only one handler may be the V2 entry point, found a, b"),
])
def test_answers_outside_the_schema_are_refused(document, problem):
    assert problem in refusal(json.dumps(document).encode())


def test_an_answer_for_another_target_is_refused():
    other = ServiceTarget(file=Path("/srv/other/service.py"), class_name="Model", name="other")
    assert "it answers for '/srv/other/service.py:Model', not for the target requested" in refusal(
        answer(target=other))


def test_a_description_of_another_file_is_refused_even_with_the_right_target_echoed():
    raw = answer(description_doc(file="/srv/other/service.py"))
    assert "is invalid: it describes the file '/srv/other/service.py'" in refusal(raw)


def test_a_description_of_another_class_than_the_one_named_is_refused():
    assert "it describes the class 'Admin'" in refusal(answer(description_doc(class_name="Admin")))


def test_without_a_class_named_the_child_may_choose_it():
    target = ServiceTarget(file=FILE, class_name=None, name="model")
    assert outcome(target, 0, answer(description_doc(class_name="Other"), target=target), b"").class_name == "Other"


def test_a_result_over_the_size_limit_is_refused_unparsed():
    raw = answer(description_doc(handler_doc(example={"pad": "x" * MAX_RESULT_BYTES})))
    assert "wrote more than 1024 KiB of service description" in refusal(raw)


def test_many_problems_are_summarised():
    handlers = [handler_doc(f"h{i}", batch_max_size=0) for i in range(8)]
    message = refusal(answer(description_doc(*handlers)))
    assert message.count("batch_max_size") == 5 and "; and 3 more" in message


def test_the_childs_error_is_shown_without_control_characters_and_cut_short():
    raw = json.dumps({"target": str(TARGET), "error": "\x1b[2Jboom\x07\n\tline 2" + "x" * 20_000}).encode()
    message = refusal(raw)
    assert message.startswith("\\x1b[2Jboom\\x07\n\tline 2xxx")  # escapes written out, line breaks kept
    assert message.endswith("…") and len(message) <= 8 * 1024


def test_printable_keeps_ordinary_text():
    assert printable("service.py:3: NameError: name 'x' is not defined") == (
        "service.py:3: NameError: name 'x' is not defined")


# --- the child's side: a class no route can serve is named there, with its method ---------------
class Huge(Service):
    @handler(batch=Batch(max_size=10_000))
    def score(self, rows: list[int]) -> list[int]:
        return rows


def test_a_batch_larger_than_the_bound_is_named_by_the_class_and_handler():
    with pytest.raises(ConfigError, match=r"Huge\.score: batch_max_size: Input should be less than or equal to 5000"):
        describe_class(Huge, FILE)


def test_a_handler_whose_name_is_no_route_is_named_by_the_class_and_method():
    class Odd(Service):
        @handler
        def ok(self) -> int:
            return 1

    setattr(Odd, "a/b", Odd.ok)  # noqa: B010 - a name no `def` can give
    with pytest.raises(ConfigError, match=r"Odd\.a/b: handler name 'a/b' is not a valid route name.*rename the method"):
        describe_class(Odd, FILE)
