"""edgefer bench: runs the real CLI on a tiny model (test_efficientnet, 32 px) and tiny SYNTHETIC data,
checks the bench.json schema, that accuracy numbers equal an independent computation (ONNX Runtime and
torch called directly, torch's own resize, scikit-learn metrics), and that missing backends keep their row."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.bench import SCHEMA, SCHEMA_VERSION, gate, run_bench, thresholds
from edgefer.bench import rows as bench_rows
from edgefer.bench.energy import PowerMonitor, board_power_mw
from edgefer.bench.env import _clocks_pinned, capture
from edgefer.bench.memory import PeakMemory
from edgefer.bench.rows import ROW_KEYS, select_rows
from edgefer.bench.timing import measure
from edgefer.cli import main
from edgefer.errors import InputError, ModelError
from tests.backends import needs_onnxruntime, needs_openvino, needs_torch

ROW_FIELDS = {"key", "label", "backend", "precision", "device", "status", "reason", "inference_precision", "output",
              "model_path", "model_size_bytes", "export_s", "open_s", "accuracy", "labels", "vs_reference", "latency",
              "memory"}
TIMING_FIELDS = {"batch", "runs", "warmup", "total_s", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms",
                 "max_ms", "first_ms", "max_rest_ms", "throughput_ips"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from edgefer.models import create_model, save_checkpoint, spec_for

    model = create_model("test_efficientnet", drop_rate=0.0, drop_path_rate=0.0).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), model, spec_for(model, 32, arch="test_efficientnet"), {})


@pytest.fixture(scope="module")
def bench_run(checkpoint, fer_csv, tmp_path_factory):
    """One real `edgefer bench` run: PyTorch reference, ORT FP32, the INT8 rows; the rest skipped/missing.
    A saved calibration bundle (--calib) feeds the INT8 exports and must not reach the FP32 ones."""
    out = tmp_path_factory.mktemp("bench")
    calib = tmp_path_factory.mktemp("calib") / "bundle"
    made = CliRunner().invoke(main, ["calibrate", "--data", str(fer_csv), "--out", str(calib), "--calib-size", "64"])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(main, [
        "bench", "--model", str(checkpoint), "--data", str(fer_csv), "--out", str(out), "--targets", "onnx,int8",
        "--iters", "3", "--warmup", "1", "--batch", "1,4", "--threads", "2", "--calib", str(calib)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, json.loads((out / "bench.json").read_text()), result.output


def _torch_inputs(images, spec):
    """Network input computed independently of edgefer.preprocess: torch's bilinear resize."""
    import torch
    import torch.nn.functional as F

    x = F.interpolate(torch.from_numpy(images).float()[:, None] / 255, size=(spec.input_size,) * 2,
                      mode="bilinear", align_corners=False)
    return ((x - spec.mean[0]) / spec.std[0]).numpy()


def _sklearn_scores(y_true, y_pred):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(range(7))
    return (accuracy_score(y_true, y_pred), f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
            confusion_matrix(y_true, y_pred, labels=labels).tolist())


@needs_torch
@needs_onnxruntime
@needs_openvino
def test_bench_schema_rows_and_reports(bench_run):
    out, report, output = bench_run
    assert report["schema"] == SCHEMA and report["schema_version"] == SCHEMA_VERSION
    assert {"created", "command", "synthetic", "model", "data", "settings", "environment", "reference", "rows",
            "gate", "files"} <= set(report)
    assert report["synthetic"] is True and report["data"]["split"] == "test"
    assert [r["key"] for r in report["rows"]] == list(ROW_KEYS)  # every row keeps its place
    for row in report["rows"]:
        assert set(row) >= ROW_FIELDS, row["key"]
    status = {r["key"]: r for r in report["rows"]}
    for key in ("pytorch-fp32", "onnxruntime-fp32", "onnxruntime-int8", "ort-trt-int8", "openvino-int8"):
        assert status[key]["status"] == "ok", (key, status[key]["reason"], status[key].get("traceback"))
    for key in ("ort-trt-fp16", "openvino-fp32", "openvino-fp16"):
        assert status[key]["status"] == "skipped" and "--targets" in status[key]["reason"]
    engine = status["tensorrt-int8"]
    assert engine["status"] == "missing" and "tensorrt" in engine["reason"]
    assert report["reference"] == "pytorch-fp32" and status["pytorch-fp32"]["reference"] is True
    lat = status["openvino-int8"]["latency"]
    assert set(lat["model_b1"]) == TIMING_FIELDS and lat["model_b1"]["runs"] == 3
    assert set(lat["throughput"]) == {"1", "4"} and lat["throughput"]["4"]["batch"] == 4
    assert status["openvino-int8"]["model_size_bytes"] > 0 and status["openvino-int8"]["memory"]["peak_rss_mib"] > 0
    onnx_output = status["onnxruntime-fp32"]["output"]  # edgefer's own model declares logits
    assert (onnx_output["kind"], onnx_output["source"]) == ("logits", "declared")
    assert report["model"]["output"] == onnx_output
    ov_int8 = status["openvino-int8"]  # labelled with the precision its float layers executed in, read back
    assert ov_int8["inference_precision"] in ("f32", "bf16", "f16")
    assert ov_int8["label"] == f"OpenVINO INT8 ({ov_int8['inference_precision']} float layers)"
    # no threshold given: bench states no targets of its own anywhere
    assert "thresholds" not in report and report["gate"]["passed"] is True and not report["gate"]["violations"]
    saved_text = (out / "bench.json").read_text().lower()
    markdown_text = (out / "bench.md").read_text().lower()
    for text in (output.lower(), saved_text, markdown_text):
        assert "goal" not in text and "threshold" not in text and "x faster" not in text
    assert "issue" not in output.lower()
    ort_int8 = status["onnxruntime-int8"]
    assert ort_int8["label"] == "ONNX Runtime INT8 (CPU)" and ort_int8["backend"] == "onnxruntime"
    assert ort_int8["model_path"].endswith("onnx-int8/model.int8.onnx") and ort_int8["latency"]["model_b1"]["runs"] == 3

    with open(out / "bench.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["key"] for r in table] == list(ROW_KEYS)
    assert float(table[1]["macro_f1"]) == pytest.approx(status["onnxruntime-fp32"]["accuracy"]["macro_f1"], abs=1e-5)
    markdown = (out / "bench.md").read_text()
    assert "; outputs logits (declared)" in markdown
    assert "SYNTHETIC" in markdown and "TensorRT INT8 engine" in markdown and f"| {ov_int8['label']} | ok |" in markdown
    for name in ("latency_vs_macro_f1", "per_class_f1", "confusion_fp32_vs_int8"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"report: {out / 'bench.md'}" in output


@needs_torch
@needs_onnxruntime
@needs_openvino
def test_bench_accuracy_equals_independent_computation(bench_run, checkpoint, fer_csv):
    import onnxruntime as ort
    import torch

    from edgefer.data import prepare_splits
    from edgefer.models import load_checkpoint

    out, report, _ = bench_run
    status = {r["key"]: r for r in report["rows"]}
    test = prepare_splits(fer_csv).test
    model, spec, _ = load_checkpoint(checkpoint)
    x = _torch_inputs(test.images, spec)
    with torch.inference_mode():
        torch_pred = model(torch.from_numpy(x)).numpy().argmax(1)
    preds = {"pytorch-fp32": torch_pred}
    for key in ("onnxruntime-fp32", "ort-trt-int8"):
        session = ort.InferenceSession(status[key]["model_path"], providers=["CPUExecutionProvider"])
        preds[key] = session.run(None, {session.get_inputs()[0].name: x})[0].argmax(1)
    for key, pred in preds.items():
        accuracy, macro_f1, confusion = _sklearn_scores(test.labels, pred)
        got = status[key]["accuracy"]
        assert got["n"] == len(test) == report["data"]["n"]
        assert got["accuracy"] == pytest.approx(accuracy, abs=1e-12), key
        assert got["macro_f1"] == pytest.approx(macro_f1, abs=1e-12), key
        assert got["confusion_matrix"] == confusion, key
        vs = status[key]["vs_reference"]
        assert vs["agreement"] == pytest.approx(float((pred == torch_pred).mean()), abs=1e-12), key
        ref_f1 = _sklearn_scores(test.labels, torch_pred)[1]
        assert vs["delta_macro_f1_points"] == pytest.approx(100 * (macro_f1 - ref_f1), abs=1e-9), key


@needs_onnxruntime
def test_missing_backend_keeps_row_with_reason(bench_run, fer_csv, tmp_path, monkeypatch):
    """An ONNX source (no PyTorch row: ONNX Runtime FP32 becomes the reference) on a machine "without OpenVINO"."""
    out, _, _ = bench_run
    real = bench_rows.module_available
    monkeypatch.setattr(bench_rows, "module_available", lambda m: m != "openvino" and real(m))
    report = run_bench(out / "models" / "onnx-fp32" / "model.onnx", fer_csv, out_dir=tmp_path, targets="openvino",
                       iters=2, warmup=0, batches=(1,), plots=False, fail_on_drop=0.01, min_agreement=0.5)
    status = {r["key"]: r for r in report["rows"]}
    assert status["pytorch-fp32"]["status"] == "missing" and "ONNX file" in status["pytorch-fp32"]["reason"]
    assert report["reference"] == "onnxruntime-fp32" and status["onnxruntime-fp32"]["status"] == "ok"
    for key in ("openvino-fp32", "openvino-fp16", "openvino-int8"):
        assert status[key]["status"] == "missing"
        assert status[key]["reason"] == "openvino not installed (pip install 'edgefer[openvino]')"
    assert status["ort-trt-int8"]["status"] == "skipped"
    assert report["gate"]["passed"] is False and "no INT8 row" in report["gate"]["violations"][0]
    assert [(t["option"], t["passed"], t["value"]) for t in report["thresholds"]] == [
        ("--fail-on-drop", False, None), ("--min-agreement", False, None)]
    assert report["gate"]["violations"][1].startswith("--min-agreement 0.5: no INT8 row")
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"][ROW_KEYS.index("openvino-fp32")]["reason"] == status["openvino-fp32"]["reason"]
    assert saved["thresholds"] == report["thresholds"]
    markdown = (tmp_path / "bench.md").read_text()
    assert "## Thresholds (given on the command line): FAILED" in markdown
    assert "| --min-agreement 0.5 | lowest INT8 top-1 agreement: not measured | **FAILED** |" in markdown
    with pytest.raises(InputError, match="--min-speedup compares against PyTorch eager FP32, which cannot run here"):
        run_bench(out / "models" / "onnx-fp32" / "model.onnx", fer_csv, out_dir=tmp_path / "speed", min_speedup=2)
    assert not (tmp_path / "speed").exists()


def _int8_row(key, label, drop_points, agreement, b1_ms=1.0):
    latency = {"model_b1": {"p50_ms": b1_ms}, "outliers": []}
    return {"key": key, "label": label, "precision": "int8", "status": "ok", "latency": latency,
            "vs_reference": {"delta_macro_f1_points": -drop_points, "agreement": agreement}}


def _threshold_report(*int8, eager_ms=10.0, eager_status="ok", load=0.5):
    eager = {"key": "pytorch-fp32", "label": "PyTorch eager FP32", "precision": "fp32", "status": eager_status,
             "reason": None if eager_status == "ok" else "torch not installed",
             "latency": {"model_b1": {"p50_ms": eager_ms}, "outliers": []}, "vs_reference": None}
    return {"rows": [eager, *int8], "environment": {"load_average": [load] * 3, "cpu": {"usable_cores": 2}}}


def test_gate_and_cli_exit_code(monkeypatch, tmp_path):
    def report(drop_points):
        return {"rows": [{"key": "openvino-int8", "label": "OpenVINO INT8", "precision": "int8", "status": "ok",
                          "vs_reference": {"delta_macro_f1_points": -drop_points, "agreement": 0.9}}]}

    assert gate(report(0.5), 0.01)["passed"] is True
    failed = gate(report(1.5), 0.01)
    assert failed["passed"] is False
    assert failed["violations"] == ["--fail-on-drop 0.01: OpenVINO INT8 loses 1.50 macro-F1 points (limit 1.00)"]
    assert gate(report(99), None) == {"fail_on_drop": None, "min_agreement": None, "min_speedup": None,
                                      "passed": True, "violations": []}
    assert thresholds(report(99)) == []  # no built-in targets

    import edgefer.bench
    import edgefer.bench.report

    canned = {**report(1.5), "gate": failed, "files": {"markdown": "m", "json": "j", "csv": "c"}}
    monkeypatch.setattr(edgefer.bench, "run_bench", lambda *a, **k: canned)
    monkeypatch.setattr(edgefer.bench.report, "print_table", lambda *a, **k: None)
    (tmp_path / "m.onnx").write_bytes(b"")
    result = CliRunner().invoke(main, ["bench", "--model", str(tmp_path / "m.onnx"), "--data", str(tmp_path),
                                       "--fail-on-drop", "0.01"])
    assert result.exit_code == 3 and "edgefer: --fail-on-drop 0.01: OpenVINO INT8 loses 1.50 macro-F1 points" in (
        result.output)


def test_thresholds_report_measured_values_and_set_the_exit_code(monkeypatch, tmp_path):
    rows = (_int8_row("onnxruntime-int8", "ONNX Runtime INT8 (CPU)", 0.2, 0.998, b1_ms=4.0),
            _int8_row("openvino-int8", "OpenVINO INT8", 0.6, 0.97, b1_ms=2.5))
    report = _threshold_report(*rows)
    given = thresholds(report, fail_on_drop=0.01, min_agreement=0.95, min_speedup=4)
    assert [(t["option"], t["limit"], t["row"], t["passed"]) for t in given] == [
        ("--fail-on-drop", 0.01, "openvino-int8", True), ("--min-agreement", 0.95, "openvino-int8", True),
        ("--min-speedup", 4, "openvino-int8", True)]
    assert [t["value"] for t in given] == pytest.approx([0.006, 0.97, 4.0])
    assert gate(report, 0.01, 0.95, 4, given)["passed"] is True
    assert [t["option"] for t in thresholds(report, min_agreement=0.95)] == ["--min-agreement"]  # only those given

    failing = gate(report, 0.005, 0.99, 5)
    assert failing["passed"] is False and failing["violations"] == [
        "--fail-on-drop 0.005: OpenVINO INT8 loses 0.60 macro-F1 points (limit 0.50)",
        "--min-agreement 0.99: OpenVINO INT8 agrees with the reference on 97.00% of the images (at least 99.00% "
        "required)",
        "--min-speedup 5: the fastest INT8 row, OpenVINO INT8, is 4.00x faster than PyTorch eager FP32 at batch 1 "
        "(at least 5x required)"]
    no_eager = thresholds(_threshold_report(*rows, eager_status="missing"), min_speedup=2)[0]
    assert no_eager["passed"] is False and no_eager["value"] is None
    assert no_eager["violations"] == ["PyTorch eager FP32 did not run (missing: torch not installed), so there is "
                                      "no speed-up to check"]
    flagged = _int8_row("openvino-int8", "OpenVINO INT8", 0.6, 0.97, b1_ms=0.1)
    flagged["latency"]["outliers"] = [{"measurement": "model_b1", "kind": "warm-up-leak", "message": "..."}]
    speedup = thresholds(_threshold_report(rows[0], flagged, load=9), min_speedup=2)[0]
    assert speedup["row"] == "onnxruntime-int8" and speedup["value"] == 2.5  # untrusted timings do not count
    assert "load average 9.0 on 2 cores" in speedup["note"]

    import edgefer.bench
    import edgefer.bench.report

    printed = []
    monkeypatch.setattr(edgefer.bench.report, "print_table", lambda report, console: printed.append(report))
    (tmp_path / "m.onnx").write_bytes(b"")
    args = ["bench", "--model", str(tmp_path / "m.onnx"), "--data", str(tmp_path)]
    for options, expected_gate, code in (
            (["--min-agreement", "0.95", "--min-speedup", "4"], gate(report, None, 0.95, 4), 0),
            (["--min-agreement", "0.99"], gate(report, None, 0.99), 3),
            (["--min-speedup", "5"], gate(report, None, None, 5), 3)):
        seen = {}

        def fake(*a, expected=expected_gate, seen=seen, **k):
            seen.update(k)
            return {**report, "gate": expected, "files": {"markdown": "m", "json": "j", "csv": "c"}}

        monkeypatch.setattr(edgefer.bench, "run_bench", fake)
        result = CliRunner().invoke(main, args + options)
        assert result.exit_code == code, result.output
        assert seen["min_agreement"] == (float(options[1]) if options[0] == "--min-agreement" else None)
        for violation in expected_gate["violations"]:
            assert f"edgefer: {violation}" in result.output
    for bad in ("nan", "inf", "-0.1", "1.5"):
        refused = CliRunner().invoke(main, args + ["--min-agreement", bad])
        assert refused.exit_code == 2 and "--min-agreement" in refused.output, bad
    for bad in ("nan", "inf", "0", "-1"):
        refused = CliRunner().invoke(main, args + ["--min-speedup", bad])
        assert refused.exit_code == 2 and "--min-speedup" in refused.output, bad
    with pytest.raises(InputError, match="--min-agreement"):
        run_bench(tmp_path / "m.onnx", tmp_path, out_dir=tmp_path / "o", min_agreement=float("nan"))


@needs_torch
@needs_onnxruntime
def test_bench_thresholds_in_every_report(checkpoint, fer_csv, tmp_path):
    """A real run with two thresholds, one passing and one failing: both listed with their measured values in
    bench.json, bench.md and the console, and the command exits 3."""
    result = CliRunner().invoke(main, [
        "bench", "--model", str(checkpoint), "--data", str(fer_csv), "--out", str(tmp_path), "--targets",
        "onnxruntime-int8", "--iters", "3", "--warmup", "1", "--batch", "1", "--threads", "2", "--no-plots",
        "--min-agreement", "0", "--min-speedup", "1000000"])
    assert result.exit_code == 3, result.output + repr(result.exception)
    report = json.loads((tmp_path / "bench.json").read_text())
    agreement, speedup = report["thresholds"]
    row = next(r for r in report["rows"] if r["key"] == "onnxruntime-int8")
    assert (agreement["option"], agreement["passed"], agreement["row"]) == ("--min-agreement", True, row["key"])
    assert agreement["value"] == row["vs_reference"]["agreement"]
    eager = next(r for r in report["rows"] if r["key"] == "pytorch-fp32")
    assert (speedup["option"], speedup["passed"], speedup["row"]) == ("--min-speedup", False, row["key"])
    assert speedup["value"] == pytest.approx(eager["latency"]["model_b1"]["p50_ms"] / row["latency"]["model_b1"]["p50_ms"])
    assert report["gate"]["passed"] is False and len(report["gate"]["violations"]) == 1
    markdown = (tmp_path / "bench.md").read_text()
    assert "## Thresholds (given on the command line): FAILED" in markdown
    assert f"| --min-agreement 0 | lowest INT8 top-1 agreement {agreement['value']:.2%} (onnxruntime-int8) | passed |" in (
        markdown)
    assert f"| --min-speedup 1e+06 | fastest INT8 batch-1 p50 speed-up over PyTorch eager FP32 {speedup['value']:.2f}x" in (
        markdown)
    output = " ".join(result.output.split())
    assert "--min-agreement 0 passed: lowest INT8 top-1 agreement" in output
    assert "--min-speedup 1e+06 FAILED: fastest INT8 batch-1 p50" in output
    assert "edgefer: --min-speedup 1e+06: the fastest INT8 row, ONNX Runtime INT8 (CPU), is" in output
    assert "goal" not in output.lower() and "goal" not in markdown.lower()


def test_cli_rejects_bad_options(fer_csv, tmp_path):
    runner = CliRunner()
    bad_batch = runner.invoke(main, ["bench", "--model", str(fer_csv), "--data", str(fer_csv), "--batch", "0"])
    assert bad_batch.exit_code == 2 and "comma-separated integers in [1, 65536]" in bad_batch.output
    with pytest.raises(ModelError, match="unknown row or group 'tensorflow'.*openvino-int8"):
        select_rows("onnx,tensorflow")
    assert select_rows("openvino,pytorch-fp32") == ["pytorch-fp32", "openvino-fp32", "openvino-fp16", "openvino-int8"]


@needs_torch
@needs_onnxruntime
def test_cli_unknown_split_is_one_line_error(checkpoint, fer_csv, tmp_path):
    result = CliRunner().invoke(main, ["bench", "--model", str(checkpoint), "--data", str(fer_csv), "--split", "dev",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "Invalid value for '--split': 'dev' is not one of 'auto', 'all', 'train', 'val', 'test', " in result.output


def test_cli_options_are_generated_from_bench_settings():
    from dataclasses import fields

    from edgefer.bench.run import SPLITS, BenchSettings

    help_text = " ".join(CliRunner().invoke(main, ["bench", "--help"], terminal_width=200).output.split())
    assert f"--split [{'|'.join(SPLITS)}]" in help_text and "[default: auto]" in help_text
    assert "--batch TEXT Batch sizes for throughput (comma-separated). [default: 1,32]" in help_text
    for f in fields(BenchSettings):  # every setting has its option (export_options: the export options it takes)
        declared = [f.metadata["option"]] if "option" in f.metadata else [
            "--" + name.replace("_", "-") for name in f.metadata["export_options"]]
        for declaration in declared:
            assert all(f"{flag} " in help_text for flag in declaration.split("/")), (f.name, declaration)


def test_measure_budgets_and_statistics():
    calls = []
    by_iters = measure(lambda: calls.append(1), iters=7, warmup=2)
    assert by_iters["runs"] == 7 and len(calls) == 9 and by_iters["warmup"] == 2
    by_time = measure(lambda: None, duration=0.05, warmup=0)
    assert by_time["runs"] >= 3 and by_time["total_s"] >= 0.05
    import time

    slow = measure(lambda: time.sleep(0.002), iters=5, warmup=0, batch=8)
    assert 2.0 <= slow["p50_ms"] <= slow["p99_ms"] <= slow["max_ms"]
    assert slow["throughput_ips"] == pytest.approx(8e3 / slow["mean_ms"])
    with pytest.raises(ValueError, match="iters"):
        measure(lambda: None, iters=0)


def test_environment_and_memory():
    env = capture(threads=64)
    assert env["cpu"]["logical_cores"] >= 1 and env["libraries"]["numpy"] == np.__version__
    assert any("64 threads requested" in w for w in env["warnings"])
    assert _clocks_pinned("CPU0 Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400")
    assert not _clocks_pinned("CPU0 Online=1 Governor=schedutil MinFreq=115200 MaxFreq=1510400 CurrentFreq=729600")
    with PeakMemory() as mem:
        block = np.ones(20 * 2**20 // 8)  # 20 MiB, touched
        del block
    assert mem.result()["delta_mib"] >= 15 or mem.result()["method"].startswith("ru_maxrss")


def test_tegrastats_power_parsing():
    orin_nano = ("RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB CPU [2%@729,1%@729] EMC_FREQ 0% GR3D_FREQ 0% "
                 "cpu@47.5C VDD_IN 5010mW/5010mW VDD_CPU_GPU_CV 990mW/990mW VDD_SOC 1506mW/1506mW")
    assert board_power_mw(orin_nano) == (5010.0, "VDD_IN")
    nano = "RAM 1543/3964MB (lfb 4x2MB) CPU [3%@102] EMC_FREQ 0% GR3D_FREQ 0% POM_5V_IN 2145/2145 POM_5V_GPU 0/0"
    assert board_power_mw(nano) == (2145.0, "POM_5V_IN")
    agx = "RAM 3000/30000MB VDD_GPU_SOC 3127mW/3127mW VDD_CPU_CV 782mW/782mW VIN_SYS_5V0 4235mW/4235mW"
    assert board_power_mw(agx) == (8144.0, "sum of VDD_CPU_CV+VDD_GPU_SOC+VIN_SYS_5V0")
    assert board_power_mw("RAM 1543/3964MB SWAP 0/1982MB") is None
    monitor = PowerMonitor()
    monitor.samples, monitor.method = [4000.0, 6000.0], "VDD_IN"
    assert monitor.energy(runs=100, seconds=2.0)["mj_per_inference"] == pytest.approx(100.0)
    assert PowerMonitor().energy(runs=10, seconds=1.0) is None
