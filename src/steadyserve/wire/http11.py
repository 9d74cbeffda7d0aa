"""Minimal HTTP/1.1 message pieces shared by the replica server and the gateway."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import orjson

from ..types import Headers

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def valid_request_id(value: bytes) -> bool:
    """A caller's ``x-request-id`` we pass on: 1-128 chars of ``[A-Za-z0-9._:-]``.

    Anything else (empty, too long, spaces, CR/LF) could forge log lines or headers.
    """
    return _REQUEST_ID.fullmatch(value) is not None


REPLICA_KEY_HEADER = b"x-steady-replica-key"  # a networked replica's credential: only gateways and the controller have it
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
    chunked_ok: bool = True  # HTTP/1.1: a streamed answer may use chunked transfer coding

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


class StreamAborted(Exception):
    """Raised by a stream's pieces to have the server cut the connection (the failure is already logged)."""


class Pieces(Protocol):
    """What a ``StreamReply`` sends: framed pieces, then ``aclose`` (always called, even if never started)."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def __anext__(self) -> bytes: ...
    async def aclose(self) -> None: ...


class StreamReply:
    """A response sent while it is produced: ``head`` (status line and headers, blank line included),
    then each piece ``pieces`` yields, already framed; the server waits for a slow reader between
    pieces (back-pressure) and closes ``pieces`` when it stops early.

    If ``pieces`` raises, the connection is aborted rather than finished, so the client sees a
    body cut short (never a complete-looking one). ``close_after``: the body ends with the
    connection (no chunked coding for an HTTP/1.0 client).
    """

    __slots__ = ("close_after", "head", "pieces", "status")

    def __init__(self, status: int, head: bytes, pieces: Pieces, *, close_after: bool = False) -> None:
        self.status = status
        self.head = head
        self.pieces = pieces
        self.close_after = close_after


Reply = bytes | StreamReply


def chunk(data: bytes) -> bytes:
    """One chunk of the chunked transfer coding (``data`` must not be empty: that ends the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
# Ends a stream whose handler failed after its first item: the last chunk with a trailer field, so
# the gateway counts the stream as failed (clients ignore a trailer they did not ask for).
STREAM_ERROR_TRAILER = b"x-steady-stream-error"
FAILED_LAST_CHUNK = b"0\r\n" + STREAM_ERROR_TRAILER + b": 1\r\n\r\n"


def stream_head(status: int, content_type: bytes, extra_headers: bytes = b"", *, chunked: bool = True) -> bytes:
    """The head of a streamed response: chunked for HTTP/1.1, else ended by closing the connection."""
    return b"".join((
        _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode(),
        b"content-type: ", content_type, b"\r\n",
        b"transfer-encoding: chunked\r\n" if chunked else b"connection: close\r\n",
        b"cache-control: no-cache\r\nx-accel-buffering: no\r\n",  # no proxy in front may hold pieces back
        extra_headers, b"\r\n",
    ))


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
