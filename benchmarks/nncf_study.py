"""Which NNCF choices keep OpenVINO's fused INT8 kernels, at what accuracy: one INT8 IR per choice, each timed at
batch 1 and 32 with OpenVINO's per-node profiling and scored against the FP32 model through ``edgefer.runtime``.

    PYTHONPATH=. .venv/bin/python benchmarks/nncf_study.py --model runs/v2s --data fer_synth.csv --out runs/nncf48
    PYTHONPATH=. .venv/bin/python benchmarks/nncf_study.py --size 112 --out runs/nncf112   # random init, BN recal.

Variants (``--variants``): ``mixed`` (edgefer's default: symmetric weights, asymmetric activations, fast bias
correction), ``performance`` (all symmetric), ``mixed-full-bc`` (NNCF's full BiasCorrection instead of the fast
one), ``mixed-ignore-se`` (the squeeze-excite sub-graphs in the ignored scope), ``mixed-ignore-first-last``
(stem and classifier kept in floating point). NNCF's ``model_type`` has one value (TRANSFORMER), which does not
apply to a CNN, so it is not a variant.

Per variant: agreement and macro-F1 drop against the FP32 IR on the data's test split, FakeQuantize count, how many
executed convolution nodes run in INT8 (the compiled model's ``runtimePrecision`` of every Convolution /
GroupConvolution node, and whether SiLU was fused into it: ``originalLayersNames``), and the profiled time per
op group (``profile_ops.profile_openvino``: dense conv, depthwise, SE, SiLU, elementwise, reorders). Writes
``OUT/nncf_study.json`` and ``OUT/nncf_study.md``.

Produces: no RESULTS.md section; docs/bench.md, "NNCF choices and OpenVINO's INT8 kernels"
(``results/nncf-study/``).
"""

from __future__ import annotations

import collections
import time
import warnings
from pathlib import Path

import common

VARIANTS = ("mixed", "performance", "mixed-full-bc", "mixed-ignore-se", "mixed-ignore-first-last")


def parse_args(argv=None):
    parser = common.parser(__doc__, out=Path("runs/nncf_study"), threads=2, size=112)
    parser.add_argument("--model", type=Path, help="trained edgefer checkpoint (default: random init, BN recal.)")
    parser.add_argument("--arch", default="tf_efficientnetv2_s")
    parser.add_argument("--data", type=Path, help="labelled data (default: 3,000 synthetic faces)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--runs", type=int, default=100, help="profiled runs at batch 1 (batch 32: a tenth)")
    parser.add_argument("--limit", type=int, default=600, help="test images scored per variant")
    return common.parse(parser, argv, __file__)


def _variant_options(name: str, model) -> dict:
    """quantize_openvino keyword arguments for a variant (the ignored scopes by node name, from the IR)."""
    import nncf

    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    if name == "mixed":
        return {}
    if name == "performance":
        return {"preset": "performance"}
    if name == "mixed-full-bc":
        return {"fast_bias_correction": False}
    if name == "mixed-ignore-se":
        return {"ignored_scope": nncf.IgnoredScope(names=[n for n in names if "/se/" in n or ".se." in n],
                                                   validate=False)}
    if name == "mixed-ignore-first-last":
        return {"keep_fp": ("first-conv", "classifier")}
    raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")


def conv_precisions(xml: Path, size: int, channels: int, threads: int) -> dict:
    """Executed Convolution/GroupConvolution nodes by runtime precision, and how many have an activation fused."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape([1, channels, size, size])
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    counts: dict = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer = str(rt["layerType"].astype(str)) if "layerType" in rt else ""
        if layer not in ("Convolution", "GroupConvolution"):
            continue
        precision = str(rt["runtimePrecision"].astype(str)) if "runtimePrecision" in rt else "?"
        fused = str(rt["originalLayersNames"].astype(str)).count(",") if "originalLayersNames" in rt else 0
        counts[f"{layer} {precision}"] += 1
        counts[f"{layer} {precision} with fused ops"] += int(fused > 0)
    return dict(counts)


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    from edgefer.data import prepare_splits
    from edgefer.export import ExportConfig, check, export
    from edgefer.export.calibration import from_data
    from edgefer.export.openvino import quantize_openvino, read_model
    from edgefer.logs import QUIET, set_verbosity

    set_verbosity(QUIET)
    import profile_ops as profile
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    if args.model is None:
        import run_matrix as matrix
        data = args.data or matrix.synthetic_data(work, 3000, 0)
        source = matrix.recalibrated_init(data, work, args.size, 256, args.threads, arch=args.arch)
    else:
        data, source = args.data, args.model
    if data is None:
        raise SystemExit("--data is required with --model")
    splits = prepare_splits(data)
    test = splits.test if len(splits.test) else splits.val
    images, labels = test.images[: args.limit], test.labels[: args.limit]
    fp32_dir = work / "openvino-fp32"
    if not (fp32_dir / "model.xml").is_file():
        export(source, ExportConfig.build("openvino", exporter="legacy", parity_atol=0.01), fp32_dir, data=splits)
    fp32 = fp32_dir / "model.xml"
    spec = check.open_model(fp32).spec
    calib = from_data(splits, 512, "stratified", 0)
    reference = check.logits(fp32, images, spec)
    ref_scores = check.scores(reference, labels, spec)
    batches = [int(b) for b in args.batches.split(",")]
    rows = [{"variant": "fp32 (f32 forced)", **_timings(profile, fp32, batches, args, spec, "f32")}]
    for name in args.variants.split(","):
        xml = work / f"int8-{name}" / "model.int8.xml"
        clock = time.perf_counter()
        info = quantize_openvino(fp32, calib, spec, xml, **_variant_options(name, read_model(fp32)))
        result = check.check_against(xml, reference, images, labels, spec, ref_scores)
        model = read_model(xml)
        rows.append({"variant": name, "quantize_seconds": round(time.perf_counter() - clock, 1),
                     "ignored_nodes": len(info.get("ignored_nodes", [])),
                     "fake_quantize": sum(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()),
                     "top1_agreement": result["top1_agreement"], "macro_f1_drop_points": 100 * result["macro_f1_drop"],
                     "convolutions": conv_precisions(xml, spec.input_size, spec.channels, args.threads),
                     **_timings(profile, xml, batches, args, spec, None)})
        r = rows[-1]
        print(f"{name}: agreement {100 * r['top1_agreement']:.1f} %, drop {r['macro_f1_drop_points']:+.2f} pts, "
              + ", ".join(f"b{b} {r[f'b{b}']['wall_ms']:.2f} ms" for b in batches), flush=True)
    report = {**common.provenance(args),
              "model": str(args.model or f"random-init {args.arch} @ {args.size} px, BatchNorm recalibrated"),
              "data": f"{data} (test split, {len(labels)} images; SYNTHETIC unless a real data set was given)",
              "fp32_macro_f1": ref_scores["macro_f1"], "rows": rows}
    common.write_result(args.out / "nncf_study.json", report, args)
    (args.out / "nncf_study.md").write_text(markdown(report, batches))
    print(markdown(report, batches))


def _timings(profile, xml: Path, batches, args, spec, precision) -> dict:
    out = {}
    for batch in batches:
        runs = args.runs if batch == 1 else max(5, args.runs // 10)
        result = profile.profile_openvino(xml, batch, args.threads, runs, 5, precision, spec.input_size,
                                          spec.channels)
        out[f"b{batch}"] = {"wall_ms": result["wall_p50_ms"], "groups_ms": result["groups_ms"]}
    return out


def markdown(report: dict, batches) -> str:
    groups = sorted({g for r in report["rows"] for g in r[f"b{batches[0]}"]["groups_ms"]})
    lines = [f"`{report['command']}`", "", f"Machine: {report['machine']}; load average {report['load_average']}. "
             f"Model: {report['model']}. Data: {report['data']}.", "",
             "| variant | agreement | macro-F1 drop (pts) | FakeQuantize | INT8 convs (fused) | "
             + " | ".join(f"b{b} ms" for b in batches) + " | " + " | ".join(f"b1 {g} ms" for g in groups) + " |",
             "|---" * (5 + len(batches) + len(groups)) + "|"]
    for r in report["rows"]:
        convs = r.get("convolutions", {})
        int8 = sum(v for k, v in convs.items() if ("i8" in k or "u8" in k) and "fused" not in k)
        fused = sum(v for k, v in convs.items() if ("i8" in k or "u8" in k) and "fused" in k)
        total = sum(v for k, v in convs.items() if "fused" not in k)
        agree = f"{100 * r['top1_agreement']:.1f} %" if "top1_agreement" in r else "(reference)"
        drop = f"{r['macro_f1_drop_points']:+.2f}" if "macro_f1_drop_points" in r else ""
        lines.append(f"| {r['variant']} | {agree} | {drop} | {r.get('fake_quantize', '')} | "
                     + (f"{int8}/{total} ({fused})" if total else "") + " | "
                     + " | ".join(f"{r[f'b{b}']['wall_ms']:.2f}" for b in batches) + " | "
                     + " | ".join(f"{r['b1']['groups_ms'].get(g, 0):.2f}" for g in groups) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
