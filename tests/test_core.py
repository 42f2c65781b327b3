"""The shared contracts: ModelSpec, numpy preprocessing, atomic writes, the CLI error path, compat."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.errors import InputError, MissingDependency, ModelError, require
from edgefer.fileio import atomic_path, write_json
from edgefer.preprocess import prepare, resize_matrix
from edgefer.spec import ModelSpec, read_sidecar, sidecar_path
from tests.backends import needs_torch


def test_spec_roundtrip_and_validation(tmp_path):
    spec = ModelSpec(input_size=64, arch="x")
    assert ModelSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ModelError, match="field 'channels'"):
        ModelSpec(channels=2)
    with pytest.raises(ModelError, match="side.json: missing field"):
        ModelSpec.from_dict({"labels": ["a", "b"]}, source="side.json")
    with pytest.raises(ModelError, match="color_order"):
        ModelSpec(channels=1, color_order="rgb")
    model = tmp_path / "m.engine"
    with pytest.raises(ModelError, match="m.engine.json"):
        read_sidecar(model)
    sidecar_path(model).write_text(json.dumps({"spec": spec.to_dict()}))
    assert read_sidecar(model) == spec


@needs_torch
def test_prepare_matches_torch_bilinear():
    import torch
    import torch.nn.functional as F

    spec = ModelSpec(input_size=112, mean=(0.4,), std=(0.2,))
    for shape in [(4, 48, 48), (2, 150, 90)]:
        imgs = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        ref = F.interpolate(torch.from_numpy(imgs).float()[:, None] / 255, size=(112, 112), mode="bilinear",
                            align_corners=False)
        ref = ((ref - 0.4) / 0.2).numpy()
        assert np.abs(prepare(imgs, spec, color="gray") - ref).max() < 1e-4


def test_prepare_colour_and_shapes():
    gray_spec = ModelSpec(input_size=32)
    rgb_spec = ModelSpec(input_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, color_order="rgb")
    bgr = np.zeros((40, 40, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in BGR order
    red_rgb = prepare(bgr, rgb_spec, color="bgr")
    assert red_rgb.shape == (1, 3, 32, 32)
    assert np.allclose(red_rgb[0, 0], 1.0) and np.allclose(red_rgb[0, 2], -1.0)
    gray = prepare(bgr, gray_spec, color="bgr")
    assert np.allclose(gray, (0.299 - 0.5) / 0.5, atol=1e-5)
    batch = prepare([np.zeros((10, 12), np.uint8), np.zeros((50, 50, 3), np.uint8)], gray_spec)
    assert batch.shape == (2, 1, 32, 32)
    assert resize_matrix(48, 112).sum(axis=1) == pytest.approx(np.ones(112))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5), np.uint8), "empty image"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((2, 8, 8, 5), np.uint8), "5 channels"),
        (np.zeros((480, 640, 4), np.uint8), "4 channels"),
        (np.zeros((8, 8), np.int64), "dtype int64"),
        ([], "empty list"),
        (np.zeros((2, 3, 4, 5, 6), np.uint8), "expected an image"),
    ],
)
def test_prepare_rejects_bad_input(bad, message):
    with pytest.raises(InputError, match=message):
        prepare(bad, ModelSpec(input_size=16))


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_require_names_the_extra():
    with pytest.raises(MissingDependency, match=r"pip install 'edgefer\[openvino\]'"):
        require("edgefer_no_such_module", "openvino")


def test_cli_user_error_is_one_line_exit_2(monkeypatch):
    import click

    from edgefer import cli

    @click.command()
    def boom():
        raise ModelError("model.onnx: truncated")

    monkeypatch.setitem(cli.COMMANDS, "boom", f"{__name__}:_boom")
    monkeypatch.setitem(globals(), "_boom", boom)
    result = CliRunner().invoke(cli.main, ["boom"])
    assert result.exit_code == 2
    assert result.output.strip() == "edgefer: error: model.onnx: truncated"


def test_import_edgefer_is_light():
    code = "import sys, edgefer, edgefer.cli; print(sorted(m for m in ('torch', 'timm', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@needs_torch
def test_compat_defines_torchvision_schemas_only_when_needed():
    code = (
        "import torch, sys\n"
        "from edgefer.compat import import_timm\n"
        "timm = import_timm()\n"
        "print('torchvision' in sys.modules, bool(timm.list_models('test_efficientnet')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_compat_repairs_the_nms_failure(monkeypatch):
    """Simulate the CPU-torch failure: the first torchvision import raises, the guard defines the schemas."""
    import builtins

    from edgefer import compat

    calls = []
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torchvision":
            calls.append(name)
            if len(calls) == 1:
                raise RuntimeError("operator torchvision::nms does not exist")
            return sys  # any module object will do for the retry
        if name == "timm":
            return "timm-module"
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(compat, "_define_torchvision_schemas", lambda: calls.append("schemas"))
    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert compat.import_timm() == "timm-module"
    assert calls == ["torchvision", "schemas", "torchvision"]


def test_compat_reraises_unrelated_errors(monkeypatch):
    import builtins

    from edgefer import compat

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torchvision":
            raise RuntimeError("something else")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(RuntimeError, match="something else"):
        compat.import_timm()


_BLOCK_TORCH = """
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "torchvision", "timm"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NotInstalled())
from edgefer.cli import main
main()
"""


@pytest.mark.parametrize("command, purpose", [("train", "training"), ("eval", "evaluating a checkpoint")])
def test_cli_without_torch_names_the_extra(command, purpose, fer_csv, tmp_path):
    args = ["--data", str(fer_csv), "--out" if command == "train" else "--model", str(tmp_path / "run")]
    done = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, command, *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"edgefer: error: torch is not installed (needed for {purpose}): "
                                   "pip install 'edgefer[train]'")
