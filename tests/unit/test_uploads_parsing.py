"""Uploads in (multipart, urlencoded and raw bodies made into a handler's arguments) and files out (bytes, a
``File`` or an open file as the answer's body and headers)."""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any

import httpx
import pytest
from pydantic import Field

from steadyserve import File, Service, handler
from steadyserve.client_streams import binary_answer, lines_of, multipart_parts
from steadyserve.errors import HandlerFailed, InvalidInput, MethodNotAllowed
from steadyserve.replica.binary import (
    NOSNIFF,
    binary_reply,
    disposition,
    is_binary_result,
    is_readable,
    read_file_like,
    safe_content_type,
)
from steadyserve.replica.forms import (
    MAX_PARTS,
    body_kind,
    field_value,
    form_arguments,
    parse_multipart,
    raw_arguments,
    urlencoded_arguments,
)
from steadyserve.replica.inputs import parse_input
from steadyserve.replica.replies import Reply
from steadyserve.service import handler_specs
from steadyserve.wire.http11 import Request


class Uploads(Service):
    @handler
    def describe(self, image: File, n: int = 1, label: str = "", tags: list[int] | None = None,
                 threshold: float = 0.5, flag: bool = False, note: str | None = None) -> dict[str, Any]:
        return {}

    @handler
    def digest(self, data: bytes, rounds: int = 1) -> str:
        return ""

    @handler
    def maybe(self, image: File | None = None, caption: str = "") -> dict[str, Any]:
        return {}

    @handler
    def pair(self, left: File, right: bytes) -> int:
        return 0

    @handler
    def plain(self, n: int, text: str = "") -> int:
        return n


SPECS = handler_specs(Uploads)
BOUNDARY = b"b0undary"
FORM = b"multipart/form-data; boundary=" + BOUNDARY


def form_body(*parts: tuple[str, str | None, str | None, bytes], boundary: bytes = BOUNDARY) -> bytes:
    """A multipart/form-data body of (name, filename, content type, data) parts."""
    out = b""
    for name, filename, content_type, data in parts:
        out += b"--" + boundary + b"\r\n"
        out += f'Content-Disposition: form-data; name="{name}"'.encode()
        if filename is not None:
            out += f'; filename="{filename}"'.encode()
        out += b"\r\n"
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def request(body: bytes, content_type: bytes | None = None, *, method: bytes = b"POST",
            url: bytes = b"/h") -> Request:
    headers = [(b"host", b"replica")]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    return Request(method, url, headers, body, True)


def client_request(inputs: dict[str, Any]) -> Request:
    """The request ``Client`` sends for these inputs, as the replica receives it."""
    parts = multipart_parts(inputs)
    assert parts is not None
    files, data = parts
    sent = httpx.Request("POST", "http://gateway.test/dep/h", files=files, data=data)
    return request(sent.read(), sent.headers["content-type"].encode())


# --- body_kind ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("handler_name", "content_type", "body", "kind"),
    [
        ("describe", FORM, b"", "multipart"),
        ("plain", FORM, b"", "multipart"),
        ("describe", b"Multipart/Form-Data; boundary=x", b"", "multipart"),
        ("plain", b"text/plain", b"{}", "json"),
        ("plain", b"application/octet-stream", b"{}", "json"),
        ("plain", b"application/x-www-form-urlencoded", b"n=1", "json"),
        ("describe", None, b"{}", "json"),
        ("describe", b"application/json", b"{}", "json"),
        ("describe", b"Application/JSON; charset=utf-8", b"{}", "json"),
        ("describe", b"application/vnd.api+json", b"{}", "json"),
        ("describe", b"application/x-www-form-urlencoded", b'  {"n": 1}', "json"),
        ("describe", b"application/x-www-form-urlencoded", b"n=1", "urlencoded"),
        ("describe", b"image/png", b"\x89PNG", "raw"),
        ("digest", b"application/octet-stream", b"\x00", "raw"),
        ("digest", b"text/plain", b"{}", "raw"),
    ],
)
def test_body_kind_reads_json_unless_the_handler_takes_uploads(handler_name, content_type, body, kind):
    assert body_kind(content_type, body, SPECS[handler_name]) == kind


# --- parse_multipart ---------------------------------------------------------------------------------------

def test_parse_multipart_gives_each_part_its_name_filename_type_and_bytes():
    body = form_body(("n", None, None, b"3"), ("image", "cät.png", "image/png", b"\x89PNG\r\n\x00"),
                     ("note", None, "text/plain; charset=utf-8", "héllo".encode()))
    parts = parse_multipart(FORM, body)
    assert [(p.name, p.filename, p.content_type, p.value) for p in parts] == [
        ("n", None, "", b"3"),
        ("image", "cät.png", "image/png", b"\x89PNG\r\n\x00"),
        ("note", None, "text/plain; charset=utf-8", "héllo".encode()),
    ]


def test_parse_multipart_keeps_an_empty_filename_apart_from_none():
    (part,) = parse_multipart(FORM, form_body(("image", "", None, b"x")))
    assert part.filename == ""


def test_parse_multipart_of_an_empty_body_is_no_parts():
    assert parse_multipart(FORM, b"") == []


@pytest.mark.parametrize("content_type", [b"multipart/form-data", b"multipart/form-data; charset=utf-8"])
def test_parse_multipart_refuses_a_content_type_without_a_boundary(content_type):
    with pytest.raises(InvalidInput, match="without a boundary"):
        parse_multipart(content_type, form_body(("n", None, None, b"1")))


@pytest.mark.parametrize("body", [form_body(("n", None, None, b"1"), boundary=b"other"), b"just some text",
                                  b"  \r\n"])
def test_parse_multipart_refuses_a_body_whose_parts_it_cannot_find(body):
    with pytest.raises(InvalidInput, match="malformed multipart/form-data body"):
        parse_multipart(FORM, body)


def test_parse_multipart_refuses_more_than_max_parts():
    body = form_body(*[(f"f{i}", None, None, b"x") for i in range(MAX_PARTS + 1)])
    with pytest.raises(InvalidInput, match=f"more than {MAX_PARTS} parts"):
        parse_multipart(FORM, body)


def test_parse_multipart_takes_max_parts():
    body = form_body(*[(f"f{i}", None, None, b"x") for i in range(MAX_PARTS)])
    assert len(parse_multipart(FORM, body)) == MAX_PARTS


# --- field_value -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "annotation", "value"),
    [
        ("3", int, 3),
        ("3", str, "3"),
        ("007", str, "007"),
        ("3", str | None, "3"),
        ("3", Annotated[str, Field(max_length=5)], "3"),
        ("3", int | str, "3"),
        ("[1, 2]", list[int], [1, 2]),
        ("true", bool, True),
        ("1.5", float, 1.5),
        ("null", int | None, None),
        ('{"a": [1]}', dict[str, Any], {"a": [1]}),
        ("abc", int, "abc"),
        ("", int, ""),
        ("héllo", Any, "héllo"),
        ('"quoted"', Any, "quoted"),
    ],
)
def test_field_value_is_text_for_a_str_parameter_and_json_or_text_otherwise(text, annotation, value):
    assert field_value(text, annotation) == value


# --- form_arguments ----------------------------------------------------------------------------------------

def test_form_arguments_make_file_parts_files_and_read_fields_by_their_type():
    parts = parse_multipart(FORM, form_body(
        ("image", "cat.png", "image/png", b"PNG"), ("n", None, None, b"3"), ("label", None, None, b"42"),
        ("tags", None, None, b"[1, 2]"), ("flag", None, None, b"true"), ("note", None, None, b"null"),
    ))
    assert form_arguments(SPECS["describe"], parts, b"") == {
        "image": File(data=b"PNG", name="cat.png", content_type="image/png"),
        "n": 3, "label": "42", "tags": [1, 2], "flag": True, "note": "null",
    }


@pytest.mark.parametrize(("filename", "name"), [("a.bin", "a.bin"), (None, ""), ("", "")])
def test_form_arguments_give_a_file_part_without_a_type_the_octet_stream_type(filename, name):
    parts = parse_multipart(FORM, form_body(("image", filename, None, b"x")))
    assert form_arguments(SPECS["describe"], parts, b"")["image"] == File(
        data=b"x", name=name, content_type="application/octet-stream")


def test_form_arguments_give_a_bytes_parameter_the_parts_bytes():
    parts = parse_multipart(FORM, form_body(("data", "blob.bin", "application/x-thing", b"\x00\x01")))
    assert form_arguments(SPECS["digest"], parts, b"rounds=4") == {"data": b"\x00\x01", "rounds": 4}


def test_form_arguments_give_an_optional_file_parameter_a_file():
    parts = parse_multipart(FORM, form_body(("image", "c.jpg", "image/jpeg", b"J")))
    assert form_arguments(SPECS["maybe"], parts, b"")["image"] == File(data=b"J", name="c.jpg",
                                                                       content_type="image/jpeg")


def test_form_arguments_take_query_parameters_too():
    parts = parse_multipart(FORM, form_body(("image", "a", None, b"x")))
    values = form_arguments(SPECS["describe"], parts, b"n=5&label=hi&tags=%5B3%5D")
    assert (values["n"], values["label"], values["tags"]) == (5, "hi", [3])


def test_form_arguments_let_a_form_field_override_the_same_query_parameter():
    parts = parse_multipart(FORM, form_body(("image", "a", None, b"x"), ("n", None, None, b"7")))
    assert form_arguments(SPECS["describe"], parts, b"n=5")["n"] == 7


def test_form_arguments_refuse_a_field_given_twice():
    parts = parse_multipart(FORM, form_body(("image", "a", None, b"x"), ("n", None, None, b"1"),
                                            ("n", None, None, b"2")))
    with pytest.raises(InvalidInput, match="field 'n' is given twice"):
        form_arguments(SPECS["describe"], parts, b"")


def test_form_arguments_refuse_a_file_for_a_parameter_that_takes_no_file():
    parts = parse_multipart(FORM, form_body(("n", "n.txt", "text/plain", b"3")))
    with pytest.raises(InvalidInput, match="field 'n' is a file, but parameter 'n' of handler 'plain'"):
        form_arguments(SPECS["plain"], parts, b"")


def test_form_arguments_keep_an_unknown_part_for_validation_to_name():
    parts = parse_multipart(FORM, form_body(("n", None, None, b"1"), ("extra", None, None, b"x")))
    assert form_arguments(SPECS["plain"], parts, b"") == {"n": 1, "extra": b"x"}


# --- raw_arguments and urlencoded_arguments ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("content_type", "file_type"),
    [(b"image/png", "image/png"), (None, "application/octet-stream"), (b"", "application/octet-stream")],
)
def test_raw_arguments_make_the_body_the_one_file_parameter(content_type, file_type):
    values = raw_arguments(SPECS["describe"], content_type, b"\x89PNG", b"n=2")
    assert values == {"image": File(data=b"\x89PNG", name="", content_type=file_type), "n": 2}


def test_raw_arguments_give_a_bytes_parameter_the_body():
    assert raw_arguments(SPECS["digest"], b"application/octet-stream", b"\x00\xff", b"") == {"data": b"\x00\xff"}


def test_raw_arguments_refuse_a_handler_taking_two_files():
    with pytest.raises(InvalidInput, match=r"takes 2 files \(left, right\): send them as multipart"):
        raw_arguments(SPECS["pair"], b"image/png", b"x", b"")


def test_urlencoded_arguments_read_body_and_query_fields_by_their_type():
    values = urlencoded_arguments(SPECS["describe"], b"n=3&label=007&tags=%5B1%2C2%5D&flag=true", b"threshold=0.25")
    assert values == {"threshold": 0.25, "n": 3, "label": "007", "tags": [1, 2], "flag": True}


def test_urlencoded_arguments_let_the_body_override_the_query():
    assert urlencoded_arguments(SPECS["plain"], b"n=2", b"n=1") == {"n": 2}


def test_urlencoded_arguments_keep_an_unknown_field_as_text():
    assert urlencoded_arguments(SPECS["plain"], b"other=%5B1%5D", b"") == {"other": "[1]"}


def test_a_file_sent_with_curls_default_content_type_is_refused_saying_how_to_send_it():
    with pytest.raises(InvalidInput, match="content-type: image/png.*curl -F image=@FILE"):
        urlencoded_arguments(SPECS["describe"], b"\x89PNG binary bytes", b"")


@pytest.mark.parametrize(("body", "query"), [(b"image=abc", b""), (b"", b"image=abc")])
def test_urlencoded_arguments_refuse_a_file_parameter_given_as_text(body, query):
    with pytest.raises(InvalidInput, match="parameter 'image' of handler 'describe' is a file"):
        urlencoded_arguments(SPECS["describe"], body, query)


# --- parse_input -------------------------------------------------------------------------------------------

def test_parse_input_validates_a_multipart_call():
    body = form_body(("image", "cat.png", "image/png", b"PNG"), ("n", None, None, b"3"))
    assert parse_input(SPECS["describe"], request(body, FORM)) == {
        "image": File(data=b"PNG", name="cat.png", content_type="image/png"), "n": 3, "label": "",
        "tags": None, "threshold": 0.5, "flag": False, "note": None,
    }


@pytest.mark.parametrize(
    "inputs",
    [
        {"image": File(data=b"\x89PNG\r\n\x1a\n\x00", name="cät.png", content_type="image/png"), "n": 3,
         "label": "007", "tags": [1, 2], "threshold": 0.25, "flag": True, "note": "héllo\nwörld"},
        {"image": File(data=b"")},
        {"image": b"\x00\xff raw bytes", "label": "[not json]"},
    ],
)
def test_inputs_a_client_sends_as_multipart_arrive_as_the_same_arguments(inputs):
    got = parse_input(SPECS["describe"], client_request(inputs))
    image = inputs["image"]  # a file without a name is sent named after its parameter
    expected_image = (image.model_copy(update={"name": image.name or "image"}) if isinstance(image, File)
                      else File(data=image, name="image"))
    defaults = {"n": 1, "label": "", "tags": None, "threshold": 0.5, "flag": False, "note": None}
    assert got == {**defaults, **inputs, "image": expected_image}


def test_an_open_file_a_client_sends_arrives_as_a_file_named_by_its_base_name():
    reader = io.BytesIO(b"contents")
    reader.name = "/home/me/data/report.csv"
    got = parse_input(SPECS["describe"], client_request({"image": reader}))
    assert got["image"] == File(data=b"contents", name="report.csv", content_type="application/octet-stream")


def test_bytes_a_client_sends_arrive_as_bytes_for_a_bytes_parameter():
    got = parse_input(SPECS["digest"], client_request({"data": b"\x00\x01\x02", "rounds": 9}))
    assert got == {"data": b"\x00\x01\x02", "rounds": 9}


@pytest.mark.parametrize(
    ("handler_name", "url", "content_type", "expected"),
    [
        ("describe", b"/describe?n=2&label=x", b"image/png",
         {"image": File(data=b"BODY", content_type="image/png"), "n": 2, "label": "x"}),
        ("digest", b"/digest?rounds=3", b"application/octet-stream", {"data": b"BODY", "rounds": 3}),
        ("maybe", b"/maybe?caption=hi", b"image/jpeg",
         {"image": File(data=b"BODY", content_type="image/jpeg"), "caption": "hi"}),
    ],
)
def test_parse_input_takes_a_raw_body_as_the_upload_and_the_query_as_other_arguments(handler_name, url,
                                                                                      content_type, expected):
    got = parse_input(SPECS[handler_name], request(b"BODY", content_type, url=url))
    assert {k: got[k] for k in expected} == expected


def test_parse_input_reads_a_urlencoded_body_for_a_handler_with_uploads():
    got = parse_input(SPECS["maybe"], request(b"caption=hello+there", b"application/x-www-form-urlencoded"))
    assert got == {"image": None, "caption": "hello there"}


@pytest.mark.parametrize(
    ("handler_name", "body", "expected"),
    [
        ("digest", b'{"data": "' + base64.b64encode(b"\x00\xff").decode().encode() + b'", "rounds": 2}',
         {"data": b"\x00\xff", "rounds": 2}),
        ("describe", b'{"image": {"data": "' + base64.b64encode(b"PNG").decode().encode()
         + b'", "name": "x.png", "content_type": "image/png"}}',
         {"image": File(data=b"PNG", name="x.png", content_type="image/png")}),
    ],
)
@pytest.mark.parametrize("content_type", [b"application/json", None])
def test_parse_input_takes_uploads_as_base64_in_a_json_body(handler_name, body, expected, content_type):
    got = parse_input(SPECS[handler_name], request(body, content_type))
    assert {k: got[k] for k in expected} == expected


def test_parse_input_reads_a_multipart_body_for_a_handler_without_uploads():
    body = form_body(("n", None, None, b"3"), ("text", None, None, b"3"))
    assert parse_input(SPECS["plain"], request(body, FORM)) == {"n": 3, "text": "3"}


@pytest.mark.parametrize(
    ("handler_name", "body", "field"),
    [
        ("plain", form_body(("n", None, None, b"abc")), "n"),
        ("plain", form_body(("n", None, None, b"3.5")), "n"),
        ("plain", form_body(("n", None, None, b"true")), "n"),
        ("plain", form_body(("n", None, None, b"1"), ("extra", None, None, b"x")), "extra"),
        ("describe", form_body(("n", None, None, b"1")), "image"),
        ("describe", form_body(("image", "a", None, b"x"), ("tags", None, None, b"[1, \"x\"]")), "tags.1"),
    ],
)
def test_parse_input_names_the_form_field_that_is_invalid(handler_name, body, field):
    with pytest.raises(InvalidInput) as invalid:
        parse_input(SPECS[handler_name], request(body, FORM))
    assert field in [f["field"] for f in invalid.value.details["fields"]]


def test_parse_input_refuses_a_raw_body_to_a_handler_taking_two_files():
    with pytest.raises(InvalidInput, match="send them as multipart/form-data"):
        parse_input(SPECS["pair"], request(b"x", b"image/png"))


def test_parse_input_refuses_get_for_a_handler_with_a_required_upload():
    with pytest.raises(MethodNotAllowed) as refused:
        parse_input(SPECS["describe"], request(b"", method=b"GET"))
    assert refused.value.details["required"] == ["image"]


def test_parse_input_takes_get_for_a_handler_whose_upload_is_optional():
    assert parse_input(SPECS["maybe"], request(b"", method=b"GET")) == {"image": None, "caption": ""}


@pytest.mark.parametrize("method", [b"PUT", b"DELETE", b"PATCH"])
def test_parse_input_refuses_other_methods(method):
    with pytest.raises(MethodNotAllowed):
        parse_input(SPECS["maybe"], request(b"", method=method))


# --- binary answers ----------------------------------------------------------------------------------------

class Answers(Service):
    @handler
    def blob(self) -> bytes:
        return b""

    @handler(media_type="image/png")
    def png(self) -> bytes:
        return b""

    @handler
    def file(self) -> File:
        return File(data=b"")

    @handler(media_type="image/jpeg")
    def jpeg_file(self) -> File:
        return File(data=b"")

    @handler(media_type="text/plain\r\nx-injected: 1")
    def bad_type(self) -> bytes:
        return b""

    @handler
    def anything(self):
        return None

    @handler
    def number(self) -> int:
        return 0


ANSWERS = handler_specs(Answers)


@pytest.mark.parametrize(
    ("handler_name", "result", "reply"),
    [
        ("blob", b"\x00\x01", Reply(200, b"\x00\x01", b"application/octet-stream")),
        ("blob", bytearray(b"ba"), Reply(200, b"ba", b"application/octet-stream")),
        ("blob", memoryview(b"mv"), Reply(200, b"mv", b"application/octet-stream")),
        ("png", b"PNG", Reply(200, b"PNG", b"image/png")),
        ("bad_type", b"x", Reply(200, b"x", b"application/octet-stream")),
        ("file", File(data=b"t", content_type="text/plain; charset=utf-8"),
         Reply(200, b"t", b"text/plain; charset=utf-8")),
        ("file", File(data=b"t"), Reply(200, b"t", b"application/octet-stream")),
        ("jpeg_file", File(data=b"J"), Reply(200, b"J", b"image/jpeg")),
        ("jpeg_file", File(data=b"W", content_type="image/webp"), Reply(200, b"W", b"image/webp")),
        ("anything", b"any", Reply(200, b"any", b"application/octet-stream")),
    ],
)
def test_binary_reply_sends_the_bytes_with_their_content_type(handler_name, result, reply):
    answer = binary_reply(ANSWERS[handler_name], result)
    assert (answer.status, answer.body, answer.content_type) == (reply.status, reply.body, reply.content_type)
    assert NOSNIFF in answer.headers  # a browser takes the content type as given


def test_binary_reply_names_a_named_file_in_its_disposition():
    reply = binary_reply(ANSWERS["file"], File(data=b"%PDF", name="report.pdf", content_type="application/pdf"))
    assert reply.headers == NOSNIFF + b"content-disposition: inline; filename=\"report.pdf\"; filename*=UTF-8''report.pdf\r\n"


@pytest.mark.parametrize("result", [{"a": 1}, "text", 3, None])
def test_binary_reply_refuses_a_result_that_is_not_bytes_or_a_file(result):
    with pytest.raises(HandlerFailed, match="returns bytes or a File"):
        binary_reply(ANSWERS["blob"], result)


@pytest.mark.parametrize(
    "content_type",
    ["image/png", "text/plain; charset=utf-8", "application/vnd.api+json", "multipart/mixed; boundary=abc",
     "text/plain;charset=\"utf-8\"", "application/x-thing.v2"],
)
def test_safe_content_type_keeps_a_plain_content_type(content_type):
    assert safe_content_type(content_type) == content_type


@pytest.mark.parametrize(
    "content_type",
    ["text/plain\r\nset-cookie: a=b", "text/html\nx-evil: 1", "image/png\r", "text/plain; a=b\r\nx: y", "png",
     "", "image/ png", "text/plain; charset", "a/b/c", "imagé/png", "text/plain; x=<script>",
     "image/png\n", "image/png\r\n", "\r\nimage/png", "\nimage/png\r\n"],
)
def test_safe_content_type_makes_an_odd_content_type_octet_stream(content_type):
    assert safe_content_type(content_type) == "application/octet-stream"


@pytest.mark.parametrize("content_type", ["image/png\r\n", "\r\nimage/png", "image/png\n", "text/html\r\nx: 1"])
@pytest.mark.parametrize("handler_name", ["file", "jpeg_file"])
def test_binary_reply_content_type_never_holds_a_line_break(handler_name, content_type):
    reply = binary_reply(ANSWERS[handler_name], File(data=b"x", content_type=content_type))
    assert b"\r" not in reply.content_type and b"\n" not in reply.content_type


@pytest.mark.parametrize(
    "name",
    ["report.pdf", "résumé.pdf", "日本語.png", 'quote"in name.txt', "semi;colon.txt", "line\r\nbreak.txt",
     "back\\slash.txt", "x" * 300, "emoji 🎉.gif"],
)
def test_disposition_is_one_ascii_header_line_whatever_the_name(name):
    line = disposition(name)
    assert line.endswith(b"\r\n")
    assert b"\r" not in line[:-2] and b"\n" not in line[:-2]
    assert line.isascii()
    fallback = line.split(b'filename="', 1)[1].split(b'"', 1)[0]
    assert b'"' not in fallback and b";" not in fallback and b"\\" not in fallback


@pytest.mark.parametrize(
    ("name", "fallback", "encoded"),
    [
        ("résumé.pdf", b"r_sum_.pdf", b"r%C3%A9sum%C3%A9.pdf"),
        ('a"b.txt', b"a_b.txt", b"a%22b.txt"),
        ("line\r\nbreak", b"line__break", b"line%0D%0Abreak"),
        ("日本.png", b"__.png", b"%E6%97%A5%E6%9C%AC.png"),
        ("plain name.txt", b"plain name.txt", b"plain%20name.txt"),
    ],
)
def test_disposition_sends_an_ascii_fallback_and_the_utf8_name(name, fallback, encoded):
    assert disposition(name) == (b'content-disposition: inline; filename="' + fallback
                                 + b"\"; filename*=UTF-8''" + encoded + b"\r\n")


@pytest.mark.parametrize("name", ["report.pdf", "plain name.txt", "résumé.pdf", "日本.png", 'a"b.txt'])
def test_a_returned_files_name_reaches_the_client(name):
    reply = binary_reply(ANSWERS["file"], File(data=b"x", name=name, content_type="text/plain"))
    header, _, value = reply.headers.removeprefix(NOSNIFF).decode("ascii").rstrip("\r\n").partition(": ")
    answer = binary_answer(reply.body, {header: value, "content-type": reply.content_type.decode()})
    assert answer == File(data=b"x", name=name, content_type="text/plain")


class Closing(io.BytesIO):
    closed_by_reader = False

    def close(self) -> None:
        self.closed_by_reader = True
        super().close()


@pytest.mark.parametrize(
    ("value", "media_type", "expected"),
    [
        (io.BytesIO(b"bytes"), None, File(data=b"bytes")),
        (io.StringIO("tëxt"), None, File(data="tëxt".encode())),
        (io.BytesIO(b"bytes"), "image/gif", File(data=b"bytes", content_type="image/gif")),
    ],
)
def test_read_file_like_reads_an_in_memory_file_to_its_end(value, media_type, expected):
    assert read_file_like(value, media_type) == expected


def test_read_file_like_closes_the_file():
    value = Closing(b"x")
    read_file_like(value, None)
    assert value.closed_by_reader


def test_read_file_like_closes_a_file_whose_read_fails():
    class Failing(Closing):
        def read(self, *args: Any) -> bytes:
            raise OSError("disk gone")

    value = Failing(b"x")
    with pytest.raises(OSError):
        read_file_like(value, None)
    assert value.closed_by_reader


@pytest.mark.parametrize(
    ("filename", "media_type", "content_type"),
    [("photo.png", None, "image/png"), ("notes.txt", None, "text/plain"), ("blob.zzzunknown", None,
     "application/octet-stream"), ("photo.png", "image/webp", "image/webp")],
)
def test_read_file_like_names_an_open_file_by_its_base_name_and_guesses_its_type(tmp_path, filename, media_type,
                                                                                 content_type):
    path = tmp_path / filename
    path.write_bytes(b"\x00 on disk \xff")
    opened = open(path, "rb")  # noqa: SIM115 - read_file_like closes it
    assert read_file_like(opened, media_type) == File(data=b"\x00 on disk \xff", name=filename,
                                                      content_type=content_type)
    assert opened.closed


@pytest.mark.parametrize(
    ("value", "readable"),
    [(io.BytesIO(b""), True), (io.StringIO(""), True), (b"", False), (bytearray(), False), ("text", False),
     (File(data=b""), False), (memoryview(b""), False), (3, False)],
)
def test_is_readable_is_true_only_for_open_files(value, readable):
    assert is_readable(value) is readable


@pytest.mark.parametrize(
    ("handler_name", "result", "binary"),
    [
        ("blob", b"x", True),
        ("file", File(data=b""), True),
        ("anything", b"x", True),
        ("anything", bytearray(b"x"), True),
        ("anything", memoryview(b"x"), True),
        ("anything", File(data=b""), True),
        ("anything", {"a": 1}, False),
        ("anything", "text", False),
        ("number", b"x", False),
        ("number", 3, False),
    ],
)
def test_is_binary_result_for_binary_handlers_and_untyped_handlers_returning_bytes(handler_name, result, binary):
    assert is_binary_result(ANSWERS[handler_name], result) is binary


@pytest.mark.parametrize("where", ["query", "body"])
def test_more_fields_than_the_limit_is_a_clear_422(where):
    many = "&".join(f"f{i}=1" for i in range(300)).encode()
    body, query = (many, b"") if where == "body" else (b"", many)
    with pytest.raises(InvalidInput, match="more than 256 fields"):
        urlencoded_arguments(SPECS["describe"], body, query)


def test_lines_of_a_long_line_in_many_pieces_is_that_line():
    pieces = ["x" * 1000] * 5000 + ["\nnext\n"]
    assert list(lines_of(pieces)) == ["x" * 5_000_000, "next"]
