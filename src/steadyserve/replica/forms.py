"""Uploads: a ``multipart/form-data`` or raw body made into a handler's arguments (pure).

The body is already whole and within ``max_body_bytes`` (the HTTP server counts
it as it arrives and answers 413 the moment it is over). Files become ``File``
values (or ``bytes`` for a parameter annotated so); other form fields and query
parameters arrive as text and are read by the parameter's type: a ``str``
parameter takes the text as it is, any other takes it as JSON (``3``, ``true``,
``[1, 2]``), falling back to the text, so pydantic's message names the field.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin
from urllib.parse import parse_qsl

import orjson
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import InvalidInput
from ..media import OCTET_STREAM, File
from ..service import HandlerSpec

MAX_PARTS = 256  # form fields and files in one request
_JSON_TYPES = (b"application/json", b"")


@dataclass
class Part:
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    data: list[bytes] = field(default_factory=list)

    @property
    def value(self) -> bytes:
        return b"".join(self.data)


def body_kind(content_type: bytes | None, body: bytes, spec: HandlerSpec) -> str:
    """How to read a request body for this handler: ``json``, ``multipart``, ``urlencoded`` or ``raw``."""
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    if media == b"multipart/form-data":
        return "multipart"
    if not spec.file_params or media in _JSON_TYPES or media.endswith(b"+json"):
        return "json"  # a handler without uploads reads every body as JSON, whatever curl -d labels it
    if media == b"application/x-www-form-urlencoded":
        return "json" if body.lstrip()[:1] == b"{" else "urlencoded"
    return "raw"


def parse_multipart(content_type: bytes, body: bytes) -> list[Part]:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInput("multipart/form-data without a boundary in its content-type")
    parts: list[Part] = []
    current = Part()
    header_name: list[bytes] = []
    header_value: list[bytes] = []

    def on_part_begin() -> None:
        nonlocal current
        if len(parts) >= MAX_PARTS:
            raise InvalidInput(f"more than {MAX_PARTS} parts in one multipart/form-data body")
        current = Part()

    def on_header_end() -> None:
        name, value = b"".join(header_name).lower(), b"".join(header_value)
        header_name.clear()
        header_value.clear()
        if name == b"content-disposition":
            _, params = parse_options_header(value)
            current.name = params.get(b"name", b"").decode("utf-8", "replace")
            filename = params.get(b"filename")
            current.filename = None if filename is None else filename.decode("utf-8", "replace")
        elif name == b"content-type":
            current.content_type = value.decode("latin-1").strip()

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": lambda data, start, end: current.data.append(data[start:end]),
        "on_part_end": lambda: parts.append(current),
        "on_header_field": lambda data, start, end: header_name.append(data[start:end]),
        "on_header_value": lambda data, start, end: header_value.append(data[start:end]),
        "on_header_end": on_header_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except InvalidInput:
        raise
    except Exception as exc:  # python-multipart's own error family
        raise InvalidInput(f"malformed multipart/form-data body: {exc}") from exc
    if not parts and body.strip():
        raise InvalidInput("malformed multipart/form-data body: no part found (is the boundary right?)")
    return parts


def _wants_text(annotation: Any) -> bool:
    bare = annotation
    if get_origin(bare) is typing.Annotated:
        bare = get_args(bare)[0]
    if get_origin(bare) in (Union, types.UnionType):
        return str in get_args(bare)
    return bare is str


def field_value(text: str, annotation: Any) -> Any:
    """A form field or query parameter, read by its parameter's type."""
    if _wants_text(annotation):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _file_value(annotation_is_bytes: bool, data: bytes, name: str, content_type: str) -> Any:
    if annotation_is_bytes:
        return data
    return File(data=data, name=name, content_type=content_type or OCTET_STREAM)


def form_arguments(spec: HandlerSpec, parts: list[Part], query: bytes) -> dict[str, Any]:
    """The raw arguments of a multipart call (query parameters too), before validation."""
    fields = spec.input_model.model_fields
    values: dict[str, Any] = _query_values(spec, query)
    for part in parts:
        if part.name not in fields:
            values[part.name] = part.value  # refused by validation as an unknown field, named
            continue
        if part.name in values and part.name not in _query_names(query):
            raise InvalidInput(f"field {part.name!r} is given twice in the form")
        annotation = fields[part.name].annotation
        if part.name in spec.file_params:
            values[part.name] = _file_value(_is_bytes(annotation), part.value, part.filename or "",
                                            part.content_type)
        elif part.filename is not None:
            raise InvalidInput(f"field {part.name!r} is a file, but parameter {part.name!r} of handler"
                               f" {spec.name!r} does not take one (annotate it bytes or File)")
        else:
            values[part.name] = field_value(part.value.decode("utf-8", "replace"), annotation)
    return values


def raw_arguments(spec: HandlerSpec, content_type: bytes | None, body: bytes, query: bytes) -> dict[str, Any]:
    """A raw body is the handler's one upload; its other parameters come in the query string."""
    if len(spec.file_params) != 1:
        raise InvalidInput(f"handler {spec.name!r} takes {len(spec.file_params)} files"
                           f" ({', '.join(spec.file_params)}): send them as multipart/form-data (curl -F)")
    name = spec.file_params[0]
    annotation = spec.input_model.model_fields[name].annotation
    values = _query_values(spec, query)
    values[name] = _file_value(_is_bytes(annotation), body, "", (content_type or b"").decode("latin-1"))
    return values


def urlencoded_arguments(spec: HandlerSpec, body: bytes, query: bytes) -> dict[str, Any]:
    values = _query_values(spec, query)
    values.update(_pairs(spec, body))
    unknown = sorted(set(values) - set(spec.input_model.model_fields))
    if unknown and spec.file_params:
        # Most likely a file sent with curl's default type (`-d @file` / `--data-binary @file`).
        raise InvalidInput(
            f"the body came as application/x-www-form-urlencoded with fields handler {spec.name!r} does not have;"
            f" to send a file, give its content type (-H 'content-type: image/png' --data-binary @FILE) or send it"
            f" as multipart/form-data (curl -F {spec.file_params[0]}=@FILE)", unknown=unknown[:10])
    return values


def _query_values(spec: HandlerSpec, query: bytes) -> dict[str, Any]:
    return _pairs(spec, query) if query else {}


def _query_names(query: bytes) -> set[str]:
    return set(_query_values_raw(query))


def _query_values_raw(query: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_PARTS))
    except ValueError as exc:
        raise InvalidInput(f"more than {MAX_PARTS} fields in the query string", limit_fields=MAX_PARTS) from exc


def _pairs(spec: HandlerSpec, encoded: bytes) -> dict[str, Any]:
    fields = spec.input_model.model_fields
    values: dict[str, Any] = {}
    try:
        pairs = parse_qsl(encoded.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_PARTS)
    except ValueError as exc:  # more than MAX_PARTS fields
        raise InvalidInput(f"more than {MAX_PARTS} fields in the query string or form", limit_fields=MAX_PARTS) from exc
    for key, text in pairs:
        if key in spec.file_params:
            raise InvalidInput(f"parameter {key!r} of handler {spec.name!r} is a file: send it as the body or as"
                               " a multipart/form-data part, not as text")
        values[key] = field_value(text, fields[key].annotation) if key in fields else text
    return values


def _is_bytes(annotation: Any) -> bool:
    from ..media import is_binary_type

    return is_binary_type(annotation) and not _mentions_file(annotation)


def _mentions_file(annotation: Any) -> bool:
    return annotation is File or File in get_args(annotation)
