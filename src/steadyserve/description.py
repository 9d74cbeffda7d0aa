"""What the controller knows about a service, learnt in a child process that imports it.

The controller never imports user code: ``control/introspect.py`` runs in a child,
imports the service the way a replica does, and sends back a ``ServiceDescription``
as JSON. This module holds that serialisable description and how it is built
from a Service class (in the child).

The service module runs in that child and can write the answer itself, so the
model is also the controller's check of what it reads: unknown keys are
refused, handler names must be routes the gateway and replicas can serve
(``HANDLER_NAME_PATTERN``, not a built-in route), batch sizes are bounded and
at most one handler is the V2 entry point. ``problems`` turns a rejection into
one line per problem.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .service import RESERVED_ROUTES, Service, handler_specs

# ``POST /<name>``: one path segment the gateway and replica match byte for byte. ASCII only, as
# clients percent-encode anything else; a leading letter keeps out ``_private`` methods and ``..``.
HANDLER_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,127}$"
# Twice the largest batch is a replica's default max_ongoing_requests, whose limit is 10,000.
MAX_BATCH_SIZE = 5_000
_SHOWN_CHARS = 80  # of a rejected name, in a message


def shown(text: str) -> str:
    """``text`` quoted for a message, cut short: it may come from a forged description."""
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def route_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a handler's route, or None."""
    if not re.fullmatch(HANDLER_NAME_PATTERN, name):  # not match: "$" would let "admin\n" through
        return ("is not a valid route name: use ASCII letters, digits and _, starting with a letter,"
                " at most 128 characters")
    if name in RESERVED_ROUTES:
        return "is reserved for a built-in route"
    return None


def problems(exc: ValidationError) -> list[str]:
    """One ``key: problem`` line per error of a description, without the rejected values."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        key = ""
        for part in err["loc"]:  # handlers['../admin'].name: a key that is no identifier stays one part
            if isinstance(part, str) and part.isidentifier():
                key += f".{part}" if key else part
            else:
                key += f"[{shown(part) if isinstance(part, str) else part}]"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {message}" if key else message)
    return lines


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HandlerDescription(_Frozen):
    """One ``@handler``: its options and the inputs it needs."""

    name: str
    idempotent: bool = True
    v2: bool = False
    stream: Literal["sse", "ndjson", "raw"] | None = None  # a generator handler: how its items are sent
    openai: Literal["chat"] | None = None  # also served at the gateway's /v1/chat/completions
    files: tuple[str, ...] = ()  # parameters that take an upload
    binary_media_type: str | None = Field(default=None, max_length=200)  # answers with bytes of this type
    batch_max_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)  # None: not batched
    example: dict[str, Any] | None = None
    required_params: tuple[str, ...] = ()
    input_schema: dict[str, Any] | None = None  # JSON Schema of the request body; None if it has none

    @field_validator("name")
    @classmethod
    def _route_name(cls, value: str) -> str:
        problem = route_name_problem(value)
        if problem is not None:
            raise ValueError(f"handler name {shown(value)} {problem}")
        return value

    @field_validator("required_params")
    @classmethod
    def _parameter_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for param in value:
            if not param.isidentifier():
                raise ValueError(f"parameter name {shown(param)} is not a Python identifier")
        return value


class ServiceDescription(_Frozen):
    """A Service class found in a file, with its handlers in definition order."""

    file: Path  # absolute
    class_name: str
    handlers: dict[str, HandlerDescription]

    @field_validator("class_name")
    @classmethod
    def _class_name(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"class name {shown(value)} is not a Python identifier")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceDescription:
        if not self.handlers:
            raise ValueError(f"{self.class_name} has no handlers")
        for key, described in self.handlers.items():
            if key != described.name:
                raise ValueError(f"handler {shown(key)} is described under the name {shown(described.name)}")
        v2 = [name for name, described in self.handlers.items() if described.v2]
        if len(v2) > 1:
            raise ValueError(f"only one handler may be the V2 entry point, found {', '.join(v2)}")
        chat = [name for name, described in self.handlers.items() if described.openai == "chat"]
        if len(chat) > 1:
            raise ValueError(f"only one handler may serve openai='chat', found {', '.join(chat)}")
        return self

    @property
    def target(self) -> str:
        return f"{self.file}:{self.class_name}"


class DescribeAnswer(_Frozen):
    """What the child writes to its result pipe: the target it was asked for, echoed, and either
    the description or the error that explains why there is none."""

    target: str  # the --target argument, as given
    description: ServiceDescription | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> DescribeAnswer:
        if (self.description is None) == (self.error is None):
            raise ValueError("give exactly one of description or error")
        return self


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """An ``example`` as JSON would carry it (what is not JSON becomes its str)."""
    return None if value is None else dict(json.loads(json.dumps(value, default=str)))


def _schema(model: type[BaseModel]) -> dict[str, Any] | None:
    try:
        return model.model_json_schema()
    except Exception:  # noqa: BLE001 - a type pydantic can validate but not describe: no schema
        return None


def describe_class(cls: type[Service], file: Path) -> ServiceDescription:
    """Introspect ``cls`` (raises ConfigError as ``handler_specs`` does, and for what no route can serve)."""
    handlers = {}
    for name, spec in handler_specs(cls).items():
        where = f"{cls.__name__}.{name}"
        problem = route_name_problem(name)
        if problem is not None:
            raise ConfigError(f"{where}: handler name {shown(name)} {problem}; rename the method")
        try:
            handlers[name] = HandlerDescription(
                name=name,
                idempotent=spec.options.idempotent,
                v2=spec.options.v2,
                stream=spec.stream,
                openai=spec.options.openai,
                files=spec.file_params,
                binary_media_type=(spec.media_type or "application/octet-stream") if spec.binary_output else None,
                batch_max_size=spec.options.batch.max_size if spec.options.batch else None,
                example=_jsonable(spec.options.example),
                required_params=spec.required_params,
                input_schema=_schema(spec.input_model),
            )
        except ValidationError as exc:
            raise ConfigError(f"{where}: {'; '.join(problems(exc))}") from exc
    try:
        return ServiceDescription(file=file, class_name=cls.__name__, handlers=handlers)
    except ValidationError as exc:
        raise ConfigError(f"{cls.__name__}: {'; '.join(problems(exc))}") from exc
