"""The Open Inference Protocol codec and the gateway's V2 routes."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from steadyserve.errors import InvalidInput
from steadyserve.gateway.v2 import Answer, Forward, route_v2
from steadyserve.replica.v2 import decode_request, encode_response


def test_json_tensors_become_one_kwargs_dict_per_row():
    body = orjson.dumps({"inputs": [
        {"name": "a", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]},
    ]})
    request = decode_request(body, None, ("a", "b"))
    assert request.rows == [{"a": [1, 2], "b": "x"}, {"a": [3, 4], "b": "y"}]


def test_binary_tensors_are_decoded():
    floats = np.array([[1.5, 2.5]], dtype=np.float32).tobytes()
    words = b"".join(struct.pack("<I", len(w)) + w for w in (b"hi",))
    head = orjson.dumps({"inputs": [
        {"name": "f", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": len(floats)}},
        {"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(words)}},
    ]})
    request = decode_request(head + floats + words, len(head), ("f", "s"))
    assert request.rows == [{"f": [1.5, 2.5], "s": "hi"}]


def test_outputs_are_stacked_per_key_and_can_be_binary():
    body = orjson.dumps({"id": "7", "inputs": [], "outputs": [{"name": "score", "parameters": {"binary_data": True}}]})
    request = decode_request(body, None, ())
    payload, header_length = encode_response("m", request, [{"score": 0.5, "label": "a"}, {"score": 0.25, "label": "b"}])
    assert header_length is not None
    head = orjson.loads(payload[:header_length])
    assert head["id"] == "7" and head["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert np.frombuffer(payload[header_length:], dtype=np.float64).tolist() == [0.5, 0.25]


def test_non_object_results_become_one_output_tensor():
    request = decode_request(orjson.dumps({"inputs": []}), None, ())
    payload, header_length = encode_response("m", request, [[1, 2], [3, 4]])
    out = orjson.loads(payload)["outputs"][0]
    assert header_length is None
    assert (out["name"], out["datatype"], out["shape"], out["data"]) == ("output", "INT64", [2, 2], [1, 2, 3, 4])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON"),
        (orjson.dumps({"inputs": [{"name": "a", "shape": [2], "datatype": "FP99", "data": [1, 2]}]}), "unsupported datatype"),
        (orjson.dumps({"inputs": [{"name": "a", "shape": [], "datatype": "FP32", "data": 1}]}), "batch dimension"),
        (orjson.dumps({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                                  {"name": "b", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}), "batch size"),
    ],
)
def test_bad_requests_are_rejected_with_a_reason(body, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        decode_request(body, None, ("a", "b"))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("v2/health/live", Answer(200, {"live": True})),
        ("v2/health/ready", Answer(503, {"ready": False})),
        ("v2/models/a/ready", Answer(200, {"name": "a", "ready": True})),
        ("v2/models/b/versions/3/ready", Answer(503, {"name": "b", "ready": False})),
        ("v2/models/a/infer", Forward("a")),
        ("v2/models/a", Forward("a")),
    ],
)
def test_gateway_v2_routes(path, expected):
    assert route_v2(path, {"a": True, "b": False}) == expected


def test_unknown_model_lists_models():
    answer = route_v2("v2/models/zzz/infer", {"a": True})
    assert isinstance(answer, Answer) and answer.status == 404 and "models: a" in answer.body["error"]


def test_a_batch_over_the_row_limit_is_a_client_error():
    import orjson

    from steadyserve.errors import InvalidInput
    from steadyserve.replica.v2 import MAX_ROWS, decode_request

    rows = MAX_ROWS + 1
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [rows, 1], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": rows}}]})
    with pytest.raises(InvalidInput, match="over the limit"):
        decode_request(body + bytes(rows), len(body), ("x",))
