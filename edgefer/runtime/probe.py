"""Every output of an in-memory model, for analysis tools (the export's INT8 sensitivity probes), not deployment.

``open_probe(model, backend)``: ``model`` is serialized ONNX bytes (``onnxruntime``) or an ``openvino.Model``
(``openvino``) whose extra outputs the caller has added; returns ``x -> {output name: array}`` on the CPU in
float32 (OpenVINO ``INFERENCE_PRECISION_HINT=f32``). Imports only the runtime it opens.
"""

from __future__ import annotations

import numpy as np

from ..errors import require


def open_probe(model, backend: str):
    if backend == "onnxruntime":
        ort = require("onnxruntime", "onnx", "probing ONNX models")
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        feed = session.get_inputs()[0].name
        return lambda x: dict(zip(names, session.run(names, {feed: x})))
    if backend == "openvino":
        ov = require("openvino", "openvino", "probing OpenVINO models")
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        outputs = list(compiled.outputs)

        def run(x: np.ndarray) -> dict:
            results = request.infer({0: x})
            return {i: np.array(results[port]) for i, port in enumerate(outputs)}

        return run
    raise ValueError(f"open_probe: unknown backend {backend!r} (onnxruntime or openvino)")
