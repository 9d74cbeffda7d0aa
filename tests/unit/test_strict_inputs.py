"""Handler inputs are strict JSON numbers: a boolean is not a number (issue 6 §3)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError

from steadyserve import Batch, Service, handler
from steadyserve.service import handler_specs


class Numbers(Service):
    @handler
    def scalars(self, count: int, scale: float = 1.0, flag: bool = False) -> float:
        return count * scale

    @handler
    def nested(self, rows: list[list[float]], weights: dict[str, float] | None = None,
               k: Annotated[int, Field(ge=1)] = 1, pair: tuple[int, float] = (0, 0.0)) -> int:
        return len(rows)

    @handler(batch=Batch(max_size=4))
    def batched(self, pixels: list[list[float]]) -> list[int]:
        return [len(p) for p in pixels]


def _validate(handler_name: str, body: str) -> dict[str, Any]:
    return handler_specs(Numbers)[handler_name].input_model.model_validate_json(body).model_dump()


@pytest.mark.parametrize(
    ("handler_name", "body", "field"),
    [
        ("scalars", '{"count": true}', ("count",)),
        ("scalars", '{"count": 1, "scale": false}', ("scale",)),
        ("nested", '{"rows": [[1.0, true]]}', ("rows", 0, 1)),
        ("nested", '{"rows": [], "weights": {"a": true}}', ("weights", "a")),
        ("nested", '{"rows": [], "k": true}', ("k",)),
        ("nested", '{"rows": [], "pair": [false, 1]}', ("pair", 0)),
        ("batched", '{"pixels": [0, 1, true]}', ("pixels", 2)),
    ],
)
def test_a_json_boolean_is_not_a_number(handler_name: str, body: str, field: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        _validate(handler_name, body)
    (error,) = caught.value.errors()
    assert error["loc"] == field
    assert error["type"] in ("int_type", "float_type")


def test_floats_take_json_integers() -> None:
    assert _validate("scalars", '{"count": 2, "scale": 3}') == {"count": 2, "scale": 3.0, "flag": False}
    assert _validate("nested", '{"rows": [[1, 2.5]], "pair": [1, 2]}')["rows"] == [[1.0, 2.5]]
    assert _validate("batched", '{"pixels": [0, 16]}') == {"pixels": [0.0, 16.0]}


def test_booleans_still_take_json_booleans() -> None:
    assert _validate("scalars", '{"count": 1, "flag": true}')["flag"] is True


def test_constraints_on_strict_numbers_still_apply() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        _validate("nested", '{"rows": [], "k": 0}')


def test_strictness_does_not_change_the_documented_schema() -> None:
    schema = handler_specs(Numbers)["nested"].input_model.model_json_schema()
    assert schema["properties"]["rows"]["items"]["items"] == {"type": "number"}
    assert schema["properties"]["k"] == {"default": 1, "minimum": 1, "title": "K", "type": "integer"}


def test_only_bodies_that_are_not_json_are_refused_for_their_numbers():
    import pytest as _pytest

    from steadyserve.errors import InvalidInput
    from steadyserve.replica.inputs import refuse_non_json_numbers

    for fine in (b'{"a": 1.5e300}', b'{"note": "NaN, Infinity and e999 are words here"}', b'{"a": 12}'):
        refuse_non_json_numbers(fine)
    for bad in (b'{"a": NaN}', b'{"a": 1e999}', b'{"a": [Infinity]}'):
        with _pytest.raises(InvalidInput, match="not valid JSON"):
            refuse_non_json_numbers(bad)
