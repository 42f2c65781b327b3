"""Activation ranges for INT8 calibration, collected batch by batch with bounded memory.

ONNX Runtime's calibrators keep the outputs of every calibrated tensor for every calibration image until the
end (histogram methods) before computing ranges; on ``tf_efficientnetv2_s`` at 224 px that is more than
10 GiB. Here each batch is run through a copy of the graph whose outputs are the tensors to calibrate, the
statistics are updated (running min/max, per-batch min/max for the moving average, histograms for entropy and
percentile) and the batch's tensors are dropped. Full tensors are requested in sub-batches small enough to
stay under ``memory_mb``; min/max methods reduce inside the graph (ReduceMin/ReduceMax) and never see them.

The result, ``ActivationRanges``, is written as ONNX Runtime's calibration cache (so ``quantize_static``
skips its own calibration) and as a TensorRT calibration cache (``trt_cache``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ExportError, require
from ..progress import progress

METHODS = ("moving-average", "minmax", "entropy", "percentile")
ENTROPY_BINS = 512  # histogram bins for the entropy threshold search (128 quantized bins)
PERCENTILE_BINS, PERCENTILE = 2048, 99.999  # ONNX Runtime's percentile defaults
MEMORY_MB = 256  # budget for the full tensors of one sub-batch (histogram methods)
_FLOAT_TYPES = (1, 10)  # onnx TensorProto.FLOAT, FLOAT16


@dataclass
class ActivationRanges:
    """Symmetric ranges per tensor: ``amax[name]`` is the absolute maximum INT8 represents (scale = amax/127)."""

    method: str
    amax: dict[str, float]
    images: int = 0
    lows: dict[str, float] = field(default_factory=dict)  # observed minimum (asymmetric view, for reports)

    def scale(self, name: str) -> float:
        return self.amax[name] / 127.0

    def save_ort_cache(self, path: str | Path) -> Path:
        """Write ONNX Runtime's calibration cache (JSON), read by ``quantize_static(calibration_cache_path=)``."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

        method = {"moving-average": CalibrationMethod.MinMax, "minmax": CalibrationMethod.MinMax,
                  "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[self.method]
        data = {name: TensorData(lowest=np.array(-a, np.float32), highest=np.array(a, np.float32))
                for name, a in self.amax.items()}
        save_tensors_data(TensorsData(method, data), path)
        return Path(path)


def tensors_to_calibrate(proto, op_types=None) -> list[str]:
    """Float tensors (not initializers) at the inputs and outputs of nodes of ``op_types`` (None: all nodes),
    in graph order: the set ONNX Runtime's quantizer asks ranges for."""
    infos = {vi.name: vi for vi in list(proto.graph.value_info) + list(proto.graph.output) + list(proto.graph.input)}
    initializers = {t.name for t in proto.graph.initializer}
    names: dict[str, None] = {}
    for node in proto.graph.node:
        if op_types is not None and node.op_type not in op_types:
            continue
        for name in list(node.input) + list(node.output):
            info = infos.get(name)
            if info is None or name in initializers or not info.type.HasField("tensor_type"):
                continue
            if info.type.tensor_type.elem_type in _FLOAT_TYPES:
                names[name] = None
    return list(names)


def _augment(proto, tensors: list[str], reduce: bool):
    """A copy of ``proto`` whose outputs are ``tensors`` (or their ReduceMin/ReduceMax when ``reduce``).

    Each reduction follows its tensor's producer in node order, so the runtime can free the tensor as soon as
    its last consumer ran, instead of keeping every tensor alive until reductions placed at the end.
    """
    onnx = require("onnx", "onnx", "INT8 calibration")
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    del model.graph.output[:]
    if not reduce:
        model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in tensors)
        return model
    index = {name: i for i, name in enumerate(tensors)}
    outputs, nodes = [], []

    def reductions(name):
        for op in ("ReduceMin", "ReduceMax"):
            out = f"edgefer_calib_{index[name]}_{op}"
            nodes.append(helper.make_node(op, [name], [out], keepdims=0, name=out))
            outputs.append((index[name], op, helper.make_tensor_value_info(out, TensorProto.FLOAT, [])))

    for tensor in model.graph.input:
        if tensor.name in index:
            reductions(tensor.name)
    for node in proto.graph.node:
        nodes.append(node)
        for name in node.output:
            if name in index:
                reductions(name)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.output.extend(info for _, _, info in sorted(outputs, key=lambda o: (o[0], o[1] != "ReduceMin")))
    return model


def _bytes_per_image(proto, tensors: list[str]) -> int:
    """Bytes of the ``tensors`` for one image, from the shapes shape inference recorded (unknown dims: 1)."""
    infos = {vi.name: vi for vi in list(proto.graph.value_info) + list(proto.graph.output) + list(proto.graph.input)}
    total = 0
    for name in tensors:
        dims = infos[name].type.tensor_type.shape.dim if name in infos else []
        size = 1
        for d in list(dims)[1:]:
            size *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
        total += 4 * size
    return max(total, 1)


def collect_ranges(model_path: str | Path, batches, tensors: list[str] | None = None, *,
                   method: str = "moving-average", memory_mb: int = MEMORY_MB,
                   desc: str | None = None) -> ActivationRanges:
    """Run ``batches`` (float32 NCHW arrays; iterated once) through ``model_path`` and return the symmetric
    activation ranges of ``tensors`` (default: every float tensor) by ``method``:

    - ``minmax``: the largest |value| seen; ``moving-average``: the mean over batches of each batch's min and
      max (ONNX Runtime's ``CalibMovingAverage``), then symmetric;
    - ``entropy``: KL-divergence threshold on a ``ENTROPY_BINS`` histogram (128 quantized bins);
    - ``percentile``: the ``PERCENTILE`` percentile of |value| on a ``PERCENTILE_BINS`` histogram.
    """
    if method not in METHODS:
        raise ExportError(f"--calib-method {method!r} is not supported; use one of {', '.join(METHODS)}")
    onnx = require("onnx", "onnx", "INT8 calibration")
    ort = require("onnxruntime", "onnx", "INT8 calibration")
    proto = onnx.load(str(model_path))
    tensors = list(tensors) if tensors is not None else tensors_to_calibrate(proto)
    if not tensors:
        raise ExportError(f"{model_path}: no float tensors to calibrate")
    input_name = proto.graph.input[0].name
    reduce = method in ("minmax", "moving-average")
    augmented = _augment(proto, tensors, reduce)
    chunk = 1 << 30 if reduce else max(1, (memory_mb << 20) // _bytes_per_image(proto, tensors))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_mem_pattern = False  # the arena would otherwise keep the largest batch's plan
    options.enable_cpu_mem_arena = False  # free each tensor when its last consumer ran
    with tempfile.TemporaryDirectory(prefix="edgefer-ranges-") as tmp:
        path = Path(tmp) / "augmented.onnx"
        onnx.save(augmented, str(path))
        del augmented
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    stats = _Stats(method, tensors)
    total = len(batches) if hasattr(batches, "__len__") else None
    for batch in progress(batches, total=total, desc=desc or f"calibrate ({method})"):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        for start in range(0, len(batch), chunk):
            outputs = session.run(None, {input_name: batch[start: start + chunk]})
            stats.update(outputs, new_batch=start == 0)
            del outputs
        stats.images += len(batch)
    return stats.result()


class _Stats:
    """Running statistics per tensor for one calibration method."""

    def __init__(self, method: str, tensors: list[str]):
        self.method, self.tensors, self.images = method, tensors, 0
        self.low = np.full(len(tensors), np.inf)
        self.high = np.full(len(tensors), -np.inf)
        self.batch_lows: list[np.ndarray] = []
        self.batch_highs: list[np.ndarray] = []
        self.collector = None
        if method in ("entropy", "percentile"):
            from onnxruntime.quantization.calibrate import HistogramCollector

            bins = ENTROPY_BINS if method == "entropy" else PERCENTILE_BINS
            self.collector = HistogramCollector(method=method, symmetric=True, num_bins=bins,
                                                num_quantized_bins=128, percentile=PERCENTILE, scenario="same")

    def update(self, outputs, new_batch: bool) -> None:
        if self.collector is None:
            lows = np.array([float(o) for o in outputs[0::2]])
            highs = np.array([float(o) for o in outputs[1::2]])
        else:
            lows = np.array([float(np.min(o)) if o.size else 0.0 for o in outputs])
            highs = np.array([float(np.max(o)) if o.size else 0.0 for o in outputs])
            arrays = {name: o.astype(np.float32, copy=False) for name, o in zip(self.tensors, outputs)}
            if self.method == "percentile":
                self.collector.collect_absolute_value(arrays)
            else:
                self.collector.collect_value(arrays)
        self.low, self.high = np.minimum(self.low, lows), np.maximum(self.high, highs)
        if new_batch:
            self.batch_lows.append(lows)
            self.batch_highs.append(highs)
        else:  # a later sub-batch of the same batch
            self.batch_lows[-1] = np.minimum(self.batch_lows[-1], lows)
            self.batch_highs[-1] = np.maximum(self.batch_highs[-1], highs)

    def result(self) -> ActivationRanges:
        if not self.batch_lows:
            raise ExportError("calibration set is empty: no batches to calibrate on")
        if self.method == "moving-average":
            amax = np.maximum(np.abs(np.mean(self.batch_lows, axis=0)), np.abs(np.mean(self.batch_highs, axis=0)))
        elif self.method == "minmax":
            amax = np.maximum(np.abs(self.low), np.abs(self.high))
        else:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):  # ORT prints progress lines here
                computed = self.collector.compute_collection_result()
            amax = np.array([max(abs(float(computed[n][0])), abs(float(computed[n][1]))) for n in self.tensors])
        return ActivationRanges(self.method, {n: float(a) for n, a in zip(self.tensors, amax)}, self.images,
                                {n: float(v) for n, v in zip(self.tensors, self.low)})
