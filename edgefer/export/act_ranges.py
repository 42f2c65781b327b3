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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ExportError, require
from ..progress import progress

METHODS = ("moving-average", "minmax", "entropy", "percentile")
ENTROPY_BINS = 512  # histogram bins for the entropy threshold search (128 quantized bins)
PERCENTILE_BINS, PERCENTILE = 2048, 99.999  # ONNX Runtime's percentile defaults
MEMORY_MB = 256  # budget for the full tensors of one sub-batch (histogram methods)
REDUCE_MEMORY_MB = 1024  # budget, counted over every tensor, for one sub-batch of the min/max pass
_FLOAT_TYPES = (1, 10)  # onnx TensorProto.FLOAT, FLOAT16


@dataclass
class ActivationRanges:
    """Symmetric ranges per tensor: ``amax[name]`` is the absolute maximum INT8 represents (scale = amax/127)."""

    method: str
    amax: dict[str, float]
    images: int = 0
    lows: dict[str, float] = field(default_factory=dict)  # observed minimum (asymmetric view, for reports)
    # the method's (low, high) before symmetrising, for asymmetric (uint8) activations: min/max methods only
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def scale(self, name: str) -> float:
        return self.amax[name] / 127.0

    def save_ort_cache(self, path: str | Path, *, asymmetric: bool = False) -> Path:
        """Write ONNX Runtime's calibration cache (JSON), read by ``quantize_static(calibration_cache_path=)``:
        (-amax, amax) per tensor, or with ``asymmetric`` the method's own (low, high) (``bounds``)."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

        method = {"moving-average": CalibrationMethod.MinMax, "minmax": CalibrationMethod.MinMax,
                  "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[self.method]
        if asymmetric and not self.bounds:
            raise ExportError(f"asymmetric ranges need a min/max calibration method, not {self.method!r}")
        pairs = self.bounds if asymmetric else {name: (-a, a) for name, a in self.amax.items()}
        data = {name: TensorData(lowest=np.array(low, np.float32), highest=np.array(high, np.float32))
                for name, (low, high) in pairs.items()}
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


def _measured_bytes_per_image(ort, proto, tensors: list[str], images: np.ndarray) -> int:
    """Bytes of the ``tensors`` per image, measured by running ``images`` (one image, or a fixed-batch model's
    batch; shape inference loses the spatial sizes after the computed "same" padding of tf_* models, so the
    graph alone underestimates them)."""
    session = _session(ort, _augment(proto, tensors, reduce=False))
    return max(1, sum(o.nbytes for o in session(images)) // len(images))


def _fixed_batch(proto) -> int | None:
    """The model input's fixed batch size (a user's ONNX exported with batch 1 or 4), None when dynamic."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def _session(ort, model):
    """``x -> [outputs]`` of the augmented graph, through the runtime's probe with bounded memory (each
    reduction runs right after its producer: the default order keeps most tensors alive, 1.7 GiB instead of
    0.7 GiB for tf_efficientnetv2_s at 112 px, batch 32)."""
    from ..runtime.probe import open_probe

    run = open_probe(model.SerializeToString(), "onnxruntime", lean=True)
    return lambda x: list(run(x).values())


def collect_ranges(model_path: str | Path, batches, tensors: list[str] | None = None, *,
                   method: str = "moving-average", memory_mb: int = MEMORY_MB,
                   desc: str | None = None) -> ActivationRanges:
    """Run ``batches`` (float32 NCHW arrays; a re-iterable sequence) through ``model_path`` and return the
    symmetric activation ranges of ``tensors`` (default: every float tensor) by ``method``:

    - ``minmax``: the largest |value| seen; ``moving-average``: the mean over batches of each batch's min and
      max (ONNX Runtime's ``CalibMovingAverage``), then symmetric;
    - ``entropy``: KL-divergence threshold (ONNX Runtime's) on a ``ENTROPY_BINS`` histogram over [-amax, amax]
      (128 quantized bins); ``percentile``: the ``PERCENTILE`` percentile of |value| on a ``PERCENTILE_BINS``
      histogram over [0, amax]. Both take a first min/max pass for amax, so the histograms have fixed bins and
      do not depend on how the data was split into batches (the same histogram as one pass over all images).
    """
    if method not in METHODS:
        raise ExportError(f"--calib-method {method!r} is not supported; use one of {', '.join(METHODS)}")
    onnx = require("onnx", "onnx", "INT8 calibration")
    ort = require("onnxruntime", "onnx", "INT8 calibration")
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))  # types and sizes of every tensor
    tensors = list(tensors) if tensors is not None else tensors_to_calibrate(proto)
    if not tensors:
        raise ExportError(f"{model_path}: no float tensors to calibrate")
    total = len(batches) if hasattr(batches, "__len__") else None
    first = next(iter(batches), None)
    if first is None:
        raise ExportError("calibration set is empty: no batches to calibrate on")
    fixed = _fixed_batch(proto)  # a fixed-batch model takes whole batches only: no sub-batches
    per_image = _measured_bytes_per_image(ort, proto, tensors,
                                          np.ascontiguousarray(first[:fixed or 1], dtype=np.float32))
    stats = _Stats(tensors)
    session = _session(ort, _augment(proto, tensors, reduce=True))
    # sub-batches bound the live activations (a batch of 32 at 224 px needs ~2.5 GiB on tf_efficientnetv2_s);
    # the budget counts every tensor, of which only a fraction is alive at a time
    chunk = fixed or max(1, (REDUCE_MEMORY_MB << 20) // per_image)
    for batch in progress(batches, total=total, desc=desc or f"calibrate ({method})"):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        for start in range(0, len(batch), chunk):
            stats.update(session(batch[start: start + chunk]), new_batch=start == 0)
        stats.images += len(batch)
    del session
    if not stats.batch_lows:
        raise ExportError("calibration set is empty: no batches to calibrate on")
    if method in ("minmax", "moving-average"):
        return stats.result(method)
    amax = stats.result("minmax").amax
    chunk = fixed or max(1, (memory_mb << 20) // per_image)
    histograms = _Histograms(method, tensors, amax)
    session = _session(ort, _augment(proto, tensors, reduce=False))
    del proto
    for batch in progress(batches, total=total, desc=f"calibrate ({method} histograms)"):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        for start in range(0, len(batch), chunk):
            histograms.update(session(batch[start: start + chunk]))
    return histograms.result(stats)


class _Stats:
    """Running min/max per tensor, overall and per batch."""

    def __init__(self, tensors: list[str]):
        self.tensors, self.images = tensors, 0
        self.batch_lows: list[np.ndarray] = []
        self.batch_highs: list[np.ndarray] = []

    def update(self, outputs, new_batch: bool = True) -> None:
        lows = np.array([float(o) for o in outputs[0::2]])
        highs = np.array([float(o) for o in outputs[1::2]])
        if new_batch:
            self.batch_lows.append(lows)
            self.batch_highs.append(highs)
        else:  # a later sub-batch of the same batch: the batch's min and max
            self.batch_lows[-1] = np.minimum(self.batch_lows[-1], lows)
            self.batch_highs[-1] = np.maximum(self.batch_highs[-1], highs)

    def result(self, method: str) -> ActivationRanges:
        lows, highs = np.array(self.batch_lows), np.array(self.batch_highs)
        if method == "moving-average":
            low, high = lows.mean(axis=0), highs.mean(axis=0)
        else:
            low, high = lows.min(axis=0), highs.max(axis=0)
        amax = np.maximum(np.abs(low), np.abs(high))
        return ActivationRanges(method, {n: float(a) for n, a in zip(self.tensors, amax)}, self.images,
                                {n: float(v) for n, v in zip(self.tensors, lows.min(axis=0))},
                                {n: (float(a), float(b)) for n, a, b in zip(self.tensors, low, high)})


class _Histograms:
    """Fixed-bin histograms per tensor; the thresholds come from ONNX Runtime's HistogramCollector."""

    def __init__(self, method: str, tensors: list[str], amax: dict[str, float]):
        self.method, self.tensors = method, tensors
        self.bins = ENTROPY_BINS if method == "entropy" else PERCENTILE_BINS
        self.limits = [max(amax[n], 1e-12) for n in tensors]
        self.counts = [np.zeros(self.bins, np.int64) for _ in tensors]

    def update(self, outputs) -> None:
        for i, values in enumerate(outputs):
            values = np.asarray(values, np.float32).ravel()
            if self.method == "percentile":
                values = np.abs(values)
            low = -self.limits[i] if self.method == "entropy" else 0.0
            self.counts[i] += np.histogram(values, bins=self.bins, range=(low, self.limits[i]))[0]

    def result(self, stats: _Stats) -> ActivationRanges:
        import contextlib
        import io

        from onnxruntime.quantization.calibrate import HistogramCollector

        collector = HistogramCollector(method=self.method, symmetric=True, num_bins=self.bins,
                                       num_quantized_bins=128, percentile=PERCENTILE, scenario="same")
        lows = np.array(stats.batch_lows).min(axis=0)
        highs = np.array(stats.batch_highs).max(axis=0)
        for i, name in enumerate(self.tensors):
            limit = np.float32(self.limits[i])
            low = -limit if self.method == "entropy" else np.float32(0)
            edges = np.linspace(low, limit, self.bins + 1, dtype=np.float32)
            entry = (self.counts[i], edges, np.float32(lows[i]), np.float32(highs[i]))
            collector.histogram_dict[name] = entry + ((limit,) if self.method == "entropy" else ())
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints progress lines here
            computed = collector.compute_collection_result()
        amax = {n: max(abs(float(computed[n][0])), abs(float(computed[n][1]))) for n in self.tensors}
        return ActivationRanges(self.method, amax, stats.images, {n: float(v) for n, v in zip(self.tensors, lows)})
