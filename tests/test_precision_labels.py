"""No bench row, report line or info line names a precision other than the one that executed, on every CPU kind:
OpenVINO's CPU plugin is faked as AVX2, AVX-512 BF16 (no AMX), AMX and AMX-FP16 (``test_runtime_openvino``'s
``CPU_KINDS``), and a real `edgefer bench` of the OpenVINO FP16 and INT8 rows and `edgefer info` of the IRs it
exported are read line by line."""

from __future__ import annotations

import csv
import json
import re

import pytest
from click.testing import CliRunner

from edgefer.cli import main
from tests.backends import needs_nncf, needs_onnxruntime, needs_openvino, needs_torch
from tests.runtime_models import shared_tiny
from tests.test_runtime_openvino import CPU_KINDS, EXPECTED, _FakeCpuCore

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino, needs_nncf]

# the label each OpenVINO row must carry for the precision that executed
LABELS = {
    ("fp16", "f16"): "OpenVINO FP16", ("fp16", "f32"): "OpenVINO FP16 weights (f32 compute)",
    ("fp16", "bf16"): "OpenVINO FP16 IR (bf16 compute)",
    ("int8", "f32"): "OpenVINO INT8 (f32 float layers)", ("int8", "bf16"): "OpenVINO INT8 (bf16 float layers)",
    ("int8", "f16"): "OpenVINO INT8 (f16 float layers)",
}
# a compute precision named in a line: FP16 alone (an FP16 row label without its qualifier), bf16, f16
BARE_FP16 = re.compile(r"OpenVINO FP16(?! weights| IR)")


class _Core(_FakeCpuCore):
    """The faked CPU for every caller, also those passing keywords (NNCF: ``device_name=``, ``config=``)."""

    def compile_model(self, model, device_name="CPU", config=None, **kwargs):
        config = dict(config or {})
        hint = config.get("INFERENCE_PRECISION_HINT")
        if hint is not None and not isinstance(hint, str):  # an openvino.Type (NNCF's statistics models)
            config["INFERENCE_PRECISION_HINT"] = hint.get_type_name()
        return super().compile_model(model, device_name, config)


@pytest.mark.filterwarnings("ignore::edgefer.export.calibration.CalibrationWarning")  # the tiny data set
@pytest.mark.parametrize("kind", list(CPU_KINDS))
def test_bench_and_info_name_the_precision_that_executed(kind, fer_csv, tmp_path_factory, tmp_path, monkeypatch):
    import openvino as ov

    tiny = shared_tiny(tmp_path_factory)
    real = ov.Core()
    monkeypatch.setattr(ov, "Core", lambda: _Core(real, kind))
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, [
        "bench", "--model", str(tiny.onnx), "--data", str(fer_csv), "--out", str(out), "--targets",
        "openvino-fp16,openvino-int8", "--iters", "1", "--warmup", "0", "--batch", "1", "--threads", "1",
        "--limit", "32", "--calib-size", "16", "--no-plots"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "bench.json").read_text())
    rows = {r["key"]: r for r in report["rows"]}
    executed = {}
    for key, precision in (("openvino-fp16", "fp16"), ("openvino-int8", "int8")):
        row = rows[key]
        assert row["status"] == "ok", (row["reason"], row.get("traceback"))
        executed[precision] = row["inference_precision"]
        assert executed[precision] == EXPECTED[kind][precision], (kind, precision)
        assert row["label"] == LABELS[(precision, executed[precision])]
    with open(out / "bench.csv", newline="") as f:
        table = {r["key"]: r for r in csv.DictReader(f)}
    markdown = (out / "bench.md").read_text()
    for key, precision in (("openvino-fp16", "fp16"), ("openvino-int8", "int8")):
        assert table[key]["label"] == LABELS[(precision, executed[precision])]
        assert table[key]["inference_precision"] == executed[precision]  # beside the file's precision
        assert f"| {LABELS[(precision, executed[precision])]} | ok" in markdown
    # every line of the printed table and bench.md that names an OpenVINO row names what executed
    for text in (result.output, markdown):
        for line in text.splitlines():
            if "OpenVINO" not in line:
                continue
            if executed["fp16"] != "f16":
                assert not BARE_FP16.search(line), (kind, line)
            if "bf16" in line:
                assert "bf16" in executed.values(), (kind, line)
            if re.search(r"\bf16\b", line):
                assert "f16" in executed.values(), (kind, line)
    # edgefer info on the IRs the bench exported: the 'executes' line is what the runtime runs there
    for key, precision in (("openvino-fp16", "fp16"), ("openvino-int8", "int8")):
        shown = CliRunner().invoke(main, ["info", rows[key]["model_path"]])
        assert shown.exit_code == 0, shown.output
        what = "float layers" if precision == "int8" else "compute"
        assert f"  executes  {executed[precision]} {what} on CPU here" in shown.output, (kind, shown.output)
        other = {"f32", "f16", "bf16"} - {executed[precision]}
        executes_line = next(line for line in shown.output.splitlines() if line.startswith("  executes"))
        assert not any(re.search(rf"\b{p}\b", executes_line) for p in other), executes_line
