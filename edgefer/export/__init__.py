"""Export an edgefer checkpoint or a user's ONNX classifier to ONNX, OpenVINO or TensorRT-ready graphs.

``export(model, target, precision, out_dir, ...)`` validates the request first (one ExportError listing
what is supported), stages every file in a temporary directory inside ``out_dir``, checks the results
(PyTorch parity, agreement with the FP32 graph, accuracy/macro-F1 on validation images) and only then
moves the files into ``out_dir`` and writes ``export.json``. A failed export leaves no partial file.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import ExportError
from ..fileio import sha256_file, write_json
from .calibration import (
    DEFAULT_FLOOR,
    DEFAULT_SIZE,
    STRATEGIES,
    CalibrationSet,
    draw,
    from_data,
)
from .qdq import CALIB_METHODS, DEFAULT_CALIB_METHOD
from .source import Source, open_source
from .tensorrt import EngineOptions

FORMAT = "edgefer-export/1"
TARGETS = ("onnx", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
QUANTIZERS = {"onnx": ("ort",), "tensorrt": ("ort",), "openvino": ("nncf",)}
DEFAULT_QUANTIZER = {"tensorrt": "ort", "openvino": "nncf"}  # --target onnx --int8 must name one
CHECK_SIZE = 1000  # validation images used by the export's own checks
SUPPORTED = (
    "supported: --target onnx [--fp16 | --int8 --quantizer ort], --target openvino [--fp16 | --int8], "
    "--target tensorrt [--fp16 | --int8]; --int8 needs --data PATH or --calib BUNDLE"
)
TOOLS = ("edgefer", "numpy", "torch", "timm", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "tensorrt")

__all__ = ["CalibrationSet", "EngineOptions", "ExportError", "draw", "export", "from_data", "open_source",
           "validate_request"]


def validate_request(target: str, precision: str = "fp32", *, quantizer: str | None = None, data=None,
                     calib=None, calib_method: str = DEFAULT_CALIB_METHOD, calib_strategy: str = "stratified",
                     keep_fp=()) -> str:
    """Check a target/precision/quantizer/calibration combination before any work; return the quantizer."""
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; {SUPPORTED}")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r} (use fp32, --fp16 or --int8); {SUPPORTED}")
    if calib_method not in CALIB_METHODS:
        raise ExportError(f"--calib-method {calib_method!r} is not supported; use one of {', '.join(CALIB_METHODS)}")
    if calib_strategy not in STRATEGIES:
        raise ExportError(f"--calib-strategy {calib_strategy!r} is not supported; use one of {', '.join(STRATEGIES)}")
    if precision != "int8":
        given = [name for name, value in (("--quantizer", quantizer), ("--keep-fp", keep_fp), ("--calib", calib))
                 if value is not None and value != ()]
        if given:
            raise ExportError(f"{given[0]} only applies to --int8; {SUPPORTED}")
        return ""
    quantizer = quantizer or DEFAULT_QUANTIZER.get(target)
    if quantizer is None:
        raise ExportError(f"--target {target} --int8 needs a quantizer: add --quantizer ort (INT8 Q/DQ ONNX for "
                          f"ONNX Runtime), or use --target tensorrt --int8 / --target openvino --int8; {SUPPORTED}")
    if quantizer not in QUANTIZERS[target]:
        raise ExportError(f"--quantizer {quantizer!r} does not apply to --target {target} "
                          f"(use {', '.join(QUANTIZERS[target])}); {SUPPORTED}")
    if data is None and calib is None:
        raise ExportError(f"--int8 needs calibration images: --data PATH (FER2013 CSV or image folders) or "
                          f"--calib BUNDLE (from edgefer calibrate); {SUPPORTED}")
    return quantizer


def export(
    model,
    target: str,
    precision: str = "fp32",
    out_dir: str | Path = "export",
    *,
    data=None,
    calib=None,
    sidecar: str | Path | None = None,
    calib_size: int = DEFAULT_SIZE,
    calib_strategy: str = "stratified",
    calib_seed: int = 0,
    calib_floor: int = DEFAULT_FLOOR,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    quantizer: str | None = None,
    calib_method: str = DEFAULT_CALIB_METHOD,
    keep_fp=(),
    calib_batch_size: int = 32,
    preset: str = "mixed",
    subset_size: int | None = None,
    fast_bias_correction: bool = True,
    exporter: str = "auto",
    simplify: bool = False,
    parity_atol: float | None = None,
    check_size: int = CHECK_SIZE,
    engine: EngineOptions | None = None,
    build_engine: bool | None = None,
    max_drop: float | None = None,
    min_agreement: float | None = None,
    gate_budget: int = 12,
    gate_seconds: float | None = None,
) -> dict:
    """Export ``model`` (checkpoint path, ``.onnx`` path or a ``Source``) to ``target`` at ``precision``.

    ``data`` (path or ``Splits``) gives validation images for the checks and, for INT8, the training split
    to draw the calibration set from; ``calib`` (``CalibrationSet`` or bundle path) reuses a saved one.
    ``build_engine``: build a TensorRT engine (None: when ``tensorrt`` imports). Returns the export.json dict.
    ``max_drop`` (INT8 only): run the accuracy gate (``edgefer.export.gate``) instead of one quantization:
    an absolute macro-F1 drop bound on the validation split (0.005 = 0.5 points), searched within
    ``gate_budget`` attempts / ``gate_seconds``, optionally also requiring top-1 agreement with FP32 of at least
    ``min_agreement`` (a fraction); every attempt goes to export.json ``int8_search`` (or, when
    none passes, to ``out_dir/int8_search.json`` and an ``ExportError``).
    """
    quantizer = validate_request(target, precision, quantizer=quantizer, data=data, calib=calib,
                                 calib_method=calib_method, calib_strategy=calib_strategy, keep_fp=keep_fp)
    gate_options = _gate_options(precision, data, max_drop, min_agreement, gate_budget, gate_seconds, Path(out_dir))
    engine_options = None
    if target == "tensorrt":
        engine_options = dataclasses.replace(engine or EngineOptions(), precision=precision).validate()
    timings: dict = {}
    clock = time.perf_counter()
    source = model if isinstance(model, Source) else open_source(model, sidecar)
    splits = None
    if data is not None:
        from ..data import prepare_splits

        splits = data if hasattr(data, "train") else prepare_splits(data, val_fraction=val_fraction, seed=split_seed)
    if precision == "int8":
        if calib is None:
            calib = from_data(splits, calib_size, calib_strategy, calib_seed, calib_floor)
        elif not isinstance(calib, CalibrationSet):
            calib = CalibrationSet.load(calib)
    timings["prepare_seconds"] = round(time.perf_counter() - clock, 3)
    check_images, check_labels, check_set = _check_set(splits, calib, check_size)
    spec = source.spec.replace(extra={**source.spec.extra, "source_sha256": source.sha256})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as tmp:
        stage = Path(tmp)
        result = _run(source, spec, target, precision, quantizer, stage, calib, check_images, check_labels,
                      timings, exporter=exporter, simplify=simplify, parity_atol=parity_atol,
                      calib_method=calib_method, keep_fp=tuple(keep_fp), calib_batch_size=calib_batch_size,
                      preset=preset, subset_size=subset_size, fast_bias_correction=fast_bias_correction,
                      engine_options=engine_options, build_engine=build_engine, gate=gate_options)
        if calib is not None:
            calib.save(stage / "calibration")
        files = _publish(stage, out_dir)
    synthetic = bool((splits is not None and splits.synthetic) or (calib is not None and calib.synthetic))
    result.update(
        format=FORMAT, target=target, precision=precision, created_utc=_now(),
        source={"kind": source.kind, "path": str(source.path), "sha256": source.sha256},
        spec=spec.replace(precision=precision).to_dict(), files=files, synthetic=synthetic,
        calibration=None if calib is None else {
            **{k: v for k, v in calib.manifest.items() if k != "ids"}, "bundle": "calibration/manifest.json"},
        data=None if splits is None else {"source": Path(splits.source).name, "fingerprint": splits.fingerprint,
                                          "synthetic": splits.synthetic},
        checks={**result["checks"], "set": check_set, "n": int(len(check_images))},
        tools=_tool_versions(), machine=_machine(),
        timings={**timings, "total_seconds": round(time.perf_counter() - clock, 3)},
    )
    write_json(out_dir / "export.json", result)
    return result


def _gate_options(precision, data, max_drop, min_agreement, attempts, seconds, out_dir: Path) -> dict | None:
    """Validated accuracy-gate settings (None: no gate)."""
    if max_drop is None:
        if min_agreement is not None:
            raise ExportError("--min-agreement is a bound of the INT8 accuracy gate: add --max-drop (e.g. 0.005)")
        return None
    from .gate import Budget, validate_max_drop, validate_min_agreement

    if precision != "int8":
        raise ExportError(f"--max-drop only applies to --int8 (got {precision}); {SUPPORTED}")
    if data is None:
        raise ExportError("--max-drop needs labelled validation images: add --data PATH (the validation split "
                          "carved from its training data is what the macro-F1 drop is measured on)")
    return {"max_drop": validate_max_drop(max_drop), "min_agreement": validate_min_agreement(min_agreement),
            "budget": Budget(attempts, seconds).validate(),
            "report_path": out_dir / "int8_search.json"}


def _check_set(splits, calib, check_size: int):
    """Images for the export's checks: validation split, else the calibration set, else random pixels."""
    if splits is not None and len(splits.val):
        return splits.val.images[:check_size], splits.val.labels[:check_size], "val"
    if calib is not None:
        return calib.images[:check_size], calib.labels[:check_size], "calibration"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), None, "random-pixels"


def _run(source, spec, target, precision, quantizer, stage, calib, images, labels, timings, **opt) -> dict:
    from . import check, onnx, openvino, qdq, trt_cache

    fp32_onnx = stage / "model.onnx"
    result: dict = {"checks": {}}
    clock = time.perf_counter()
    if source.kind == "checkpoint":
        proto, result["onnx_export"] = onnx.torch_to_onnx(source.torch_model, spec, opt["exporter"])
        if opt["simplify"]:
            proto = onnx.simplify(proto)
        result["onnx_export"]["simplified"] = bool(opt["simplify"])
        onnx.save_onnx(proto, fp32_onnx, spec)
        atol = onnx.PARITY_ATOL if opt["parity_atol"] is None else opt["parity_atol"]
        result["checks"]["pytorch_vs_onnx"] = onnx.parity(source.torch_model, fp32_onnx, images, spec, atol=atol)
    else:
        import onnx as onnx_lib

        proto = onnx_lib.load(str(source.onnx_path))
        onnx.save_onnx(proto, fp32_onnx, spec)  # the user's model with the spec embedded
        result["onnx_export"] = {"exporter": "user-onnx", "source": source.path.name}
    timings["onnx_seconds"] = round(time.perf_counter() - clock, 3)
    reference = check.logits(fp32_onnx, images, spec, desc="check fp32 reference")
    reference_scores = check.scores(reference, labels, spec) if labels is not None else None
    result["checks"]["reference"] = {"file": fp32_onnx.name, "runtime": "onnxruntime", **(reference_scores or {})}

    clock = time.perf_counter()
    produced = fp32_onnx
    if target in ("onnx", "tensorrt") and precision == "fp16":
        produced = stage / "model.fp16.onnx"
        result["conversion"] = qdq.to_fp16(fp32_onnx, produced, spec)
    elif precision == "int8" and opt["gate"] is not None:
        from . import gate

        produced = stage / {"onnx": "model.int8.onnx", "tensorrt": "model.int8.qdq.onnx"}.get(target, "model.int8.xml")
        search = gate.search(
            fp32_onnx, target, calib, spec, images, labels, produced, **opt["gate"], reference=reference,
            keep_fp=opt["keep_fp"], batch_size=opt["calib_batch_size"], quantize_bias=target == "onnx",
            subset_size=opt["subset_size"])
        result["int8_search"] = search
        chosen = search["attempts"][search["chosen"]]
        result["quantization"] = {"int8_search_attempt": chosen["index"], **chosen["recipe"],
                                  "excluded_nodes": chosen["excluded"]}
    elif target in ("onnx", "tensorrt") and precision == "int8":
        produced = stage / ("model.int8.qdq.onnx" if target == "tensorrt" else "model.int8.onnx")
        result["quantization"] = qdq.quantize_qdq(
            fp32_onnx, calib, spec, produced, method=opt["calib_method"], keep_fp=opt["keep_fp"],
            batch_size=opt["calib_batch_size"], quantize_bias=target == "onnx",
            # TensorRT: NVIDIA's Q/DQ placement + the TensorRT 10 calibration cache (implicit INT8 / DLA)
            placement="nvidia" if target == "tensorrt" else "all",
            trt_cache=trt_cache.cache_path_for(produced) if target == "tensorrt" else None)
    elif target == "openvino" and precision in ("fp32", "fp16"):
        produced = stage / ("model.xml" if precision == "fp32" else "model.fp16.xml")
        result["conversion"] = openvino.to_ir(fp32_onnx, produced, spec, fp16=precision == "fp16")
    elif target == "openvino":
        produced = stage / "model.int8.xml"
        result["quantization"] = openvino.quantize_openvino(
            fp32_onnx, calib, spec, produced, preset=opt["preset"], keep_fp=opt["keep_fp"],
            subset_size=opt["subset_size"], fast_bias_correction=opt["fast_bias_correction"])
    timings["convert_seconds"] = round(time.perf_counter() - clock, 3)
    result["model"] = produced.name
    if produced != fp32_onnx:
        clock = time.perf_counter()
        runtime = {"runtime": "openvino", "inference_precision_hint": "f32"} if produced.suffix == ".xml" else {
            "runtime": "onnxruntime"}
        result["checks"]["exported"] = {"file": produced.name, **runtime, **check.check_against(
            produced, reference, images, labels, spec, reference_scores)}
        timings["check_seconds"] = round(time.perf_counter() - clock, 3)
    if target == "tensorrt":
        result["tensorrt"] = _tensorrt_step(produced, spec, opt["engine_options"], opt["build_engine"], timings)
    return result


def _tensorrt_step(onnx_path: Path, spec, options: EngineOptions, build: bool | None, timings: dict) -> dict:
    """Build the engine where TensorRT is installed; otherwise describe the build for the target device."""
    from . import tensorrt, trt_cache
    from .onnx import io_names

    engine = tensorrt.engine_path_for(onnx_path)
    input_name = io_names(onnx_path)[0]
    options = tensorrt.fit_to_graph(options, onnx_path)  # a user's ONNX may have a fixed batch size
    step = {
        "onnx": onnx_path.name,
        "build_engine_command": tensorrt.build_engine_command(onnx_path.name, engine.name, options),
        "trtexec_command": {
            "tensorrt_10": tensorrt.trtexec_command(onnx_path.name, engine.name, spec, options, input_name, 10),
            "tensorrt_11": tensorrt.trtexec_command(onnx_path.name, engine.name, spec, options, input_name, 11),
        },
    }
    cache = trt_cache.cache_path_for(onnx_path)
    if cache.is_file():  # TensorRT 10.x implicit INT8 (DLA on JetPack 6): the FP32 graph + the calibration cache
        step["implicit_int8"] = {"calib_cache": cache.name, **tensorrt.implicit_int8_commands(
            "model.onnx", cache.name, "model.int8.implicit.engine", spec, options, input_name)}
    available = importlib.util.find_spec("tensorrt") is not None
    if build is None:
        build = available
    if not build:
        step.update(built=False, reason="tensorrt is not installed here" if not available else "build disabled")
        return step
    clock = time.perf_counter()
    step.update(built=True, engine=engine.name, sidecar=tensorrt.build_engine(onnx_path, engine, options, spec=spec))
    timings["engine_seconds"] = round(time.perf_counter() - clock, 3)
    return step


def _publish(stage: Path, out_dir: Path) -> list[dict]:
    """Move every staged file into ``out_dir`` (one rename each) and describe it (path, bytes, sha256)."""
    files = []
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        relative = path.relative_to(stage)
        files.append({"path": relative.as_posix(), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    for entry in files:
        target = out_dir / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / entry["path"], target)
    return files


def _tool_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
