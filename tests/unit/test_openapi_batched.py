"""The OpenAPI document describes a batched handler per call, with the array form beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, TypeAdapter

from steadyserve import Batch, Service, handler
from steadyserve.replica.openapi import openapi_document
from steadyserve.service import handler_specs

ROOT = Path(__file__).resolve().parents[2]


class Label(BaseModel):
    name: str
    score: float


class Model(Service):
    @handler(batch=Batch(max_size=16, max_wait_ms=5), example={"text": "hi", "top": 1})
    def classify(self, text: list[str], top: list[int]) -> list[Label]:
        return [Label(name=t, score=1.0) for t in text]

    @handler
    def plain(self, text: str) -> int:
        return len(text)


@pytest.fixture(scope="module")
def doc():
    return openapi_document("model", handler_specs(Model))


def _body(doc, name):
    return doc["paths"][f"/{name}"]["post"]["requestBody"]


def test_request_schema_is_one_item_of_each_list_parameter(doc):
    one, _ = _body(doc, "classify")["content"]["application/json"]["schema"]["oneOf"]
    per_call = doc["components"]["schemas"][one["$ref"].rsplit("/", 1)[1]]["properties"]
    assert (per_call["text"]["type"], per_call["top"]["type"]) == ("string", "integer")
    assert "one item of each list parameter" in _body(doc, "classify")["description"]


def test_an_array_of_up_to_max_size_calls_is_the_alternative(doc):
    one, many = _body(doc, "classify")["content"]["application/json"]["schema"]["oneOf"]
    assert many == {"type": "array", "items": {"$ref": one["$ref"]}, "maxItems": 16,
                    "description": "many calls in one request (at most 16)"}
    examples = _body(doc, "classify")["content"]["application/json"]["examples"]
    assert examples["many calls"]["value"] == [examples["one call"]["value"]] * 2
    post = doc["paths"]["/classify"]["post"]
    assert post["x-steady-batch"]["max_calls_per_request"] == 16 and "413" in post["responses"]


def test_response_is_one_item_of_the_returned_list_or_an_array_of_them(doc):
    schema = doc["paths"]["/classify"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    one, many = schema["anyOf"]
    assert one["title"] == "Label" and set(one["properties"]) == {"name", "score"}
    assert many["type"] == "array" and many["items"]["title"] == "Label"


def test_a_handler_that_is_not_batched_is_described_as_before(doc):
    body = _body(doc, "plain")
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Model_plain_input"}
    post = doc["paths"]["/plain"]["post"]
    assert post["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "integer"}
    assert "413" not in post["responses"] and "x-steady-batch" not in post


def test_the_readme_service_and_the_digits_example_return_the_same_predictions():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A service", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_example", ROOT / "examples" / "digits" / "service.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    def predict_output(cls):
        return TypeAdapter(handler_specs(cls)["predict"].output_type).json_schema()

    assert predict_output(namespace["Digits"]) == predict_output(example.Digits)
