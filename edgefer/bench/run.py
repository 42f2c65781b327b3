"""``edgefer bench``: latency and accuracy / macro-F1 drop of every backend x precision against FP32.

``run_bench(model, data, out_dir=...)`` exports what is missing (``edgefer.export``), opens each model
through ``edgefer.runtime``, measures accuracy on a data split and latency/throughput, and writes
``bench.json`` (schema in docs/bench.md), ``bench.csv``, ``bench.md`` and PNG plots. Numpy + stdlib at
import time; everything heavy is imported by the rows that need it.
"""

from __future__ import annotations

import gc
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..bounds import FLOAT_MAX, INT32_MAX, check_fields
from ..data.readers import SPLIT_ORDER
from ..data.sampling import stratified_sample
from ..env import capture
from ..errors import EdgeferError, InputError, MissingDependency, OutputError
from ..export.config import option
from ..preprocess import prepare
from ..progress import progress
from . import sanity
from .energy import PowerMonitor
from .memory import PeakMemory
from .rows import GROUPS, ROWS, Producer, RowDef, _Missing, artifact_size, missing_reason, row_label, select_rows
from .timing import DEFAULT_WARMUP, measure

SCHEMA = "edgefer-bench"
SCHEMA_VERSION = 1
REFERENCE_CANDIDATES = ("pytorch-fp32", "onnxruntime-fp32")
EVAL_BATCH = 32

__all__ = ["SCHEMA", "SCHEMA_VERSION", "BenchSettings", "run_bench"]


SPLITS = ("auto", "all", *SPLIT_ORDER)  # --split: auto = the test split when the data has one, else all of it
EXPORT_OPTIONS = ("calib_size", "parity_atol")  # ExportConfig.build names the bench CLI offers


@dataclass(frozen=True)
class BenchSettings:
    """What ``run_bench`` measures and how: the split, the rows (``--targets``), batch sizes, threads, the timing
    budget, an image limit, a calibration bundle for INT8 exports, the user's thresholds (``--fail-on-drop``,
    ``--min-agreement``, ``--min-speedup``; none by default), flat export
    options (``ExportConfig.build`` names) and whether to draw plots. ``edgefer bench`` generates its options from
    the field metadata (``option``, ``help``, ``click``: ``type``, ``choices``, ``min``, ``min_open``, ``exists``,
    ``ints``: comma-separated integers; ``export_options``: the export config fields it takes)."""

    split: str = field(default="auto", metadata=option(
        "--split", "Images to measure accuracy on: auto (the test split, else the whole labelled data), all, or a "
        "split name.", choices=SPLITS))
    targets: str | list[str] | None = field(default=None, metadata=option(
        "--targets", f"Rows to run: comma-separated row keys or groups ({', '.join(GROUPS)}); default all. The FP32 "
        "reference always runs.", type=str))
    batches: tuple[int, ...] = field(default=(1, 32), metadata=option(
        "--batch", "Batch sizes for throughput (comma-separated).", ints=True))
    threads: int | None = field(default=None, metadata=option(
        "--threads", "CPU threads (default: all usable cores).", type=int, min=1, max=4096))
    iters: int | None = field(default=None, metadata=option(
        "--iters", "Timed runs per measurement (budget).", type=int, min=1, max=10_000_000))
    duration: float | None = field(default=None, metadata=option(
        "--duration", "Seconds per measurement (budget; default 3 s when --iters is not given).", type=float, min=0,
        min_open=True, max=3600))
    warmup: int = field(default=DEFAULT_WARMUP, metadata=option(
        "--warmup", "Untimed runs first.", type=int, min=0, max=1_000_000))
    limit: int | None = field(default=None, metadata=option(
        "--limit", "Evaluate a seeded stratified sample of N images of the split (every class in proportion).",
        type=int, min=1, max=INT32_MAX))
    calib: str | Path | None = field(default=None, metadata=option(
        "--calib", "Calibration bundle for INT8 exports (default: drawn from --data's train split).", exists=True))
    calib_data: str | Path | None = field(default=None, metadata=option(
        "--calib-data", "Labelled data to draw the INT8 calibration set from (default: --data's train split, or a "
        "disjoint stratified part of a folder evaluated whole).", exists=True))
    fail_on_drop: float | None = field(default=None, metadata=option(
        "--fail-on-drop", "Exit 3 when an INT8 row loses more macro-F1 than this (fraction: 0.01 = 1 point).",
        type=float, min=0, max=1))
    min_agreement: float | None = field(default=None, metadata=option(
        "--min-agreement", "Exit 3 when an INT8 row's top-1 agreement with the reference is below this (fraction: "
        "0.995 = 99.5 %).", type=float, min=0, max=1))
    min_speedup: float | None = field(default=None, metadata=option(
        "--min-speedup", "Exit 3 when the fastest INT8 row's batch-1 p50 is not at least this many times faster than "
        "PyTorch eager FP32 (needs a checkpoint: the PyTorch row).", type=float, min=0, min_open=True,
        max=FLOAT_MAX))
    export_options: dict = field(default_factory=dict, metadata={"export_options": EXPORT_OPTIONS})
    plots: bool = field(default=True, metadata=option("--plots/--no-plots", "Draw the PNG plots."))


def run_bench(model: str | Path, data: str | Path, *, out_dir: str | Path, console=None, **settings) -> dict:
    """Benchmark ``model`` (checkpoint or ONNX) on a split of ``data``; publish the reports as ``out_dir``
    (the whole directory, in one step: ``edgefer.fileio.staged_dir``). ``settings``: ``BenchSettings`` fields.

    Returns the ``bench.json`` content. The thresholds the user gives (``fail_on_drop``: macro-F1 as a fraction,
    0.01 = 1 point; ``min_agreement``: top-1 agreement as a fraction; ``min_speedup``: times faster than PyTorch
    eager) are listed in ``report["thresholds"]`` (absent when none is given) and set ``report["gate"]["passed"]``
    False when one fails.
    """
    from ..fileio import staged_dir

    settings = BenchSettings(**settings)
    check_fields(settings, InputError)  # NaN, inf or out of range: refused before any work
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as stage:
        report = _run(model, data, settings, stage, console)
        _published(report, stage, out_dir)
        from . import report as reporting

        report["files"] = reporting.write_reports(report, stage, plots=settings.plots, published_as=out_dir)
    return report


def _published(report: dict, stage: Path, out_dir: Path) -> None:
    """Model paths as they will be once the stage is published as ``out_dir``."""
    for row in report["rows"]:
        if row["model_path"] and Path(row["model_path"]).is_relative_to(stage):
            row["model_path"] = str(out_dir / Path(row["model_path"]).relative_to(stage))


def _run(model, data, s: BenchSettings, out_dir: Path, console) -> dict:
    from ..export.source import open_source

    batches = _check_batches(s.batches)
    threads = s.threads or _usable_cores()
    selected = select_rows(s.targets)
    source = open_source(model)
    if s.min_speedup is not None:  # refused before any work: there would be nothing to compare against
        eager = missing_reason(next(r for r in ROWS if r.key == "pytorch-fp32"), source.kind)
        if eager:
            raise InputError(f"--min-speedup compares against PyTorch eager FP32, which cannot run here: {eager}")
    int8 = any(k.endswith("int8") for k in selected)
    splits, dataset, calib, usage = _load_split(data, s, int8)
    environment = capture(threads)
    producer = Producer(source, out_dir / "models", data=splits, calib=calib, threads=threads,
                        export_options=s.export_options)
    budget = dict(iters=s.iters, duration=s.duration, warmup=s.warmup)

    results, predictions = [], {}
    for row in progress(ROWS, total=len(ROWS), desc="bench rows"):
        wanted = row.key in selected or row.key == "pytorch-fp32" or (
            row.key == "onnxruntime-fp32" and not _ok(results, "pytorch-fp32"))
        if not wanted:
            results.append(_row_stub(row, "skipped", "not selected by --targets"))
            continue
        if console is not None:  # the row's key: its label names what executed, known once it ran
            console.print(f"[bold]{row.key}[/bold] ...")
        result, preds = _bench_row(row, producer, source.kind, dataset, batches, budget)
        results.append(result)
        if preds is not None:
            predictions[row.key] = preds
        if console is not None:
            console.print(f"  {result['status']}" + (f": {result['reason']}" if result["reason"] else "")
                          + (f" (ran as {result['label']})" if result["status"] == "ok" else ""))

    reference = next((k for k in REFERENCE_CANDIDATES if k in predictions), None)
    _compare(results, predictions, reference)
    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "synthetic": bool(getattr(dataset, "synthetic", False)),
        "model": {"path": str(model), "kind": source.kind, "sha256": source.sha256, "arch": source.spec.arch,
                  "input_size": source.spec.input_size, "channels": source.spec.channels,
                  "labels": list(source.spec.labels),
                  "output": next((r["output"] for r in results if r.get("output")), None)},
        "data": {"path": str(data), "split": dataset.name, "n": len(dataset), "limit": s.limit,
                 "classes": list(dataset.classes), "class_counts": dataset.class_counts().tolist(),
                 "synthetic": bool(getattr(dataset, "synthetic", False)), "images_used": usage,
                 "labels": _label_summary(results)},
        "settings": {"threads": threads, "batches": list(batches), "iters": s.iters, "duration_s": s.duration,
                     "warmup": s.warmup, "targets": selected, "calib": str(s.calib) if s.calib else None,
                     "calib_data": str(s.calib_data) if s.calib_data else None,
                     "export_options": s.export_options or {}},
        "environment": environment,
        "reference": reference,
        "rows": results,
    }
    given = thresholds(report, s.fail_on_drop, s.min_agreement, s.min_speedup)
    if given:
        report["thresholds"] = given
    report["gate"] = gate(report, s.fail_on_drop, s.min_agreement, s.min_speedup, given)
    return report


def _usable_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_batches(batches) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(b) for b in batches}))
    except (TypeError, ValueError):
        raise InputError(f"--batch: expected positive integers, got {batches!r}") from None
    if not values or values[0] < 1:
        raise InputError(f"--batch: expected positive integers, got {list(batches)!r}")
    return values


def _load_split(data, s: BenchSettings, int8: bool):
    """(splits for the exports or None, the evaluated data set, the calibration for INT8 exports, what each
    image set was used for). Data with a training split: exports check on its validation split and calibrate from
    its training split. A folder evaluated whole (class folders only, test/ only, ``--split all``): INT8 exports
    calibrate from ``--calib``, ``--calib-data`` or a disjoint stratified part of it, which is then not scored."""
    from ..data import evaluation_set, load, prepare_splits
    from ..errors import DataError
    from ..export.calibration import refuse_both, resolve
    from ..export.config import DEFAULT_SIZE, CalibOptions

    refuse_both(s.calib, s.calib_data)
    loaded = load(data)
    try:
        dataset = evaluation_set(loaded, s.split)
    except DataError as exc:
        raise InputError(f"--data {data}: {exc}".replace(f"{loaded.source}: ", "")) from None
    if len(dataset) == 0:
        raise InputError(f"--data {data}: the '{dataset.name}' split has no images")
    size = int(s.export_options.get("calib_size") or DEFAULT_SIZE)
    calib, usage = s.calib, {"evaluated": f"{dataset.name} split of --data"}
    splits = None
    if dataset.name != "all" and loaded.get("train") is not None:
        try:
            splits = prepare_splits(data)
        except DataError:
            splits = None
    options = CalibOptions(size=size)  # stratified, seed 0, the default floor: export's defaults
    if calib is not None:  # the bundle is loaded by each INT8 export (calibration.resolve)
        usage["calibration"] = f"--calib {calib}"
    elif s.calib_data is not None and int8:
        calib = resolve(options, labelled=s.calib_data).calib
        usage["calibration"] = f"--calib-data {s.calib_data} ({len(calib)} images, stratified, seed 0)"
    elif splits is not None:
        usage["calibration"] = "the training split of --data (export's draw); export checks: its validation split"
    elif int8:
        carved = resolve(options, whole=dataset)
        calib = carved.calib
        usage["calibration"] = (f"{len(calib)} images carved from the evaluated data (stratified, seed 0), "
                                f"disjoint from the {len(carved.rest)} evaluated images")
        usage["calibration_ids"] = calib.ids.tolist()
        dataset = carved.rest
    if s.limit is not None:
        if s.limit < 1:
            raise InputError(f"--limit: expected a positive number of images, got {s.limit}")
        dataset = dataset.subset(np.sort(stratified_sample(dataset.labels, s.limit, seed=0)))
    usage["evaluated_n"] = len(dataset)
    return splits, dataset, calib, usage


def _label_summary(results: list[dict]) -> dict | None:
    """How the data's classes were matched onto the model's labels (the first measured row's match)."""
    return next((r["labels"] for r in results if r.get("labels")), None)


def _ok(results: list[dict], key: str) -> bool:
    return any(r["key"] == key and r["status"] == "ok" for r in results)


def _row_stub(row: RowDef, status: str, reason: str | None) -> dict:
    return {"key": row.key, "label": row.label, "backend": row.backend, "precision": row.precision,
            "device": row.device, "status": status, "reason": reason, "inference_precision": None, "output": None,
            "model_path": None, "model_size_bytes": None, "export_s": None, "open_s": None, "accuracy": None,
            "labels": None, "vs_reference": None, "latency": None, "memory": None}


def _bench_row(row: RowDef, producer: Producer, source_kind: str, dataset, batches, budget):
    """Produce, open, evaluate and time one row; (result dict, predictions or None)."""
    reason = missing_reason(row, source_kind)
    if reason:
        return _row_stub(row, "missing", reason), None
    result = _row_stub(row, "ok", None)
    runner = None
    try:
        with PeakMemory() as memory:
            path, result["export_s"] = producer.produce(row)
            result["model_path"], result["model_size_bytes"] = str(path), artifact_size(path)
            t0 = time.perf_counter()
            runner = producer.open(row, path)
            result["open_s"] = time.perf_counter() - t0
            result["inference_precision"] = getattr(getattr(runner, "backend", None), "precision", row.precision)
            result["label"] = row_label(row, result["inference_precision"])
            logits = evaluate(runner, dataset)
            result["output"] = getattr(runner, "output_kind", None)  # declared or detected from the first outputs
            result["latency"] = sanity.checked(lambda: time_row(runner, dataset, batches, **budget))
        result["memory"] = memory.result()
    except (_Missing, MissingDependency) as exc:
        result.update(status="missing", reason=str(exc))
        return result, None
    except OutputError:  # a full disk or a read-only folder is not this row's failure: the whole bench stops
        raise
    except Exception as exc:  # noqa: BLE001 - a failing backend keeps its row with the error, never hides it
        result.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                      traceback=None if isinstance(exc, EdgeferError) else traceback.format_exc())
        return result, None
    finally:
        if runner is not None:
            runner.close()
        gc.collect()
    from ..export import check

    match = check.match_labels(dataset.classes, runner.spec.labels)  # by name, never by position
    result["accuracy"] = check.report_by_name(match, dataset.labels, logits)
    result["labels"] = check.describe_match(match)
    return result, check.shared_predictions(match, logits)[check.shared_rows(match, dataset.labels)]


def model_faces(dataset, indices, spec) -> tuple[np.ndarray, str]:
    """(faces, colour) of ``dataset`` at ``indices`` as the model of ``spec`` takes them: at its own input size
    and colour, read from the original files where the data has them (``FERDataset.faces``)."""
    if dataset.originals is None:  # FER2013's own form: the 48 px gray images, resized by ``prepare``
        return dataset.images[indices], "gray"
    gray = spec.color_order == "gray"
    return dataset.faces(indices, spec.input_size, gray), "gray" if gray else "rgb"


def evaluate(runner, dataset, batch: int = EVAL_BATCH) -> np.ndarray:
    """Logits (N, K) of ``runner.run`` on the whole dataset, prepared with the model's own spec from faces at the
    model's own size and colour (``model_faces``)."""
    out = []
    for start in range(0, len(dataset), batch):
        faces, color = model_faces(dataset, slice(start, start + batch), runner.spec)
        out.append(np.asarray(runner.run(prepare(faces, runner.spec, color=color)), np.float32))
    return np.concatenate(out)


def time_row(runner, dataset, batches, *, iters=None, duration=None, warmup=DEFAULT_WARMUP) -> dict:
    """Batch-1 model call and end-to-end latency, and throughput at each batch size; on Jetson the board's
    energy per batch-1 inference (tegrastats) while the model call is timed."""
    faces, color = model_faces(dataset, np.arange(max(batches, default=1)) % len(dataset), runner.spec)
    face = faces[0]
    x1 = prepare(face, runner.spec, color=color)
    with PowerMonitor() as power:
        model_b1 = measure(lambda: runner.run(x1), batch=1, warmup=warmup, iters=iters, duration=duration)
    end_to_end = measure(lambda: runner.predict(face, color=color), batch=1, warmup=warmup, iters=iters,
                         duration=duration)
    throughput = {}
    for b in batches:
        if b == 1:
            throughput["1"] = model_b1
            continue
        xb = prepare(faces[:b], runner.spec, color=color)
        throughput[str(b)] = measure(lambda xb=xb: runner.run(xb), batch=b, warmup=max(1, warmup // 5),
                                     iters=iters, duration=duration)
    return {"model_b1": model_b1, "end_to_end_b1": end_to_end,
            "energy_b1": power.energy(model_b1["runs"], model_b1["total_s"]),
            "preprocess_overhead_ms": end_to_end["p50_ms"] - model_b1["p50_ms"], "throughput": throughput}


def _compare(results: list[dict], predictions: dict, reference: str | None) -> None:
    """Δ accuracy / macro-F1 (points) and top-1 agreement of each measured row against the reference."""
    from ..metrics import agreement

    if reference is None:
        return
    ref_row = next(r for r in results if r["key"] == reference)
    ref_row["reference"] = True
    ref_acc, ref_preds = ref_row["accuracy"], predictions[reference]
    for row in results:
        if row["key"] not in predictions:
            continue
        acc = row["accuracy"]
        row["vs_reference"] = {
            "reference": reference,
            "delta_accuracy_points": 100.0 * (acc["accuracy"] - ref_acc["accuracy"]),
            "delta_macro_f1_points": 100.0 * (acc["macro_f1"] - ref_acc["macro_f1"]),
            "agreement": agreement(predictions[row["key"]], ref_preds),
            "delta_f1_points_per_class": {name: 100.0 * (acc["per_class"][name]["f1"] - ref_acc["per_class"][name]["f1"])
                                          for name in acc["per_class"]},
        }


def thresholds(report: dict, fail_on_drop: float | None = None, min_agreement: float | None = None,
               min_speedup: float | None = None) -> list[dict]:
    """The thresholds the user gave, in option order, each with the measured value it is judged on (the worst
    INT8 row's drop or agreement; the best trusted INT8 row's speed-up), the row it comes from and whether it
    passed (``violations``: why not). Empty when none is given: bench has no built-in targets."""
    int8 = [r for r in report["rows"] if r["precision"] == "int8" and r["status"] == "ok" and r.get("vs_reference")]
    unmeasured = "no INT8 row was measured against a reference, so {} cannot be checked"
    out = []
    if fail_on_drop is not None:
        drops = {r["key"]: -r["vs_reference"]["delta_macro_f1_points"] / 100.0 for r in int8}
        violations = [f"{r['label']} loses {100 * drops[r['key']]:.2f} macro-F1 points (limit {100 * fail_on_drop:.2f})"
                      for r in int8 if drops[r["key"]] > fail_on_drop + 1e-11]
        out.append(_threshold("--fail-on-drop", fail_on_drop, "largest INT8 macro-F1 drop", "fraction",
                              max(drops.items(), key=lambda kv: kv[1], default=None), violations,
                              unmeasured.format("the drop")))
        out[-1]["search"] = [search_command(report, r, fail_on_drop, min_agreement) for r in int8
                             if drops[r["key"]] > fail_on_drop + 1e-11]
    if min_agreement is not None:
        agree = {r["key"]: r["vs_reference"]["agreement"] for r in int8}
        violations = [f"{r['label']} agrees with the reference on {agree[r['key']]:.2%} of the images "
                      f"(at least {min_agreement:.2%} required)" for r in int8 if agree[r["key"]] < min_agreement]
        out.append(_threshold("--min-agreement", min_agreement, "lowest INT8 top-1 agreement", "fraction",
                              min(agree.items(), key=lambda kv: kv[1], default=None), violations,
                              unmeasured.format("the agreement")))
        out[-1]["search"] = [search_command(report, r, fail_on_drop, min_agreement) for r in int8
                             if agree[r["key"]] < min_agreement]
    if min_speedup is not None:
        out.append(_speedup_threshold(report, min_speedup))
    return out


SEARCH_DEFAULT_DROP = 0.01  # --max-drop suggested when only --min-agreement was given: 1 macro-F1 point


def search_command(report: dict, row: dict, fail_on_drop: float | None, min_agreement: float | None) -> str:
    """The ``edgefer export --max-drop`` command that searches for an INT8 model of ``row``'s kind within the
    thresholds given (the accuracy-bounded search of calibration recipes, docs/int8_search.md)."""
    import shlex

    target = next(r.target for r in ROWS if r.key == row["key"])
    drop = SEARCH_DEFAULT_DROP if fail_on_drop is None else fail_on_drop
    words = ["edgefer", "export", "--model", report.get("model", {}).get("path", "MODEL"), "--target", target,
             "--int8", "--max-drop", f"{drop:g}"]
    if min_agreement is not None:
        words += ["--min-agreement", f"{min_agreement:g}"]
    words += ["--data", report.get("data", {}).get("path", "DATA"), "--out", f"export/{row['key']}-searched"]
    return shlex.join(words)


def _threshold(option_name: str, limit: float, measured: str, unit: str, worst, violations: list[str],
               unmeasured: str) -> dict:
    if worst is None:
        violations = [unmeasured]
    row, value = worst if worst is not None else (None, None)
    return {"option": option_name, "limit": limit, "measured": measured, "value": value, "unit": unit, "row": row,
            "passed": not violations, "violations": violations}


def _speedup_threshold(report: dict, min_speedup: float) -> dict:
    """``--min-speedup``: PyTorch eager FP32's batch-1 p50 over the fastest INT8 row's; rows whose timings failed
    the outlier checks (``sanity.trusted``) do not count."""
    rows = {r["key"]: r for r in report["rows"]}
    eager = rows.get("pytorch-fp32")
    int8 = [r for r in report["rows"] if r["precision"] == "int8" and sanity.trusted(r)]
    best = min(int8, key=lambda r: r["latency"]["model_b1"]["p50_ms"], default=None)
    violations, value = [], None
    if not eager or eager["status"] != "ok":
        why = f"{eager['status']}: {eager['reason']}" if eager else "not in this report"
        violations.append(f"PyTorch eager FP32 did not run ({why}), so there is no speed-up to check")
    elif not sanity.trusted(eager):
        violations.append("PyTorch eager FP32's timings failed the outlier checks, so the speed-up cannot be checked")
    elif best is None:
        violations.append("no INT8 row was timed cleanly, so the speed-up cannot be checked")
    else:
        value = eager["latency"]["model_b1"]["p50_ms"] / best["latency"]["model_b1"]["p50_ms"]
        if value < min_speedup:
            violations.append(f"the fastest INT8 row, {best['label']}, is {value:.2f}x faster than PyTorch eager FP32 "
                              f"at batch 1 (at least {min_speedup:g}x required)")
    out = {"option": "--min-speedup", "limit": min_speedup,
           "measured": "fastest INT8 batch-1 p50 speed-up over PyTorch eager FP32", "value": value, "unit": "x",
           "row": best["key"] if value is not None else None, "passed": not violations, "violations": violations}
    busy = sanity.machine_busy(report["environment"])
    if busy:
        out["note"] = busy
    return out


def gate(report: dict, fail_on_drop: float | None, min_agreement: float | None = None,
         min_speedup: float | None = None, given: list[dict] | None = None) -> dict:
    """Whether every threshold the user gave passed (``violations``: one line each, naming its option); passed
    when none is given. ``given``: ``thresholds(...)`` of the same arguments, when already computed."""
    if given is None:
        given = thresholds(report, fail_on_drop, min_agreement, min_speedup)
    violations = [f"{t['option']} {t['limit']:g}: {v}" for t in given for v in t["violations"]]
    return {"fail_on_drop": fail_on_drop, "min_agreement": min_agreement, "min_speedup": min_speedup,
            "passed": not violations, "violations": violations}
