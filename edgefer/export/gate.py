"""Accuracy-gated INT8: search calibration recipes and FP32 fallbacks until the macro-F1 drop is within a bound.

``search`` quantizes the FP32 ONNX with one recipe at a time (``qdq.quantize_qdq`` for onnx/tensorrt,
``openvino.quantize_openvino`` for openvino), scores every attempt on the labelled validation images against
the FP32 reference and keeps going until an attempt passes or the budget is spent:

- Stage A, calibration recipes: Q/DQ methods moving-average, minmax, entropy, percentile; NNCF presets
  mixed / performance and mixed with the full bias correction.
- Stage B, only when no Stage-A recipe passes: for OpenVINO first one ``nncf.quantize_with_accuracy_control``
  attempt on the same macro-F1; then the gate's own sensitive-layer fallback: the quantized layers (every node
  with a quantized input: Conv, Gemm, but also the Mul/Sigmoid/Add of SiLU, SE and residuals) of the best
  Stage-A attempt are ranked by the quantization error they ADD (relative L2 error of the layer's output in the INT8 graph against the FP32 graph, minus that of its input before its own
  quantizer; one pass of both graphs over a few calibration images), then the top 1, 2, 4, 8, ... layers
  are kept in floating point, and once one passes the count is bisected down.

The drop is ABSOLUTE macro-F1: ``max_drop=0.005`` allows FP32 0.6200 -> INT8 0.6150 (0.5 percentage points).
The fastest passing attempt is chosen. For onnx and openvino that is the batch-1 latency measured here with the
deployment runtime (latencies within ``LATENCY_TIE`` tie, the higher macro-F1 wins). For tensorrt it is the
attempt with the fewest layers in floating point (then the higher macro-F1): ONNX Runtime on a CPU runs the
symmetric-INT8 Q/DQ graph TensorRT needs slower than FP32, so its latency says nothing about the engine.
Every attempt is reported, with its CPU latency.
"""

from __future__ import annotations

import contextlib
import glob
import io
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError, require
from ..fileio import atomic_path, write_json
from ..metrics import classification_report
from ..preprocess import prepare
from ..progress import progress
from ..spec import ModelSpec
from . import check
from .calibration import CalibrationSet
from .qdq import CALIB_METHODS

QDQ_RECIPES = tuple({"method": method} for method in CALIB_METHODS)
OPENVINO_RECIPES = (
    {"preset": "mixed", "fast_bias_correction": True},
    {"preset": "performance", "fast_bias_correction": True},
    {"preset": "mixed", "fast_bias_correction": False},
)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED_OPENVINO_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
DROP_UNITS = "an absolute macro-F1 difference; 0.005 = 0.5 percentage points"
SENSITIVITY_MEASURE = ("added relative L2 error: ||int8 - fp32|| / ||fp32|| of the layer output minus the same "
                       "for its input before its own quantizer, INT8 graph of the best Stage-A recipe vs FP32")
LATENCY_TIE = 0.10  # latencies within 10 % are measurement noise on a shared CPU: prefer the higher macro-F1
SELECTION_BY_LATENCY = f"fastest passing attempt; latencies within {LATENCY_TIE:.0%} tie, higher macro-F1 wins"
SELECTION_BY_STRUCTURE = ("passing attempt with the fewest layers in floating point (the most INT8 for TensorRT), "
                          "then the higher macro-F1; CPU latencies of TensorRT Q/DQ graphs are not a TensorRT proxy")
SENSITIVITY_CHUNK = 4  # images per forward pass of the sensitivity probes
LATENCY_RUNS, LATENCY_WARMUP, LATENCY_SECONDS = 30, 5, 0.25  # at least 30 runs and 0.25 s (tiny models: more runs)


@dataclass(frozen=True)
class Budget:
    """At most ``attempts`` quantizations and (when set) ``seconds`` of wall time; at least one attempt runs."""

    attempts: int = 12
    seconds: float | None = None

    def validate(self) -> Budget:
        if self.attempts < 1:
            raise ExportError(f"--gate-budget must be >= 1 attempt, got {self.attempts}")
        if self.seconds is not None and self.seconds <= 0:
            raise ExportError(f"--gate-seconds must be > 0, got {self.seconds}")
        return self


def validate_max_drop(max_drop: float) -> float:
    if not 0.0 <= float(max_drop) < 1.0:
        raise ExportError(f"--max-drop {max_drop} is outside [0, 1): it is {DROP_UNITS}")
    return float(max_drop)


def validate_min_agreement(min_agreement: float | None) -> float | None:
    if min_agreement is not None and not 0.0 <= float(min_agreement) <= 1.0:
        raise ExportError(f"--min-agreement {min_agreement} is outside [0, 1]: it is the fraction of validation "
                          f"images whose top-1 class INT8 and FP32 agree on (0.995 = 99.5 %)")
    return None if min_agreement is None else float(min_agreement)


def search(
    fp32_onnx: str | Path,
    target: str,
    calib: CalibrationSet,
    spec: ModelSpec,
    images: np.ndarray,
    labels: np.ndarray,
    out_path: str | Path,
    *,
    max_drop: float,
    min_agreement: float | None = None,
    budget: Budget = Budget(),
    reference: np.ndarray | None = None,
    keep_fp=(),
    report_path: str | Path | None = None,
    batch_size: int = 32,
    quantize_bias: bool = False,
    subset_size: int | None = None,
    sensitivity_images: int = 32,
) -> dict:
    """Find an INT8 recipe for ``target`` whose macro-F1 on (``images``, ``labels``) is at most ``max_drop``
    below the FP32 model's (and, with ``min_agreement``, whose top-1 agreement with FP32 is at least that);
    write it to ``out_path`` and return the search report (every attempt).

    ``reference``: FP32 logits on ``images`` (computed when None). ``keep_fp``: node patterns the user keeps
    in floating point in every attempt. When nothing passes, the report is written to ``report_path`` (if
    given) and an ``ExportError`` names the best attempt and the bound.
    """
    max_drop, budget = validate_max_drop(max_drop), budget.validate()
    min_agreement = validate_min_agreement(min_agreement)
    if labels is None or len(labels) == 0:
        raise ExportError("--max-drop needs labelled validation images: pass --data PATH (FER2013 CSV or image "
                          "folders with class names)")
    quantizer = _OpenVINOQuantizer if target == "openvino" else _QDQQuantizer
    quantizer = quantizer(fp32_onnx, calib, spec, keep_fp, batch_size=batch_size, quantize_bias=quantize_bias,
                          subset_size=subset_size, validation=(images, labels, max_drop, budget.attempts))
    if reference is None:
        reference = check.logits(fp32_onnx, images, spec, desc="gate fp32 reference")
    reference_report = classification_report(labels, reference.argmax(1), spec.labels)
    report = {
        "max_drop": max_drop, "drop_units": DROP_UNITS, "min_agreement": min_agreement, "metric": "macro_f1",
        "n": int(len(labels)),
        "quantizer": quantizer.name, "keep_fp": list(keep_fp),
        "budget": {"attempts": budget.attempts, "seconds": budget.seconds},
        "reference": {"file": Path(fp32_onnx).name, "macro_f1": reference_report["macro_f1"],
                      "accuracy": reference_report["accuracy"], "per_class_f1": _per_class_f1(reference_report)},
        "latency": {"batch": 1, "runs": f"at least {LATENCY_RUNS} and {LATENCY_SECONDS} s", "warmup": LATENCY_WARMUP,
                    "runtime": quantizer.runtime,
                    "statistic": "median ms on this machine"},
        "selection": SELECTION_BY_STRUCTURE if target == "tensorrt" else SELECTION_BY_LATENCY,
        "attempts": [],
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgefer-int8-gate-") as tmp:
        run = _Search(quantizer, Path(tmp), reference, reference_report, images, labels, spec,
                      (max_drop, min_agreement), budget, report["attempts"], start)
        for recipe in progress(quantizer.recipes, total=len(quantizer.recipes), desc="int8 gate: recipes"):
            if not run.attempt("A", recipe, []):
                break
        for recipe in quantizer.fallback_recipes(run.best()["recipe"]):  # OpenVINO: NNCF's own accuracy control
            if run.passed() or not run.attempt("B", recipe, []):
                break
        if not run.passed() and run.can_continue():
            report["sensitivity"] = run.fallback(sensitivity_images)
        report["seconds"] = round(time.perf_counter() - start, 3)
        chosen = _choose(report["attempts"], by_latency=target != "tensorrt")
        report["passed"] = chosen is not None
        report["chosen"] = None if chosen is None else chosen["index"]
        if chosen is None:
            if report_path is not None:
                write_json(report_path, report)
            raise ExportError(_failure_message(report, report_path))
        quantizer.copy(run.files[chosen["index"]], Path(out_path))
    if report_path is not None:
        Path(report_path).unlink(missing_ok=True)  # a failed earlier run's report would now be stale
    return report


class _Search:
    """The attempt loop: quantize, score, time, record; Stage B's ranking and exclusion schedule."""

    def __init__(self, quantizer, folder, reference, reference_report, images, labels, spec, bounds, budget,
                 attempts, start):
        self.quantizer, self.folder, self.reference, self.reference_report = quantizer, folder, reference, \
            reference_report
        self.images, self.labels, self.spec, self.bounds, self.budget = images, labels, spec, bounds, budget
        self.attempts, self.start, self.files = attempts, start, {}

    def can_continue(self) -> bool:
        elapsed = time.perf_counter() - self.start
        return len(self.attempts) < self.budget.attempts and (self.budget.seconds is None
                                                              or elapsed < self.budget.seconds)

    def passed(self) -> bool:
        return any(a["passed"] for a in self.attempts)

    def best(self) -> dict:
        """The Stage-A attempt with the smallest drop (then the highest agreement)."""
        return min((a for a in self.attempts if a["stage"] == "A"), key=_closest)

    def attempt(self, stage: str, recipe: dict, excluded: list[str]) -> dict | None:
        """One quantization + evaluation; None when the budget is spent."""
        if not self.can_continue():
            return None
        index = len(self.attempts)
        path = self.folder / f"attempt-{index}{self.quantizer.suffix}"
        clock = time.perf_counter()
        info = self.quantizer.quantize(recipe, excluded, path)
        excluded = info.get("fp32_layers", excluded)  # NNCF accuracy control decides its own
        logits = check.logits(path, self.images, self.spec, desc=f"int8 gate attempt {index}")
        scored = classification_report(self.labels, logits.argmax(1), self.spec.labels)
        drop = self.reference_report["macro_f1"] - scored["macro_f1"]
        compared = {k: v for k, v in check.compare(self.reference, logits).items() if k != "n"}
        max_drop, min_agreement = self.bounds
        shortfall = max(drop - max_drop, 0.0) + max((min_agreement or 0.0) - compared["top1_agreement"], 0.0)
        entry = {
            "index": index, "stage": stage, "recipe": dict(recipe), "excluded": list(excluded),
            "excluded_count": len(excluded), "macro_f1": scored["macro_f1"], "accuracy": scored["accuracy"],
            "macro_f1_drop": drop, **compared, "shortfall": shortfall, "passed": shortfall <= 1e-12,
            "per_class_f1": _per_class_f1(scored), "latency_ms": _latency_ms(path, self.spec),
            "quantization_seconds": info["seconds"], "seconds": round(time.perf_counter() - clock, 3),
        }
        self.attempts.append(entry)
        self.files[index] = path
        return entry

    def fallback(self, sensitivity_images: int) -> dict:
        """Stage B: rank the quantized layers of the best Stage-A attempt, then keep the top k in FP32."""
        base = self.best()
        clock = time.perf_counter()
        x = prepare(self.quantizer.calib.images[:sensitivity_images], self.spec, color="gray")
        ranking = self.quantizer.sensitivity(self.files[base["index"]], x)
        summary = {"measure": SENSITIVITY_MEASURE, "base_attempt": base["index"], "images": int(len(x)),
                   "layers": len(ranking), "seconds": round(time.perf_counter() - clock, 3), "ranking": ranking[:20]}
        names = [layer["layer"] for layer in ranking]
        failed, passed = 0, None  # the largest failing and smallest passing k so far
        for k in _doubling(len(names)):
            entry = self.attempt("B", base["recipe"], names[:k])
            if entry is None:
                return summary
            if entry["passed"]:
                passed = k
                break
            failed = k
        while passed is not None and passed - failed > 1:  # fewer FP32 layers: bisect the count down
            k = (failed + passed) // 2
            entry = self.attempt("B", base["recipe"], names[:k])
            if entry is None:
                break
            failed, passed = (failed, k) if entry["passed"] else (k, passed)
        return summary


def _doubling(n: int):
    k = 1
    while k < n:
        yield k
        k *= 2
    if n:
        yield n


def _choose(attempts: list[dict], by_latency: bool = True) -> dict | None:
    """The fastest passing attempt; within LATENCY_TIE of the fastest, the highest macro-F1 (then fewest FP32
    layers, then the earliest). ``by_latency=False``: the fewest FP32 layers, then the highest macro-F1."""
    passing = [a for a in attempts if a["passed"]]
    if not passing:
        return None
    if not by_latency:
        return min(passing, key=lambda a: (a["excluded_count"], -a["macro_f1"], a["index"]))
    fastest = min(a["latency_ms"] for a in passing)
    tied = [a for a in passing if a["latency_ms"] <= fastest * (1 + LATENCY_TIE)]
    return min(tied, key=lambda a: (-a["macro_f1"], a["excluded_count"], a["index"]))


def _closest(attempt: dict) -> tuple:
    """Sort key: the smallest shortfall from the bounds (drop above --max-drop plus agreement below
    --min-agreement), then the smallest drop, then the highest agreement."""
    return attempt["shortfall"], attempt["macro_f1_drop"], -attempt["top1_agreement"]


def _failure_message(report: dict, report_path) -> str:
    best = min(report["attempts"], key=_closest)
    where = f"; every attempt is listed in {report_path}" if report_path else ""
    agreement = f" and top-1 agreement at least {report['min_agreement']:g}" if report["min_agreement"] else ""
    return (f"INT8 gate: no recipe kept the macro-F1 drop within --max-drop {report['max_drop']:g} ({DROP_UNITS})"
            f"{agreement} after {len(report['attempts'])} attempt(s) in {report['seconds']:.0f} s; FP32 macro-F1 "
            f"{report['reference']['macro_f1']:.4f}, best attempt #{best['index']} {describe_attempt(best)}: macro-F1 "
            f"{best['macro_f1']:.4f} (drop {best['macro_f1_drop']:.4f}, top-1 agreement {best['top1_agreement']:.4f})"
            f"{where}; relax the bound, raise --gate-budget, or use --fp16")


def describe_attempt(attempt: dict) -> str:
    """``method=moving-average, 2 layer(s) in FP32``: an attempt's recipe in one phrase."""
    recipe = ", ".join(f"{k}={v}" for k, v in attempt["recipe"].items())
    return f"{recipe}, {attempt['excluded_count']} layer(s) in FP32"


def _per_class_f1(report: dict) -> dict:
    return {name: values["f1"] for name, values in report["per_class"].items()}


def _latency_ms(path: Path, spec: ModelSpec) -> float:
    """Median batch-1 latency (ms) of a model file with the export checks' runtime (ORT or OpenVINO, CPU):
    at least LATENCY_RUNS runs and LATENCY_SECONDS of them (at most 1000 runs)."""
    run = check.runner(path)
    x = np.zeros((1, spec.channels, *_size(spec)), np.float32)
    for _ in range(LATENCY_WARMUP):
        run(x)
    times: list[float] = []
    while len(times) < LATENCY_RUNS or (sum(times) < LATENCY_SECONDS and len(times) < 1000):
        clock = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - clock)
    return round(float(np.median(times)) * 1000, 4)


def _size(spec: ModelSpec) -> tuple[int, int]:
    size = spec.input_size
    return (size, size) if isinstance(size, int) else tuple(size)


def _relative_errors(fp32_run, int8_run, x: np.ndarray) -> dict:
    """||int8 - fp32|| / ||fp32|| per tensor over all of ``x``, accumulated SENSITIVITY_CHUNK images at a time
    (every intermediate tensor of a large model at once would not fit in memory)."""
    squared_error: dict = {}
    squared_norm: dict = {}
    for start in range(0, len(x), SENSITIVITY_CHUNK):
        batch = x[start : start + SENSITIVITY_CHUNK]
        reference, other = fp32_run(batch), int8_run(batch)
        for name, value in reference.items():
            if name not in other:  # a tensor the quantized graph no longer has
                continue
            value = np.asarray(value, np.float64)
            squared_error[name] = squared_error.get(name, 0.0) + float(((np.asarray(other[name]) - value) ** 2).sum())
            squared_norm[name] = squared_norm.get(name, 0.0) + float((value**2).sum())
    return {n: float(np.sqrt(squared_error[n]) / (np.sqrt(squared_norm[n]) + 1e-12)) for n in squared_error}


def _rank(layers: list[tuple[str, str, list[str], str]], errors: dict) -> list[dict]:
    """``layers``: (name, op type, input tensors before their quantizer, output tensor); ``errors``: relative
    error per tensor; most sensitive (largest added error) first."""
    ranking = []
    for name, op, inputs, output in layers:
        if output not in errors or any(t not in errors for t in inputs):
            continue
        error_in = max((errors[t] for t in inputs), default=0.0)
        error_out = errors[output]
        ranking.append({"layer": name, "op": op, "error_in": round(error_in, 6), "error_out": round(error_out, 6),
                        "added_error": round(error_out - error_in, 6)})
    return sorted(ranking, key=lambda layer: -layer["added_error"])


class _QDQQuantizer:
    """ONNX Runtime Q/DQ INT8 (the TensorRT / ONNX Runtime graph); layers are ONNX node names."""

    name, runtime, suffix, recipes = "onnxruntime-qdq", "onnxruntime", ".onnx", QDQ_RECIPES

    def __init__(self, fp32_onnx, calib, spec, keep_fp, *, batch_size, quantize_bias, subset_size, validation=None):
        self.fp32_onnx, self.calib, self.spec, self.keep_fp = Path(fp32_onnx), calib, spec, tuple(keep_fp)
        self.batch_size, self.quantize_bias = batch_size, quantize_bias

    def fallback_recipes(self, base: dict) -> list[dict]:
        return []

    def quantize(self, recipe: dict, excluded: list[str], path: Path) -> dict:
        from .qdq import quantize_qdq

        keep = (*self.keep_fp, *(glob.escape(name) for name in excluded))
        with contextlib.redirect_stdout(io.StringIO()):  # ORT's entropy/percentile calibrators print() progress
            info = quantize_qdq(self.fp32_onnx, self.calib, self.spec, path, method=recipe["method"], keep_fp=keep,
                                batch_size=self.batch_size, quantize_bias=self.quantize_bias)
        if excluded:
            _float_inputs(path, set(excluded))
        return info

    def copy(self, source: Path, target: Path) -> None:
        shutil.copyfile(source, target)

    def sensitivity(self, int8_path: Path, x: np.ndarray) -> list[dict]:
        """Rank the quantized nodes of a Q/DQ graph against the FP32 graph as ORT pre-processes it
        (the graph ``quantize_qdq`` quantized, so tensor names match)."""
        onnx = require("onnx", "onnx", "INT8 sensitivity analysis")
        from onnxruntime.quantization.shape_inference import quant_pre_process

        int8 = onnx.load(str(int8_path))
        producers = {out: node for node in int8.graph.node for out in node.output}

        def before_quantizer(tensor: str) -> str | None:
            node = producers.get(tensor)
            if node is None or node.op_type != "DequantizeLinear":
                return tensor if node is not None else None
            quantize = producers.get(node.input[0])  # weights: DQ of an initializer, no QuantizeLinear
            return quantize.input[0] if quantize is not None and quantize.op_type == "QuantizeLinear" else None

        # a graph output gets Q/DQ too: the node then writes "<output>_QuantizeLinear_Input" instead of "<output>"
        renamed = {n.input[0]: n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
        fp32_name = {n.input[0]: renamed.get(n.output[0], n.input[0]) for n in int8.graph.node
                     if n.op_type == "QuantizeLinear"}
        layers = []
        for node in int8.graph.node:
            if node.op_type in QDQ_OPS or not any(
                    producers.get(t) is not None and producers[t].op_type == "DequantizeLinear" for t in node.input):
                continue
            inputs = [t for t in map(before_quantizer, node.input) if t]
            layers.append((node.name, node.op_type, inputs, node.output[0]))
        with tempfile.TemporaryDirectory(prefix="edgefer-sensitivity-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(self.fp32_onnx), str(prepared))
            fp32 = onnx.load(str(prepared))
        if not fp32.graph.value_info:
            fp32 = onnx.shape_inference.infer_shapes(fp32)
        typed = (*fp32.graph.value_info, *fp32.graph.input, *fp32.graph.output)
        known = {v.name for v in typed if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}  # not Shape's int64
        int8_to_fp32 = {t: t if t in known else fp32_name.get(t, t) for _, _, inputs, output in layers
                        for t in (*inputs, output)}
        layers = [(name, op, [int8_to_fp32[t] for t in inputs], int8_to_fp32[output])
                  for name, op, inputs, output in layers]
        layers = [layer for layer in layers if layer[3] in known and all(t in known for t in layer[2])]
        wanted = {i8: f for i8, f in int8_to_fp32.items() if f in known}
        int8_run = _onnx_probe(int8, list(wanted))
        errors = _relative_errors(_onnx_probe(fp32, sorted(set(wanted.values()))),
                                  lambda batch: {wanted[k]: v for k, v in int8_run(batch).items()}, x)
        return _rank(layers, errors)


def _float_inputs(path: Path, names: set[str]) -> None:
    """Feed the named nodes their activations unquantized (the input of their QuantizeLinear), drop the Q/DQ
    pairs nothing else reads, and save in place (metadata kept).

    ONNX Runtime's ``nodes_to_exclude`` keeps an excluded node's weights in FP32 but still quantizes the
    activation it reads whenever the producer is quantized; TensorRT runs a layer in floating point only
    when no Q/DQ pair precedes it, and so must the excluded layer here."""
    import onnx

    proto = onnx.load(str(path))
    nodes = list(proto.graph.node)
    producers = {out: node for node in nodes for out in node.output}
    for node in nodes:
        if node.name not in names:
            continue
        for i, tensor in enumerate(node.input):
            dequantize = producers.get(tensor)
            quantize = producers.get(dequantize.input[0]) if dequantize is not None \
                and dequantize.op_type == "DequantizeLinear" else None
            if quantize is not None and quantize.op_type == "QuantizeLinear":
                node.input[i] = quantize.input[0]
    while True:  # remove Q/DQ nodes whose outputs nobody reads any more
        read = {t for node in proto.graph.node for t in node.input} | {o.name for o in proto.graph.output}
        unused = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and not any(o in read for o in n.output)]
        if not unused:
            break
        for node in unused:
            proto.graph.node.remove(node)
    used = {t for node in proto.graph.node for t in node.input}
    for initializer in [t for t in proto.graph.initializer if t.name not in used]:
        proto.graph.initializer.remove(initializer)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def _onnx_probe(proto, names: list[str]):
    """A function ``x -> {name: value}`` for the named tensors (graph inputs or node outputs) of an ONNX model
    (ORT CPU, the tensors exposed as extra graph outputs)."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in outputs and n not in inputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    fetch = [n for n in names if n not in inputs]

    def run(x: np.ndarray) -> dict:
        values = dict(zip(fetch, session.run(fetch, {model.graph.input[0].name: x})))
        values.update({n: x for n in names if n in inputs})
        return values

    return run


class _OpenVINOQuantizer:
    """NNCF post-training INT8 on the OpenVINO model; layers are OpenVINO op friendly names."""

    name, runtime, suffix, recipes = "nncf", "openvino (INFERENCE_PRECISION_HINT=f32)", ".xml", OPENVINO_RECIPES

    def __init__(self, fp32_onnx, calib, spec, keep_fp, *, batch_size, quantize_bias, subset_size, validation=None):
        self.fp32_onnx, self.calib, self.spec, self.keep_fp = Path(fp32_onnx), calib, spec, tuple(keep_fp)
        self.subset_size, self.validation = subset_size, validation

    def fallback_recipes(self, base: dict) -> list[dict]:
        """``nncf.quantize_with_accuracy_control`` with the best Stage-A preset, before the gate's own ranking."""
        return [{**base, "accuracy_control": True}] if self.validation is not None else []

    def quantize(self, recipe: dict, excluded: list[str], path: Path) -> dict:
        from .openvino import quantize_openvino

        nncf = require("nncf", "openvino", "OpenVINO INT8 quantization")
        if recipe.get("accuracy_control"):
            return self._accuracy_control(nncf, recipe, path)
        return quantize_openvino(self.fp32_onnx, self.calib, self.spec, path, preset=recipe["preset"],
                                 keep_fp=self.keep_fp, ignored_scope=nncf.IgnoredScope(names=list(excluded)),
                                 subset_size=self.subset_size, fast_bias_correction=recipe["fast_bias_correction"])

    def _accuracy_control(self, nncf, recipe: dict, path: Path) -> dict:
        """NNCF reverts the ops it ranks worst (by the distance of the logits to FP32) until its own macro-F1
        drop on the validation images is within the bound; it validates with OpenVINO's default CPU precision."""
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        from .openvino import read_model, resolve_ops, save_ir

        images, labels, max_drop, iterations = self.validation
        model = read_model(self.fp32_onnx)
        items = [(prepare(images[i : i + 1], self.spec, color="gray"), int(labels[i])) for i in range(len(images))]

        def validation_fn(compiled, data):
            data = list(data)
            outputs = [np.asarray(compiled(x)[0]) for x, _ in data]
            report = classification_report([y for _, y in data], [int(o.argmax()) for o in outputs], self.spec.labels)
            return report["macro_f1"], [[o] for o in outputs]  # per-item logits: NNCF ranks by their distance

        start = time.perf_counter()
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(self.calib.batches(self.spec, 1)), nncf.Dataset(items, lambda item: item[0]),
            validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
            preset=nncf.QuantizationPreset.MIXED if recipe["preset"] == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
            subset_size=min(int(self.subset_size or len(self.calib)), len(self.calib)),
            fast_bias_correction=recipe["fast_bias_correction"],
            ignored_scope=nncf.IgnoredScope(names=resolve_ops(model, self.keep_fp)),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(max_num_iterations=iterations))
        info = {"quantizer": "nncf.quantize_with_accuracy_control", "nncf_version": nncf.__version__,
                "preset": recipe["preset"], "fast_bias_correction": recipe["fast_bias_correction"],
                "max_drop": max_drop, "fp32_layers": _unquantized_ops(quantized), "calib_images": len(self.calib),
                "seconds": round(time.perf_counter() - start, 3)}
        save_ir(quantized, path, self.spec.replace(precision="int8", extra={**self.spec.extra, "quantization": info}),
                compress_to_fp16=False)
        return info

    def copy(self, source: Path, target: Path) -> None:
        shutil.copyfile(source.with_suffix(".bin"), target.with_suffix(".bin"))
        shutil.copyfile(source, target)

    def sensitivity(self, int8_path: Path, x: np.ndarray) -> list[dict]:
        """Rank the ops fed by a FakeQuantize in the NNCF IR against the FP32 model (same op names)."""
        from .openvino import read_model

        int8 = read_model(int8_path)
        layers = []
        for op in int8.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize":
                continue
            sources = [port.get_source_output() for port in op.inputs()]
            if not any(map(_is_fake_quantize, sources)):
                continue
            inputs = [_port_name(s.get_node().input(0).get_source_output()) for s in sources
                      if _is_fake_quantize(s)
                      and s.get_node().input(0).get_source_output().get_node().get_type_name() != "Constant"]
            layers.append((op.get_friendly_name(), op.get_type_name(), inputs, _port_name(op.output(0))))
        tensors = sorted({t for _, _, inputs, output in layers for t in (*inputs, output)})
        available, fp32_run = _openvino_probe(read_model(self.fp32_onnx), tensors)
        layers = [layer for layer in layers if layer[3] in available and all(t in available for t in layer[2])]
        return _rank(layers, _relative_errors(fp32_run, _openvino_probe(int8, available)[1], x))


def _unquantized_ops(model) -> list[str]:
    """Weighted ops with no FakeQuantize on any input: the layers an NNCF model runs in floating point."""
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in WEIGHTED_OPENVINO_OPS
            and not any(_is_fake_quantize(port.get_source_output()) for port in op.inputs())]


def _is_fake_quantize(output) -> bool:
    return output.get_node().get_type_name() == "FakeQuantize"


def _port_name(output) -> str:
    return f"{output.get_node().get_friendly_name()}:{output.get_index()}"


def _openvino_probe(model, names: list[str]):
    """(the names found, a function ``x -> {name: value}``) for ``op friendly name:port`` outputs of an OpenVINO
    model (CPU, f32, exposed as extra outputs); names the model lacks are left out."""
    import openvino as ov

    ports = {_port_name(op.output(i)): op.output(i) for op in model.get_ordered_ops()
             for i in range(op.get_output_size())}
    wanted = [n for n in names if n in ports]
    model.add_outputs([ports[n] for n in wanted])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    offset = len(compiled.outputs) - len(wanted)

    def run(x: np.ndarray) -> dict:
        results = request.infer({0: x})
        return {n: np.array(results[compiled.outputs[offset + i]]) for i, n in enumerate(wanted)}

    return wanted, run
