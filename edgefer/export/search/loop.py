"""The accuracy-bounded INT8 search: try recipes, then floating-point fallbacks, until the macro-F1 drop against
FP32 on labelled validation images is within ``--max-drop`` (docs/int8_search.md). Convolutions leave INT8 last:

- Stage A, recipes: the quantizer's calibration recipes (Q/DQ: moving-average, minmax, entropy, percentile;
  NNCF: mixed / performance presets and mixed with the full bias correction), then its recipe variants with the
  best of them (Q/DQ: the other placement, when ``qdq.quantize_qdq`` offers one).
- Stage B, only when no recipe passes: the quantized layers of the best Stage-A attempt are ranked by the
  quantization error they ADD (the quantizer's sensitivity probe); the top 1, 2, 4, ... NON-convolution layers
  (SiLU, squeeze-excitation, residual additions, pooling) are kept in floating point; every convolution stays
  INT8. Once one passes the count is bisected down.
- Stage QAT, only when Stage B cannot pass, the source is an edgefer checkpoint and the quantizer makes Q/DQ
  graphs: ``--search-qat-epochs`` epochs of quantization-aware fine-tuning (``edgefer.qat``, NVIDIA ModelOpt,
  every convolution INT8); skipped with a note when the ``qat`` extra is missing.
- Stage C, only when neither passes: the quantizer's fallback recipes (NNCF: one
  ``nncf.quantize_with_accuracy_control`` attempt), then every non-convolution layer in floating point plus the
  top 1, 2, 4, ... ranked convolution layers; once one passes the count is bisected down.

Every attempt is scored and timed through ``edgefer.check`` / ``edgefer.runtime`` (the deployment settings),
its share of convolution MACs in INT8 counted (``quantizers.macs``), recorded as an ``Attempt``, and the kept
one is chosen by ``selection.choose``.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.sampling import stratified_sample
from ...errors import ExportError
from ...fileio import write_json
from ...progress import progress
from .. import check
from ..calibration import Batches
from ..config import DROP_UNITS, QuantOptions, SearchOptions
from ..quantizers import create
from ..quantizers.base import SENSITIVITY_MEASURE
from .records import Attempt
from .selection import SELECTION_BY_LATENCY, SELECTION_BY_STRUCTURE, choose, closest, failure_message


@dataclass(frozen=True)
class SearchInputs:
    """What the search quantizes and scores: the FP32 ONNX, its spec, the calibration set, the labelled check
    images and the FP32 logits on them (None: computed)."""

    fp32_onnx: Path
    spec: object
    calib: object
    images: np.ndarray
    labels: np.ndarray
    reference: np.ndarray | None = None
    classes: tuple | None = None  # the check images' class names (default: the model's labels, same order)
    qat_source: tuple | None = None  # (checkpoint, training data or None): the QAT stage may run

    def match(self):
        return check.match_labels(self.spec.labels if self.classes is None else self.classes, self.spec.labels)


def run(inputs: SearchInputs, out_path: str | Path, options: SearchOptions, quant: QuantOptions, *,
        target: str, quantize_bias: bool = False, report_path: str | Path | None = None,
        sensitivity_images: int = 32) -> dict:
    """Find an INT8 recipe (quantizer ``quant.quantizer``) whose macro-F1 on the check images is at most
    ``options.max_drop`` below FP32's (and whose top-1 agreement is at least ``options.min_agreement``); write it
    to ``out_path`` and return the search report (export.json ``int8_search``). When nothing passes the report is
    written to ``report_path`` (if given) and an ``ExportError`` names the best attempt and the bound."""
    options = options.validate()
    images, labels, spec = inputs.images, inputs.labels, inputs.spec
    if labels is None or len(labels) == 0:
        raise ExportError("--max-drop needs labelled validation images: pass --data PATH (FER2013 CSV or image "
                          "folders with class names)")
    quantizer = create(quant.quantizer, inputs.fp32_onnx, inputs.calib, spec, quant, quantize_bias=quantize_bias,
                       validation=(images, labels, options.max_drop, options.attempts),
                       trt_cache=target == "tensorrt")
    reference = inputs.reference
    if reference is None:
        reference = check.logits(inputs.fp32_onnx, images, spec, desc="int8 search: fp32 reference")
    reference_report = check.report_by_name(inputs.match(), labels, reference)
    report = {
        "max_drop": float(options.max_drop), "drop_units": DROP_UNITS, "min_agreement": options.min_agreement,
        "metric": "macro_f1", "n": int(len(labels)), "quantizer": quantizer.name, "keep_fp": list(quant.keep_fp),
        "budget": {"attempts": options.attempts, "seconds": options.seconds},
        "reference": {"file": Path(inputs.fp32_onnx).name, "macro_f1": reference_report["macro_f1"],
                      "accuracy": reference_report["accuracy"], "per_class_f1": _per_class_f1(reference_report)},
        "latency": {"batch": 1, "runs": f"at least {check.LATENCY_RUNS} and {check.LATENCY_SECONDS} s",
                    "warmup": check.LATENCY_WARMUP, "runtime": quantizer.runtime,
                    "statistic": "median ms on this machine"},
        "selection": SELECTION_BY_STRUCTURE if target == "tensorrt" else SELECTION_BY_LATENCY,
        "attempts": [],
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgefer-int8-search-") as tmp:
        search = _Search(quantizer, Path(tmp), reference, reference_report, inputs, options, start)
        for recipe in progress(quantizer.recipes, total=len(quantizer.recipes), desc="int8 search: recipes"):
            if not search.attempt("A", recipe, []):
                break
        for recipe in quantizer.recipe_variants(search.best().recipe):
            if search.passed() or not search.attempt("A", recipe, []):
                break
        if not search.passed() and search.can_continue():
            report["sensitivity"] = search.fallback(sensitivity_images)
        if search.qat_note:
            report["qat"] = search.qat_note
        report["seconds"] = round(time.perf_counter() - start, 3)
        report["attempts"] = [a.to_json() for a in search.attempts]
        chosen = choose(search.attempts, by_latency=target != "tensorrt")
        report["passed"] = chosen is not None
        report["chosen"] = None if chosen is None else chosen.index
        report["conv_macs_int8"] = None if chosen is None else chosen.conv_macs_int8
        if chosen is None:
            if report_path is not None:
                write_json(report_path, report)
            raise ExportError(failure_message(report, search.attempts, report_path))
        quantizer.copy(search.files[chosen.index], Path(out_path))
    return report


class _Search:
    """The attempt loop: quantize, score, time, record; Stage B's ranking and exclusion schedule."""

    def __init__(self, quantizer, folder: Path, reference, reference_report, inputs: SearchInputs,
                 options: SearchOptions, start: float):
        self.quantizer, self.folder, self.reference, self.reference_report = quantizer, folder, reference, \
            reference_report
        self.inputs, self.options, self.start = inputs, options, start
        self.attempts: list[Attempt] = []
        self.files: dict[int, Path] = {}
        self.qat_note: str | None = None

    def can_continue(self) -> bool:
        elapsed = time.perf_counter() - self.start
        return len(self.attempts) < self.options.attempts and (self.options.seconds is None
                                                               or elapsed < self.options.seconds)

    def passed(self) -> bool:
        return any(a.passed for a in self.attempts)

    def best(self) -> Attempt:
        """The Stage-A attempt with the smallest shortfall (then drop, then the highest agreement)."""
        return min((a for a in self.attempts if a.stage == "A"), key=closest)

    def attempt(self, stage: str, recipe: dict, excluded: list[str], produce=None) -> Attempt | None:
        """One quantization (``produce(path) -> info``, default: the quantizer with ``recipe``) + evaluation; None
        when the budget is spent."""
        if not self.can_continue():
            return None
        index = len(self.attempts)
        path = self.folder / f"attempt-{index}{self.quantizer.suffix}"
        clock = time.perf_counter()
        info = produce(path) if produce else self.quantizer.quantize(recipe, excluded, path)
        excluded = info.get("fp32_layers", excluded)  # NNCF accuracy control decides its own
        spec, labels = self.inputs.spec, self.inputs.labels
        layers = self.quantizer.layer_map(path)
        logits = check.logits(path, self.inputs.images, spec, desc=f"int8 search: attempt {index}")
        scored = check.report_by_name(self.inputs.match(), labels, logits)
        drop = self.reference_report["macro_f1"] - scored["macro_f1"]
        compared = check.compare(self.reference, logits)
        min_agreement = self.options.min_agreement
        shortfall = max(drop - self.options.max_drop, 0.0) + max((min_agreement or 0.0) - compared["top1_agreement"],
                                                                 0.0)
        entry = Attempt(
            index=index, stage=stage, recipe=dict(recipe), excluded=list(excluded), macro_f1=scored["macro_f1"],
            accuracy=scored["accuracy"], macro_f1_drop=drop, max_abs_logit_diff=compared["max_abs_logit_diff"],
            mean_abs_logit_diff=compared["mean_abs_logit_diff"], top1_agreement=compared["top1_agreement"],
            shortfall=shortfall, per_class_f1=_per_class_f1(scored), latency_ms=check.latency_ms(path),
            quantization_seconds=info["seconds"], seconds=round(time.perf_counter() - clock, 3),
            conv_macs_int8=layers.share()["share"], conv_macs={k: v for k, v in layers.share().items() if k != "share"},
            kept_in_float=layers.kept_in_float(excluded))
        self.attempts.append(entry)
        self.files[index] = path
        return entry

    def fallback(self, sensitivity_images: int) -> dict:
        """Stages B and C: rank the quantized layers of the best Stage-A attempt; keep the top k non-convolution
        layers in FP32 (B); if even all of them do not pass, the quantizer's fallback recipes, then all of them plus
        the top k convolution layers (C)."""
        base = self.best()
        clock = time.perf_counter()
        calib = self.quantizer.calib
        images = calib.images[np.sort(stratified_sample(calib.labels, sensitivity_images, seed=0))]
        x = np.concatenate(list(Batches(images, self.inputs.spec, len(images))))
        ranking = self.quantizer.sensitivity(self.files[base.index], x)
        convs = [layer["layer"] for layer in ranking if layer["op"] in self.quantizer.conv_ops]
        others = [layer["layer"] for layer in ranking if layer["op"] not in self.quantizer.conv_ops]
        summary = {"measure": SENSITIVITY_MEASURE, "base_attempt": base.index, "images": int(len(x)),
                   "layers": len(ranking), "conv_layers": len(convs), "non_conv_layers": len(others),
                   "seconds": round(time.perf_counter() - clock, 3), "ranking": ranking[:20]}
        if others:
            self._exclude("B", base.recipe, [], others)
        if self.passed() or not self.can_continue():
            return summary
        if self._qat() or not self.can_continue():
            return summary
        for recipe in self.quantizer.fallback_recipes(base.recipe):
            entry = self.attempt("C", recipe, [])
            if entry is None or entry.passed:
                return summary
        if convs:
            self._exclude("C", base.recipe, others, convs)
        return summary

    def _qat(self) -> bool:
        """The QAT stage (see the module docstring); True when its attempt passed."""
        epochs = self.options.qat_epochs
        if not epochs or self.inputs.qat_source is None or not self.quantizer.qat:
            return False
        if importlib.util.find_spec("modelopt") is None:
            self.qat_note = "skipped: quantization-aware fine-tuning needs pip install 'edgefer[qat]'"
            return False
        checkpoint, data = self.inputs.qat_source
        recipe = {"qat_epochs": epochs, "engine": "nvidia-modelopt"}
        entry = self.attempt("QAT", recipe, [], produce=lambda path: qat_graph(checkpoint, data, epochs, path))
        return entry is not None and entry.passed

    def _exclude(self, stage: str, recipe: dict, fixed: list[str], names: list[str]) -> None:
        """Keep ``fixed`` and the top 1, 2, 4, ... of ``names`` in FP32 until one passes (or all of ``names`` are
        in FP32, or the budget is spent), then bisect the count down."""
        failed, passed = 0, None  # the largest failing and smallest passing k so far
        for k in _doubling(len(names)):
            entry = self.attempt(stage, recipe, [*fixed, *names[:k]])
            if entry is None:
                return
            if entry.passed:
                passed = k
                break
            failed = k
        while passed is not None and passed - failed > 1:  # fewer FP32 layers: bisect the count down
            k = (failed + passed) // 2
            entry = self.attempt(stage, recipe, [*fixed, *names[:k]])
            if entry is None:
                break
            failed, passed = (failed, k) if entry.passed else (k, passed)


def qat_graph(checkpoint, data, epochs: int, path: Path) -> dict:
    """Fine-tune ``checkpoint`` with fake quantization (``edgefer.qat``) and write its Q/DQ ONNX to ``path``. Its
    TensorRT calibration cache is not copied: it names the tensors of the QAT graph, not of the export's FP32 ONNX."""
    import shutil

    from ...qat import ONNX_NAME, QatConfig, run_qat

    run = path.with_name(path.stem + "-qat-run")
    config = QatConfig(from_run=str(checkpoint), out=str(run), data=data, epochs=epochs, openvino=False,
                       exist_ok=True)
    result = run_qat(config, log=lambda message: None, command="edgefer export --max-drop (INT8 search, QAT stage)")
    shutil.copyfile(run / ONNX_NAME, path)
    return {"seconds": result.seconds["total"], "quantizer": "nvidia-modelopt QAT", "qat_epochs": epochs}


def _doubling(n: int):
    k = 1
    while k < n:
        yield k
        k *= 2
    if n:
        yield n


def _per_class_f1(report: dict) -> dict:
    return {name: values["f1"] for name, values in report["per_class"].items()}
