"""A request body a handler accepts, made from its JSON input schema (pure).

Used where a printed hint needs a body and the handler has no ``example=``. Only values
that validate without guessing are made: a string ``pattern``, an unknown ``format`` or a
model that requires itself gives ``None`` (then the hint points at the OpenAPI document).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any


class _NoSample(Exception):
    """No value of a schema can be made without guessing (a pattern, an unknown format, a loop)."""


# Values of the string formats pydantic writes; any other format cannot be met without guessing.
_FORMATS = {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01", "time": "00:00:00", "duration": "PT1S",
            "uuid": "00000000-0000-4000-8000-000000000000", "email": "user@example.com",
            "uri": "https://example.com/", "ipv4": "127.0.0.1", "ipv6": "::1", "hostname": "example.com",
            "binary": "...", "password": "...", "path": "..."}
_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}


def sample_body(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """A small request body that ``schema`` (a handler's input model, as pydantic writes it)
    accepts, or None when none can be made without guessing. Required fields only, each its
    ``examples[0]`` or the simplest value its type and bounds allow; validators in code that the
    schema does not show are not known here."""
    if schema is None:
        return None
    try:
        body = _sample(schema, schema.get("$defs", {}), frozenset())
    except _NoSample:
        return None
    return body if isinstance(body, dict) else None


def _sample(schema: dict[str, Any], defs: dict[str, Any], inside: frozenset[str]) -> Any:
    """``inside``: the definitions being sampled; one that requires itself has no finite sample."""
    if not isinstance(schema, dict):
        raise _NoSample
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:  # the author's own (pydantic's Field(examples=...))
        return examples[0]
    if "$ref" in schema:
        ref = str(schema["$ref"])
        name = ref.removeprefix("#/$defs/")
        if name == ref or name not in defs or name in inside:
            raise _NoSample
        return _sample(defs[name], defs, inside | {name})
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        if not schema["enum"]:
            raise _NoSample
        return schema["enum"][0]
    options = schema.get("anyOf") or schema.get("oneOf")
    if options is None and len(schema.get("allOf", ())) == 1:
        options = schema["allOf"]
    elif "allOf" in schema:
        raise _NoSample
    kinds = schema.get("type")
    if isinstance(kinds, list):
        options = [{**schema, "type": kind} for kind in kinds]
    if options is not None:
        for option in options:
            try:
                return _sample(option, defs, inside)
            except _NoSample:
                continue
        raise _NoSample
    if kinds is None:
        if set(schema) - _ANNOTATIONS:  # "not", "if" ...: nothing simple satisfies it for sure
            raise _NoSample
        return None  # any JSON value
    make = _MAKERS.get(kinds)
    if make is None:
        raise _NoSample
    return make(schema, defs, inside)


def _object(schema: dict[str, Any], defs: dict[str, Any], inside: frozenset[str]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    body = {}
    for name in schema.get("required", ()):
        field = properties.get(name, extra if isinstance(extra, dict) else {} if extra is True else None)
        if field is None:
            raise _NoSample
        body[name] = _sample(field, defs, inside)
    if len(body) < schema.get("minProperties", 0):
        raise _NoSample
    return body


def _array(schema: dict[str, Any], defs: dict[str, Any], inside: frozenset[str]) -> list[Any]:
    values = [_sample(item, defs, inside) for item in schema.get("prefixItems", ())]
    wanted = max(schema.get("minItems", 0), len(values), 1)  # one item shows its shape
    if schema.get("maxItems") is not None:
        wanted = min(wanted, schema["maxItems"])
    items = schema.get("items", {})
    while len(values) < wanted:
        try:
            if not isinstance(items, dict):
                raise _NoSample
            values.append(_sample(items, defs, inside))
        except _NoSample:
            if len(values) >= schema.get("minItems", 0):
                break
            raise
    if len(values) > 1 and schema.get("uniqueItems") and len({json.dumps(v) for v in values}) < len(values):
        raise _NoSample
    if len(values) > schema.get("maxItems", len(values)):
        raise _NoSample
    return values


def _string(schema: dict[str, Any], defs: dict[str, Any], inside: frozenset[str]) -> str:
    fmt = schema.get("format")
    if fmt is not None and fmt not in _FORMATS:
        raise _NoSample
    value = "..." if fmt is None else _FORMATS[fmt]
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if fmt is None or fmt in ("binary", "password", "path"):  # free text: fit it to the bounds
        value = value.ljust(low, ".")[:high]
    if not low <= len(value) <= (high if high is not None else len(value)):
        raise _NoSample
    if "pattern" in schema:
        try:
            if re.search(schema["pattern"], value) is None:
                raise _NoSample
        except re.error as exc:
            raise _NoSample from exc
    return value


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = schema.get("multipleOf")
    candidates: list[float] = [0]
    if low is not None:
        candidates.append(low)
    if above is not None:
        candidates.append(math.floor(above) + 1 if integer else above + 1)
    if high is not None:
        candidates.append(high)
    if below is not None:
        candidates.append(math.ceil(below) - 1 if integer else below - 1)
    floor = low if low is not None else above
    ceiling = high if high is not None else below
    if floor is not None and ceiling is not None:
        candidates.append((floor + ceiling) / 2)
    for candidate in candidates:
        if integer:
            candidate = math.ceil(candidate)
        if step:
            candidate = math.ceil(candidate / step) * step
        if ((low is None or candidate >= low) and (high is None or candidate <= high)
                and (above is None or candidate > above) and (below is None or candidate < below)):
            return int(candidate) if integer else float(candidate)
    raise _NoSample


_Maker = Callable[[dict[str, Any], dict[str, Any], frozenset[str]], Any]
_MAKERS: dict[str, _Maker] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": lambda schema, defs, inside: _number(schema, integer=True),
    "number": lambda schema, defs, inside: _number(schema, integer=False),
    "boolean": lambda schema, defs, inside: False,
    "null": lambda schema, defs, inside: None,
}
