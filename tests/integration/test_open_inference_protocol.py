"""Open Inference Protocol (KServe V2) on the gateway, checked with a standard client.

tritonclient's HTTP client speaks the protocol (with the binary tensor extension
by default); it is used unchanged against `steady serve examples/digits`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EXAMPLES, FIXTURES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from conftest import start_instance, stop_instance

    instance = start_instance(EXAMPLES / "digits", tmp_path_factory.mktemp("v2") / "state", "--replicas", "2")
    yield instance
    stop_instance(instance)


@pytest.fixture(scope="module")
def images():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data[:16].astype(np.float32), data.target[:16]


def test_standard_client_round_trip(digits, images):
    import tritonclient.http as triton

    pixels, labels = images
    client = triton.InferenceServerClient(url=f"127.0.0.1:{digits.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits")
    metadata = client.get_model_metadata("digits")
    assert metadata["inputs"] == [{"name": "pixels", "datatype": "FP64", "shape": [-1, 64]}]
    assert [o["name"] for o in metadata["outputs"]] == ["digit", "probability"]

    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)  # binary tensor extension (the client's default)
    result = client.infer("digits", [tensor], outputs=[triton.InferRequestedOutput("digit")], request_id="r-1")
    predicted = result.as_numpy("digit")
    assert predicted.shape == (16,)
    assert (predicted == labels).mean() >= 0.85
    assert result.get_response()["id"] == "r-1"


def test_json_tensor_format(digits, images):
    pixels, labels = images
    body = {"id": "j1", "inputs": [{"name": "pixels", "shape": [2, 64], "datatype": "FP32",
                                    "data": pixels[:2].reshape(-1).tolist()}]}
    code, _, doc = digits.post_json("/v2/models/digits/infer", body)
    assert code == 200 and doc["id"] == "j1" and doc["model_name"] == "digits"
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["digit"]["shape"] == [2] and outputs["digit"]["datatype"] == "INT64"
    assert outputs["digit"]["data"] == labels[:2].tolist()


def test_versioned_path_is_accepted(digits, images):
    pixels, _ = images
    body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP64", "data": pixels[0].tolist()}]}
    code, _, doc = digits.post_json("/v2/models/digits/versions/1/infer", body)
    assert code == 200 and doc["outputs"][0]["shape"] == [1]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]}, "unknown input tensor 'image'"),
        ({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 10}]}, "does not fit shape"),
        ({"inputs": [{"name": "pixels", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}]}, "row 0 of the batch is invalid"),
        ({"inputs": "nope"}, "'inputs' list"),
    ],
)
def test_bad_infer_requests_are_400(digits, body, fragment):
    code, _, doc = digits.post_json("/v2/models/digits/infer", body)
    assert code == 400 and fragment in json.dumps(doc)


def test_unknown_model_is_404(digits):
    code, _, doc = digits.post_json("/v2/models/cats/infer", {"inputs": []})
    assert code == 404 and "models: digits" in doc["error"]


def test_service_without_v2_entry_says_how_to_declare_one(serve):
    inst = serve(FIXTURES / "slow", "--replicas", "1", "--gateways", "1")
    code, _, doc = inst.post_json("/v2/models/slow/infer", {"inputs": []})
    assert code == 404 and "@handler(v2=True)" in doc["error"]
