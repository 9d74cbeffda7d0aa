"""A request's body made into a handler's arguments: one call, or many for a batched handler (pure)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import ValidationError

from ..errors import InvalidInput, MethodNotAllowed, PayloadTooLarge
from ..service import HandlerSpec
from ..wire.http11 import Request
from .forms import body_kind, form_arguments, parse_multipart, raw_arguments, urlencoded_arguments

ARRAY_BODY = re.compile(rb"[ \t\r\n]*\[")  # a JSON array: many calls in one request (batched handlers)


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "problem": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False)
    ]


# pydantic's JSON parser takes NaN, Infinity and numbers too large for a double (as inf); JSON has
# none of them. Bodies that could hold one (rare) are parsed strictly once more to find out.
_MAYBE_NOT_JSON_NUMBER = re.compile(rb"NaN|Infinity|[eE][+]?[0-9]{3}")


def refuse_non_json_numbers(body: bytes) -> None:
    if _MAYBE_NOT_JSON_NUMBER.search(body) is None:
        return
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def parse_input(spec: HandlerSpec, request: Request) -> dict[str, Any] | list[dict[str, Any]]:
    """The call's keyword arguments, or for a JSON array sent to a batched handler, each call's."""
    if request.method == b"GET":
        if not spec.allows_get:
            raise MethodNotAllowed(
                f"handler {spec.name!r} has required arguments; use POST with a JSON body",
                required=list(spec.required_params),
            )
        body = b"{}"
    elif request.method == b"POST":
        body = request.body or b"{}"
        content_type = request.header(b"content-type")
        if spec.file_params or (content_type is not None and content_type[:10].lower() == b"multipart/"):
            kind = body_kind(content_type, request.body, spec)
            if kind != "json":
                return parse_form(spec, request, kind)
    else:
        raise MethodNotAllowed(f"method {request.method.decode()} not allowed; use POST")
    refuse_non_json_numbers(body)
    array = ARRAY_BODY.match(body) is not None
    if array and spec.many_adapter is not None:
        return parse_many(spec, body)
    try:
        model = spec.input_model.model_validate_json(body)
    except ValidationError as exc:
        errors = field_errors(exc)
        if errors and errors[0]["type"] == "json_invalid":
            raise InvalidInput(f"request body is not valid JSON: {errors[0]['problem']}") from exc
        if array:
            raise InvalidInput(f"handler {spec.name!r} takes one JSON object per call; a JSON array of"
                               " calls is accepted only by batched handlers", fields=errors) from exc
        raise InvalidInput(f"invalid input for handler {spec.name!r}", fields=errors) from exc
    return model.__dict__


def parse_form(spec: HandlerSpec, request: Request, kind: str) -> dict[str, Any]:
    """A multipart, urlencoded or raw body (uploads) made into the call's arguments."""
    content_type = request.header(b"content-type")
    query = request.url.partition(b"?")[2]
    if kind == "multipart":
        assert content_type is not None
        values = form_arguments(spec, parse_multipart(content_type, request.body), query)
    elif kind == "urlencoded":
        values = urlencoded_arguments(spec, request.body, query)
    else:
        values = raw_arguments(spec, content_type, request.body, query)
    try:
        return spec.input_model.model_validate(values).__dict__
    except ValidationError as exc:
        raise InvalidInput(f"invalid input for handler {spec.name!r}", fields=field_errors(exc)) from exc


def parse_many(spec: HandlerSpec, body: bytes) -> list[dict[str, Any]]:
    """A JSON array body: each element one call of a batched handler, all valid or none run."""
    assert spec.many_adapter is not None and spec.max_calls_per_request is not None
    try:
        calls = spec.many_adapter.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            raise InvalidInput(f"request body is not valid JSON: {first['msg']}") from exc
        limit = spec.max_calls_per_request
        if first["type"] == "too_long" and not first["loc"]:
            count = (first.get("ctx") or {}).get("actual_length")
            raise PayloadTooLarge(
                f"an array request to handler {spec.name!r} carries {count} calls; the limit is {limit}"
                " (the handler's Batch max_size): split it into several requests",
                limit_calls=limit, calls=count) from exc
        indexes = sorted({e["loc"][0] for e in errors if e["loc"] and isinstance(e["loc"][0], int)})
        where = f" in element{'s' if len(indexes) > 1 else ''} {', '.join(map(str, indexes))} of the array"
        raise InvalidInput(f"invalid input for handler {spec.name!r}{where if indexes else ''} (each field"
                           " starts with the element's index); none of its calls ran",
                           fields=field_errors(exc), indexes=indexes) from exc
    return [call.__dict__ for call in calls]
