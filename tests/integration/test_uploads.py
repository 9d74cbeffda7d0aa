"""Uploads in, files out: examples/images through the gateway, by curl and by the SDK."""

from __future__ import annotations

import io
import json
import select
import shutil
import socket
import subprocess

import httpx
import pytest
from conftest import EXAMPLES, FIXTURES, run_cli, start_instance, stop_with_children

from steadyserve import Client, File, InvalidInput

pytestmark = pytest.mark.integration
LIMIT_BYTES = 200_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    spec = root / "steady.yaml"
    spec.write_text(f"deployments:\n  images:\n    service: {EXAMPLES / 'images'}\n    replicas: 1\n"
                    f"  files:\n    service: {FIXTURES / 'streaming'}\n    replicas: 1\n"
                    f"gateway:\n  processes: 1\n  max_body_bytes: {LIMIT_BYTES}\n")
    instance = start_instance(spec, root / "state", command="up")
    yield instance
    stop_with_children(instance)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_renders_a_png_and_classifies_it_back(inst, tmp_path):
    seven = tmp_path / "seven.png"
    rendered = subprocess.run(["curl", "-sS", "-f", f"{inst.url}/images/render", "-d", '{"digit": 7, "index": 3}',
                               "-o", str(seven), "-w", "%{content_type}"], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout == "image/png" and seven.read_bytes().startswith(PNG_SIGNATURE)
    classified = subprocess.run(["curl", "-sS", "-f", f"{inst.url}/images/classify", "-F", f"image=@{seven}"],
                                capture_output=True, text=True, timeout=60)
    assert classified.returncode == 0, classified.stderr
    answer = httpx.Response(200, content=classified.stdout).json()
    assert answer["digit"] == 7 and answer["file"] == "seven.png" and answer["size_bytes"] == seven.stat().st_size


def test_the_sdk_uploads_files_and_gets_files_back(inst):
    with Client(inst.url) as client:
        png = client.call("images", "render", digit=3)
        assert isinstance(png, File) and png.content_type == "image/png" and png.data.startswith(PNG_SIGNATURE)
        by_file = client.call("images", "classify", image=File(data=png.data, name="three.png",
                                                               content_type="image/png"))
        by_bytes = client.call("images", "classify", image=png.data)
        by_open_file = client.call("images", "classify", image=io.BytesIO(png.data))
    assert by_file["digit"] == by_bytes["digit"] == by_open_file["digit"] == 3
    assert by_file["file"] == "three.png"


def test_a_raw_body_with_its_content_type_is_the_upload(inst):
    png = httpx.post(f"{inst.url}/images/render", json={"digit": 5}, timeout=30).content
    answer = httpx.post(f"{inst.url}/images/classify", content=png, headers={"content-type": "image/png"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["digit"] == 5
    echoed = httpx.post(f"{inst.url}/files/upload?label=raw&repeat=2", content=b"abc",
                        headers={"content-type": "text/csv"}, timeout=30).json()
    assert echoed == {"name": "", "content_type": "text/csv", "size": 3, "label": "raw", "repeat": 2, "head": "abc"}


def test_a_file_in_a_json_body_is_base64(inst):
    answer = httpx.post(f"{inst.url}/files/upload", json={"file": {"data": "aGVsbG8=", "name": "h.txt"}},
                        timeout=30).json()
    assert (answer["name"], answer["size"], answer["head"]) == ("h.txt", 5, "hello")
    assert httpx.post(f"{inst.url}/files/raw_bytes", json={"data": "AAEC"}, timeout=30).json() == {"size": 3}


def test_steady_call_uploads_a_file_and_saves_a_binary_answer(inst, tmp_path):
    png = tmp_path / "four.png"
    saved = run_cli("call", "images", "render", "--json", '{"digit": 4}', "--output", str(png), "--url", inst.url)
    assert saved.returncode == 0, saved.stderr
    assert png.read_bytes().startswith(PNG_SIGNATURE) and "image/png" in saved.stderr
    sent = run_cli("call", "images", "classify", "--file", f"image={png}", "--url", inst.url)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["digit"] == 4 and json.loads(sent.stdout)["file"] == "four.png"
    missing = run_cli("call", "images", "classify", "--file", f"image={tmp_path / 'none.png'}", "--url", inst.url)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_form_fields_come_with_the_file_typed_by_their_parameters(inst):
    answer = httpx.post(f"{inst.url}/files/upload", files={"file": ("notes.txt", b"hello", "text/plain")},
                        data={"label": "42", "repeat": "3"}, timeout=30).json()
    assert answer == {"name": "notes.txt", "content_type": "text/plain", "size": 5, "label": "42", "repeat": 3,
                      "head": "hello"}


@pytest.mark.parametrize("files, data, problem", [
    ({"file": ("a.txt", b"x", "text/plain")}, {"repeat": "many"}, "repeat"),
    ({}, {"label": "no file"}, "file"),
    ({"file": ("a.txt", b"x", "text/plain"), "label": ("b.txt", b"y", "text/plain")}, {}, "label"),
])
def test_a_bad_form_is_refused_naming_the_field(inst, files, data, problem):
    response = httpx.post(f"{inst.url}/files/upload", files=files or None, data=data, timeout=30)
    assert response.status_code == 422
    body = response.json()
    assert problem in body["error"] or any(f["field"] == problem for f in body.get("fields", []))


def test_an_image_that_is_not_one_is_a_clear_422(inst):
    with Client(inst.url) as client, pytest.raises(InvalidInput, match="'notes.txt'.*not an image"):
        client.call("images", "classify", image=File(data=b"plain text", name="notes.txt"))


def test_an_oversized_upload_is_refused_before_its_body_is_sent(inst):
    """The gateway answers 413 from the headers: a client that waits for 100 Continue sends nothing more."""
    with socket.create_connection(("127.0.0.1", inst.port), timeout=30) as sock:
        sock.sendall(b"POST /images/classify HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                     b"content-length: 50000000\r\nexpect: 100-continue\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"limit_bytes":%d' % LIMIT_BYTES in answer


def test_an_upload_growing_past_the_limit_is_refused_as_it_arrives(inst):
    """A chunked upload has no length up front: 413 comes while the client is still sending."""
    total_bytes, sent_bytes, answer = 50_000_000, 0, b""
    piece = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    with socket.create_connection(("127.0.0.1", inst.port), timeout=30) as sock:
        sock.sendall(b"POST /images/classify HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        while sent_bytes < total_bytes and not answer:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent_bytes += 65536
            if select.select([sock], [], [], 0)[0]:  # an answer is waiting (a timeout socket never says EAGAIN)
                answer = sock.recv(65536)
        while not answer:
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent_bytes < total_bytes  # refused long before the end of the body


def test_openapi_describes_uploads_and_binary_answers(inst):
    document = httpx.get(f"{inst.url}/images/openapi.json", timeout=30).json()
    classify = document["paths"]["/classify"]["post"]
    form = classify["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["image"] == {"type": "string", "format": "binary"}
    assert "*/*" in classify["requestBody"]["content"]
    render = document["paths"]["/render"]["post"]["responses"]["200"]["content"]
    assert render == {"image/png": {"schema": {"type": "string", "format": "binary"}}}
