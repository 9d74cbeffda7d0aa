"""Streamed items on the wire: the replica's ``ItemEncoder``, the client's ``ItemDecoder``, and the gateway's
error events, which must agree with each other (an item encoded is the item decoded; an error event decoded
is the error it stands for)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import BaseModel

from steadyserve import AsyncClient, Client, File, Service, handler
from steadyserve.client_streams import (
    ItemDecoder,
    binary_answer,
    is_json,
    lines_of,
    multipart_parts,
    stream_error,
    stream_format,
)
from steadyserve.errors import HandlerFailed, StreamInterrupted
from steadyserve.gateway.streaming import client_head, error_event
from steadyserve.replica.streaming import ItemEncoder
from steadyserve.service import handler_specs


class Token(BaseModel):
    text: str
    index: int


class Streams(Service):
    @handler
    def untyped(self):
        yield {}

    @handler
    def numbers(self) -> Iterator[int]:
        yield 1

    @handler
    def texts(self) -> Iterator[str]:
        yield ""

    @handler
    def objects(self) -> Iterator[dict[str, Any]]:
        yield {}

    @handler
    def tokens(self) -> Iterator[Token]:
        yield Token(text="", index=0)

    @handler(stream="ndjson")
    def untyped_lines(self):
        yield {}

    @handler(stream="ndjson")
    def number_lines(self) -> Generator[int, None, None]:
        yield 1

    @handler(stream="ndjson")
    async def text_lines(self) -> AsyncIterator[str]:
        yield ""

    @handler(stream="ndjson")
    def object_lines(self) -> Iterator[dict[str, Any]]:
        yield {}

    @handler(stream="raw")
    def raw(self):
        yield b""

    @handler(stream="raw", media_type="audio/wav")
    def audio(self) -> Iterator[bytes]:
        yield b""


SPECS = handler_specs(Streams)


def encoder(name: str) -> ItemEncoder:
    return ItemEncoder(SPECS[name])


def encoded_text(name: str, items: list[Any]) -> str:
    enc = encoder(name)
    return b"".join(enc(item) for item in items).decode("utf-8")


def decode_all(fmt: str, text: str, piece_chars: int | None = None) -> list[Any]:
    """The items a client gets from a body, its text arriving in pieces of ``piece_chars``."""
    pieces = [text] if piece_chars is None else [text[i:i + piece_chars] for i in range(0, len(text), piece_chars)]
    decoder = ItemDecoder(fmt)
    items: list[Any] = []
    for line in lines_of(pieces):
        items.extend(decoder.feed(line))
    items.extend(decoder.finish())
    return items


TRICKY_STRINGS = [
    "line one\nline two",
    "two blank lines\n\nthen more",
    "data: looks like an event\n\nevent: error\ndata: {}\n\n",
    '{"error": {"type": "stream_error"}}',
    "crlf\r\nand cr\r",
    "tab\tquote\"backslash\\",
    "",
    " leading and trailing space ",
    ": a comment-looking string",
    "héllo wörld",
    "日本語のテキスト",
    "emoji 🎉🚀",
    "separators \u2028 and \u2029 and nel \x85",
    "nul \x00 and bell \x07",
]
NESTED = [
    {"a": [1, {"b": None}], "c": {"d": "x\ny", "e": [True, False]}},
    {},
    {"deep": {"er": {"est": ["日本", 1.5, -3, {"k": "\n"}]}}},
    {"list": [[], [[]], [[1], [2, [3]]]]},
]
ANY_ITEMS = [0, -1, 3.25, True, None, "x", [], {}, [1, "two", {"three": [3]}], *TRICKY_STRINGS, *NESTED]


@pytest.mark.parametrize(
    ("handler_name", "fmt", "items"),
    [
        ("untyped", "sse", ANY_ITEMS),
        ("untyped_lines", "ndjson", ANY_ITEMS),
        ("numbers", "sse", [0, 1, -7, 2**53]),
        ("number_lines", "ndjson", [0, 1, -7, 2**53]),
        ("texts", "sse", TRICKY_STRINGS),
        ("text_lines", "ndjson", TRICKY_STRINGS),
        ("objects", "sse", NESTED),
        ("object_lines", "ndjson", NESTED),
        ("untyped", "sse", []),
        ("untyped_lines", "ndjson", []),
    ],
)
@pytest.mark.parametrize("piece_chars", [None, 1, 7])
def test_encoded_items_decode_to_the_same_items(handler_name, fmt, items, piece_chars):
    text = encoded_text(handler_name, items)
    assert decode_all(fmt, text, piece_chars) == items


def test_model_items_decode_to_their_fields():
    items = [Token(text="hi\n", index=0), {"text": "there", "index": 1}]
    assert decode_all("sse", encoded_text("tokens", items)) == [
        {"text": "hi\n", "index": 0}, {"text": "there", "index": 1},
    ]


@pytest.mark.parametrize(
    ("item", "decoded"),
    [(np.arange(3), [0, 1, 2]), (np.float32(1.5), 1.5), ({"v": np.array([[1, 2]])}, {"v": [[1, 2]]})],
)
@pytest.mark.parametrize(("handler_name", "fmt"), [("untyped", "sse"), ("untyped_lines", "ndjson")])
def test_numpy_items_of_an_untyped_handler_decode_as_lists(handler_name, fmt, item, decoded):
    assert decode_all(fmt, encoded_text(handler_name, [item])) == [decoded]


ERROR_BODIES = [
    {"error": "handler 'gen' raised ValueError: boom", "error_id": "abc123def456", "request_id": "r-1"},
    {"error": "handler failed: ünïcode\nand a newline", "error_id": "e1"},
]
INTERRUPT_BODIES = [
    {"error": "handler 'gen' ran past handler_timeout_s", "request_id": "r-2"},
    {"error": "the replica is shutting down", "request_id": "r-3", "retry_after_s": 1},
]


@pytest.mark.parametrize("body", ERROR_BODIES)
@pytest.mark.parametrize(("handler_name", "fmt"), [("untyped", "sse"), ("untyped_lines", "ndjson")])
@pytest.mark.parametrize("items", [[], [1], ["a\nb", {"c": 2}, 3]])
def test_an_encoded_handler_error_decodes_as_handler_failed_after_the_items(handler_name, fmt, body, items):
    enc = encoder(handler_name)
    text = (b"".join(enc(item) for item in items) + enc.error(body)).decode()
    decoder = ItemDecoder(fmt)
    got: list[Any] = []
    with pytest.raises(HandlerFailed) as failed:
        for line in lines_of([text]):
            got.extend(decoder.feed(line))
        decoder.finish()
    assert got == items
    assert failed.value.error_id == body["error_id"]
    assert str(failed.value) == f"{body['error']} (after {len(items)} items)"


@pytest.mark.parametrize("body", INTERRUPT_BODIES)
@pytest.mark.parametrize(("handler_name", "fmt"), [("untyped", "sse"), ("untyped_lines", "ndjson")])
@pytest.mark.parametrize("items", [[], [{"x": 1}, "y"]])
def test_an_encoded_error_without_error_id_decodes_as_stream_interrupted(handler_name, fmt, body, items):
    enc = encoder(handler_name)
    text = (b"".join(enc(item) for item in items) + enc.error(body)).decode()
    decoder = ItemDecoder(fmt)
    got: list[Any] = []
    with pytest.raises(StreamInterrupted) as interrupted:
        for line in lines_of([text]):
            got.extend(decoder.feed(line))
    assert got == items
    assert str(interrupted.value) == body["error"]
    assert interrupted.value.items == len(items)
    assert interrupted.value.details == {k: v for k, v in body.items() if k != "error"}


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
NDJSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
RAW_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
RELAY_BODY = {"error": "replica r-7 went away mid-stream (reset); the answer is incomplete",
              "request_id": "req-9", "replica": "r-7", "chunks": 4}


@pytest.mark.parametrize(("handler_name", "head", "fmt"),
                         [("untyped", SSE_HEAD, "sse"), ("untyped_lines", NDJSON_HEAD, "ndjson")])
@pytest.mark.parametrize("body", [RELAY_BODY, {**RELAY_BODY, "error_id": "abc"}])
def test_a_gateway_error_event_decodes_as_stream_interrupted_naming_the_replica(handler_name, head, fmt, body):
    enc = encoder(handler_name)
    text = (enc(1) + enc(2) + error_event(head, body)).decode()
    decoder = ItemDecoder(fmt)
    got: list[Any] = []
    with pytest.raises(StreamInterrupted) as interrupted:
        for line in lines_of([text]):
            got.extend(decoder.feed(line))
    assert got == [1, 2]
    assert interrupted.value.items == 2
    assert interrupted.value.details["replica"] == "r-7"
    assert interrupted.value.details["chunks"] == 4


@pytest.mark.parametrize(("handler_name", "head"), [("untyped", SSE_HEAD), ("untyped_lines", NDJSON_HEAD)])
def test_gateway_and_replica_error_events_are_the_same_bytes(handler_name, head):
    assert error_event(head, RELAY_BODY) == encoder(handler_name).error(RELAY_BODY)


@pytest.mark.parametrize("head", [RAW_HEAD, b"HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\n\r\n"])
def test_a_gateway_error_event_is_none_for_a_raw_stream(head):
    assert error_event(head, RELAY_BODY) is None


@pytest.mark.parametrize("head", [SSE_HEAD, NDJSON_HEAD, RAW_HEAD])
def test_client_head_is_unchanged_for_a_chunked_client(head):
    assert client_head(head, chunked=True) == head


@pytest.mark.parametrize("head", [SSE_HEAD, NDJSON_HEAD, RAW_HEAD])
def test_client_head_for_an_http10_client_ends_the_body_by_closing(head):
    got = client_head(head, chunked=False)
    assert b"transfer-encoding" not in got
    assert got == head.replace(b"transfer-encoding: chunked\r\n", b"connection: close\r\n")


def test_client_head_without_chunked_coding_is_unchanged_for_an_http10_client():
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
    assert client_head(head, chunked=False) == head


# --- ItemEncoder -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("handler_name", "item", "wire"),
    [
        ("untyped", {"a": 1}, b'data: {"a":1}\n\n'),
        ("numbers", 3, b"data: 3\n\n"),
        ("texts", "é\n", b'data: "\xc3\xa9\\n"\n\n'),
        ("untyped_lines", [1, 2], b"[1,2]\n"),
        ("number_lines", 3, b"3\n"),
        ("tokens", Token(text="t", index=2), b'data: {"text":"t","index":2}\n\n'),
    ],
)
def test_encoder_frames_one_item_per_event_or_line(handler_name, item, wire):
    assert encoder(handler_name)(item) == wire


@pytest.mark.parametrize(
    ("handler_name", "item", "wire"),
    [
        ("raw", b"\x00\xffbytes", b"\x00\xffbytes"),
        ("raw", bytearray(b"ba"), b"ba"),
        ("raw", memoryview(b"mv"), b"mv"),
        ("raw", "texté", "texté".encode()),
        ("audio", b"RIFF", b"RIFF"),
    ],
)
def test_raw_encoder_sends_bytes_and_text_as_they_are(handler_name, item, wire):
    assert encoder(handler_name)(item) == wire


@pytest.mark.parametrize("item", [1, {"a": 1}, None, ["x"]])
def test_raw_encoder_refuses_an_item_that_is_not_bytes_or_text(item):
    with pytest.raises(HandlerFailed, match="streams raw bytes but yielded a") as failed:
        encoder("raw")(item)
    assert failed.value.error_id


@pytest.mark.parametrize(
    ("handler_name", "item"),
    [("numbers", "not a number"), ("numbers", {"a": 1}), ("texts", 3), ("objects", [1, 2]),
     ("tokens", {"text": "t"}), ("number_lines", [1]), ("text_lines", None)],
)
def test_encoder_refuses_an_item_that_does_not_match_the_item_type(handler_name, item):
    with pytest.raises(HandlerFailed, match=f"handler '{handler_name}' yielded an item that does not match") as failed:
        encoder(handler_name)(item)
    assert failed.value.error_id


@pytest.mark.parametrize(
    ("handler_name", "item"),
    [("untyped", object()), ("untyped", {1, 2}), ("untyped_lines", {"x": object()}), ("objects", {"x": object()})],
)
def test_encoder_reports_an_item_it_cannot_serialise_as_the_handlers_failure(handler_name, item):
    # Anything else escapes StreamCall, which then cuts the connection without an error event.
    with pytest.raises(HandlerFailed):
        encoder(handler_name)(item)


@pytest.mark.parametrize(
    ("handler_name", "media_type"),
    [("untyped", b"text/event-stream"), ("untyped_lines", b"application/x-ndjson"),
     ("raw", b"application/octet-stream"), ("audio", b"audio/wav")],
)
def test_encoder_media_type_follows_the_stream_format(handler_name, media_type):
    assert encoder(handler_name).media_type(SPECS[handler_name]) == media_type


@pytest.mark.parametrize("handler_name", ["raw", "audio"])
def test_raw_encoder_has_no_error_event(handler_name):
    assert encoder(handler_name).error({"error": "boom", "error_id": "x"}) is None


def test_sse_error_event_carries_the_body_as_json_data():
    assert encoder("untyped").error({"error": "boom", "error_id": "x1"}) == (
        b'event: error\ndata: {"error":"boom","error_id":"x1"}\n\n'
    )


def test_ndjson_error_line_nests_the_body_under_a_stream_error():
    assert encoder("untyped_lines").error({"error": "boom", "error_id": "x1"}) == (
        b'{"error":{"type":"stream_error","message":"boom","error_id":"x1"}}\n'
    )


@pytest.mark.parametrize("handler_name", ["untyped", "untyped_lines", "raw"])
def test_encoder_sends_nothing_after_the_last_item(handler_name):
    assert encoder(handler_name).end() == b""


# --- ItemDecoder details -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("lines", "items"),
    [
        ([": keep-alive", "", "data: 1", ""], [1]),
        (["data:1", ""], [1]),
        (["data: [1,", "data: 2]", ""], [[1, 2]]),
        (["data: 1", "", "", "", "data: 2", ""], [1, 2]),
        (["id: 7", "retry: 100", "data: 3", ""], [3]),
        (["event: message", "data: 4", ""], [4]),
        (["event: error", ""], []),
    ],
)
def test_sse_decoder_reads_data_lines_and_skips_comments_and_other_fields(lines, items):
    decoder = ItemDecoder("sse")
    assert [item for line in lines for item in decoder.feed(line)] == items
    assert decoder.items == len(items)


def test_sse_decoder_finish_counts_an_event_without_its_blank_line():
    decoder = ItemDecoder("sse")
    assert decoder.feed("data: 5") == []
    assert decoder.finish() == [5]


@pytest.mark.parametrize("fmt", ["sse", "ndjson"])
def test_decoder_finish_after_a_complete_body_gives_nothing(fmt):
    decoder = ItemDecoder(fmt)
    decoder.feed("data: 1" if fmt == "sse" else "1")
    decoder.feed("")
    assert decoder.finish() == []


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_ndjson_decoder_skips_blank_lines(line):
    assert ItemDecoder("ndjson").feed(line) == []


@pytest.mark.parametrize(
    "line",
    ['{"error": "an item with an error field"}', '{"error": {"type": "other"}}',
     '{"error": {"type": "stream_error"}, "more": 1}'],
)
def test_ndjson_decoder_takes_an_error_lookalike_that_is_not_a_stream_error_as_an_item(line):
    import json

    assert ItemDecoder("ndjson").feed(line) == [json.loads(line)]


def test_sse_error_event_with_text_data_raises_stream_interrupted_with_that_text():
    decoder = ItemDecoder("sse")
    decoder.feed("event: error")
    decoder.feed("data: not json")
    with pytest.raises(StreamInterrupted, match="^not json$"):
        decoder.feed("")


# --- stream_error, stream_format, is_json, lines_of ------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        ({"error": "boom", "error_id": "e1"}, HandlerFailed, "boom (after 3 items)"),
        ({"message": "boom", "error_id": "e1"}, HandlerFailed, "boom (after 3 items)"),
        ({"error": "boom", "error_id": "e1", "replica": "r1"}, StreamInterrupted, "boom"),
        ({"error": "boom"}, StreamInterrupted, "boom"),
        ({}, StreamInterrupted, "the stream ended with an error"),
        ("plain text", StreamInterrupted, "plain text"),
        (["a", "list"], StreamInterrupted, "['a', 'list']"),
    ],
)
def test_stream_error_is_handler_failed_only_for_a_replica_error_with_an_error_id(body, kind, message):
    error = stream_error(body, 3)
    assert type(error) is kind
    assert str(error) == message


def test_stream_error_keeps_the_details_but_not_the_message_fields():
    error = stream_error({"error": "e", "message": "m", "type": "stream_error", "request_id": "r", "chunks": 2}, 1)
    assert isinstance(error, StreamInterrupted)
    assert error.details == {"request_id": "r", "chunks": 2}
    assert error.items == 1


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [("text/event-stream", "sse"), ("text/event-stream; charset=utf-8", "sse"), ("Text/Event-Stream", "sse"),
     ("application/x-ndjson", "ndjson"), (" application/x-ndjson ; charset=utf-8", "ndjson"),
     ("application/octet-stream", "raw"), ("audio/wav", "raw"), ("", "raw"), ("application/json", "raw")],
)
def test_stream_format_follows_the_media_type(content_type, fmt):
    assert stream_format(content_type) == fmt


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [("application/json", True), ("application/json; charset=utf-8", True), ("APPLICATION/JSON", True),
     ("application/problem+json", True), ("text/plain", False), ("", False), ("application/jsonl", False),
     ("text/event-stream", False), ("application/octet-stream", False)],
)
def test_is_json_recognises_json_media_types(content_type, expected):
    assert is_json(content_type) is expected


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([], []),
        ([""], []),
        (["a\n"], ["a"]),
        (["a\nb", "c\r\n", "d"], ["a", "bc", "d"]),
        (["a\r", "\nb"], ["a", "b"]),
        (["x\n\n"], ["x", ""]),
        (["\n"], [""]),
        (["no newline"], ["no newline"]),
        (["sep\u2028arators\x85kept\n"], ["sep\u2028arators\x85kept"]),
    ],
)
def test_lines_of_splits_only_on_newlines_across_chunks(chunks, lines):
    assert list(lines_of(chunks)) == lines


# --- multipart_parts and binary_answer ---------------------------------------------------------------------

@pytest.mark.parametrize("inputs", [{}, {"a": 1, "b": "text", "c": [1, 2], "d": {"e": None}}])
def test_multipart_parts_is_none_without_an_upload(inputs):
    assert multipart_parts(inputs) is None


class NamedReader(io.BytesIO):
    def __init__(self, data: bytes, name: Any) -> None:
        super().__init__(data)
        self.name = name


@pytest.mark.parametrize(
    ("value", "part"),
    [
        (File(data=b"png", name="cat.png", content_type="image/png"), ("cat.png", b"png", "image/png")),
        (File(data=b"raw"), ("image", b"raw", "application/octet-stream")),
        (b"\x00\x01", ("image", b"\x00\x01", "application/octet-stream")),
        (bytearray(b"ba"), ("image", b"ba", "application/octet-stream")),
        (memoryview(b"mv"), ("image", b"mv", "application/octet-stream")),
    ],
)
def test_multipart_parts_sends_bytes_and_files_as_files(value, part):
    files, fields = multipart_parts({"image": value})
    assert files == {"image": part}
    assert fields == {}


@pytest.mark.parametrize(
    ("name", "filename"),
    [("/tmp/some/dir/photo.jpg", "photo.jpg"), ("photo.jpg", "photo.jpg"), ("", "image"), (None, "image")],
)
def test_multipart_parts_sends_an_open_file_under_its_base_name(name, filename):
    reader = NamedReader(b"data", name)
    files, _ = multipart_parts({"image": reader})
    assert files["image"] == (filename, reader, "application/octet-stream")


def test_multipart_parts_sends_other_inputs_as_text_or_json_fields():
    _, fields = multipart_parts({"image": b"x", "s": "as is", "n": 3, "f": 1.5, "b": True, "l": [1, "2"],
                                 "d": {"k": None}, "none": None})
    assert fields == {"s": "as is", "n": "3", "f": "1.5", "b": "true", "l": '[1, "2"]', "d": '{"k": null}',
                      "none": "null"}


@pytest.mark.parametrize(
    ("headers", "name", "content_type"),
    [
        ({"content-type": "image/png", "content-disposition": 'inline; filename="cat.png"'}, "cat.png", "image/png"),
        ({"content-type": "image/png"}, "", "image/png"),
        ({}, "", "application/octet-stream"),
        ({"content-disposition": "attachment; filename=plain.txt"}, "plain.txt", "application/octet-stream"),
    ],
)
def test_binary_answer_is_a_file_with_the_answers_name_and_type(headers, name, content_type):
    answer = binary_answer(b"\x89PNG", headers)
    assert answer == File(data=b"\x89PNG", name=name, content_type=content_type)


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ("inline; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
        ("inline; filename=\"__.png\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.png", "日本.png"),
        ("inline; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt", 'a"b.txt'),
    ],
    ids=["accented", "cjk", "quote"],
)
def test_binary_answer_prefers_the_utf8_file_name_to_its_ascii_fallback(disposition, name):
    # RFC 6266 4.3: a recipient that understands filename* uses it over filename.
    assert binary_answer(b"x", {"content-disposition": disposition}).name == name


# --- the clients' streams (their HTTP transport replaced) -----------------------------------------------

STREAM_CONTENT_TYPES = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}


def _transport_answering(body: bytes, content_type: str, pieces: int = 5):
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type},
                              stream=_Pieces(body, max(1, len(body) // pieces)))
    return answer


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that arrives in pieces, a multi-byte character possibly split between two."""

    def __init__(self, body: bytes, size: int) -> None:
        self._pieces = [body[i:i + size] for i in range(0, len(body), size)]

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


def _sync_stream(handle) -> list[Any]:
    with Client("http://gateway.test", transport=httpx.MockTransport(handle), max_retries=0) as client:
        return list(client.stream("dep", "gen"))


def _async_stream(handle) -> list[Any]:
    async def run() -> list[Any]:
        async with AsyncClient("http://gateway.test", transport=httpx.MockTransport(handle), max_retries=0) as client:
            return [item async for item in client.stream("dep", "gen")]
    return asyncio.run(run())


CLIENTS = {"Client": _sync_stream, "AsyncClient": _async_stream}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("handler_name", "fmt"), [("untyped", "sse"), ("untyped_lines", "ndjson")])
@pytest.mark.parametrize(
    "items",
    [["a", {"b": [1, "\n"]}, 2, "日本"], ANY_ITEMS, ["line \u2028 separator"], [{"nel": "\x85"}, "\u2029"]],
    ids=["plain", "all_kinds", "line_separator", "nel_and_paragraph_separator"],
)
def test_a_clients_stream_yields_the_items_the_handler_yielded(client, handler_name, fmt, items):
    body = encoded_text(handler_name, items).encode()
    assert CLIENTS[client](_transport_answering(body, STREAM_CONTENT_TYPES[fmt])) == items


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("handler_name", "fmt"), [("untyped", "sse"), ("untyped_lines", "ndjson")])
def test_a_clients_stream_raises_handler_failed_for_an_encoded_handler_error(client, handler_name, fmt):
    enc = encoder(handler_name)
    body = enc(1) + enc.error({"error": "boom", "error_id": "e42", "request_id": "r"})
    with pytest.raises(HandlerFailed) as failed:
        CLIENTS[client](_transport_answering(body, STREAM_CONTENT_TYPES[fmt]))
    assert failed.value.error_id == "e42"
