"""A handler's bytes, ``File`` or open file as the answer's body, with its content type (pure).

Content types and file names may come from an upload a handler echoes back, so
they are checked before they become header lines: a content type that is not a
plain ``type/subtype; params`` token becomes ``application/octet-stream``, and a
file name is sent both as an ASCII fallback and RFC 5987-encoded.
"""

from __future__ import annotations

import mimetypes
import os
import re
import uuid
from typing import Any
from urllib.parse import quote

from ..errors import HandlerFailed
from ..media import OCTET_STREAM, File
from ..service import HandlerSpec
from .replies import Reply

_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+( *; *[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+\"-]+)*")
_ASCII_NAME = re.compile(r"[^A-Za-z0-9._ -]")


def is_readable(value: Any) -> bool:
    """An open file or file-like object (not bytes): read before it is sent."""
    return not isinstance(value, (bytes, bytearray, memoryview, str, File)) and callable(getattr(value, "read", None))


def read_file_like(value: Any, media_type: str | None) -> File:
    """Read an open file to its end and close it (on a worker thread: this blocks)."""
    try:
        data = value.read()
    finally:
        close = getattr(value, "close", None)
        if callable(close):
            close()
    if isinstance(data, str):
        data = data.encode()
    name = getattr(value, "name", "")
    name = os.path.basename(name) if isinstance(name, str) else ""
    guessed = mimetypes.guess_type(name)[0] if name else None
    return File(data=bytes(data), name=name, content_type=media_type or guessed or OCTET_STREAM)


def safe_content_type(value: str) -> str:
    """``value`` if it is a plain media type (it becomes a header line as it is), else octet-stream."""
    return value if _CONTENT_TYPE.fullmatch(value) else OCTET_STREAM


# A browser must take the content type as given (an echoed upload labelled text/plain stays text).
NOSNIFF = b"x-content-type-options: nosniff\r\n"


def disposition(name: str) -> bytes:
    fallback = _ASCII_NAME.sub("_", name)[:200] or "download"
    return (f"content-disposition: inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(name[:200], safe='')}"
            "\r\n").encode()


def binary_reply(spec: HandlerSpec, result: Any) -> Reply:
    """The answer for a result that is bytes or a ``File``."""
    if isinstance(result, File):
        content_type = safe_content_type(result.content_type if result.content_type != OCTET_STREAM or
                                         spec.media_type is None else spec.media_type)
        return Reply(200, result.data, content_type.encode(),
                     NOSNIFF + (disposition(result.name) if result.name else b""))
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Reply(200, bytes(result), safe_content_type(spec.media_type or OCTET_STREAM).encode(), NOSNIFF)
    raise HandlerFailed(f"handler {spec.name!r} returned a {type(result).__name__}; its annotation says it"
                        " returns bytes or a File", uuid.uuid4().hex[:12])


def is_binary_result(spec: HandlerSpec, result: Any) -> bool:
    return spec.binary_output or (spec.output_adapter is None and isinstance(result, (bytes, bytearray, memoryview, File)))
