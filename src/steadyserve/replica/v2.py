"""Open Inference Protocol (KServe V2) codec: tensors in, handler calls, tensors out.

Pure functions over bytes and Python values. A request's input tensors are
matched to the entry handler's parameters by name; row ``i`` of every tensor
(the first dimension is the batch) becomes one call, so a batched handler sees
the rows grouped. Each call's result becomes row ``i`` of the output tensors: a
JSON object gives one tensor per key, anything else one tensor named "output".
Both the JSON tensor format and the binary tensor extension are supported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput
from ..service import HandlerSpec

HEADER_LENGTH = b"inference-header-content-length"
MAX_ROWS = 4096

_NUMPY_OF = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_JSON_TYPE_TO_V2 = {"integer": "INT64", "number": "FP64", "boolean": "BOOL", "string": "BYTES"}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    rows: list[dict[str, Any]]
    requested: list[str] | None  # output names asked for, None = all
    binary_outputs: set[str]


def _datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "USO":
        return "BYTES"
    for name, dtype in _NUMPY_OF.items():
        if array.dtype == np.dtype(dtype):
            return name
    raise ValueError(f"no V2 datatype for {array.dtype}")


def _decode_bytes_tensor(raw: bytes) -> list[str]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ValueError(f"BYTES tensor truncated: a 4-byte length prefix at offset {offset} is cut off")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ValueError(f"BYTES tensor truncated: an element of {length} bytes at offset {offset}"
                             f" runs past the end ({len(raw)} bytes)")
        items.append(raw[offset:offset + length].decode("utf-8"))
        offset += length
    return items


def _encode_bytes_tensor(values: np.ndarray) -> bytes:
    parts = []
    for v in values.reshape(-1):
        data = v if isinstance(v, bytes) else str(v).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def decode_request(body: bytes, header_length: int | None, params: tuple[str, ...]) -> InferRequest:
    """Parse a V2 infer request into one kwargs dict per batch row.

    Whatever a client sends, a malformed request is its error (InvalidInput, 400),
    never a failure of the replica.
    """
    try:
        return _decode_request(body, header_length, params)
    except InvalidInput:
        raise
    except Exception as exc:  # a shape of document the checks below did not foresee
        raise InvalidInput(f"malformed infer request: {type(exc).__name__}: {exc}") from exc


def _decode_request(body: bytes, header_length: int | None, params: tuple[str, ...]) -> InferRequest:
    head, binary = (body, b"") if header_length is None else (body[:header_length], body[header_length:])
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"infer request is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise InvalidInput("infer request must be a JSON object with an 'inputs' list")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in doc["inputs"]:
        try:
            name, shape, datatype = tensor["name"], [int(d) for d in tensor["shape"]], tensor["datatype"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"each input needs name, shape and datatype: {exc}") from exc
        if name not in params:
            raise InvalidInput(f"unknown input tensor {name!r}; this model takes: {', '.join(params)}")
        parameters = tensor.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput(f"input {name!r}: 'parameters' must be an object")
        size = parameters.get("binary_data_size")
        try:
            if size is not None:
                raw = binary[offset:offset + int(size)]
                offset += int(size)
                values: Any = (_decode_bytes_tensor(raw) if datatype == "BYTES"
                               else np.frombuffer(raw, dtype=_NUMPY_OF[datatype]))
                array = np.asarray(values).reshape(shape)
            else:
                dtype = object if datatype == "BYTES" else _NUMPY_OF[datatype]
                array = np.asarray(tensor.get("data"), dtype=dtype).reshape(shape)
        except KeyError as exc:
            raise InvalidInput(f"input {name!r}: unsupported datatype {datatype!r}") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"input {name!r}: data does not fit shape {shape}: {exc}") from exc
        if array.ndim == 0:
            raise InvalidInput(f"input {name!r}: shape must have a batch dimension")
        tensors[name] = array
    sizes = {a.shape[0] for a in tensors.values()}
    if len(sizes) > 1:
        raise InvalidInput(f"input tensors disagree on the batch size: {sorted(sizes)}")
    batch = sizes.pop() if sizes else 0
    if batch > MAX_ROWS:  # each row is a call: keep one request from monopolising the replica
        raise InvalidInput(f"a batch of {batch} rows is over the limit of {MAX_ROWS} rows per infer request")
    rows = [{name: _plain(array[i]) for name, array in tensors.items()} for i in range(batch)]
    outputs = doc.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(
            isinstance(o, dict) and isinstance(o.get("name"), str) and isinstance(o.get("parameters") or {}, dict)
            for o in outputs)):
        raise InvalidInput("'outputs' must be a list of objects, each with a string 'name'")
    if not isinstance(doc.get("parameters") or {}, dict):
        raise InvalidInput("'parameters' must be an object")
    requested = [o["name"] for o in outputs] if outputs is not None else None
    all_binary = bool((doc.get("parameters") or {}).get("binary_data_output"))
    binary_outputs = {o["name"] for o in outputs or [] if (o.get("parameters") or {}).get("binary_data")}
    if all_binary:
        binary_outputs.add("*")
    request_id = doc.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, rows, requested, binary_outputs)


def _plain(value: Any) -> Any:
    """numpy rows and scalars to Python values; BYTES elements already are."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def _columns(results: list[Any]) -> dict[str, list[Any]]:
    if results and all(isinstance(r, dict) for r in results):
        return {key: [r[key] for r in results] for key in results[0]}
    return {"output": list(results)}


def encode_response(model_name: str, request: InferRequest, results: list[Any]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    columns = _columns(results)
    names = request.requested if request.requested is not None else list(columns)
    outputs, blobs = [], []
    for name in names:
        if name not in columns:
            raise InvalidInput(f"unknown output {name!r}; this model returns: {', '.join(columns)}")
        column = columns[name]
        array = np.asarray(column, dtype=object if column and isinstance(column[0], str) else None)
        entry: dict[str, Any] = {"name": name, "datatype": _datatype_of(array), "shape": list(array.shape)}
        if name in request.binary_outputs or "*" in request.binary_outputs:
            blob = _encode_bytes_tensor(array) if entry["datatype"] == "BYTES" else array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": outputs}
    if request.id is not None:
        doc["id"] = request.id
    head = orjson.dumps(doc)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def _tensor_meta(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    shape: list[int] = [-1]
    while schema.get("type") == "array":
        items = schema.get("items", {})
        size = schema.get("maxItems") if schema.get("maxItems") == schema.get("minItems") else None
        shape.append(int(size) if size is not None else -1)
        schema = items
    datatype = _JSON_TYPE_TO_V2.get(str(schema.get("type")), "BYTES")
    return {"name": name, "datatype": datatype, "shape": shape}


def model_metadata(model_name: str, spec: HandlerSpec) -> dict[str, Any]:
    """Inputs from the entry handler's parameters, outputs from its return type."""
    from pydantic import TypeAdapter

    in_schema = spec.input_model.model_json_schema()
    inputs = [_tensor_meta(n, s) for n, s in in_schema.get("properties", {}).items()]
    outputs: list[dict[str, Any]] = []
    if spec.output_adapter is not None:
        out_schema = TypeAdapter(spec.output_type).json_schema()
        if "$ref" in out_schema:
            out_schema = out_schema["$defs"][out_schema["$ref"].rsplit("/", 1)[1]]
        if out_schema.get("type") == "object" and "properties" in out_schema:
            outputs = [_tensor_meta(n, s) for n, s in out_schema["properties"].items()]
        else:
            outputs = [_tensor_meta("output", out_schema)]
    return {"name": model_name, "versions": ["1"], "platform": "steadyserve",
            "inputs": inputs, "outputs": outputs}
