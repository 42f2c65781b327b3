"""INT8 fidelity of the TensorRT Q/DQ graph, row by row, against the project goal (macro-F1 drop <= 0.3 points,
top-1 agreement >= 99.5 %, every convolution in INT8): the previous placement (Q/DQ on every op ONNX Runtime
quantizes), NVIDIA's placement with each calibration method, the gated search (``--max-drop``/``--min-agreement``)
and, when a QAT run is given, quantization-aware fine-tuning (``edgefer qat``).

Every row is evaluated the same way, through ``edgefer.runtime`` (ONNX Runtime, CPU) on the data's test split:
top-1 agreement with the FP32 ONNX, macro-F1 drop in points, the share of convolution MACs the graph runs in INT8
(``edgefer.export.quantizers.macs``) and the batch-1 latency ratio INT8 / FP32 in ONNX Runtime on this CPU (a Q/DQ
graph's CPU time says nothing about TensorRT's; it is there to show what a row costs where it is measured).

    # a trained checkpoint
    PYTHONPATH=. python benchmarks/int8_fidelity.py --model runs/v2s --data fer_synth.csv --qat runs/v2s-qat \\
        --out runs/fidelity-trained
    # the stress test: random-init tf_efficientnetv2_s at 112 px
    PYTHONPATH=. python benchmarks/int8_fidelity.py --random tf_efficientnetv2_s --img-size 112 \\
        --data fer_synth.csv --out runs/fidelity-random112

Writes fidelity.json and fidelity.md into --out (both name the command and the machine).

Produces: RESULTS.md, section "INT8 fidelity" (both tables).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import common

GOAL_DROP_POINTS, GOAL_AGREEMENT = 0.3, 0.995


def parse_args(argv=None):
    parser = common.parser(__doc__, out=Path("runs/int8_fidelity"))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="trained edgefer checkpoint (run directory)")
    source.add_argument("--random", metavar="ARCH", help="a random-init timm model (stress test)")
    parser.add_argument("--img-size", type=int, default=112, help="input size of --random")
    parser.add_argument("--data", type=Path, required=True, help="FER2013-layout CSV (train/val/test)")
    parser.add_argument("--qat", type=Path, help="an `edgefer qat` run of --model (its model_qdq.onnx is a row)")
    parser.add_argument("--methods", default="moving-average,minmax,entropy,percentile")
    parser.add_argument("--old-methods", default="moving-average", help="methods for the previous placement")
    parser.add_argument("--max-drop", type=float, default=0.003, help="the gated search's macro-F1 bound")
    parser.add_argument("--min-agreement", type=float, default=0.995, help="the gated search's agreement bound")
    parser.add_argument("--attempts", type=int, default=12, help="the gated search's attempt budget")
    parser.add_argument("--no-gated", action="store_true", help="skip the gated search row")
    parser.add_argument("--limit", type=int, help="evaluate on the first N test images only")
    return common.parse(parser, argv, __file__)


def _source(args, work: Path) -> Path:
    if args.model is not None:
        return args.model
    import torch

    from edgefer.models import create_model, save_checkpoint, spec_for

    torch.manual_seed(0)
    model = create_model(args.random, drop_rate=0.0, drop_path_rate=0.0).eval()
    return save_checkpoint(work / "random-init", model, spec_for(model, args.img_size, arch=args.random), {})


def gated_row(args, source, splits, calib, gated: Path, measure, rows: list) -> None:
    """The gated search (post-training only: QAT is its own row): its chosen model measured, or its best attempt
    from the report it leaves beside ``gated`` when nothing passes."""
    from edgefer.errors import EdgeferError
    from edgefer.export import ExportConfig, export

    options = dict(exporter="legacy", max_drop=args.max_drop, min_agreement=args.min_agreement,
                   search_attempts=args.attempts, search_qat_epochs=0)  # post-training only: QAT is its own row
    started = time.perf_counter()
    try:
        result = export(source, ExportConfig.build("tensorrt", "int8", **options), gated, data=splits, calib=calib)
        search = result.int8_search
        measure(f"gated PTQ (--max-drop {args.max_drop} --min-agreement {args.min_agreement})",
                gated / result.model, search_passed=True, attempts=len(search["attempts"]),
                kept_in_float=search["attempts"][search["chosen"]].get("kept_in_float"),
                search_seconds=round(time.perf_counter() - started, 1))
    except EdgeferError as exc:
        report = Path(f"{gated}.int8_search.json")
        search = json.loads(report.read_text()) if report.exists() else {}
        attempts = search.get("attempts", [])
        rows.append({"row": f"gated PTQ (--max-drop {args.max_drop} --min-agreement {args.min_agreement})",
                     "search_passed": False, "reason": str(exc).splitlines()[0], "attempts": len(attempts),
                     "best_attempt": min(attempts, key=lambda a: a.get("shortfall", 1e9)) if attempts else None,
                     "search_seconds": round(time.perf_counter() - started, 1), "goal_met": False})
        print(f"gated PTQ: no attempt passed ({len(attempts)} attempts)", flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    from edgefer.data import prepare_splits
    from edgefer.export import ExportConfig, check, export
    from edgefer.export.calibration import CalibrationSet
    from edgefer.export.config import QuantOptions
    from edgefer.export.qdq import quantize_qdq
    from edgefer.export.quantizers.qdq import QdqQuantizer
    from edgefer.logs import QUIET, set_verbosity

    set_verbosity(QUIET)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    source = _source(args, work)
    splits = prepare_splits(args.data, val_fraction=0.1, seed=0)
    test = splits.test if len(splits.test) else splits.val
    images, labels = test.images[: args.limit], test.labels[: args.limit]

    clock = time.perf_counter()
    base = export(source, ExportConfig.build("tensorrt", "int8", exporter="legacy"), work / "nvidia-moving-average",
                  data=splits)
    fp32 = work / "nvidia-moving-average" / "model.onnx"
    spec = check.open_model(fp32).spec
    calib = CalibrationSet.load(work / "nvidia-moving-average" / "calibration")
    reference = check.logits(fp32, images, spec)
    ref_scores = check.scores(reference, labels, spec)
    fp32_ms = check.latency_ms(fp32)
    layer_maps = QdqQuantizer(fp32, calib, spec, QuantOptions())
    print(f"FP32: macro-F1 {ref_scores['macro_f1']:.4f}, accuracy {ref_scores['accuracy']:.4f} on {len(labels)} "
          f"test images; batch-1 {fp32_ms:.2f} ms ({time.perf_counter() - clock:.0f} s)", flush=True)

    rows = []

    def measure(row: str, path: Path, **extra) -> None:
        result = check.check_against(path, reference, images, labels, spec, ref_scores)
        share = layer_maps.layer_map(path).share()["share"]
        int8_ms = check.latency_ms(path)
        drop = 100 * result["macro_f1_drop"]
        rows.append({"row": row, "top1_agreement": result["top1_agreement"], "macro_f1": result["macro_f1"],
                     "macro_f1_drop_points": drop, "conv_macs_int8": share,
                     "latency_ratio_ort_cpu": int8_ms / fp32_ms, "int8_ms": int8_ms,
                     "goal_met": bool(drop <= GOAL_DROP_POINTS and result["top1_agreement"] >= GOAL_AGREEMENT
                                      and share is not None and share >= 1.0), **extra})
        r = rows[-1]
        print(f"{row}: agreement {100 * r['top1_agreement']:.1f} %, drop {drop:+.2f} pts, conv MACs INT8 "
              f"{100 * (share or 0):.1f} %, latency x{r['latency_ratio_ort_cpu']:.2f}", flush=True)

    for method in [m for m in args.old_methods.split(",") if m]:
        path = work / f"all-{method}.onnx"
        quantize_qdq(fp32, calib, spec, path, method=method, placement="all")
        measure(f"previous placement (Q/DQ on every op), {method}", path, placement="all", method=method)
    for method in [m for m in args.methods.split(",") if m]:
        out = work / f"nvidia-{method}"
        if not out.exists():
            export(source, ExportConfig.build("tensorrt", "int8", exporter="legacy", calib_method=method), out,
                   data=splits, calib=calib)
        measure(f"NVIDIA placement, {method}", out / "model.int8.qdq.onnx", placement="nvidia", method=method)
    if not args.no_gated:
        gated_row(args, source, splits, calib, work / "gated", measure, rows)
    if args.qat is not None:
        qat = json.loads((args.qat / "qat.json").read_text())
        measure("QAT (edgefer qat)", args.qat / "model_qdq.onnx", qat_epochs=qat.get("command", ""))

    command = args.command
    report = {**common.provenance(args),
              "data": f"{args.data} (test split, {len(labels)} images)", "synthetic": base.synthetic,
              "model": str(args.model or f"random-init {args.random} @ {args.img_size} px"),
              "fp32": {**{k: ref_scores[k] for k in ("macro_f1", "accuracy")}, "batch1_ms_ort_cpu": fp32_ms},
              "goal": {"max_drop_points": GOAL_DROP_POINTS, "min_agreement": GOAL_AGREEMENT, "conv_macs_int8": 1.0},
              "rows": rows}
    common.write_result(args.out / "fidelity.json", report, args)
    lines = [f"`{command}`", "", f"Machine: {report['machine']}. Data: {report['data']}"
             f"{' — SYNTHETIC' if base.synthetic else ''}. FP32 macro-F1 {ref_scores['macro_f1']:.3f}.", "",
             "| row | top-1 agreement | macro-F1 drop (points) | conv MACs in INT8 | latency INT8/FP32 (ORT CPU) | goal |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "top1_agreement" not in r:
            lines.append(f"| {r['row']} | no attempt passed ({r['attempts']} attempts) | | | | no |")
            continue
        lines.append(f"| {r['row']} | {100 * r['top1_agreement']:.1f} % | {r['macro_f1_drop_points']:+.2f} | "
                     f"{100 * (r['conv_macs_int8'] or 0):.1f} % | {r['latency_ratio_ort_cpu']:.2f} | "
                     f"{'met' if r['goal_met'] else 'no'} |")
    (args.out / "fidelity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
