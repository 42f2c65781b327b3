"""Odd inputs a careful user tried, each one line and an exit code, and for an interrupt what is left behind:
a normalisation a float32 pipeline cannot hold (no numpy warnings), stdout on a full device, Ctrl-C during
export and bench, broken calibration bundles given to export. Torch-free: a tiny ONNX classifier with a
sidecar spec."""

import json
import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from tests.signals import default_sigint

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

INTERRUPTED = "edgefer: error: interrupted (Ctrl-C)"
EDGEFER = [sys.executable, "-c", "import sys; from edgefer.cli import main; sys.exit(main())"]


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _write_model(folder, **spec_fields):
    """A Flatten + MatMul classifier (1x8x8 gray -> 7 logits) and its sidecar spec: (model, sidecar)."""
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.spec import ModelSpec, sidecar_path

    folder.mkdir(parents=True, exist_ok=True)
    weights = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (64, 7)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])], [weights])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = folder / "tiny.onnx"
    onnx.save(proto, str(model))
    spec = ModelSpec(input_size=8, channels=1, mean=(0.5,), std=(0.5,), arch="tiny").to_dict()
    spec.update(spec_fields)
    sidecar_path(model).write_text(json.dumps(spec))
    return model, sidecar_path(model)


@pytest.fixture
def model(tmp_path):
    return _write_model(tmp_path / "model")[0]


@pytest.fixture
def face(tmp_path):
    from PIL import Image

    path = tmp_path / "face.png"
    Image.fromarray(np.full((48, 48), 100, np.uint8)).save(path)
    return path


def _no_stage_left(folder):
    return [p.name for p in folder.iterdir() if ".stage-" in p.name or p.name.endswith(".tmp")]


# ------------------------------------------------------------------------- normalisation float32 cannot hold

STD_RANGE = "must be in [1e-06, 1e+06] (pixels are scaled by 1 / (255 std))"


@pytest.mark.parametrize("field, value, why", [
    ("std", 1e-300, STD_RANGE),
    ("std", 5e-324, STD_RANGE),
    ("std", 1e308, STD_RANGE),  # was accepted: every face predicted as 1/7 of each class
    ("mean", 1e308, "must be in [-1e+06, 1e+06]"),
    ("mean", -1e308, "must be in [-1e+06, 1e+06]"),
])
def test_normalisation_float32_cannot_hold_is_one_line_without_numpy_warnings(field, value, why, tmp_path, face):
    model, sidecar = _write_model(tmp_path / "odd", **{field: [value]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _cli("predict", face, "--model", model, "--no-detect")
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [f"edgefer: error: {sidecar}: field '{field}' {why}, got [{value!r}]"]
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_normalisation_at_its_bounds_is_finite_and_quiet():
    from edgefer.preprocess import prepare
    from edgefer.spec import ModelSpec

    for mean, std in [(1e6, 1e-6), (-1e6, 1e-6), (1e6, 1e6), (0.0, 1e-6)]:
        spec = ModelSpec(input_size=8, channels=1, mean=(mean,), std=(std,))
        spec.validate()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            batch = prepare(np.array([[0, 255], [128, 7]], np.uint8), spec, color="gray")
        assert np.isfinite(batch).all()


# ------------------------------------------------------------------------------- stdout on a full device


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("command", ["data inspect", "data inspect --json", "info --json", "predict"])
def test_stdout_on_a_full_device_is_one_line_exit_2(command, fer_csv, model, face):
    argv = {"data inspect": ["data", "inspect", fer_csv], "data inspect --json": ["data", "inspect", fer_csv, "--json"],
            "info --json": ["info", model, "--json"],
            "predict": ["predict", face, "--model", model, "--no-detect"]}[command]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*EDGEFER, *map(str, argv)], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("edgefer: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("edgefer: error: "), proc.stderr
    assert lines[0] == "edgefer: error: standard output: No space left on device", proc.stderr


# ---------------------------------------------------------------------------------- Ctrl-C in export, bench


@pytest.mark.parametrize("exist_ok", [False, True])
def test_ctrl_c_during_export_is_one_line_130_and_keeps_the_old_set(exist_ok, model, tmp_path):
    out = tmp_path / "export"
    if exist_ok:  # an earlier export the interrupted one would replace
        assert _cli("export", "--model", model, "--target", "onnx", "--out", out, "-q").exit_code == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    env = dict(os.environ, EDGEFER_TEST_PAUSE_AT="before-publish")  # the new set is staged, not yet published
    proc = subprocess.Popen([*EDGEFER, "export", "--model", str(model), "--target", "onnx", "--out", str(out), "-q",
                             *(["--exist-ok"] if exist_ok else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint)
    try:
        assert proc.stderr.readline() == "edgefer-test: paused at before-publish\n"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert stderr.splitlines() == [INTERRUPTED] and stdout == ""
    if exist_ok:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    else:
        assert not out.exists()
    assert _no_stage_left(tmp_path) == []


def test_ctrl_c_during_bench_is_one_line_130_and_publishes_nothing(model, fer_csv, tmp_path, monkeypatch):
    import edgefer.bench.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgefer.bench.run, "time_row", interrupted)
    out = tmp_path / "bench"
    result = _cli("bench", "--model", model, "--data", fer_csv, "--out", out, "--targets", "onnx", "--iters", "2",
                  "--warmup", "1", "--batch", "1", "--threads", "1", "--limit", "32", "-q")
    assert result.exit_code == 130, result.output
    assert "Aborted!" not in result.output and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("edgefer:")] == [INTERRUPTED]
    assert result.output.splitlines()[-1] == INTERRUPTED
    assert not out.exists() and _no_stage_left(tmp_path) == []


# ------------------------------------------------------------------------ broken calibration bundles (CLI)


@pytest.mark.parametrize("damage, message", [
    ("empty", "cannot read calibration arrays"),
    ("npy", "one array saved with np.save, not an .npz archive"),
    ("0-d labels", "expected uint8 images (N, H, W) with N labels and ids"),
])
def test_export_given_a_broken_calibration_bundle_is_one_line_exit_2(damage, message, model, fer_csv, tmp_path):
    from edgefer.export.calibration import CalibrationSet, from_data

    bundle = from_data(fer_csv, 14, "stratified", 0, 0).save(tmp_path / "calib")  # floor 0: no floor warning
    good = CalibrationSet.load(bundle)
    npz = bundle / "calib.npz"
    if damage == "empty":
        npz.write_bytes(b"")
    else:
        with open(npz, "wb") as f:
            if damage == "npy":
                np.save(f, good.images)
            else:
                np.savez(f, images=good.images, labels=np.array(3), ids=good.ids)
    out = tmp_path / "int8"
    result = _cli("export", "--model", model, "--target", "onnx", "--int8", "--calib", bundle, "--out", out, "-q")
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgefer: error: ") and message in lines[0], lines
    assert "calib.npz" in lines[0] or str(bundle) in lines[0], lines
    assert not out.exists() and _no_stage_left(tmp_path) == []


# ------------------------------------------------------------------- IRs OpenVINO's IR reader does not take

SILENT_IR = {
    "html": "<html><body>not a network</body></html>",
    "entity bomb": '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><net>&b;</net>',
    "empty net": "<?xml version='1.0'?><net/>",
    "version 9": '<?xml version="1.0"?><net name="m" version="9"><layers/><edges/></net>',
    "version 12": '<?xml version="1.0"?><net name="m" version="12"><layers/><edges/></net>',
}


@pytest.mark.parametrize("kind", sorted(SILENT_IR))
def test_an_ir_openvino_would_hand_to_its_other_frontends_is_refused_silently(kind, tmp_path, face):
    """Found by the artefacts fuzz target: OpenVINO passes an IR it does not read to its TensorFlow, Paddle ...
    frontends, whose parse errors (absl "E0000 ... text_format.cc") went straight to stderr before edgefer's line."""
    pytest.importorskip("openvino")
    xml = tmp_path / "model.xml"
    xml.write_text(SILENT_IR[kind])
    xml.with_suffix(".bin").write_bytes(bytes(64))
    why = "not an OpenVINO IR" if kind in ("html", "entity bomb") else "not an OpenVINO IR this OpenVINO reads"
    predict = subprocess.run([*EDGEFER, "predict", str(face), "--model", str(xml), "--no-detect"],
                             capture_output=True, text=True, timeout=120)
    assert predict.returncode == 2 and predict.stdout == ""
    assert predict.stderr.splitlines() == [predict.stderr.strip()] and why in predict.stderr, predict.stderr
    info = subprocess.run([*EDGEFER, "info", str(xml)], capture_output=True, text=True, timeout=120)
    assert info.stderr == "" or info.stderr.startswith("edgefer: error: ") and len(info.stderr.splitlines()) == 1, \
        info.stderr


# ------------------------------------------------------------------------------------------- bench's lines

BENCH = ["--targets", "onnxruntime-fp32,onnxruntime-int8,pytorch-fp32", "--iters", "2", "--warmup", "1",
         "--batch", "1", "--threads", "1", "--limit", "32"]


def test_bench_lines_are_never_wrapped_and_warnings_are_one_line(model, fer_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal
    result = _cli("bench", "--model", model, "--data", fer_csv, "--out", tmp_path / "bench", *BENCH)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "  missing: the model is an ONNX file; the PyTorch eager row needs an edgefer checkpoint" in lines, lines
    warned = [line for line in lines if "warning" in line.lower()]
    assert warned and all(line.startswith("edgefer: warning: calibration: ") for line in warned), warned
    assert not [line for line in lines if ".py:" in line or line.startswith("  calib = ")], lines


def test_bench_exist_ok_keeps_files_the_user_put_there(model, fer_csv, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--model", model, "--data", fer_csv, "--out", out, *BENCH[:1], "onnxruntime-fp32", *BENCH[2:]]
    assert _cli(*args).exit_code == 0
    (out / "notes.txt").write_text("the Jetson numbers")
    result = _cli(*args, "--exist-ok")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "the Jetson numbers" and (out / "bench.json").is_file()
    assert _no_stage_left(tmp_path) == []
