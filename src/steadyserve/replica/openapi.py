"""OpenAPI 3.1 document generated from the handlers' pydantic schemas."""

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
        operation: dict[str, Any] = {
            "operationId": name,
            "requestBody": {
                "required": bool(spec.required_params),
                "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{spec.input_model.__name__}"},
                    **({"example": spec.options.example} if spec.options.example else {}),
                }},
            },
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": output_schema}}},
                "422": {"description": "Invalid input", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
                "500": {"description": "Handler error", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
            },
            "x-steady-idempotent": spec.options.idempotent,
        }
        if spec.options.batch is not None:
            operation["x-steady-batch"] = {
                "max_size": spec.options.batch.max_size,
                "max_wait_ms": spec.options.batch.max_wait_ms,
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
