"""``export(source, config, out_dir) -> ExportResult``: stage -> step -> check -> publish.

1. ``steps.validate(config)`` and ``steps.check_inputs`` refuse a bad request before any work;
2. the source (checkpoint or ONNX) becomes the FP32 ONNX in a staging directory beside ``out_dir`` (with the
   PyTorch parity check for checkpoints), and the FP32 reference logits are computed on the check images;
3. ``STEPS[(target, precision)]`` makes the target's model file in the stage;
4. the product is checked against the reference through ``edgefer.runtime``;
5. ``export.json`` is written into the stage and the stage is published as ``out_dir`` in one step
   (``edgefer.fileio.staged_dir``): a kill at any moment leaves the complete old or the complete new export.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..data.sampling import stratified_sample
from ..env import library_versions, machine_summary
from ..fileio import sha256_file, staged_dir, write_json
from ..progress import activity
from ..spec import FER2013_LABELS
from .calibration import resolve
from .config import ExportConfig
from .result import FILE_NAME, ExportResult, FileEntry, SourceInfo
from .source import Source, open_source
from .steps import STEPS, StepContext, check_inputs, validate

TOOLS = ("edgefer", "numpy", "torch", "timm", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "tensorrt")
FP32_ONNX = "model.onnx"  # every export stages the FP32 ONNX under this name and checks against it
# The last PyTorch -> ONNX export of this process, keyed by the checkpoint's sha256 and the ONNX options: bench
# exports one checkpoint once per row, and the dynamo exporter takes ~25 s for tf_efficientnetv2_s.
_LAST_ONNX: dict = {}


def export(source, config: ExportConfig, out_dir: str | Path, *, data=None, calib=None,
           sidecar: str | Path | None = None) -> ExportResult:
    """Export ``source`` (checkpoint path, ``.onnx`` path or a ``Source``) as ``config`` asks into ``out_dir``.

    ``data`` (path or ``Splits``) gives validation images for the checks and, for INT8, the training split to
    draw the calibration set from; ``calib`` (``CalibrationSet`` or bundle path) reuses a saved one; ``sidecar``:
    the spec of an ONNX source without edgefer metadata. ``out_dir`` is replaced as a whole when the export
    succeeds (callers check first that replacing it is wanted: ``edgefer.fileio.check_output``).
    """
    config = validate(config)
    check_inputs(config, data, calib)
    timings: dict = {}
    start = clock = time.perf_counter()
    source = source if isinstance(source, Source) else open_source(source, sidecar)
    splits, whole = _open_data(data, config)
    if config.precision == "int8":  # --calib, else --data's training split, else a part carved from --data
        resolved = resolve(config.calib, bundle=calib, splits=splits, whole=whole)
        calib = resolved.calib
        if resolved.how == "carved":  # disjoint from the check images, which are the rest of the data
            calib.manifest["carved_from"] = {"source": Path(str(whole.source)).name, "n": len(whole),
                                             "seed": config.calib.seed, "note": "disjoint from the check images"}
            whole = resolved.rest
    else:
        calib = None
    timings["prepare_seconds"] = round(time.perf_counter() - clock, 3)
    images, labels, check_set, classes = _check_set(splits, whole, calib, config.check_size)
    spec = source.spec.replace(extra={**source.spec.extra, "source_sha256": source.sha256})
    if source.kind == "checkpoint" and not config.onnx.dynamic_batch:
        spec = spec.replace(batch=1)  # --static: the exported graph runs batches of exactly 1
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as stage:
        checks, onnx_export = _stage_fp32_onnx(source, spec, config, stage, images, timings)
        fp32_onnx = stage / FP32_ONNX
        with activity("check: FP32 reference"):
            from . import check

            reference = check.logits(fp32_onnx, images, spec, desc="check fp32 reference")
        reference_scores = check.scores(reference, labels, spec, classes) if labels is not None else None
        checks["reference"] = {"file": fp32_onnx.name, "runtime": "onnxruntime", **(reference_scores or {})}
        if labels is not None and not check.is_identity(match := check.match_labels(classes, spec.labels)):
            checks["labels"] = check.describe_match(match)  # scores over the classes data and model share, matched by name
        clock = time.perf_counter()
        ctx = StepContext(stage, fp32_onnx, spec, config, calib, images, labels, reference, out_dir, timings, classes,
                          qat_source=_qat_source(source, data, splits))
        with activity(f"export: {config.target} {config.precision}"):
            output = STEPS[(config.target, config.precision)].run(ctx)
        timings["convert_seconds"] = round(time.perf_counter() - clock, 3)
        if output.model != fp32_onnx:
            clock = time.perf_counter()
            with activity(f"check: {output.model.name}"):
                checks["exported"] = {"file": output.model.name, **check.runtime_info(output.model),
                                      **check.check_against(output.model, reference, images, labels, spec,
                                                            reference_scores, classes)}
            timings["check_seconds"] = round(time.perf_counter() - clock, 3)
        if calib is not None:
            calib.save(stage / "calibration")
        synthetic = bool((splits is not None and splits.synthetic) or (calib is not None and calib.synthetic)
                         or (whole is not None and whole.synthetic))
        result = ExportResult(
            target=config.target, precision=config.precision, model=output.model.name,
            checks={**checks, "set": check_set, "n": int(len(images))}, onnx_export=onnx_export,
            spec=spec.replace(precision=config.precision).to_dict(),
            source=SourceInfo(source.kind, str(source.path), source.sha256), files=_describe(stage),
            synthetic=synthetic,
            calibration=None if calib is None else {
                **{k: v for k, v in calib.manifest.items() if k != "ids"}, "bundle": "calibration/manifest.json"},
            data=_data_report(splits, data),
            conversion=output.conversion, quantization=output.quantization, int8_search=output.int8_search,
            tensorrt=output.tensorrt, created_utc=_now(), tools=library_versions(TOOLS, skip_missing=True),
            executed_precision=check.executed_precision(output.model, checks.get("exported", {}).get(
                "executed_precision")),
            machine=machine_summary())
        result.timings = {**timings, "total_seconds": round(time.perf_counter() - start, 3)}
        write_json(stage / FILE_NAME, result.to_json())
        _hook("before-publish")
    return result


def _stage_fp32_onnx(source: Source, spec, config: ExportConfig, stage: Path, images, timings: dict):
    """Write the FP32 ONNX (spec embedded) into the stage; (checks so far, onnx_export report)."""
    from . import onnx

    fp32_onnx = stage / FP32_ONNX
    checks: dict = {}
    clock = time.perf_counter()
    if source.kind == "checkpoint":
        options = config.onnx
        key = (source.sha256, repr(spec.to_dict()), options.exporter, options.opset, options.dynamic_batch, bool(options.simplify))
        if key in _LAST_ONNX:
            proto, info = _reuse_onnx(_LAST_ONNX[key])
        else:
            with activity("export: PyTorch -> ONNX"):
                proto, info = onnx.torch_to_onnx(source.torch_model, spec, options.exporter, options.opset,
                                                 dynamic_batch=options.dynamic_batch)
                if options.simplify:
                    proto = onnx.simplify(proto)
            _LAST_ONNX.clear()
            _LAST_ONNX[key] = (proto.SerializeToString(), dict(info))
        info["simplified"] = bool(options.simplify)
        onnx.save_onnx(proto, fp32_onnx, spec)
        atol = onnx.PARITY_ATOL if options.parity_atol is None else options.parity_atol
        with activity("check: PyTorch vs ONNX"):
            checks["pytorch_vs_onnx"] = onnx.parity(source.torch_model, fp32_onnx, images, spec, atol=atol)
    else:
        import onnx as onnx_lib

        proto = onnx_lib.load(str(source.onnx_path))
        onnx.save_onnx(proto, fp32_onnx, spec)  # the user's model with the spec embedded
        info = {"exporter": "user-onnx", "source": source.path.name}
    _hook("onnx-saved")
    timings["onnx_seconds"] = round(time.perf_counter() - clock, 3)
    return checks, info


def _qat_source(source: Source, data, splits):
    """(checkpoint, training data path or None = the run's own) for the search's QAT attempt; None when the source
    is not an edgefer checkpoint or the data has no training split to fine-tune on."""
    if source.kind != "checkpoint" or (data is not None and splits is None):
        return None
    return source.path, (str(data) if isinstance(data, (str, Path)) else None)


def _reuse_onnx(entry):
    """(proto, info) of an earlier export of the same checkpoint with the same options (bytes -> a fresh proto)."""
    import onnx as onnx_lib

    data, info = entry
    return onnx_lib.load_from_string(data), dict(info)


def _open_data(data, config: ExportConfig):
    """(splits, None) for data with a training split (the checks use its validation split, INT8 draws from its
    training split); (None, the whole labelled data set) for a folder without one (class folders evaluated
    whole, or test/ only); (None, None) without data."""
    if data is None:
        return None, None
    if hasattr(data, "train"):
        return data, None
    from ..data import evaluation_set, load, prepare_splits
    from ..errors import DataError

    loaded = load(data)
    if loaded.get("train") is None:
        return None, evaluation_set(loaded, "all")
    try:
        return prepare_splits(data, val_fraction=config.calib.val_fraction, seed=config.calib.split_seed), None
    except DataError:
        return None, evaluation_set(loaded, "all")


def _check_set(splits, whole, calib, check_size: int):
    """Images for the export's checks: validation split, else the whole labelled data set, else the calibration
    set, else random pixels; (images, labels, set name, the data's class names). A set larger than ``check_size``
    gives a seeded stratified sample (every class in proportion), never its first images."""
    def sample(images, labels):
        pick = np.sort(stratified_sample(labels, check_size, seed=0))
        return images[pick], labels[pick]

    if whole is not None:
        return (*sample(whole.images, whole.labels), whole.name, tuple(whole.classes))
    if splits is not None and len(splits.val):
        val = splits.val
        return (*sample(val.images, val.labels), "val", tuple(getattr(val, "classes", ()) or FER2013_LABELS))
    if calib is not None:
        return (*sample(calib.images, calib.labels), "calibration",
                tuple(calib.manifest.get("labels") or FER2013_LABELS))
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), None, "random-pixels", ()


def _data_report(splits, data) -> dict | None:
    if splits is not None:
        return {"source": Path(splits.source).name, "fingerprint": splits.fingerprint, "synthetic": splits.synthetic}
    if data is None:
        return None
    return {"source": Path(str(data)).name, "split": "none (evaluated whole: checks on it, calibration as "
            "'calibration' says)"}


def _describe(stage: Path) -> list[FileEntry]:
    """Every staged file (export.json excepted): path relative to the stage, bytes, sha256."""
    return [FileEntry(p.relative_to(stage).as_posix(), p.stat().st_size, sha256_file(p))
            for p in sorted(stage.rglob("*")) if p.is_file() and p.name != FILE_NAME]


def _hook(stage_name: str) -> None:
    """Crash-consistency tests: EDGEFER_TEST_PAUSE_AT=<stage> makes the export wait here (for a SIGKILL)."""
    if os.environ.get("EDGEFER_TEST_PAUSE_AT") == stage_name:
        import sys

        print(f"edgefer-test: paused at {stage_name}", file=sys.stderr, flush=True)
        time.sleep(3600)




def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
