"""Minimal HTTP/1.1 message pieces shared by the replica server and the gateway."""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from ..types import Headers

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def valid_request_id(value: bytes) -> bool:
    """A caller's ``x-request-id`` we pass on: 1-128 chars of ``[A-Za-z0-9._:-]``.

    Anything else (empty, too long, spaces, CR/LF) could forge log lines or headers.
    """
    return _REQUEST_ID.fullmatch(value) is not None


TIMEOUT_HEADER = b"x-steady-timeout-ms"  # the time left of a call: set by callers and by the gateway


@dataclass(slots=True)
class Request:
    """A fully received request. Header names are lower-cased."""

    method: bytes
    url: bytes
    headers: Headers
    body: bytes
    keep_alive: bool
    peer: str = ""  # the client's address, for audit records
    head: bool = False  # a HEAD, passed on as GET: the server sends the response without its body

    @property
    def path(self) -> bytes:
        return self.url.split(b"?", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def timeout_s(self) -> float | None:
        """The time left of the call (``x-steady-timeout-ms``, a positive whole number), if given."""
        value = self.header(TIMEOUT_HEADER)
        if value is None:
            return None
        try:
            left_ms = int(value)
        except ValueError:
            return None
        return left_ms / 1000.0 if left_ms > 0 else None


def response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    extra_headers: bytes = b"",
    keep_alive: bool = True,
) -> bytes:
    """Serialise a complete response; ``extra_headers`` is pre-encoded ``name: value\\r\\n`` lines."""
    return b"".join(
        (
            _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode(),
            b"content-type: ",
            content_type,
            b"\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
            b"" if keep_alive else b"connection: close\r\n",
            extra_headers,
            b"\r\n",
            body,
        )
    )


def json_response(
    status: int, payload: Any, *, extra_headers: bytes = b"", keep_alive: bool = True
) -> bytes:
    return response(
        status, orjson.dumps(payload), extra_headers=extra_headers, keep_alive=keep_alive
    )
