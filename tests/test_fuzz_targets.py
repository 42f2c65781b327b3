"""The command-line, output, artefact and runtime-argument targets of tests/fuzz.py, a few cases each:
0 escapes (tests/fuzz.py --cases 10000 runs the same generators at scale; README "Reliability")."""

import re

import pytest

from tests import fuzz

CASES = {"options": 25, "names": 25, "outputs": 25, "artefacts": 15, "runtime-args": 25}


@pytest.mark.parametrize("target", sorted(CASES))
def test_fuzz_target_has_no_escapes(target):
    if target in ("artefacts", "runtime-args"):
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    result = fuzz.run_target(target, fuzz._case_maker(target, None), CASES[target], seed=1)
    assert result["escapes"] == 0, {k: (v["count"], v["first_case"], v["message"]) for k, v in
                                    result["escape_kinds"].items()}
    assert result["accepted"] + result["rejected_with_edgefer_error"] == CASES[target]


def test_options_target_reaches_every_numeric_option():
    options = fuzz._numeric_options()
    assert len(options) > 60
    assert (("train",), "--lr") in options and (("bench",), "--fail-on-drop") in options
    assert (("data", "synth"), "--n") in options and (("export",), "--search-seconds") in options


def test_a_broken_command_would_be_an_escape(monkeypatch, fer_csv):
    """The harness itself: a traceback or an unexpected exit code is an escape, not an accepted case."""
    import edgefer.cli.data as data_cli

    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(data_cli, "_format_report", broken)
    with pytest.raises(ValueError, match="boom"):
        fuzz.run_cli(["data", "inspect", fer_csv])
    with pytest.raises(AssertionError, match="exit 0"):
        fuzz.run_cli(["data", "inspect", "--help"], ok_codes=(2,))


def test_output_under_a_broken_symlink_is_one_line(tmp_path):
    """Found by the outputs target (seed 0, case 115): a folder to create that is a dangling symlink."""
    (tmp_path / "out").symlink_to("nowhere")
    with pytest.raises(fuzz.CliRejected, match=r"faces\.csv: .*/out is a broken symbolic link$"):
        fuzz.run_cli(["data", "synth", "--out", tmp_path / "out" / "faces.csv", "--n", "3"])
    assert fuzz.run_target("outputs", fuzz.outputs_case, 1, seed=0, start=115)["escapes"] == 0


@pytest.mark.parametrize("damage, message", [
    ("empty", "cannot read calibration arrays"),
    ("npy", "one array saved with np.save, not an .npz archive"),
    ("0-d labels", "expected uint8 images (N, H, W) with N labels and ids"),
    ("float labels", "labels must be integers and ids strings"),
])
def test_broken_calibration_bundles_are_one_export_error(fer_csv, tmp_path, damage, message):
    import numpy as np

    from edgefer.errors import ExportError
    from edgefer.export.calibration import CalibrationSet, from_data

    bundle = from_data(fer_csv, 14, "stratified", 0, 0).save(tmp_path / "calib")
    npz = bundle / "calib.npz"
    good = CalibrationSet.load(bundle)
    if damage == "empty":
        npz.write_bytes(b"")
    elif damage == "npy":
        with open(npz, "wb") as f:
            np.save(f, good.images)
    else:
        labels = np.array(3) if damage == "0-d labels" else good.labels.astype(np.float64)
        with open(npz, "wb") as f:
            np.savez(f, images=good.images, labels=labels, ids=good.ids)
    with pytest.raises(ExportError, match=re.escape(message)):
        CalibrationSet.load(bundle)


@pytest.mark.parametrize("target, case", [
    ("artefacts", 264),  # info --json on an ONNX whose tensor name is not UTF-8: bytes reached json.dumps
    ("artefacts", 589),  # ONNX metadata that is not UTF-8: UnicodeDecodeError from ONNX Runtime's modelmeta
    ("runtime-args", 277),  # threads=10**9: std::bad_alloc inside ONNX Runtime
    ("artefacts", 3006),  # info: an op type that is not UTF-8 (bytes) sorted with str ones
    ("artefacts", 8096),  # info: a tensor name that is not UTF-8 formatted as text
    ("artefacts", 6526),  # runtime: a dimension name that is not UTF-8
    ("artefacts", 7829),  # OpenVINO IR without outputs: IndexError from model.output(0)
    ("artefacts", 9958),  # info: an IR layer without a type (None) sorted with the named op types
    ("artefacts", 124),  # <net/> without a version: OpenVINO's other frontends printed absl lines on stderr
])
def test_cases_the_fuzzer_found_stay_fixed(target, case):
    pytest.importorskip("onnxruntime")
    result = fuzz.run_target(target, fuzz._case_maker(target, None), 1, seed=0, start=case)
    assert result["escapes"] == 0, result["escape_kinds"]


def test_a_case_that_prints_or_warns_is_an_escape():
    """A library writing to the process's stdout/stderr (absl, ONNX Runtime's "EP Error") or a numpy
    RuntimeWarning counts as an escape, even when the case then ends in a proper error."""
    import os

    import numpy as np

    def prints(rng, work):
        os.write(2, b"E0000 00:00:17963 text_format.cc:417] Error parsing\n")
        raise fuzz.CliRejected("edgefer: error: x")

    def warns(rng, work):
        np.float32(1e30) * np.float32(1e30)

    result = fuzz.run_target("artefacts", prints, 2, seed=0)
    assert result["escapes"] == 2
    assert list(result["escape_kinds"]) == ["printed: EN N:N:N text_format.cc:N] Error parsing"]
    result = fuzz.run_target("spec", warns, 1, seed=0)
    assert result["escapes"] == 1 and next(iter(result["escape_kinds"])).startswith(
        "RuntimeWarning: overflow encountered")
