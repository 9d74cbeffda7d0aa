"""The service SDK: ``Service``, ``@handler`` and ``Batch``.

A service is a class; each method marked ``@handler`` becomes ``POST /<name>``.
Parameters and return values are validated with pydantic from the type hints.

A batched handler is written for a batch but called per item: its parameters are
``list[T]`` and its return ``list[R]``, while one call carries one ``T`` per parameter
and gets one ``R``. A JSON array of such calls is that many calls in one request.

A handler that is a generator (or async generator) streams: each item it yields
is sent as it is produced (docs/streaming.md). A parameter annotated ``bytes`` or
``File`` takes an upload; a handler that returns ``bytes`` or a ``File`` answers
with those bytes (docs/streaming.md).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, overload

from pydantic import BaseModel, ConfigDict, Strict, TypeAdapter, conlist, create_model
from pydantic.fields import FieldInfo

from .errors import ConfigError
from .media import STREAM_FORMATS, StreamFormat, is_binary_type, is_file_type, stream_item_type

F = TypeVar("F", bound=Callable[..., Any])

_HANDLER_MARK = "__steady_handler__"
RESERVED_ROUTES = frozenset({"healthz", "readyz", "metrics", "openapi.json", "v1", "v2"})
OpenAIKind = Literal["chat"]


@dataclass(frozen=True)
class Batch:
    """Dynamic batching: group up to ``max_size`` calls, waiting at most ``max_wait_ms``."""

    max_size: int = 32
    max_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ConfigError(f"Batch.max_size must be >= 1, got {self.max_size}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"Batch.max_wait_ms must be >= 0, got {self.max_wait_ms}")


@dataclass(frozen=True)
class HandlerOptions:
    batch: Batch | None = None
    idempotent: bool = True
    example: dict[str, Any] | None = None
    v2: bool = False
    stream: StreamFormat | None = None  # how a generator's items go on the wire; None: "sse" for generators
    media_type: str | None = None  # of raw stream chunks or a bytes result
    openai: OpenAIKind | None = None  # also serve the handler in the OpenAI format (/v1/chat/completions)


@overload
def handler(fn: F) -> F: ...
@overload
def handler(
    *,
    batch: Batch | None = None,
    idempotent: bool = True,
    example: dict[str, Any] | None = None,
    v2: bool = False,
    stream: StreamFormat | None = None,
    media_type: str | None = None,
    openai: OpenAIKind | None = None,
) -> Callable[[F], F]: ...


def handler(
    fn: F | None = None,
    *,
    batch: Batch | None = None,
    idempotent: bool = True,
    example: dict[str, Any] | None = None,
    v2: bool = False,
    stream: StreamFormat | None = None,
    media_type: str | None = None,
    openai: OpenAIKind | None = None,
) -> F | Callable[[F], F]:
    """Mark a method as an HTTP handler.

    ``idempotent=False`` tells the gateway to retry a call only when it provably
    never reached the replica. With ``batch=Batch(...)`` every parameter is
    annotated ``list[T]`` and the return value ``list[R]``: one item per caller, who
    sends one ``T`` per parameter and gets one ``R`` (or sends a JSON array of up to
    ``max_size`` such calls in one request and gets an array of outputs).
    ``example`` is a request body shown in the OpenAPI document and by ``steady serve``.
    ``v2=True`` makes this handler the service's Open Inference Protocol (KServe V2)
    entry point: each input tensor is a parameter, each row of the batch one call.
    A generator handler streams its items: ``stream="sse"`` (the default: one JSON
    object per Server-Sent Event), ``"ndjson"`` (one JSON document per line) or
    ``"raw"`` (the items are bytes or str, sent as they are, typed ``media_type``).
    ``media_type`` is also the content type of a ``bytes`` result. ``openai="chat"``
    serves a generator of text pieces that takes ``messages`` at the gateway's
    OpenAI-compatible ``/v1/chat/completions`` too (docs/streaming.md).
    """
    if stream is not None and stream not in STREAM_FORMATS:
        raise ConfigError(f"@handler(stream={stream!r}): use one of {', '.join(STREAM_FORMATS)}")
    if openai is not None and openai != "chat":
        raise ConfigError(f"@handler(openai={openai!r}): the only OpenAI endpoint served is 'chat'")

    def mark(f: F) -> F:
        setattr(f, _HANDLER_MARK, HandlerOptions(batch=batch, idempotent=idempotent, example=example, v2=v2,
                                                 stream=stream, media_type=media_type, openai=openai))
        return f

    return mark(fn) if fn is not None else mark


class Service:
    """Base class of a model service. One instance runs in each replica."""

    def setup(self) -> None:
        """Load models, warm caches. Runs once per replica before it is ready."""

    def health(self) -> bool:
        """Custom liveness check; return False to have the replica replaced."""
        return True


@dataclass(frozen=True)
class HandlerSpec:
    """What the replica and gateway need to know about one handler."""

    name: str
    options: HandlerOptions
    is_async: bool
    input_model: type[BaseModel]
    output_adapter: TypeAdapter[Any] | None
    output_type: Any
    required_params: tuple[str, ...]
    # Batched handlers: a JSON array body of up to ``max_calls_per_request`` calls.
    many_adapter: TypeAdapter[list[BaseModel]] | None = None
    stream: StreamFormat | None = None  # a generator handler: how its items are sent
    file_params: tuple[str, ...] = ()  # parameters that take an upload (bytes or File)
    binary_output: bool = False  # returns bytes or a File: sent as they are, not as JSON

    @property
    def media_type(self) -> str | None:
        return self.options.media_type

    @property
    def allows_get(self) -> bool:
        return not self.required_params

    @property
    def max_calls_per_request(self) -> int | None:
        """How many calls one array request may carry: one full batch (None: no arrays)."""
        return self.options.batch.max_size if self.options.batch is not None else None


def _item_type(annotation: Any, where: str) -> Any:
    """For a batched handler, ``list[T]`` -> ``T``."""
    if get_origin(annotation) is not list or not get_args(annotation):
        raise ConfigError(f"{where} must be annotated list[T] because the handler is batched")
    return get_args(annotation)[0]


def _strict_numbers(annotation: Any) -> Any:
    """``int`` and ``float`` anywhere in a parameter's type made strict: JSON ``true`` is not a number.

    Strict is checked in pydantic's core, so it costs nothing per element of a long
    ``list[float]``. A strict float still takes a JSON integer; a strict int takes neither
    ``1.0`` nor ``"1"``. Models and dataclasses used as parameter types keep their own config.
    """
    if annotation is int or annotation is float:
        return Annotated[annotation, Strict()]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None or origin is Literal or not args:
        return annotation
    if origin is Annotated:
        return Annotated[(_strict_numbers(args[0]), *annotation.__metadata__)]
    strict = tuple(arg if arg is Ellipsis else _strict_numbers(arg) for arg in args)
    if strict == args:
        return annotation
    if origin is Union or origin is types.UnionType:
        return Union[strict]  # noqa: UP007 - built from a tuple
    try:
        return origin[strict]
    except TypeError:  # an origin that cannot be subscripted again: leave the type as written
        return annotation


def _build_spec(cls: type[Service], name: str, fn: Callable[..., Any]) -> HandlerSpec:
    options: HandlerOptions = getattr(fn, _HANDLER_MARK)
    where = f"{cls.__name__}.{name}"
    if name in RESERVED_ROUTES or name.startswith("_"):
        raise ConfigError(f"handler name {name!r} in {where} is reserved; rename the method")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ConfigError(f"cannot resolve type hints of {where}: {exc}") from exc
    fields: dict[str, Any] = {}
    required: list[str] = []
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"{where}: *args/**kwargs are not supported in handlers")
        annotation = hints.get(param.name, Any)
        if options.batch is not None:
            annotation = _item_type(annotation, f"parameter {param.name!r} of {where}")
        annotation = _strict_numbers(annotation)
        if param.default is inspect.Parameter.empty:
            fields[param.name] = (annotation, ...)
            required.append(param.name)
        else:
            fields[param.name] = (annotation, param.default)
            if isinstance(param.default, FieldInfo) and param.default.is_required():
                required.append(param.name)  # `x: int = Field(ge=0)`: constraints, and no default
    is_generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    stream = _stream_format(options, is_generator, where)
    file_params = tuple(name for name, (annotation, _) in fields.items() if is_file_type(annotation))
    if options.openai == "chat" and "messages" not in fields:
        raise ConfigError(f"{where}: an openai='chat' handler takes the conversation as a parameter"
                          " `messages: list[ChatMessage]`")
    if file_params and options.batch is not None:
        raise ConfigError(f"{where}: a batched handler cannot take uploads ({', '.join(file_params)})")
    input_model = create_model(
        f"{cls.__name__}_{name}_input",
        __config__=ConfigDict(extra="forbid", val_json_bytes="base64", ser_json_bytes="base64"),
        **fields,
    )
    output_type = hints.get("return", Any)
    if options.batch is not None and "return" in hints:
        output_type = _item_type(output_type, f"return value of {where}")
    if stream is not None:
        output_type = stream_item_type(output_type)  # each item is validated as it is yielded
        if stream == "raw" and output_type not in (Any, bytes, str):
            raise ConfigError(f"{where}: a stream='raw' handler yields bytes or str, not {output_type!r}")
    binary = stream is None and is_binary_type(output_type)
    if options.media_type is not None and not (binary or stream == "raw" or output_type is Any):
        raise ConfigError(f"{where}: media_type is for a handler returning bytes or a File, or a stream='raw'"
                          f" generator; this one returns {output_type!r} as JSON")
    adapter = TypeAdapter(output_type) if output_type is not Any and not binary else None
    many_adapter: TypeAdapter[list[BaseModel]] | None = None
    if options.batch is not None:
        # The length is checked before the elements: an oversized array costs no validation.
        many_adapter = TypeAdapter(conlist(input_model, max_length=options.batch.max_size))
    return HandlerSpec(
        name=name,
        options=options,
        is_async=inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn),
        input_model=input_model,
        output_adapter=adapter,
        output_type=output_type,
        required_params=tuple(required),
        many_adapter=many_adapter,
        stream=stream,
        file_params=file_params,
        binary_output=binary,
    )


def _stream_format(options: HandlerOptions, is_generator: bool, where: str) -> StreamFormat | None:
    """How a generator handler's items are sent (None: the handler returns one value)."""
    if not is_generator:
        if options.stream is not None:
            raise ConfigError(f"{where}: stream={options.stream!r} needs a generator: yield the items")
        if options.openai is not None:
            raise ConfigError(f"{where}: openai={options.openai!r} needs a generator that yields text pieces")
        return None
    if options.batch is not None:
        raise ConfigError(f"{where}: a generator handler cannot be batched")
    if options.v2:
        raise ConfigError(f"{where}: a generator handler cannot be the V2 entry point (V2 answers in one piece)")
    return options.stream or "sse"


def handler_specs(cls: type[Service]) -> dict[str, HandlerSpec]:
    """Introspect every ``@handler`` of a Service class, in definition order."""
    specs: dict[str, HandlerSpec] = {}
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):  # definition order; subclasses override
        members.update(vars(klass))
    for name, member in members.items():
        if callable(member) and hasattr(member, _HANDLER_MARK):
            specs[name] = _build_spec(cls, name, member)
    if not specs:
        raise ConfigError(f"{cls.__name__} has no @handler methods; mark at least one")
    v2 = [name for name, spec in specs.items() if spec.options.v2]
    if len(v2) > 1:
        raise ConfigError(f"{cls.__name__}: only one handler may be the V2 entry point, found {', '.join(v2)}")
    chat = [name for name, spec in specs.items() if spec.options.openai == "chat"]
    if len(chat) > 1:
        raise ConfigError(f"{cls.__name__}: only one handler may serve openai='chat', found {', '.join(chat)}")
    return specs
