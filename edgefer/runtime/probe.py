"""Every output of an in-memory model, for analysis tools (the export's INT8 sensitivity probes), not deployment.

``open_probe(model, backend)``: ``model`` is serialized ONNX bytes (``onnxruntime``) or an ``openvino.Model``
(``openvino``) whose extra outputs the caller has added; returns ``x -> {output name: array}`` on the CPU in
float32 (OpenVINO ``INFERENCE_PRECISION_HINT=f32``). Imports only the runtime it opens.
"""

from __future__ import annotations

import numpy as np

from ..errors import require


def open_probe(model, backend: str, *, lean: bool = False):
    """``lean`` (ONNX Runtime): free every tensor as soon as its last consumer ran and run each node right after
    its producers (bounded memory for calibration graphs that reduce every activation)."""
    if backend == "onnxruntime":
        ort = require("onnxruntime", "onnx", "probing ONNX models")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if lean:
            options.enable_mem_pattern = False  # the arena would otherwise keep the largest batch's plan
            options.enable_cpu_mem_arena = False
            options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
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
