"""Training and evaluation: tiny CPU runs of timm's test_efficientnet on SYNTHETIC FER-format data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.backends import needs_torch

pytestmark = needs_torch

TINY = ["--arch", "test_efficientnet", "--img-size", "32", "--batch-size", "32", "--threads", "1", "--seed", "0"]


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _config(data, out, **options):
    from edgefer.train.config import TrainConfig

    base = dict(data=str(data), out=str(out), arch="test_efficientnet", img_size=32, batch_size=32, threads=1)
    return TrainConfig(**{**base, **options})


def _weights(run):
    from safetensors.torch import load_file

    return load_file(str(Path(run) / "best.safetensors"))


@pytest.fixture(scope="module")
def trained_run(fer_csv, tmp_path_factory):
    """One end-to-end `edgefer train` run; captures the logits of each model at the moment it is saved."""
    import torch

    from edgefer.train import loop
    from edgefer.train.evaluation import predict_logits

    run = tmp_path_factory.mktemp("runs") / "run"
    probe = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8))
    saved_logits = []
    original = loop.save_checkpoint

    def capturing(directory, model, spec, model_kwargs, **info):
        saved_logits.append(predict_logits(model, probe, spec))
        return original(directory, model, spec, model_kwargs, **info)

    loop.save_checkpoint = capturing
    try:
        result = _cli("train", "--data", fer_csv, "--out", run, "--epochs", "2", "--loss", "weighted-ce", *TINY)
    finally:
        loop.save_checkpoint = original
    assert result.exit_code == 0, result.output
    return run, probe, saved_logits, result.output


def test_train_end_to_end_writes_the_run_directory(trained_run, fer_csv):
    from edgefer.data import class_weights, prepare_splits

    run, _, _, output = trained_run
    for name in ("best.safetensors", "model.json", "config.json", "config.yaml", "metrics.jsonl", "metrics.csv",
                 "splits.json", "eval_val.json", "eval_val_confusion.png", "eval_test.json", "last_state.json"):
        assert (run / name).is_file(), name
    assert (run / "eval_test_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((run / "model.json").read_text())
    splits = prepare_splits(fer_csv, val_fraction=0.1, seed=0)
    # weighted-CE uses the data layer's inverse-frequency weights of the train split
    np.testing.assert_allclose(meta["class_weights"], class_weights(splits.train.class_counts(), "inverse"))
    assert meta["class_counts"] == splits.train.class_counts().tolist()
    assert meta["synthetic"] is True and "SYNTHETIC" in output
    assert meta["data"]["fingerprint"] == splits.fingerprint
    assert json.loads((run / "splits.json").read_text()) == json.loads(json.dumps(splits.manifest))
    assert set(meta["versions"]) >= {"torch", "timm", "edgefer"}
    assert meta["config"]["arch"] == "test_efficientnet" and meta["spec"]["channels"] == 1
    assert (meta["config"]["recipe"], meta["config"]["lr"]) == ("scratch", 2e-3)  # resolved, not None
    assert "learning curve" in output and "val-F1" in output
    assert set(meta["metrics"]) == {"val", "test", "private_test"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    best = max(records, key=lambda r: r["val_macro_f1"])
    assert meta["epoch"] == best["epoch"]
    assert meta["metrics"]["val"]["macro_f1"] == pytest.approx(best["val_macro_f1"], abs=1e-12)
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,lr,")


def test_checkpoint_reloads_with_identical_logits_and_numpy_preprocessing(trained_run):
    import torch

    from edgefer.models import load_checkpoint
    from edgefer.preprocess import prepare
    from edgefer.train.evaluation import predict_logits

    run, probe, saved_logits, _ = trained_run
    model, spec, _ = load_checkpoint(run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in training: the same kernels, so bit-identical output
    try:
        logits = predict_logits(model, probe, spec)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(logits, saved_logits[-1])  # the last save is the best epoch's model
    # the runtime's numpy preprocessing feeds the model the same numbers as training-time evaluation
    with torch.no_grad():
        numpy_path = model(torch.from_numpy(prepare(probe.numpy(), spec, color="gray")))
    torch.testing.assert_close(numpy_path, logits, rtol=1e-4, atol=1e-4)


def test_eval_json_matches_independent_sklearn(trained_run, fer_csv, tmp_path):
    import torch
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    from edgefer.data import prepare_splits
    from edgefer.models import load_checkpoint
    from edgefer.preprocess import prepare

    run, _, _, _ = trained_run
    out = tmp_path / "eval.json"
    result = _cli("eval", "--model", run, "--split", "test", "--json", out, "--data", fer_csv)
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "disgust" in result.output
    report = json.loads(out.read_text())
    assert (tmp_path / "eval_confusion.png").is_file()

    test = prepare_splits(fer_csv).test
    model, spec, _ = load_checkpoint(run)
    with torch.no_grad():
        pred = model(torch.from_numpy(prepare(test.images, spec, color="gray"))).argmax(1).numpy()
    assert report["n"] == len(test) and report["split"] == "test" and report["synthetic"] is True
    assert report["accuracy"] == pytest.approx(accuracy_score(test.labels, pred))
    assert report["macro_f1"] == pytest.approx(f1_score(test.labels, pred, average="macro", labels=range(7),
                                                        zero_division=0))
    recalls = recall_score(test.labels, pred, average=None, labels=range(7), zero_division=0)
    assert [report["per_class"][name]["recall"] for name in spec.labels] == pytest.approx(recalls.tolist())
    assert report["confusion_matrix"] == confusion_matrix(test.labels, pred, labels=range(7)).tolist()


def test_resume_with_workers_continues_bit_identically(fer_csv, tmp_path):
    from edgefer.train import loop

    options = dict(epochs=2, ema=0.9, limit_train=128, img_size=16, batch_size=16)
    loop.fit(_config(fer_csv, tmp_path / "straight", **options), log=lambda m: None)

    class Interrupted(Exception):
        pass

    original = loop.save_state

    calls = []

    def crash_after_first_epoch(directory, *args):  # the first epoch is saved (and the new run published), then a
        calls.append(directory)                     # crash before the second epoch's state is written
        if len(calls) > 1:
            raise Interrupted
        original(directory, *args)

    loop.save_state = crash_after_first_epoch
    try:
        with pytest.raises(Interrupted):
            loop.fit(_config(fer_csv, tmp_path / "resumed", **options), log=lambda m: None)
    finally:
        loop.save_state = original
    assert json.loads((tmp_path / "resumed" / "last_state.json").read_text())["epoch"] == 1

    # batches are seeded per (seed, epoch, batch): DataLoader worker processes build the same ones.
    # A fresh interpreter, as `edgefer train` runs: forking workers from this pytest process, where other
    # tests have started ONNX Runtime / OpenVINO thread pools, can crash the child.
    result = subprocess.run(
        [sys.executable, "-c", "from edgefer.cli import main; main()", "train", "--resume", str(tmp_path / "resumed"),
         "--workers", "2"], capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "resuming" in output and "epoch 2" in output
    records = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    header = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,step,lr,frozen_backbone,train_loss,")  # the trainer's order, not sorted
    assert (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()[0] == header
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all((straight[k] == resumed[k]).all() for k in straight)  # bit-identical continuation on CPU


def test_weights_file_with_rgb_stem_and_1000_classes_is_adapted(fer_csv, tmp_path):
    import torch
    from safetensors.torch import save_file

    from edgefer.compat import import_timm
    from edgefer.models import create_model

    source = import_timm().create_model("test_efficientnet", num_classes=1000, in_chans=3)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    torch.save(state, tmp_path / "imagenet.pth")
    save_file(state, str(tmp_path / "imagenet.safetensors"))
    for path in (tmp_path / "imagenet.pth", tmp_path / "imagenet.safetensors"):
        model = create_model("test_efficientnet", weights=path)
        adapted = model.state_dict()
        torch.testing.assert_close(adapted["conv_stem.weight"], state["conv_stem.weight"].sum(1, keepdim=True))
        body = [k for k in state if k != "conv_stem.weight" and not k.startswith("classifier.")]
        assert len(body) > 20 and all(torch.equal(adapted[k], state[k]) for k in body)
        assert adapted["classifier.weight"].shape == (7, state["classifier.weight"].shape[1])

    result = _cli("train", "--data", fer_csv, "--out", tmp_path / "run", "--weights", tmp_path / "imagenet.pth",
                  "--epochs", "1", "--max-steps", "2", "--freeze-epochs", "1", *TINY)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["config"]["weights"].endswith("imagenet.pth") and meta["stop_reason"] == "max_steps"
    assert meta["step"] == 2


def test_ddp_two_gloo_processes(fer_csv, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEFER_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "edgefer.cli.train", "--data", str(fer_csv), "--out", str(tmp_path / "ddp"), "--epochs", "1",
           "--arch", "test_efficientnet", "--img-size", "16", "--batch-size", "16", "--threads", "1",
           "--limit-train", "128"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on cpu x2" in done.stderr
    meta = json.loads((tmp_path / "ddp" / "model.json").read_text())
    assert meta["step"] == 4  # 128 images / 2 processes / 16 per batch
    assert {"val", "test"} <= set(meta["metrics"])


def test_augmentation_is_deterministic_and_identity_equals_eval_preprocessing():
    import torch

    from edgefer.preprocess import prepare
    from edgefer.spec import ModelSpec
    from edgefer.train.augment import Augmentation, prepare_batch

    spec = ModelSpec(input_size=40, mean=(0.45,), std=(0.23,))
    images = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (8, 48, 48), dtype=np.uint8))
    strong = Augmentation(mixup=0.5, cutmix=0.5)
    labels = torch.arange(8) % 7

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        x = strong(images, spec, generator)
        return strong.mix(x, labels, 7, generator)

    (a, ta), (b, tb), (c, _) = run(5), run(5), run(6)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert not torch.equal(a, c)
    assert a.shape == (8, 1, 40, 40)
    if ta.dtype == torch.float32:
        torch.testing.assert_close(ta.sum(1), torch.ones(8))

    identity = Augmentation(scale_min=1.0, rotation=0.0, hflip=0.0, brightness=0.0, contrast=0.0, erasing=0.0)
    plain = identity(images, spec, torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, prepare_batch(images, spec), rtol=0, atol=1e-4)
    torch.testing.assert_close(prepare_batch(images, spec), torch.from_numpy(prepare(images.numpy(), spec, "gray")),
                               rtol=0, atol=1e-4)
    flipped = Augmentation(scale_min=1.0, rotation=0.0, hflip=1.0, brightness=0.0, contrast=0.0, erasing=0.0)
    torch.testing.assert_close(flipped(images, spec, torch.Generator()), plain.flip(-1), rtol=0, atol=1e-4)


def test_losses_and_sampling():
    import torch
    import torch.nn.functional as F

    from edgefer.data import class_weights
    from edgefer.train.batches import epoch_order
    from edgefer.train.hardware import Hardware
    from edgefer.train.losses import ClassificationLoss, build_loss

    counts = np.array([400, 40, 300, 800, 500, 300, 500])
    logits, target = torch.randn(6, 7, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 4, 1])
    loss, weights = build_loss(_config("x", "y"), counts)
    np.testing.assert_allclose(weights, class_weights(counts, "inverse"))
    torch.testing.assert_close(loss(logits, target), F.cross_entropy(logits, target, weight=torch.tensor(
        weights, dtype=torch.float32), label_smoothing=0.1))
    assert build_loss(_config("x", "y", loss="ce"), counts)[1] is None
    focal = ClassificationLoss(gamma=2.0)
    p = logits.softmax(1)[torch.arange(6), target]
    torch.testing.assert_close(focal(logits, target), (-(1 - p) ** 2 * p.log()).mean())

    labels = np.repeat(np.arange(7), counts // 10)
    shards = [epoch_order(labels, 0, 3, Hardware(torch.device("cpu"), rank, 2), False) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(labels)))
    balanced = np.bincount(labels[epoch_order(labels, 0, 0, Hardware(torch.device("cpu")), True)], minlength=7)
    assert balanced.min() > 0.6 * balanced.max()  # disgust is 1/20 of happy in the data, ~1/7 of draws here


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "missing.csv", "--out", "run"], "--data missing.csv: no such file"),
        (["--data", "{csv}", "--out", "{tmp}/r", "--arch", "no_such_net"], "unknown timm architecture 'no_such_net'"),
        (["--data", "{csv}", "--out", "{tmp}/r", "--weights", "{tmp}/nope.pth"], "--weights: no such file"),
        (["--data", "{csv}"], "--out is required"),
        (["--resume", "{tmp}"], "not a training run directory"),
        (["--data", "{csv}", "--out", "{tmp}/r", "--amp", "fp16", "--device", "cpu"], "--amp fp16 needs CUDA"),
        (["--data", "{csv}", "--out", "{tmp}/r", "--val-fraction", "1.5"],
         "--val-fraction: must be a finite number in (0, 1) (the share of train held out, e.g. 0.1), got 1.5"),
        (["--data", "{csv}", "--out", "{tmp}/r", "--val-fraction", "1.0"], "--val-fraction: must be a finite number in (0, 1)"),
        (["--data", "{csv}", "--out", "{tmp}/r", "--threads", "0"], "--threads: must be an integer in [1, 4096], got 0"),
        (["--data", "{csv}", "--out", "{tmp}/r", "--drop-path-rate", "1"], "--drop-path-rate: must be a finite number in [0, 1), got 1"),
    ],
)
def test_train_user_errors_are_one_line_exit_2(args, message, fer_csv, tmp_path):
    args = [a.format(csv=fer_csv, tmp=tmp_path) for a in args]
    result = _cli("train", "--threads", "1", *args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output


def test_train_refuses_to_overwrite_a_run(trained_run, fer_csv):
    run = trained_run[0]
    before = (run / "best.safetensors").read_bytes()
    result = _cli("train", "--data", fer_csv, "--out", run, *TINY)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"edgefer: error: --out {run}: already holds a training run; continue it "
                                     f"with --resume {run}, or pass --exist-ok to replace it (nothing was overwritten)")
    assert (run / "best.safetensors").read_bytes() == before


def test_eval_user_errors(trained_run, tmp_path):
    run = trained_run[0]
    result = _cli("eval", "--model", tmp_path)
    assert result.exit_code == 2 and "not an edgefer checkpoint" in result.output
    result = _cli("eval", "--model", run, "--data", tmp_path / "missing.csv")
    assert result.exit_code == 2 and "no such file" in result.output
    result = _cli("train", "--resume", run, "--lr", "0.5")
    assert result.exit_code == 2 and "--lr cannot change when resuming" in result.output


def test_pretrained_without_network_is_a_one_line_error(monkeypatch, fer_csv, tmp_path):
    from edgefer import models
    from edgefer.compat import import_timm

    monkeypatch.setattr(models, "check_hub", lambda arch: None)  # the fallback when the hub fails later

    timm = import_timm()
    real = timm.create_model

    def offline(*args, pretrained=False, **kwargs):
        if pretrained:
            raise FileNotFoundError("cannot reach huggingface.co")  # what huggingface_hub raises offline
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    result = _cli("train", "--data", fer_csv, "--out", tmp_path / "r", "--pretrained", *TINY)
    assert result.exit_code == 2
    assert "--pretrained test_efficientnet: cannot fetch the timm hub weights" in result.output
    assert "--weights PATH" in result.output


class _Payload:
    """Unpickling this would create a file: loading --weights must refuse instead (weights_only)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch on the refused file
def test_weights_that_are_not_a_state_dict_are_refused_without_unpickling(fer_csv, tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"conv_stem.weight": _Payload(marker)}))
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(1000))
    for name in ("evil.pth", "noise.safetensors"):
        result = _cli("train", "--data", fer_csv, "--out", tmp_path / "r", "--weights", tmp_path / name, *TINY)
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"edgefer: error: --weights {tmp_path / name}: ")
        assert len(result.output.strip().splitlines()) == 1
    assert not marker.exists()


def test_run_files_are_written_0644_like_every_artefact(trained_run):
    import stat

    from edgefer.fileio import _UMASK

    run = trained_run[0]
    for name in ("best.safetensors", "last_state.safetensors", "model.json", "metrics.csv"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~_UMASK, name


def test_eval_on_other_data_names_its_file_after_the_data(trained_run, tmp_path):
    from edgefer.data import synthesize, write_fer_csv

    run = trained_run[0]
    before = (run / "eval_test.json").read_bytes()
    other = write_fer_csv(tmp_path / "other.csv", synthesize(300, seed=1))
    result = _cli("eval", "--model", run, "--data", other, "-q")
    assert result.exit_code == 0, result.output
    assert (run / "eval_test.json").read_bytes() == before  # the run's own evaluation is kept
    written = run / "eval_test_other.json"
    assert f"wrote {written} and {run / 'eval_test_other_confusion.png'}" in result.output
    assert json.loads(written.read_text())["data"] == str(other)


def test_train_and_eval_take_quiet_and_verbose():
    for command in ("train", "eval"):
        result = _cli(command, "--help")
        assert "-q, --quiet" in result.output and "-v, --verbose" in result.output
    help_text = " ".join(_cli("train", "--help").output.split())
    assert "--exist-ok" in help_text and "--recipe [auto|scratch|finetune]" in help_text
    assert "[default: (recipe: finetune 1.0, scratch 0.25)]" in help_text  # --warmup-epochs


def test_exist_ok_replaces_a_run(fer_csv, tmp_path):
    run = tmp_path / "run"
    options = ["--data", fer_csv, "--out", run, "--max-steps", "2", "--limit-train", "64", "--epochs", "1",
               *TINY[:2], "--img-size", "16", "--batch-size", "16", "--threads", "1", "-q"]
    assert _cli("train", *options).exit_code == 0
    (run / "eval_private_test.json").write_text("{}")  # a stale file of the old run
    result = _cli("train", *options, "--exist-ok")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval_private_test.json").read_text())  # rewritten by the new run
    assert json.loads((run / "last_state.json").read_text())["epoch"] == 1


def test_ctrl_c_keeps_a_resumable_state_and_says_how_to_continue(monkeypatch, fer_csv, tmp_path):
    from edgefer.train import loop

    run = tmp_path / "run"
    original, calls = loop._train_epoch, []

    def interrupt_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", interrupt_second_epoch)
    options = ["--data", fer_csv, "--limit-train", "64", "--epochs", "2", *TINY[:2], "--img-size", "16",
               "--batch-size", "16", "--threads", "1"]
    result = _cli("train", "--out", run, *options)
    assert result.exit_code == 130
    assert f"epoch 1 is saved in {run}: continue with `edgefer train --resume {run}`" in result.output
    monkeypatch.setattr(loop, "_train_epoch", original)
    result = _cli("train", "--resume", run, "-q")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_pretrained_offline_fails_fast_naming_the_host(monkeypatch, fer_csv, tmp_path):
    import socket
    import time

    from edgefer import models

    monkeypatch.setattr(models, "_hub_cached", lambda hub_id: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)

    def unreachable(address, timeout=None):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    started = time.perf_counter()
    result = _cli("train", "--data", fer_csv, "--out", tmp_path / "r", "--pretrained", *TINY)
    assert time.perf_counter() - started < 30
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("edgefer: error: --pretrained test_efficientnet: cannot reach huggingface.co "
                                     "(Network is unreachable, 3 s); offline, pass a local file with --weights PATH")
    assert not (tmp_path / "r").exists()


def test_new_classifier_starts_at_zero_and_scratch_recipe_is_resolved():
    import torch

    from edgefer.models import create_model, has_new_classifier, zero_classifier
    from edgefer.train.config import RECIPE_DEFAULTS, TrainConfig

    model = create_model("test_efficientnet", num_classes=7)
    assert has_new_classifier(model, 7, from_weights=False) and has_new_classifier(model, 7, from_weights=True)
    assert not has_new_classifier(model, 1000, from_weights=True)  # a 1000-class head comes from the weights
    zero_classifier(model)
    logits = model.eval()(torch.randn(2, 1, 32, 32))
    assert torch.equal(logits, torch.zeros(2, 7))  # loss ln(7) at the first step
    scratch = TrainConfig().resolved()
    assert scratch.recipe == "scratch" and scratch.loss == RECIPE_DEFAULTS["scratch"]["loss"]
    finetune = TrainConfig(weights="w.safetensors", lr=5e-4).resolved()
    assert (finetune.recipe, finetune.lr, finetune.loss) == ("finetune", 5e-4, "weighted-ce")


def test_scratch_recipe_starts_every_residual_branch_at_zero():
    """With the last BatchNorm of each skip block at zero scale, a block is the identity at init: the network
    computes what its down-sampling blocks alone compute (why the demo leaves the class-prior plateau)."""
    import torch

    from edgefer.models import create_model, zero_init_residual
    from edgefer.train.config import TrainConfig

    assert TrainConfig().resolved().zero_init_residual is True
    assert TrainConfig(weights="w.safetensors").resolved().zero_init_residual is False
    assert TrainConfig(zero_init_residual=False).resolved().zero_init_residual is False
    model = create_model("tf_efficientnetv2_s", num_classes=7, drop_rate=0.0, drop_path_rate=0.0).eval()
    skips = [m for m in model.modules() if getattr(m, "has_skip", False)]
    assert zero_init_residual(model) == len(skips) == 35
    x = torch.randn(1, 1, 48, 48)
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(torch.equal(i[0], o))) for b in skips]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    assert captured and all(captured)
    gammas = [[n for n in b.modules() if isinstance(n, torch.nn.BatchNorm2d)][-1].weight for b in skips]
    assert all(float(g.detach().abs().max()) == 0.0 for g in gammas)


def test_eval_json_is_checked_before_any_work(tmp_path):
    (tmp_path / "taken.json").write_text("{}")
    (tmp_path / "file").write_text("x")
    (tmp_path / "png_dir.json").write_text("{}")
    (tmp_path / "busy_confusion.png").mkdir()
    missing = tmp_path / "no-model"  # never read: the output is refused first
    cases = [
        (tmp_path, f"--json {tmp_path}: is a directory; give a file name", False),
        (tmp_path / "file" / "e.json", f"--json {tmp_path / 'file' / 'e.json'}: {tmp_path / 'file'} is not a "
                                       "directory", False),
        ("/sys/e.json", "--json /sys/e.json: cannot write in /sys (", False),
        (tmp_path / "taken.json", f"--json {tmp_path / 'taken.json'}: already exists; pass --exist-ok", False),
        ("/dev/null", "--json /dev/null: is not a regular file (a device, FIFO or socket)", True),
        (tmp_path / "busy.json", f"--json's confusion PNG {tmp_path / 'busy_confusion.png'}: is a directory", True),
    ]
    for target, message, exist_ok in cases:
        result = _cli("eval", "--model", missing, "--json", target, *(["--exist-ok"] if exist_ok else []))
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"edgefer: error: {message}") and len(result.output.splitlines()) == 1
    assert (tmp_path / "taken.json").read_text() == "{}"


def test_eval_does_not_overwrite_the_runs_own_evaluation_silently(trained_run, monkeypatch):
    from edgefer.train import evaluation

    run = trained_run[0]
    before = (run / "eval_test.json").read_bytes()
    real = evaluation.evaluate_dataset

    def not_now(*args, **kwargs):
        raise AssertionError("evaluated before the output was checked")

    monkeypatch.setattr(evaluation, "evaluate_dataset", not_now)
    result = _cli("eval", "--model", run, "--split", "test")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"edgefer: error: --json (default) {run / 'eval_test.json'}: already exists; "
                                     "pass --exist-ok to replace it")
    assert (run / "eval_test.json").read_bytes() == before
    monkeypatch.setattr(evaluation, "evaluate_dataset", real)
    result = _cli("eval", "--model", run, "--split", "test", "--exist-ok", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval_test.json").read_text())["split"] == "test"
