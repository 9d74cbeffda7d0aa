"""Request bodies made from a handler's input schema validate against that handler's model."""

from __future__ import annotations

import datetime
import enum
import json
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from steadyserve import Service, handler
from steadyserve.sample_body import sample_body
from steadyserve.service import handler_specs


class _Colour(enum.Enum):
    RED = "red"


class _Point(BaseModel):
    x: float
    y: float = 0


class _Node(BaseModel):
    children: list[_Node]


class _Loop(BaseModel):
    again: _Loop


class _Shapes(Service):
    @handler
    def scalars(self, n: int, f: float, s: str, b: bool, c: _Colour, mode: Literal["a", "b"], o: int | None) -> int:
        return 0

    @handler
    def bounded(self, above: Annotated[int, Field(gt=5)], below: Annotated[int, Field(lt=-3)],
                unit: Annotated[float, Field(gt=0, lt=1)], step: Annotated[int, Field(ge=7, multiple_of=5)],
                short: Annotated[str, Field(max_length=2)], long: Annotated[str, Field(min_length=10)],
                three: Annotated[list[int], Field(min_length=3)]) -> int:
        return 0

    @handler
    def nested(self, point: _Point, tree: _Node, pair: tuple[int, str], table: dict[str, int],
               day: datetime.date, at: datetime.datetime, given: Annotated[int, Field(examples=[42])]) -> int:
        return 0

    @handler
    def patterned(self, pin: Annotated[str, Field(pattern=r"^[0-9]{4}$")]) -> int:
        return 0

    @handler
    def endless(self, loop: _Loop) -> int:
        return 0


@pytest.mark.parametrize("name", ["scalars", "bounded", "nested"])
def test_sample_body_is_accepted_by_the_handler(name):
    spec = handler_specs(_Shapes)[name]
    body = sample_body(spec.input_model.model_json_schema())
    assert body is not None
    spec.input_model.model_validate_json(json.dumps(body))


@pytest.mark.parametrize("name", ["patterned", "endless"])
def test_no_sample_body_is_guessed(name):
    assert sample_body(handler_specs(_Shapes)[name].input_model.model_json_schema()) is None
