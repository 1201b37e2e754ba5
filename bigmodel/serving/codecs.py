"""Request and response bodies of the two protocols: Open Inference (KServe V2) and TF Serving REST.

V2 tensors come as JSON (`data`) or, with the binary tensor data extension, as raw little-endian
bytes after a JSON header whose length is in `Inference-Header-Content-Length`; tritonclient sends
binary by default. Each model has one input, `features` (FP32 [-1, n]: the encoded feature row the
metadata lists), and one output, `output` (FP32 [-1, k]: probabilities or values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bigmodel.errors import InvalidRequest

INPUT = "features"
OUTPUT = "output"
HEADER_LENGTH = "Inference-Header-Content-Length"
# V2 datatypes we accept as inputs (any numeric type is converted to float32 for the model).
V2_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
             "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


@dataclass(frozen=True)
class V2Request:
    """A decoded V2 inference request: its input tensors and how the caller wants the outputs."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] = field(default_factory=list)
    binary_output: bool = False
    timeout: float | None = None  # seconds (the protocol's `timeout` parameter is in microseconds)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value


def _shape(tensor: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InvalidRequest(f"input {name!r}: 'shape' must be a list of non-negative integers")
    return tuple(shape)


def _tensor(tensor: dict[str, Any], binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """(name, array, new offset into the binary section) of one input tensor."""
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("each input needs a 'name'")
    shape = _shape(tensor, name)
    datatype = tensor.get("datatype")
    if datatype not in V2_DTYPES:
        raise InvalidRequest(f"input {name!r}: datatype {datatype!r} is not numeric; send FP32")
    dtype = np.dtype(V2_DTYPES[datatype])
    count = int(np.prod(shape, dtype=np.int64))
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or offset + size > len(binary):
            raise InvalidRequest(f"input {name!r}: binary_data_size {size!r} does not match shape "
                                 f"{list(shape)} of {datatype} and the bytes sent")
        return name, np.frombuffer(binary[offset:offset + size], dtype=dtype).reshape(shape), offset + size
    if "data" not in tensor:
        raise InvalidRequest(f"input {name!r} has neither 'data' nor binary_data_size")
    try:
        flat = np.asarray(tensor["data"], dtype=dtype).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidRequest(f"input {name!r}: 'data' must be numbers of datatype {datatype}") from None
    if flat.size != count:
        raise InvalidRequest(f"input {name!r}: shape {list(shape)} needs {count} values, got {flat.size}")
    return name, flat.reshape(shape), offset


def decode_v2(body: bytes, header_length: str | None) -> V2Request:
    """Parse a V2 infer body (JSON, or JSON header + binary tensors); 400 with the reason otherwise."""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise InvalidRequest(f"{HEADER_LENGTH} must be an integer") from None
        if not 0 < split <= len(body):
            raise InvalidRequest(f"{HEADER_LENGTH} {split} is outside the body of {len(body)} bytes")
    else:
        split = len(body)
    try:
        doc = _object(json.loads(body[:split]), "the request")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("the request header is not valid JSON") from None
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("'inputs' must be a non-empty list of tensors")
    binary = memoryview(body)[split:]
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        name, array, offset = _tensor(_object(raw, "each input"), binary, offset)
        inputs[name] = array
    if offset != len(binary):
        raise InvalidRequest(f"{len(binary) - offset} bytes of binary data belong to no input")
    params = _object(doc.get("parameters") or {}, "'parameters'")
    outputs, binary_output = [], bool(params.get("binary_data_output", False))
    for raw in doc.get("outputs") or []:
        out = _object(raw, "each requested output")
        outputs.append(str(out.get("name")))
        binary_output = bool((out.get("parameters") or {}).get("binary_data", False))
    timeout = params.get("timeout")
    request_id = doc.get("id")
    return V2Request(id=str(request_id) if request_id is not None else None, inputs=inputs, outputs=outputs,
                     binary_output=binary_output,
                     timeout=timeout / 1e6 if isinstance(timeout, int | float) and timeout > 0 else None)


def v2_features(request: V2Request) -> np.ndarray:
    """The one input the models take, checked by name (its shape is checked against the model later)."""
    if set(request.inputs) != {INPUT}:
        raise InvalidRequest(f"the model takes one input named {INPUT!r}, got {sorted(request.inputs)}")
    unknown = [name for name in request.outputs if name != OUTPUT]
    if unknown:
        raise InvalidRequest(f"the model has one output named {OUTPUT!r}, not {unknown}")
    return request.inputs[INPUT]


def encode_v2(model: str, version: int, request: V2Request, y: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The V2 response body and headers: JSON data, or a JSON header followed by raw FP32 bytes."""
    y = np.ascontiguousarray(y, dtype="<f4")
    output: dict[str, Any] = {"name": OUTPUT, "datatype": "FP32", "shape": list(y.shape)}
    raw = b""
    if request.binary_output:
        raw = y.tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
    else:
        output["data"] = y.reshape(-1).tolist()
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": [output]}
    if request.id is not None:
        doc["id"] = request.id
    header = json.dumps(doc).encode()
    if request.binary_output:
        return header + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header, {"Content-Type": "application/json"}


def v2_metadata(name: str, versions: list[int], meta: dict[str, Any], n_outputs: int) -> dict[str, Any]:
    """GET /v2/models/{name}[/versions/{v}]: inputs and outputs with datatype and shape (-1: batch)."""
    transform = meta["transform"]
    features = list(transform["features"])
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "tensorflow_keras",
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, len(features)]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, n_outputs]}],
        "parameters": {"version": str(meta["version"]), "task": meta.get("task") or transform.get("task"),
                       "features": features, "columns": list(transform.get("columns", features)),
                       "label_classes": transform.get("label_classes")},
    }


@dataclass(frozen=True)
class TFServingRequest:
    """A TF Serving :predict body: rows (`instances`, or `inputs` as a list) or columns (`inputs` object)."""

    rows: list[Any] | None
    columns: dict[str, Any] | None
    columnar: bool


def decode_tfserving(body: dict[str, Any]) -> TFServingRequest:
    """Parse a :predict body; 400 with the reason otherwise."""
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise InvalidRequest(f"unknown signature_name {signature!r}; the model has 'serving_default'")
    if ("instances" in body) == ("inputs" in body):
        raise InvalidRequest("send exactly one of 'instances' (rows) or 'inputs' (columnar)")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise InvalidRequest("'instances' must be a non-empty list of rows")
        return TFServingRequest(rows=rows, columns=None, columnar=False)
    inputs = body["inputs"]
    if isinstance(inputs, list) and inputs:
        return TFServingRequest(rows=inputs, columns=None, columnar=True)
    if isinstance(inputs, dict) and inputs:
        return TFServingRequest(rows=None, columns=inputs, columnar=True)
    raise InvalidRequest("'inputs' must be a non-empty list of rows or an object of columns")


def encode_tfserving(request: TFServingRequest, y: np.ndarray) -> dict[str, Any]:
    """`{"predictions": [...]}`, one output row per instance; a columnar request also gets TF Serving's
    columnar `outputs`."""
    rows = np.asarray(y, dtype=np.float32).tolist()
    return {"predictions": rows, "outputs": rows} if request.columnar else {"predictions": rows}
