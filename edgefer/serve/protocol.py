"""The KServe v2 / Triton HTTP inference protocol: request parsing and response encoding, with Triton's binary
tensor data extension (``Inference-Header-Content-Length``) and classification extension (``classification``
output parameter: ``"<value>:<index>:<label>"`` strings). Standard library + numpy.

Protocol: https://github.com/kserve/kserve/blob/master/docs/predict-api/v2/required_api.md; extensions:
https://github.com/triton-inference-server/server/tree/main/docs/protocol (extension_binary_data.md,
extension_classification.md).
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"


class RequestError(Exception):
    """A request the server cannot take: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def bad(message: str) -> RequestError:
    return RequestError(400, message)


def split_body(body: bytes, header_length: str | None) -> tuple[dict, memoryview]:
    """The JSON header of an inference request and the binary data after it."""
    view = memoryview(body)
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise bad(f"{HEADER_LENGTH} must be an integer, got {header_length[:40]!r}") from None
        if not 0 <= length <= len(body):
            raise bad(f"{HEADER_LENGTH} {length} is outside the body ({len(body)} bytes)")
        head, binary = view[:length], view[length:]
    else:
        head, binary = view, view[:0]
    try:
        request = json.loads(bytes(head))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"the request is not valid JSON ({exc})") from None
    if not isinstance(request, dict):
        raise bad(f"the request must be a JSON object, got {type(request).__name__}")
    return request, binary


def _parameters(entry: dict, what: str) -> dict:
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad(f"{what}: 'parameters' must be an object")
    return params


def decode_input(request: dict, binary: memoryview, name: str, sample_shape: tuple[int, ...],
                 max_batch: int) -> np.ndarray:
    """The one FP32 input tensor ``name`` of shape (N, *sample_shape) as a float32 array (JSON ``data`` or
    binary), checked: finite values, 1 <= N <= max_batch."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad("the request needs 'inputs': a list with one tensor")
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad(f"the model takes one input '{name}', got {len(inputs)} tensors")
    entry = inputs[0]
    if entry.get("name") != name:
        raise bad(f"unknown input {str(entry.get('name'))[:80]!r}; the model's input is '{name}'")
    if entry.get("datatype") != "FP32":
        raise bad(f"input '{name}': datatype {str(entry.get('datatype'))[:20]!r}; the model takes FP32")
    shape = entry.get("shape")
    expected = "[N, " + ", ".join(map(str, sample_shape)) + "]"
    if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or len(shape) != 1 + len(sample_shape) or tuple(shape[1:]) != tuple(sample_shape)):
        raise bad(f"input '{name}': shape {str(shape)[:80]}; the model takes {expected} (prepared faces)")
    n = shape[0]
    if not 1 <= n <= max_batch:
        raise bad(f"input '{name}': batch {n}; this server takes 1 to {max_batch} faces per request (max_batch_size)")
    count = math.prod(shape)
    size = _parameters(entry, f"input '{name}'").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != count * 4:
            raise bad(f"input '{name}': binary_data_size {size!r}; {expected} FP32 is {count * 4} bytes")
        if len(binary) < size:
            raise bad(f"input '{name}': {size} bytes of binary data announced, {len(binary)} sent")
        x = np.frombuffer(binary[:size], dtype="<f4").astype(np.float32, copy=True)
    else:
        data = entry.get("data")
        if data is None:
            raise bad(f"input '{name}': no 'data' and no binary_data_size")
        try:
            x = np.asarray(data, dtype=np.float32).reshape(-1)
        except (ValueError, TypeError):
            raise bad(f"input '{name}': 'data' must be numbers (a flat or nested list)") from None
        if x.size != count:
            raise bad(f"input '{name}': {x.size} values for shape {shape} ({count})")
    x = x.reshape(shape)
    if not np.isfinite(x).all():
        raise bad(f"input '{name}': the data holds NaN or infinity")
    return x


def requested_outputs(request: dict, name: str, num_classes: int) -> tuple[bool, int | None]:
    """(binary, classification top-k or None) for the model's one output ``name``, from the request."""
    binary = bool(_parameters(request, "the request").get("binary_data_output", False))
    outputs = request.get("outputs")
    if outputs is None:
        return binary, None
    if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], dict):
        raise bad(f"'outputs' must list the model's one output '{name}'")
    entry = outputs[0]
    if entry.get("name") != name:
        raise bad(f"unknown output {str(entry.get('name'))[:80]!r}; the model's output is '{name}'")
    params = _parameters(entry, f"output '{name}'")
    binary = bool(params.get("binary_data", binary))
    k = params.get("classification")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= num_classes):
        raise bad(f"output '{name}': classification must be an integer in [1, {num_classes}], got {k!r}")
    return binary, k


def classification(outputs: np.ndarray, k: int, labels) -> list[list[str]]:
    """Triton's classification strings ``"<value>:<index>:<label>"``, the top ``k`` per row, best first."""
    order = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
    return [[f"{row[i]:f}:{i}:{labels[i]}" for i in top] for row, top in zip(outputs, order)]


def encode_response(model: str, version: str, request_id, name: str, outputs: np.ndarray, binary: bool,
                    k: int | None, labels) -> tuple[bytes, int | None]:
    """The response body and, with binary data, the length of its JSON header."""
    response: dict = {"model_name": model, "model_version": version}
    if isinstance(request_id, str) and request_id:
        response["id"] = request_id
    if k is None:
        tensor = {"name": name, "datatype": "FP32", "shape": list(outputs.shape)}
        payload = np.ascontiguousarray(outputs, dtype="<f4").tobytes() if binary else None
        if not binary:
            tensor["data"] = [v if math.isfinite(v) else None for v in outputs.reshape(-1).tolist()]
    else:
        strings = classification(outputs, k, labels)
        tensor = {"name": name, "datatype": "BYTES", "shape": [len(strings), k]}
        flat = [s for row in strings for s in row]
        payload = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in flat)) if binary else None
        if not binary:
            tensor["data"] = flat
    if payload is not None:
        tensor["parameters"] = {"binary_data_size": len(payload)}
    response["outputs"] = [tensor]
    head = json.dumps(response, separators=(",", ":")).encode()
    if payload is None:
        return head, None
    return head + payload, len(head)
