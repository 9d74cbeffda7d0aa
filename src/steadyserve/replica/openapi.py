"""OpenAPI 3.1 document generated from the handlers' pydantic schemas.

A batched handler is described per call, as callers see it: its request schema is
one element of each ``list[T]`` parameter and its response one element of the
returned list, with the many-calls form (a JSON array) as the alternative.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..media import OCTET_STREAM
from ..service import HandlerSpec

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}


_BINARY = {"type": "string", "format": "binary"}


def _upload_forms(spec: HandlerSpec, ref: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """A handler taking files: multipart/form-data (files as binary parts), or one file as the raw body."""
    model = schemas.get(spec.input_model.__name__, {})
    properties = {name: (_BINARY if name in spec.file_params else schema)
                  for name, schema in model.get("properties", {}).items()}
    # A field that is not text goes as JSON (`[1, 2]`, `true`): one part, not one part per element.
    encoding = {name: {"contentType": "*/*" if name in spec.file_params else "application/json"}
                for name, schema in properties.items() if name in spec.file_params or schema.get("type") != "string"}
    forms: dict[str, Any] = {"multipart/form-data": {
        "schema": {"type": "object", "properties": properties, "required": list(spec.required_params)},
        "encoding": encoding,
    }}
    if len(spec.file_params) == 1:
        forms["*/*"] = {"schema": _BINARY, "x-steady-note": f"the file `{spec.file_params[0]}` as the body, with its"
                        " content type; the other parameters in the query string"}
    return forms


def _request_body(spec: HandlerSpec, ref: str, schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    example = spec.options.example
    limit = spec.max_calls_per_request
    if limit is None:
        one = {"schema": {"$ref": ref}, **({"example": example} if example else {})}
        content: dict[str, Any] = {"application/json": one}
        if spec.file_params:
            content.update(_upload_forms(spec, ref, schemas or {}))
        return {"required": bool(spec.required_params), "content": content}
    params = ", ".join(f"`{p}`" for p in spec.input_model.model_fields)
    return {
        "required": bool(spec.required_params),
        "description": (
            f"One call is one JSON object holding one item of each list parameter of the batched handler"
            f" ({params}): the handler receives the items of up to {limit} calls together, one list element"
            f" per call, and each caller gets its own output. A JSON array of up to {limit} such objects is"
            " that many calls in one request (each joins a batch like any other call), answered with a JSON"
            " array of their outputs in the same order; if one element is invalid none of them runs."
        ),
        "content": {"application/json": {
            "schema": {"oneOf": [
                {"$ref": ref, "description": "one call"},
                {"type": "array", "items": {"$ref": ref}, "maxItems": limit,
                 "description": f"many calls in one request (at most {limit})"},
            ]},
            **({"examples": {"one call": {"value": example}, "many calls": {"value": [example, example]}}}
               if example else {}),
        }},
    }


def _ok(spec: HandlerSpec, output_schema: dict[str, Any]) -> dict[str, Any]:
    if spec.stream is not None:
        return _streamed(spec, output_schema)
    if spec.binary_output:
        return {"description": "OK: the bytes the handler returned",
                "content": {spec.media_type or OCTET_STREAM: {"schema": _BINARY}}}
    if spec.max_calls_per_request is None:
        return {"description": "OK", "content": {"application/json": {"schema": output_schema}}}
    return {
        "description": "OK: the call's own output (one element of the list the handler returns); for an array"
                       " request, an array of the calls' outputs in the order of the calls",
        "content": {"application/json": {"schema": {"anyOf": [
            {"description": "one call's output", **output_schema},
            {"type": "array", "items": output_schema, "description": "an array request: one output per call"},
        ]}}},
    }


def _streamed(spec: HandlerSpec, item_schema: dict[str, Any]) -> dict[str, Any]:
    """A generator handler's answer: a stream of items (OpenAPI 3.1 has no item schema: it is an extension)."""
    fmt = spec.stream
    if fmt == "raw":
        return {"description": "OK: the bytes the handler yields, sent as they come (chunked)",
                "content": {spec.media_type or OCTET_STREAM: {"schema": _BINARY}}}
    if fmt == "sse":
        media, how = "text/event-stream", ("one Server-Sent Event per item (`data: <JSON item>`); a failure"
                                           " after the first item ends it with `event: error`")
    else:
        media, how = "application/x-ndjson", ("one JSON item per line; a failure after the first item ends it"
                                              " with a line `{\"error\": {\"type\": \"stream_error\", ...}}`")
    return {"description": f"OK: a stream, {how}",
            "content": {media: {"schema": {"type": "string"}, "x-steady-item-schema": item_schema}}}


def openapi_document(service_name: str, specs: dict[str, HandlerSpec]) -> dict[str, Any]:
    _, defs = models_json_schema(
        [(s.input_model, "validation") for s in specs.values()],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    paths: dict[str, Any] = {}
    for name, spec in specs.items():
        output_schema = (
            TypeAdapter(spec.output_type).json_schema(ref_template="#/components/schemas/{model}")
            if spec.output_adapter is not None else {}
        )
        schemas.update(output_schema.pop("$defs", {}))
        responses = {
            "200": _ok(spec, output_schema),
            "422": _error("Invalid input (for an array request, each field starts with the element's index)"
                          if spec.max_calls_per_request else "Invalid input"),
            "500": _error("Handler error"),
        }
        if spec.max_calls_per_request is not None:
            responses["413"] = _error(f"An array request of more than {spec.max_calls_per_request} calls")
        operation: dict[str, Any] = {
            "operationId": name,
            "requestBody": _request_body(spec, f"#/components/schemas/{spec.input_model.__name__}", schemas),
            "responses": responses,
            "x-steady-idempotent": spec.options.idempotent,
        }
        if spec.stream is not None:
            operation["x-steady-stream"] = spec.stream
        if spec.options.openai is not None:
            operation["x-steady-openai"] = "/v1/chat/completions"
        if spec.options.batch is not None:
            operation["x-steady-batch"] = {
                "max_size": spec.options.batch.max_size,
                "max_wait_ms": spec.options.batch.max_wait_ms,
                "max_calls_per_request": spec.max_calls_per_request,
            }
        paths[f"/{name}"] = {"post": operation}
        if spec.allows_get:
            get_op = {k: v for k, v in operation.items() if k != "requestBody"}
            paths[f"/{name}"]["get"] = {**get_op, "operationId": f"{name}_get"}
    return {
        "openapi": "3.1.0",
        "info": {"title": service_name, "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
