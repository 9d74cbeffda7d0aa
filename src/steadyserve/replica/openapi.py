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
from ..service import HandlerSpec

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}


def _request_body(spec: HandlerSpec, ref: str) -> dict[str, Any]:
    example = spec.options.example
    limit = spec.max_calls_per_request
    if limit is None:
        one = {"schema": {"$ref": ref}, **({"example": example} if example else {})}
        return {"required": bool(spec.required_params), "content": {"application/json": one}}
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
            "requestBody": _request_body(spec, f"#/components/schemas/{spec.input_model.__name__}"),
            "responses": responses,
            "x-steady-idempotent": spec.options.idempotent,
        }
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
