"""INT8 Q/DQ placement study: NVIDIA's placement for TensorRT (Q/DQ on Conv/Gemm inputs and residual skips)
against the previous one (Q/DQ on every op ONNX Runtime quantizes), for each calibration method, measured as
top-1 agreement with FP32 and macro-F1 drop on held-out SYNTHETIC images in ONNX Runtime (CPU).

Models: ``test_efficientnet`` at 48 px trained briefly with plain torch on synthetic data (weak, macro-F1 ~0.3),
and random-init ``tf_efficientnetv2_s`` at 48 px (a stress test: its logits are near ties).

    PYTHONPATH=. .venv/bin/python benchmarks/placement_study.py --out runs/placement_study

Writes placement.json and placement.md into --out. ONNX Runtime's CPU timing of a Q/DQ graph says nothing
about TensorRT speed, so no latency is reported.

Produces: no RESULTS.md section; docs/tensorrt.md, "Q/DQ placement" (agreement with FP32: old vs new
placement).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import common
import numpy as np


def parse_args(argv=None):
    parser = common.parser(__doc__, out=Path("runs/placement_study"))
    parser.add_argument("--models", default="test_efficientnet,tf_efficientnetv2_s")
    parser.add_argument("--methods", default="moving-average,minmax,entropy,percentile")
    parser.add_argument("--placements", default="all,nvidia")
    parser.add_argument("--calib-size", type=int, default=256)
    parser.add_argument("--test-size", type=int, default=600)
    parser.add_argument("--steps", type=int, default=300, help="training steps (batch 32) for test_efficientnet")
    return common.parse(parser, argv, __file__)


def train(arch: str, spec, images, labels, steps: int):
    import torch

    from edgefer.models import create_model
    from edgefer.preprocess import prepare

    torch.manual_seed(0)
    torch.set_num_threads(1)  # on a shared 2-core machine one thread is far faster than two contended ones
    model = create_model(arch, drop_rate=0.0, drop_path_rate=0.0)
    if steps:
        x = torch.from_numpy(prepare(images, spec, color="gray"))
        y = torch.from_numpy(labels)
        counts = np.bincount(labels, minlength=7)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(len(y) / (7 * np.maximum(counts, 1)),
                                                                dtype=torch.float32))
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(y), (32,), generator=generator)
            optimizer.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    from edgefer.data import synthesize
    from edgefer.export import check
    from edgefer.export.calibration import draw
    from edgefer.export.onnx import save_onnx, torch_to_onnx
    from edgefer.export.qdq import qdq_consumers, quantize_qdq
    from edgefer.models import spec_for

    args.out.mkdir(parents=True, exist_ok=True)
    data = synthesize(3000, seed=0)
    train_idx, test_idx = np.arange(0, 2400), np.arange(2400, 2400 + args.test_size)
    calib = draw(type("Split", (), {"images": data.images[train_idx], "labels": data.labels[train_idx],
                                    "ids": np.asarray(data.ids)[train_idx]})(), args.calib_size, floor=8)
    test_images, test_labels = data.images[test_idx], data.labels[test_idx]
    rows = []
    for arch in args.models.split(","):
        import onnx

        from edgefer.models import create_model

        spec = spec_for(create_model(arch), 48)
        model = train(arch, spec, data.images[train_idx], data.labels[train_idx],
                      args.steps if arch == "test_efficientnet" else 0)
        fp32 = args.out / f"{arch}.onnx"
        proto, _ = torch_to_onnx(model, spec, "legacy")
        save_onnx(proto, fp32, spec)
        reference = check.logits(fp32, test_images, spec)
        ref_scores = check.scores(reference, test_labels, spec)
        for placement in args.placements.split(","):
            for method in args.methods.split(","):
                path = args.out / f"{arch}.{placement}.{method}.onnx"
                start = time.perf_counter()
                quantize_qdq(fp32, calib, spec, path, method=method, placement=placement)
                seconds = time.perf_counter() - start
                result = check.check_against(path, reference, test_images, test_labels, spec, ref_scores)
                rows.append({"model": arch, "placement": placement, "method": method,
                             "top1_agreement": result["top1_agreement"], "macro_f1_fp32": ref_scores["macro_f1"],
                             "macro_f1_drop_points": 100 * result["macro_f1_drop"],
                             "qdq_consumers": qdq_consumers(onnx.load(str(path))),
                             "quantize_seconds": round(seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
                path.unlink()
    report = {"data": "SYNTHETIC (edgefer.data.synthesize, seed 0)", "calib_size": args.calib_size,
              "test_size": args.test_size, "rows": rows}
    common.write_result(args.out / "placement.json", report, args)
    lines = ["| model | placement | method | top-1 agreement | macro-F1 drop (points) | DQ feeding |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        feeds = ", ".join(f"{k} {v}" for k, v in sorted(r["qdq_consumers"].items(), key=lambda kv: -kv[1])[:4])
        lines.append(f"| {r['model']} | {r['placement']} | {r['method']} | {100 * r['top1_agreement']:.1f} % | "
                     f"{r['macro_f1_drop_points']:+.2f} | {feeds} |")
    (args.out / "placement.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
