"""Files in and out of handlers, and how a streaming handler's items go on the wire.

``File`` is both a parameter type (an upload: ``multipart/form-data`` or a raw
body) and a result type (sent as its bytes with its content type). In a JSON
body a file travels as ``{"data": "<base64>", "name": ..., "content_type": ...}``
and a ``bytes`` parameter as a base64 string.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import orjson
from pydantic import BaseModel, ConfigDict

StreamFormat = Literal["sse", "ndjson", "raw"]
STREAM_FORMATS: tuple[StreamFormat, ...] = ("sse", "ndjson", "raw")
STREAM_MEDIA_TYPES: dict[str, bytes] = {"sse": b"text/event-stream", "ndjson": b"application/x-ndjson"}
OCTET_STREAM = "application/octet-stream"


def error_event(fmt: str, body: dict[str, Any]) -> bytes | None:
    """The event that ends a failed stream, for a client of its format (``body``: our error object,
    ``{"error": message, ...}``); None for raw bytes, which no event can end: the connection is cut."""
    if fmt == "sse":
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
    if fmt == "ndjson":
        return orjson.dumps({"error": {"type": "stream_error", "message": body.get("error"),
                                       **{k: v for k, v in body.items() if k != "error"}}}) + b"\n"
    return None


class File(BaseModel):
    """An uploaded file, or one a handler returns."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    data: bytes
    name: str = ""
    content_type: str = OCTET_STREAM

    @property
    def size_bytes(self) -> int:
        return len(self.data)


_GENERATOR_ORIGINS = (
    collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator,
    collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator,
)


def stream_item_type(annotation: Any) -> Any:
    """``Iterator[T]``, ``AsyncGenerator[T, None]``, ... -> ``T``; ``Any`` when unannotated."""
    if get_origin(annotation) in _GENERATOR_ORIGINS and get_args(annotation):
        return get_args(annotation)[0]
    return Any


def _without_none(annotation: Any) -> Any:
    """``File | None`` -> ``File``: an optional upload is still an upload."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    if get_origin(annotation) is typing.Annotated:
        return _without_none(get_args(annotation)[0])
    return annotation


def is_file_type(annotation: Any) -> bool:
    """A parameter that takes an upload: ``bytes`` or ``File`` (optionally ``| None``)."""
    bare = _without_none(annotation)
    return bare is bytes or bare is File


def is_binary_type(annotation: Any) -> bool:
    """A return annotation whose value is sent as bytes rather than JSON."""
    return _without_none(annotation) in (bytes, File)
