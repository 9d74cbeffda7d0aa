"""Client side of streamed answers and files, shared by ``Client``, ``AsyncClient`` and ``steady call`` (pure).

A streamed answer arrives as Server-Sent Events (one JSON item per ``data:``
event, ``event: error`` ends it with an error), newline-delimited JSON (a last
line ``{"error": {"type": "stream_error", ...}}`` ends it with an error) or raw
bytes. ``ItemDecoder`` turns its lines into items, raising the error a stream
ends with. Inputs that hold bytes or files go as ``multipart/form-data``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

from .errors import HandlerFailed, SteadyError, StreamInterrupted
from .media import OCTET_STREAM, File

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


def stream_format(content_type: str) -> str:
    """``sse``, ``ndjson`` or ``raw`` from an answer's content type."""
    media = content_type.split(";", 1)[0].strip().lower()
    return "sse" if media == SSE else "ndjson" if media == NDJSON else "raw"


def stream_error(body: Any, items: int) -> SteadyError:
    """The error a stream ended with (the body of its error event)."""
    if not isinstance(body, dict):
        body = {"error": str(body)}
    message = str(body.get("error") or body.get("message") or "the stream ended with an error")
    details = {k: v for k, v in body.items() if k not in ("error", "message", "type")}
    if "error_id" in body and "replica" not in body:
        return HandlerFailed(f"{message} (after {items} items)", str(body["error_id"]))
    return StreamInterrupted(message, items=items, **details)


class ItemDecoder:
    """Lines of an SSE or NDJSON answer in, items out (``feed`` returns those the line completes)."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.items = 0
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> list[Any]:
        if self.format == "ndjson":
            return self._ndjson(line)
        return self._sse(line)

    def _ndjson(self, line: str) -> list[Any]:
        if not line.strip():
            return []
        item = json.loads(line)
        if isinstance(item, dict) and len(item) == 1 and isinstance(item.get("error"), dict) \
                and item["error"].get("type") == "stream_error":
            raise stream_error(item["error"], self.items)
        self.items += 1
        return [item]

    def _sse(self, line: str) -> list[Any]:
        if line == "":  # a blank line dispatches the event
            data, event = "\n".join(self._data), self._event
            self._data, self._event = [], "message"
            if not data:
                return []
            if event == "error":
                try:
                    body = json.loads(data)
                except ValueError:
                    body = {"error": data}
                raise stream_error(body, self.items)
            self.items += 1
            return [json.loads(data)]
        if line.startswith(":"):
            return []  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return []

    def finish(self) -> list[Any]:
        """The end of the body: an event not followed by its blank line still counts."""
        if self.format == "sse" and self._data:
            return self.feed("")
        return []


def is_upload(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview, File)) or callable(getattr(value, "read", None))


def multipart_parts(inputs: Mapping[str, Any]) -> tuple[dict[str, tuple[str, Any, str]], dict[str, str]] | None:
    """httpx ``files=`` and ``data=`` for inputs holding uploads; None if they hold none (send JSON).

    A file keeps its name and content type; other inputs go as form fields: strings as they
    are, anything else as JSON (the replica decodes them by the parameter's type)."""
    if not any(is_upload(v) for v in inputs.values()):
        return None
    files: dict[str, tuple[str, Any, str]] = {}
    fields: dict[str, str] = {}
    for name, value in inputs.items():
        if isinstance(value, File):
            files[name] = (value.name or name, value.data, value.content_type)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            files[name] = (name, bytes(value), OCTET_STREAM)
        elif is_upload(value):
            filename = str(getattr(value, "name", "") or name).rsplit("/", 1)[-1]
            files[name] = (filename, value, OCTET_STREAM)
        elif isinstance(value, str):
            fields[name] = value
        else:
            fields[name] = json.dumps(value)
    return files, fields


def binary_answer(content: bytes, headers: Mapping[str, str]) -> File:
    """A non-JSON answer (an image, a file) as a ``File`` with its name and content type."""
    disposition = headers.get("content-disposition", "")
    name = ""
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        params = message.get_params(header="content-disposition") or []
        # The RFC 5987 filename* (UTF-8) before the ASCII fallback filename= (RFC 6266 §4.3).
        encoded = [v for k, v in params if k == "filename" and isinstance(v, tuple)]
        plain = [v for k, v in params if k == "filename" and isinstance(v, str)]
        name = collapse_rfc2231_value(encoded[0]) if encoded else (plain[0] if plain else "")
    return File(data=content, name=name, content_type=headers.get("content-type", OCTET_STREAM))


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def alines_of(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
    """``lines_of`` for an async source of text pieces."""
    lines = _Lines()
    async for piece in chunks:
        for line in lines.feed(piece):
            yield line
    for line in lines.finish():
        yield line


class _Lines:
    """Text pieces in, whole lines out; a long line costs linear time however many pieces it comes in."""

    def __init__(self) -> None:
        self._pending: list[str] = []

    def feed(self, piece: str) -> list[str]:
        if "\n" not in piece:
            self._pending.append(piece)
            return []
        first, *middle, last = piece.split("\n")
        lines = ["".join(self._pending) + first, *middle]
        self._pending = [last] if last else []
        return [line.removesuffix("\r") for line in lines]

    def finish(self) -> list[str]:
        rest = "".join(self._pending)
        return [rest.removesuffix("\r")] if rest else []


def lines_of(chunks: Iterable[str]) -> Iterable[str]:
    """Text pieces -> lines (without their ``\\n`` / ``\\r\\n``). Only ``\\n`` ends a line: SSE and
    NDJSON items may hold U+2028 and the like unescaped, which ``str.splitlines`` would split."""
    lines = _Lines()
    for piece in chunks:
        yield from lines.feed(piece)
    yield from lines.finish()
