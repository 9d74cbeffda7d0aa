"""What ``handler_specs`` makes of generator handlers, uploads and binary results, and the combinations it
refuses at load time."""

from __future__ import annotations

import collections.abc
import typing
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Generator, Iterable, Iterator
from typing import Annotated, Any, Optional

import pytest
from pydantic import BaseModel, Field

from steadyserve import Batch, ChatMessage, File, Service, handler
from steadyserve.errors import ConfigError
from steadyserve.media import is_binary_type, is_file_type, stream_item_type
from steadyserve.service import handler_specs


class Item(BaseModel):
    text: str


def only_spec(cls: type[Service]):
    (spec,) = handler_specs(cls).values()
    return spec


# --- generator handlers ------------------------------------------------------------------------------------

class Generators(Service):
    @handler
    def sync_gen(self) -> Iterator[int]:
        yield 1

    @handler
    async def async_gen(self) -> AsyncIterator[int]:
        yield 1

    @handler
    def plain(self) -> int:
        return 1

    @handler
    async def coroutine(self) -> int:
        return 1

    @handler(stream="ndjson")
    def lines(self) -> Iterator[int]:
        yield 1

    @handler(stream="raw")
    def raw(self) -> Iterator[bytes]:
        yield b""

    @handler(stream="sse")
    def explicit_sse(self) -> Iterator[int]:
        yield 1


GENERATORS = handler_specs(Generators)


@pytest.mark.parametrize(
    ("name", "stream", "is_async"),
    [("sync_gen", "sse", False), ("async_gen", "sse", True), ("lines", "ndjson", False), ("raw", "raw", False),
     ("explicit_sse", "sse", False), ("plain", None, False), ("coroutine", None, True)],
)
def test_a_generator_handler_streams_in_its_format_and_sse_by_default(name, stream, is_async):
    spec = GENERATORS[name]
    assert (spec.stream, spec.is_async) == (stream, is_async)


def test_a_generator_handler_is_not_a_binary_output():
    assert not GENERATORS["raw"].binary_output


def _generator_returning(annotation: Any, *, is_async: bool = False, **options: Any) -> type[Service]:
    if is_async:
        async def gen(self):  # type: ignore[no-untyped-def]
            yield None
    else:
        def gen(self):  # type: ignore[no-untyped-def]
            yield None
    if annotation is not None:
        gen.__annotations__["return"] = annotation
    return type("Gen", (Service,), {"gen": handler(**options)(gen)})


@pytest.mark.parametrize(
    ("annotation", "is_async", "item_type"),
    [
        (Iterator[int], False, int),
        (Iterable[str], False, str),
        (Generator[dict[str, int], None, None], False, dict[str, int]),
        (typing.Iterator[float], False, float),  # noqa: UP006 - the typing alias is read too
        (collections.abc.Iterator[Item], False, Item),
        (AsyncIterator[str], True, str),
        (AsyncIterable[int], True, int),
        (AsyncGenerator[list[int], None], True, list[int]),
        (None, False, Any),
        (None, True, Any),
        (Iterator[Any], False, Any),
    ],
)
def test_a_generators_item_type_comes_from_its_return_annotation(annotation, is_async, item_type):
    spec = only_spec(_generator_returning(annotation, is_async=is_async))
    assert spec.output_type == item_type


@pytest.mark.parametrize(
    ("annotation", "has_adapter"),
    [(Iterator[int], True), (Iterator[Item], True), (None, False), (Iterator[Any], False)],
)
def test_a_generators_items_are_validated_only_when_their_type_is_given(annotation, has_adapter):
    spec = only_spec(_generator_returning(annotation))
    assert (spec.output_adapter is not None) is has_adapter


@pytest.mark.parametrize(
    ("annotation", "item_type"),
    [(Iterator[bytes], bytes), (Iterator[str], str), (AsyncIterator[bytes], bytes), (None, Any)],
)
def test_a_raw_stream_yields_bytes_or_text(annotation, item_type):
    spec = only_spec(_generator_returning(annotation, is_async=annotation is AsyncIterator[bytes], stream="raw"))
    assert (spec.stream, spec.output_type) == ("raw", item_type)


@pytest.mark.parametrize("annotation", [Iterator[int], Iterator[dict[str, Any]], Iterator[Item], Iterator[list[int]],
                                        Iterator[bytes | None]])
def test_a_raw_stream_of_anything_but_bytes_or_text_is_refused(annotation):
    with pytest.raises(ConfigError, match="a stream='raw' handler yields bytes or str"):
        handler_specs(_generator_returning(annotation, stream="raw"))


@pytest.mark.parametrize(
    ("annotation", "item_type"),
    [(Iterator[int], int), (AsyncGenerator[int, None], int), (Generator[str, None, None], str),
     (list[int], Any), (None, Any), (int, Any), (Iterator, Any)],
)
def test_stream_item_type_reads_generator_annotations_only(annotation, item_type):
    assert stream_item_type(annotation) == item_type


@pytest.mark.parametrize("stream", ["xml", "SSE", "json", ""])
def test_an_unknown_stream_format_is_refused(stream):
    with pytest.raises(ConfigError, match=r"@handler\(stream="):
        handler(stream=stream)


@pytest.mark.parametrize("openai", ["completions", "embeddings", "Chat"])
def test_an_openai_endpoint_other_than_chat_is_refused(openai):
    with pytest.raises(ConfigError, match="the only OpenAI endpoint served is 'chat'"):
        handler(openai=openai)


@pytest.mark.parametrize("stream", ["sse", "ndjson", "raw"])
@pytest.mark.parametrize("is_async", [False, True])
def test_a_stream_format_on_a_handler_that_is_not_a_generator_is_refused(stream, is_async):
    if is_async:
        async def f(self) -> bytes:
            return b""
    else:
        def f(self) -> bytes:
            return b""
    cls = type("S", (Service,), {"f": handler(stream=stream)(f)})
    with pytest.raises(ConfigError, match=f"stream={stream!r} needs a generator"):
        handler_specs(cls)


def test_a_batched_generator_is_refused():
    class S(Service):
        @handler(batch=Batch(max_size=4))
        def f(self, x: list[int]) -> Iterator[list[int]]:
            yield x

    with pytest.raises(ConfigError, match="a generator handler cannot be batched"):
        handler_specs(S)


def test_a_v2_generator_is_refused():
    class S(Service):
        @handler(v2=True)
        def f(self, x: list[float]) -> Iterator[list[float]]:
            yield x

    with pytest.raises(ConfigError, match="cannot be the V2 entry point"):
        handler_specs(S)


# --- openai="chat" -----------------------------------------------------------------------------------------

class Chat(Service):
    @handler(openai="chat")
    def generate(self, messages: list[ChatMessage], max_tokens: int = 16, temperature: float = 1.0) -> Iterator[str]:
        yield ""


def test_a_chat_handler_is_a_generator_taking_messages():
    spec = handler_specs(Chat)["generate"]
    assert (spec.options.openai, spec.stream, spec.output_type) == ("chat", "sse", str)
    assert spec.required_params == ("messages",)


@pytest.mark.parametrize("is_async", [False, True])
def test_a_chat_handler_that_is_not_a_generator_is_refused(is_async):
    if is_async:
        async def f(self, messages: list[ChatMessage]) -> str:
            return ""
    else:
        def f(self, messages: list[ChatMessage]) -> str:
            return ""
    cls = type("S", (Service,), {"f": handler(openai="chat")(f)})
    with pytest.raises(ConfigError, match="openai='chat' needs a generator"):
        handler_specs(cls)


def test_a_chat_handler_without_a_messages_parameter_is_refused():
    class S(Service):
        @handler(openai="chat")
        def f(self, prompt: str) -> Iterator[str]:
            yield prompt

    with pytest.raises(ConfigError, match="takes the conversation as a parameter `messages"):
        handler_specs(S)


def test_two_chat_handlers_in_one_service_are_refused():
    class S(Service):
        @handler(openai="chat")
        def a(self, messages: list[ChatMessage]) -> Iterator[str]:
            yield ""

        @handler(openai="chat")
        def b(self, messages: list[ChatMessage]) -> Iterator[str]:
            yield ""

    with pytest.raises(ConfigError, match="only one handler may serve openai='chat', found a, b"):
        handler_specs(S)


# --- uploads and binary results ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("annotation", "takes_upload"),
    [
        (File, True),
        (bytes, True),
        (File | None, True),
        (Optional[bytes], True),  # noqa: UP045 - the typing spelling is read too
        (Annotated[File, Field(description="a photo")], True),
        (Annotated[bytes | None, Field(description="raw")], True),
        (str, False),
        (int, False),
        (list[bytes], False),
        (list[File], False),
        (File | str, False),
        (bytearray, False),
        (Any, False),
    ],
)
def test_is_file_type_is_bytes_or_file_optionally_none(annotation, takes_upload):
    assert is_file_type(annotation) is takes_upload


class Uploads(Service):
    @handler
    def mixed(self, image: File, mask: bytes | None = None, caption: str = "", n: int = 1,
              extra: File | None = None) -> dict[str, Any]:
        return {}

    @handler
    def none(self, text: str, blobs: list[str] | None = None) -> str:
        return text


@pytest.mark.parametrize(("name", "file_params"), [("mixed", ("image", "mask", "extra")), ("none", ())])
def test_file_params_are_the_parameters_taking_an_upload_in_order(name, file_params):
    assert handler_specs(Uploads)[name].file_params == file_params


def test_an_optional_upload_is_not_required():
    assert handler_specs(Uploads)["mixed"].required_params == ("image",)


@pytest.mark.parametrize("annotation", [File, bytes, File | None])
def test_a_batched_handler_taking_an_upload_is_refused(annotation):
    def f(self, image):  # type: ignore[no-untyped-def]
        return [0]
    f.__annotations__.update(image=annotation, **{"return": list[int]})
    cls = type("S", (Service,), {"f": handler(batch=Batch(max_size=4))(f)})
    with pytest.raises(ConfigError):
        handler_specs(cls)


@pytest.mark.parametrize("annotation", [list[File], list[bytes]])
def test_a_batched_handler_taking_a_list_of_uploads_is_refused_as_taking_uploads(annotation):
    # A batched parameter is written list[T]: list[File] is one upload per call.
    def f(self, image):  # type: ignore[no-untyped-def]
        return [0]
    f.__annotations__.update(image=annotation, **{"return": list[int]})
    cls = type("S", (Service,), {"f": handler(batch=Batch(max_size=4))(f)})
    with pytest.raises(ConfigError, match="a batched handler cannot take uploads"):
        handler_specs(cls)


def _returning(annotation: Any, **options: Any) -> type[Service]:
    def f(self):  # type: ignore[no-untyped-def]
        return None
    if annotation is not None:
        f.__annotations__["return"] = annotation
    return type("S", (Service,), {"f": handler(**options)(f)})


@pytest.mark.parametrize(
    ("annotation", "binary"),
    [(bytes, True), (File, True), (File | None, True), (Optional[bytes], True),  # noqa: UP045
     (int, False), (str, False), (dict[str, Any], False), (list[bytes], False), (None, False), (Item, False)],
)
def test_a_handler_returning_bytes_or_a_file_answers_in_binary(annotation, binary):
    spec = only_spec(_returning(annotation))
    assert spec.binary_output is binary
    assert is_binary_type(annotation if annotation is not None else Any) is binary


@pytest.mark.parametrize("annotation", [bytes, File])
def test_a_binary_result_is_not_validated_as_json(annotation):
    assert only_spec(_returning(annotation)).output_adapter is None


@pytest.mark.parametrize(
    ("annotation", "options"),
    [(bytes, {}), (File, {}), (None, {}), (Iterator[bytes], {"stream": "raw"}), (Iterator[str], {"stream": "raw"}),
     (None, {"stream": "raw"})],
)
def test_media_type_is_taken_by_binary_results_raw_streams_and_untyped_handlers(annotation, options):
    if options.get("stream"):
        cls = _generator_returning(annotation, stream=options["stream"], media_type="audio/wav")
    else:
        cls = _returning(annotation, media_type="audio/wav")
    assert only_spec(cls).media_type == "audio/wav"


@pytest.mark.parametrize("annotation", [int, str, dict[str, Any], Item, list[bytes]])
def test_media_type_on_a_handler_returning_json_is_refused(annotation):
    with pytest.raises(ConfigError, match="media_type is for a handler returning bytes or a File"):
        handler_specs(_returning(annotation, media_type="image/png"))


@pytest.mark.parametrize(("annotation", "stream"), [(Iterator[int], "sse"), (Iterator[str], "ndjson"),
                                                    (Iterator[bytes], "sse")])
def test_media_type_on_a_json_stream_is_refused(annotation, stream):
    with pytest.raises(ConfigError, match="media_type is for a handler returning bytes or a File"):
        handler_specs(_generator_returning(annotation, stream=stream, media_type="image/png"))


def test_a_handler_without_media_type_has_none():
    assert only_spec(_returning(bytes)).media_type is None
