"""FER2013 on real faces: a trained checkpoint's PrivateTest figures, every INT8 backend and method, and the
calibration set (strategy x size), each row measured the same way through ``edgefer.runtime`` (ONNX Runtime or
OpenVINO on this CPU) on the evaluated split (default ``private_test``, FER2013's PrivateTest, 3,589 faces).

    PYTHONPATH=. python benchmarks/fer2013.py --model RUN --data FER2013_DIR --work WORK_DIR \\
        --out benchmarks/results/fer2013 [--qat QAT_RUN] [--skip calibration,gated]

Rows (``int8``): the TensorRT Q/DQ graph for each placement (``--placements``: NVIDIA's, weighted layers only)
and calibration method, OpenVINO INT8 (NNCF), ONNX Runtime CPU INT8, the accuracy-bounded search
(``--max-drop 0.003 --min-agreement 0.995``) and, for each ``--qat`` run, its Q/DQ graph and OpenVINO INT8 IR.
Each: top-1 agreement with the FP32 ONNX, accuracy, macro-F1 and its drop in points, per-class F1 drop in points,
the share of convolution MACs that runs in INT8, how far INT8 moved each face's logits (median and 99th
percentile of the largest change), and the float precision the runtime executed; the header gives the FP32
top-1 minus top-2 logit margins (a face flips when INT8 moves its logits by more than its margin). ``calibration``: stratified vs random draws of 64 ... 1,024 training faces (seed 0),
TensorRT Q/DQ, moving-average.

FER2013 may not be redistributed: --work (exports, calibration bundles) holds arrays made from it and must stay
outside git; --out gets figures only (int8.json, calibration.json, summary.json, fer2013.md). Re-running reuses
what --work already holds.

Produces: RESULTS.md, section "FER2013 (real faces)": its INT8 and calibration tables (`OUT/fer2013.md`).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import common
import numpy as np

METHODS = ("moving-average", "minmax", "entropy", "percentile")
MARGIN_SHARES = (0.005, 0.01, 0.05, 0.5)  # quantiles of the FP32 top-1 minus top-2 logit on the evaluated split


def parse_args(argv=None):
    parser = common.parser(__doc__)
    parser.add_argument("--model", type=Path, required=True, help="trained edgefer run directory")
    parser.add_argument("--data", type=Path, required=True, help="FER2013 (Kaggle image folders or fer2013.csv)")
    parser.add_argument("--split", default="private_test", help="split to evaluate on (default: PrivateTest)")
    parser.add_argument("--work", type=Path, required=True, help="git-ignored folder for exports and bundles")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fer2013"))
    parser.add_argument("--qat", type=Path, action="append", default=[],
                        help="an `edgefer qat` run of --model (its model_qdq.onnx is a row; repeatable)")
    parser.add_argument("--methods", default=",".join(METHODS), help="TensorRT Q/DQ calibration methods")
    parser.add_argument("--placements", default="nvidia,weighted", help="TensorRT Q/DQ placements (--placement)")
    parser.add_argument("--sizes", default="64,256,1024", help="calibration sizes of the calibration table")
    parser.add_argument("--strategies", default="stratified,random")
    parser.add_argument("--attempts", type=int, default=6, help="attempt budget of the accuracy-bounded search")
    parser.add_argument("--skip", default="", help="comma-separated: int8, gated, calibration")
    parser.add_argument("--train-command", default="", help="the edgefer train command that made --model")
    parser.add_argument("--train-wall-seconds", type=float, help="its wall time")
    return common.parse(parser, argv, __file__)


def per_class_f1(report: dict) -> dict:
    return {name: round(v["f1"], 4) for name, v in report["per_class"].items()}


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    from edgefer.data import prepare_splits
    from edgefer.export import ExportConfig, check, export
    from edgefer.export.calibration import CalibrationSet, from_data
    from edgefer.export.config import QuantOptions
    from edgefer.export.qdq import quantize_qdq
    from edgefer.export.quantizers.base import create
    from edgefer.logs import QUIET, set_verbosity

    set_verbosity(QUIET)
    skip = {s for s in args.skip.split(",") if s}
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    command = args.command
    machine = common.machine()
    splits = prepare_splits(args.data, val_fraction=0.1, seed=0)
    test = splits.get(args.split)
    if test is None or not len(test):
        raise SystemExit(f"--data {args.data}: no '{args.split}' split")
    if splits.synthetic:
        raise SystemExit(f"--data {args.data}: synthetic data; this study is for real FER2013")
    images, labels = test.images, test.labels
    print(f"{args.split}: {len(labels)} faces, per class {test.class_counts().tolist()}", flush=True)

    clock = time.perf_counter()
    base_dir = args.work / "tensorrt-moving-average"
    if not (base_dir / "export.json").exists():
        export(args.model, ExportConfig.build("tensorrt", "int8", exporter="legacy"), base_dir, data=splits)
    fp32 = base_dir / "model.onnx"
    spec = check.open_model(fp32).spec
    calib = CalibrationSet.load(base_dir / "calibration")
    reference = check.logits(fp32, images, spec)
    ref_report = check.report_by_name(check.match_labels(test.classes, spec.labels), labels, reference)
    ref_f1 = per_class_f1(ref_report)
    ranked = np.sort(reference, axis=1)
    margin = dict(zip(MARGIN_SHARES, (round(float(v), 4) for v in np.quantile(ranked[:, -1] - ranked[:, -2],
                                                                               MARGIN_SHARES))))
    ref_report["top2_margin_quantiles"] = margin  # a face flips when INT8 moves its two top logits by more
    print(f"FP32 ONNX: accuracy {ref_report['accuracy']:.4f}, macro-F1 {ref_report['macro_f1']:.4f} "
          f"({time.perf_counter() - clock:.0f} s)", flush=True)

    def measure(path: Path, layer_maps) -> dict:
        out = check.logits(path, images, spec)
        compared = check.compare(reference, out)
        moved = np.abs(out - reference).max(axis=1)  # how far INT8 moved each face's logits (largest class)
        report = check.report_by_name(check.match_labels(test.classes, spec.labels), labels, out)
        f1 = per_class_f1(report)
        share = layer_maps.layer_map(path).share()["share"] if layer_maps is not None else None
        return {"agreement": round(compared["top1_agreement"], 5), "accuracy": round(report["accuracy"], 5),
                "macro_f1": round(report["macro_f1"], 5),
                "macro_f1_drop_points": round(100 * (ref_report["macro_f1"] - report["macro_f1"]), 3),
                "accuracy_drop_points": round(100 * (ref_report["accuracy"] - report["accuracy"]), 3),
                "per_class_f1_drop_points": {k: round(100 * (ref_f1[k] - f1[k]), 2) for k in f1},
                "conv_int8_share": None if share is None else round(share, 4),
                "max_abs_logit_change_p50_p99": [round(float(v), 4) for v in np.quantile(moved, [0.5, 0.99])],
                "runtime": check.runtime_info(path)}

    int8_rows = _load(args.out / "int8.json", "rows")
    done = {(r["backend"], r["method"]) for r in int8_rows}

    def row(backend: str, method: str, make, layer_maps_for) -> None:
        if (backend, method) in done:
            return
        started = time.perf_counter()
        try:
            path = make()
        except Exception as exc:  # a row that fails is reported as such, the others still run
            int8_rows.append({"backend": backend, "method": method, "failed": f"{type(exc).__name__}: {exc}"[:1000]})
            print(f"{backend} {method}: failed: {exc}", flush=True)
        else:
            entry = {"backend": backend, "method": method, **measure(path, layer_maps_for(path)),
                     "seconds": round(time.perf_counter() - started, 1)}
            int8_rows.append(entry)
            print(f"{backend} {method}: agreement {100 * entry['agreement']:.2f} %, macro-F1 drop "
                  f"{entry['macro_f1_drop_points']:+.2f} pts, conv INT8 {entry['conv_int8_share']}", flush=True)
        _save(args.out / "int8.json", {"command": command, "machine": machine, "rows": int8_rows,
                                       **_header(args, test, ref_report)})

    qdq_maps = create("ort", fp32, calib, spec, QuantOptions())
    if "int8" not in skip:
        placements = {"nvidia": "NVIDIA placement", "weighted": "weighted layers only, additions in float",
                      "all": "every op ONNX Runtime quantizes"}
        for placement in [p for p in args.placements.split(",") if p]:
            for method in [m for m in args.methods.split(",") if m]:
                def make(method=method, placement=placement):
                    out = args.work / ("tensorrt-" + ("" if placement == "nvidia" else placement + "-") + method)
                    if not (out / "export.json").exists():
                        export(args.model, ExportConfig.build("tensorrt", "int8", exporter="legacy",
                                                              calib_method=method, placement=placement),
                               out, data=splits, calib=calib)
                    return out / "model.int8.qdq.onnx"
                row(f"TensorRT Q/DQ ({placements.get(placement, placement)})", method, make, lambda p: qdq_maps)

        def int8_export(target: str, folder: str):
            """The INT8 export of ``target`` in ``--work`` (made once, reused by a resumed run): its model."""
            out = args.work / folder
            if not (out / "export.json").exists():
                export(args.model, ExportConfig.build(target, "int8", exporter="legacy"), out, data=splits,
                       calib=calib)
            return out / json.loads((out / "export.json").read_text())["model"]

        for backend, method, target, folder, quantizer in (
                ("OpenVINO INT8 (NNCF)", "mixed preset", "openvino", "openvino-int8", "nncf"),
                ("ONNX Runtime CPU INT8", "ort-cpu (U8S8)", "onnx", "onnxruntime-int8", "ort-cpu")):
            row(backend, method, lambda t=target, f=folder: int8_export(t, f),
                lambda p, q=quantizer: create(q, fp32, calib, spec, QuantOptions()))
    if "gated" not in skip:
        def gated():
            out = args.work / "tensorrt-search"
            if not (out / "export.json").exists():
                export(args.model, ExportConfig.build("tensorrt", "int8", exporter="legacy", max_drop=0.003,
                                                      min_agreement=0.995, search_qat_epochs=0,
                                                      search_attempts=args.attempts),
                       out, data=splits, calib=calib)
            return out / json.loads((out / "export.json").read_text())["model"]
        row("TensorRT Q/DQ, accuracy-bounded search", "--max-drop 0.003 --min-agreement 0.995 (val split)", gated,
            lambda p: qdq_maps)
    for qat in args.qat:
        config = json.loads((qat / "qat.json").read_text())["config"]
        method = (f"qat: {config['epochs']} epoch(s) on {config.get('limit_train') or 'all'} faces, residual additions "
                  f"{'quantized' if config['residual'] else 'in float'}")
        row("TensorRT Q/DQ, QAT (edgefer qat)", method, lambda q=qat: q / "model_qdq.onnx", lambda p: qdq_maps)
        if (qat / "model.int8.xml").is_file():
            row("OpenVINO INT8 from the QAT run", method, lambda q=qat: q / "model.int8.xml",
                lambda p: create("nncf", fp32, calib, spec, QuantOptions()))

    calib_rows = _load(args.out / "calibration.json", "rows")
    if "calibration" not in skip:
        seen = {(r["strategy"], r["size"]) for r in calib_rows}
        for strategy in [s for s in args.strategies.split(",") if s]:
            for size in [int(s) for s in args.sizes.split(",") if s]:
                if (strategy, size) in seen:
                    continue
                started = time.perf_counter()
                bundle = from_data(splits, size=size, strategy=strategy, seed=0, floor=16 if strategy == "stratified"
                                   else 0)
                path = args.work / f"calib-{strategy}-{size}.onnx"
                quantize_qdq(fp32, bundle, spec, path)
                entry = {"strategy": strategy, "size": size, "per_class_drawn": bundle.manifest["per_class"],
                         **measure(path, qdq_maps), "seconds": round(time.perf_counter() - started, 1)}
                calib_rows.append(entry)
                print(f"calibration {strategy} {size}: agreement {100 * entry['agreement']:.2f} %, drop "
                      f"{entry['macro_f1_drop_points']:+.2f} pts, disgust drawn "
                      f"{bundle.manifest['per_class'].get('disgust')}", flush=True)
                _save(args.out / "calibration.json", {"command": command, "machine": machine, "rows": calib_rows,
                                                      **_header(args, test, ref_report)})

    meta = json.loads((args.model / "model.json").read_text())
    summary = {
        "data": "FER2013 (real faces), Kaggle image folders; test = PublicTest, private_test = PrivateTest",
        "synthetic": False,
        "machine": machine,
        "command": args.train_command or meta.get("command", ""),
        "wall_seconds": args.train_wall_seconds,
        "model": {"arch": meta.get("arch"), "img_size": meta.get("spec", {}).get("input_size"),
                  "best_epoch": meta.get("epoch")},
        "private_test": {"accuracy": round(ref_report["accuracy"], 5), "macro_f1": round(ref_report["macro_f1"], 5),
                         "per_class_f1": ref_f1, "confusion_matrix": ref_report["confusion_matrix"],
                         "labels": ref_report["labels"], "n": ref_report["n"], "evaluated_by": "FP32 ONNX, "
                         "edgefer.runtime (ONNX Runtime CPU)"} if args.split == "private_test" else None,
        "int8": [{k: r.get(k) for k in ("backend", "method", "agreement", "macro_f1_drop_points", "conv_int8_share",
                                         "max_abs_logit_change_p50_p99",
                                         "runtime", "failed")} for r in int8_rows],
        "study_command": command,
    }
    _save(args.out / "summary.json", summary)
    (args.out / "fer2013.md").write_text(markdown(summary, int8_rows, calib_rows, ref_report, command))
    print(f"wrote {args.out}/summary.json, int8.json, calibration.json, fer2013.md", flush=True)


def markdown(summary: dict, int8_rows: list, calib_rows: list, ref: dict, command: str) -> str:
    """The tables of benchmarks/RESULTS.md's FER2013 section, from the figures just measured."""
    names = ref["labels"]
    lines = [f"`{command}`", "", f"Machine: {summary['machine']}. Data: FER2013 (real faces), PrivateTest "
             f"({ref['n']} faces). FP32 ONNX: accuracy {100 * ref['accuracy']:.2f} %, macro-F1 {ref['macro_f1']:.4f}.",
             "", "| class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
             "| F1 | " + " | ".join(f"{ref['per_class'][n]['f1']:.3f}" for n in names) + " |",
             "| support | " + " | ".join(str(ref['per_class'][n]['support']) for n in names) + " |", "",
             "Confusion matrix (rows: true class, columns: predicted):", "",
             "| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(str(v) for v in row) + " |" for n, row in zip(names, ref["confusion_matrix"])]
    if "top2_margin_quantiles" in ref:
        margin = ref["top2_margin_quantiles"]
        lines += ["", "FP32 top-1 minus top-2 logit on these faces: " + ", ".join(
            f"{100 * share:g} % of faces under {value:.4f}" for share, value in margin.items()) + " (a face's top-1 "
            "class flips when INT8 moves its two top logits apart by more than that)."]
    lines += ["", "| backend | method | top-1 agreement | accuracy | macro-F1 | macro-F1 drop (points) | worst class "
              "F1 drop (points) | conv MACs in INT8 | max \\|Δlogit\\| per face, p50 / p99 | float layers ran in |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(int8_rows, key=lambda r: "failed" in r):  # a failed row (the search) after the measured ones
        if "failed" in r:
            reason = r["failed"].split("; every attempt")[0].replace("|", "/")  # the search names its best attempt
            lines.append(f"| {r['backend']} | {r['method']} | failed: {reason} | | | | | | | |")
            continue
        worst = max(r["per_class_f1_drop_points"].items(), key=lambda kv: kv[1])
        runtime = r.get("runtime") or {}
        ran = runtime.get("executed_precision") or runtime.get("inference_precision_hint") or "f32"
        moved = " / ".join(f"{v:.3f}" for v in r.get("max_abs_logit_change_p50_p99") or ())
        lines.append(f"| {r['backend']} | {r['method']} | {100 * r['agreement']:.2f} % | {100 * r['accuracy']:.2f} % | "
                     f"{r['macro_f1']:.4f} | {r['macro_f1_drop_points']:+.2f} | {worst[0]} {worst[1]:+.2f} | "
                     f"{100 * (r['conv_int8_share'] or 0):.1f} % | {moved} | {runtime.get('runtime', '?')} {ran} |")
    if calib_rows:
        lines += ["", "| calibration draw | images | disgust / fear drawn | top-1 agreement | macro-F1 drop (points) | "
                  "disgust F1 drop | fear F1 drop |", "|---|---|---|---|---|---|---|"]
        for r in sorted(calib_rows, key=lambda r: (r["strategy"], r["size"])):
            drawn, drop = r["per_class_drawn"], r["per_class_f1_drop_points"]
            lines.append(f"| {r['strategy']} | {r['size']} | {drawn.get('disgust')} / {drawn.get('fear')} | "
                         f"{100 * r['agreement']:.2f} % | {r['macro_f1_drop_points']:+.2f} | "
                         f"{drop.get('disgust', 0):+.2f} | {drop.get('fear', 0):+.2f} |")
    return "\n".join(lines) + "\n"


def _header(args, test, ref_report) -> dict:
    return {"data": f"FER2013 (real faces): {args.data.name}, split {args.split} ({len(test)} faces)",
            "synthetic": False, "model": str(args.model),
            "fp32": {"accuracy": round(ref_report["accuracy"], 5), "macro_f1": round(ref_report["macro_f1"], 5),
                     "per_class_f1": per_class_f1(ref_report),
                     "top2_margin_quantiles": {str(k): v for k, v in ref_report["top2_margin_quantiles"].items()}}}


def _load(path: Path, key: str) -> list:
    return json.loads(path.read_text()).get(key, []) if path.exists() else []


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v))
                   + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
