"""An INT8 row that misses a threshold the user gave (``--min-agreement``, ``--fail-on-drop``) comes with the
``edgefer export --max-drop`` command that searches for one within those bounds: in bench.json, bench.md and the
terminal; the command is one the export CLI accepts."""

import shlex

from click.testing import CliRunner

from edgefer.bench import gate, thresholds
from edgefer.bench.report import threshold_markdown
from edgefer.cli import main


def _report(agreement: float, drop_points: float = 0.2) -> dict:
    row = {"key": "openvino-int8", "label": "OpenVINO INT8 (bf16 float layers)", "precision": "int8", "status": "ok",
           "latency": {"model_b1": {"p50_ms": 1.0}, "outliers": []},
           "vs_reference": {"delta_macro_f1_points": -drop_points, "agreement": agreement}}
    ort = {**row, "key": "onnxruntime-int8", "label": "ONNX Runtime INT8 (CPU)",
           "vs_reference": {"delta_macro_f1_points": 0.0, "agreement": 1.0}}
    return {"rows": [ort, row], "model": {"path": "byo models/mobilenet.onnx"}, "data": {"path": "faces/"},
            "environment": {"load_average": [0.1] * 3, "cpu": {"usable_cores": 2}}}


def test_a_row_below_min_agreement_names_the_search_command(monkeypatch, tmp_path):
    report = _report(agreement=0.804)
    (agreement,) = thresholds(report, min_agreement=0.99)
    assert agreement["passed"] is False
    command = ("edgefer export --model 'byo models/mobilenet.onnx' --target openvino --int8 --max-drop 0.01 "
               "--min-agreement 0.99 --data faces/ --out export/openvino-int8-searched")
    assert agreement["search"] == [command]  # only the failing row; the ORT row agrees fully
    assert thresholds(report, min_agreement=0.8)[0]["search"] == []  # passed: nothing to search for
    drop, agree = thresholds(_report(0.95, drop_points=2.0), fail_on_drop=0.005, min_agreement=0.9)
    assert drop["search"] == ["edgefer export --model 'byo models/mobilenet.onnx' --target openvino --int8 "
                              "--max-drop 0.005 --min-agreement 0.9 --data faces/ --out export/openvino-int8-searched"]
    assert agree["search"] == []
    # the export CLI knows every option of the command (an unknown one fails before --help is shown)
    parsed = CliRunner().invoke(main, shlex.split(command)[1:] + ["--help"])
    assert parsed.exit_code == 0, parsed.output
    # bench.md and the terminal say it
    given = thresholds(report, min_agreement=0.99)
    full = {**report, "thresholds": given, "gate": gate(report, None, 0.99, None, given), "synthetic": False,
            "settings": {"batches": [1]}}
    assert f"- search for an INT8 model within these bounds: `{command}`" in threshold_markdown(full)

    import edgefer.bench
    import edgefer.bench.report

    monkeypatch.setattr(edgefer.bench.report, "print_table", lambda report, console: None)
    monkeypatch.setattr(edgefer.bench, "run_bench", lambda *a, **k: {
        **full, "files": {"markdown": "m", "json": "j", "csv": "c"}})
    (tmp_path / "m.onnx").write_bytes(b"")
    result = CliRunner().invoke(main, ["bench", "--model", str(tmp_path / "m.onnx"), "--data", str(tmp_path),
                                       "--min-agreement", "0.99"])
    assert result.exit_code == 3, result.output
    assert f"edgefer: search for an INT8 model within these bounds: {command}" in result.output

