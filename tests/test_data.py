"""FER2013 data layer: CSV reader, splits and manifest, class weights, synthetic data, CLI."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.data import (
    FERDataset,
    class_quota,
    class_weights,
    load,
    prepare_splits,
    synthesize,
    write_fer_csv,
)
from edgefer.errors import DataError
from edgefer.fileio import sha256_file


def test_fer_csv_fixture_reads_back_with_usage(fer_csv):
    loaded = load(fer_csv)
    assert loaded.format == "csv" and loaded.synthetic
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 480, "test": 60, "private_test": 60}
    train = loaded["train"]
    assert train.images.dtype == np.uint8 and train.images.shape == (480, 48, 48)
    assert train.images.flags.c_contiguous and train.labels.dtype == np.int64
    assert all(i.startswith("fer2013_synthetic.csv:row=") for i in train.ids)
    # the CSV holds exactly the synthetic pixels, row by row
    original = synthesize(600, seed=0)
    rows = np.array([int(i.split("=")[1]) - 1 for i in train.ids])
    assert np.array_equal(train.images, original.images[rows])
    assert np.array_equal(train.labels, original.labels[rows])
    assert np.all(original.usage[rows] == "Training")


def test_csv_without_usage_is_all_train(tmp_path):
    data = synthesize(50, seed=3)
    data.usage = None
    path = write_fer_csv(tmp_path / "plain.csv", data)
    assert path.read_text().splitlines()[0] == "emotion,pixels"
    loaded = load(path)
    assert list(loaded.splits) == ["train"] and len(loaded["train"]) == 50
    assert loaded.synthetic and (tmp_path / "plain.csv.synthetic.json").exists()  # marker travels with the CSV
    assert np.array_equal(loaded["train"].images, data.images)
    assert loaded["train"].ids[49] == "plain.csv:row=50"
    data.synthetic = False
    real = load(write_fer_csv(tmp_path / "real.csv", data))
    assert not real.synthetic and not (tmp_path / "real.csv.synthetic.json").exists()


def test_synthesize_priors_usage_and_determinism():
    a, b, c = synthesize(700, seed=1), synthesize(700, seed=1), synthesize(700, seed=2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert a.class_counts().tolist() == class_quota(700).tolist() == [97, 11, 100, 176, 118, 78, 120]
    usage = dict(zip(*np.unique(a.usage, return_counts=True)))
    assert usage["Training"] / 700 == pytest.approx(0.8, abs=0.02)
    assert usage["PublicTest"] / 700 == pytest.approx(0.1, abs=0.02)
    assert a.synthetic and a.images.std() > 30  # not blank


# sha256 of synthesize(200, seed=0): images, labels (int64 little-endian), Usage strings. The generator uses only
# correctly rounded IEEE-754 operations, so these bytes are the same on every CPU (AMD, Intel with AVX-512/AMX,
# ARM); a change here means the synthetic data changed: bump SYNTH_VERSION and regenerate
# calibration/synthetic/manifest.json (calibration/README.md).
SYNTH_200_SHA256 = "356be5f2bef692aee1ae6bf51b41df758330830f5353697dae16cf30389175d1"


def _synth_digest(data) -> str:
    digest = hashlib.sha256(data.images.tobytes())
    digest.update(data.labels.astype("<i8").tobytes())
    digest.update("\n".join(data.usage.tolist()).encode())
    return digest.hexdigest()


def test_synthesize_is_pinned_and_avoids_cpu_specific_math(monkeypatch):
    """numpy's array sin/cos/exp/log/hypot/power take CPU-specific SIMD paths (last bits differ between an
    AMD EPYC and an AVX-512 Xeon): the generator must not call them at all."""
    def forbidden(name):
        def call(*args, **kwargs):
            raise AssertionError(f"np.{name} is CPU-dependent; synthesize must not use it")
        return call

    for name in ("sin", "cos", "tan", "exp", "expm1", "exp2", "log", "log1p", "log2", "hypot", "power",
                 "float_power", "arctan2", "sinh", "cosh", "tanh", "cbrt"):
        monkeypatch.setattr(np, name, forbidden(name))
    assert _synth_digest(synthesize(200, seed=0)) == SYNTH_200_SHA256


def test_exact_elementary_functions_match_numpy():
    from edgefer.data.synth import _cos, _exp, _log, _normal, _sin

    x = np.linspace(-20, 20, 4001)
    assert np.abs(_sin(x) - np.sin(x)).max() < 1e-12 and np.abs(_cos(x) - np.cos(x)).max() < 1e-12
    y = np.linspace(-40, 5, 2001)
    assert np.abs(_exp(y) / np.exp(y) - 1).max() < 1e-13
    z = np.exp(np.linspace(-690, 0, 2001))
    assert np.abs(_log(z) - np.log(z)).max() < 1e-12
    r = _normal(np.random.default_rng(0), 0.0, 1.0, 200_000)
    assert abs(r.mean()) < 0.01 and abs(r.std() - 1) < 0.01 and 0.002 < (np.abs(r) > 3).mean() < 0.0034


def test_class_weights_known_counts():
    counts = [10, 20, 40, 80]
    inverse = class_weights(counts)
    raw = np.array([1 / 10, 1 / 20, 1 / 40, 1 / 80])
    assert inverse == pytest.approx(raw / raw.mean())
    assert inverse.mean() == pytest.approx(1.0) and inverse[0] == pytest.approx(8 / 3.75)
    beta = 0.9
    effective = class_weights(counts, "effective", beta=beta)
    raw = np.array([(1 - beta) / (1 - beta**n) for n in counts])
    assert effective == pytest.approx(raw / raw.mean()) and effective.mean() == pytest.approx(1.0)
    assert class_weights([5, 0, 5]).tolist() == [1.0, 0.0, 1.0]  # absent class: weight 0, mean 1 over present
    with pytest.raises(ValueError, match="unknown class-weight method"):
        class_weights(counts, "median")


def test_split_determinism_and_stratification(fer_csv, tmp_path):
    a, b = prepare_splits(fer_csv, seed=0), prepare_splits(fer_csv, seed=0)
    other = prepare_splits(fer_csv, seed=1)
    pa, pb, po = (s.save_manifest(tmp_path / f"{n}.json") for s, n in ((a, "a"), (b, "b"), (other, "o")))
    assert pa.read_bytes() == pb.read_bytes()
    assert pa.read_bytes() != po.read_bytes()
    assert a.fingerprint == other.fingerprint  # same data, different split
    assert a.get("test") is a.test and a.get("nonsense") is None
    manifest = json.loads(pa.read_text())
    assert manifest["synthetic"] is True and manifest["fingerprint"] == a.fingerprint
    assert set(manifest["splits"]) == {"train", "val", "test", "private_test"}
    assert manifest["splits"]["val"]["ids"] == a.val.ids.tolist()
    # train + val partition the original Training rows; official tests untouched
    full = load(fer_csv)
    assert sorted(a.train.ids.tolist() + a.val.ids.tolist()) == sorted(full["train"].ids.tolist())
    assert a.test.ids.tolist() == full["test"].ids.tolist()
    # stratified: every class's val share is round(10 %), at least one
    for label, n in enumerate(full["train"].class_counts()):
        assert a.val.class_counts()[label] == max(1, int(np.floor(n * 0.1 + 0.5)))
    # weights come from the train split only
    assert a.class_weights().tolist() == class_weights(a.train.class_counts()).tolist()
    # the split does not depend on the order the rows were read in
    shuffled = full["train"].subset(np.random.default_rng(0).permutation(len(full["train"])))
    from edgefer.data import stratified_split

    _, val_idx = stratified_split(shuffled.labels, shuffled.ids, 0.1, 0)
    assert sorted(shuffled.ids[val_idx].tolist()) == sorted(a.val.ids.tolist())


def test_fingerprint_changes_with_one_pixel(fer_csv, tmp_path):
    data = synthesize(600, seed=0)
    data.images[5, 0, 0] ^= 1
    changed = write_fer_csv(tmp_path / "fer2013_synthetic.csv", data)
    assert prepare_splits(changed).fingerprint != prepare_splits(fer_csv).fingerprint


def test_cli_synth_and_inspect(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["data", "synth", "--out", str(tmp_path), "--n", "120", "--seed", "4"])
    assert result.exit_code == 0, result.output
    csv_path = tmp_path / "fer2013_synthetic.csv"
    marker = json.loads((tmp_path / "fer2013_synthetic.csv.synthetic.json").read_text())
    assert marker["synthetic"] is True and marker["seed"] == 4 and marker["csv_sha256"] == sha256_file(csv_path)
    result = runner.invoke(main, ["data", "inspect", str(csv_path), "--json", "--manifest", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["synthetic"] is True
    assert sum(s["n"] for s in report["splits"].values()) == 120
    assert len(report["class_weights"]["inverse"]) == 7 and report["bad"]["skipped"] == 0
    assert json.loads((tmp_path / "m.json").read_text())["fingerprint"] == report["fingerprint"]
    text = runner.invoke(main, ["data", "inspect", str(tmp_path)]).output
    assert "SYNTHETIC" in text and "disgust" in text and "w_inverse" in text


def test_dataset_subset_and_counts():
    ds = FERDataset(np.zeros((3, 48, 48), np.uint8), [0, 3, 3], ["a", "b", "c"])
    sub = ds.subset([2, 0], name="x")
    assert sub.ids.tolist() == ["c", "a"] and sub.name == "x" and len(sub) == 2
    assert ds.class_counts().tolist() == [1, 0, 0, 2, 0, 0, 0]
    with pytest.raises(DataError, match="no such file"):
        load("/nonexistent/fer.csv")


def test_synthetic_faces_learnable_but_not_trivial():
    """A closed-form ridge classifier on 24x24 pixels beats the majority class clearly, but is far from
    perfect (docs/data.md: logistic regression on 3000 images reaches about 54 %)."""
    data = synthesize(1500, seed=7)
    x = data.images.reshape(-1, 24, 2, 24, 2).mean(axis=(2, 4)).reshape(len(data), -1) / 255
    x = np.hstack([(x - x.mean(0)) / (x.std(0) + 1e-6), np.ones((len(data), 1))])
    train, test = data.usage == "Training", data.usage != "Training"
    w = np.linalg.solve(x[train].T @ x[train] + 100 * np.eye(x.shape[1]), x[train].T @ np.eye(7)[data.labels[train]])
    accuracy = (np.argmax(x[test] @ w, axis=1) == data.labels[test]).mean()
    majority = np.bincount(data.labels[test]).max() / test.sum()
    assert majority + 0.12 < accuracy < 0.85


def test_csv_variants_crlf_quotes_column_order(tmp_path):
    """icml_face_data.csv style: other column order, spaces after commas, quoted pixels, CRLF endings."""
    data = synthesize(3, seed=0)
    lines = ["emotion, Usage, pixels"]
    for image, label, usage in zip(data.images, data.labels, ["Training", "PublicTest", "PrivateTest"]):
        lines.append(f'{label}, {usage}," {" ".join(map(str, image.ravel()))}"')
    path = tmp_path / "icml_face_data.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    loaded = load(path)
    assert [len(loaded[s]) for s in ("train", "test", "private_test")] == [1, 1, 1]
    assert np.array_equal(loaded["private_test"].images[0], data.images[2])
    assert loaded["test"].ids.tolist() == ["icml_face_data.csv:row=2"]


def test_csv_reading_needs_neither_pillow_nor_torch(fer_csv):
    code = ("import sys; from edgefer.data import prepare_splits; prepare_splits(sys.argv[1]); "
            "bad = [m for m in ('PIL', 'torch', 'timm', 'sklearn') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(fer_csv)], check=True)


def test_cli_synth_to_csv_file_is_deterministic(tmp_path):
    runner = CliRunner()
    for name in ("a.csv", "b.csv"):
        result = runner.invoke(main, ["data", "synth", "--out", str(tmp_path / name), "--n", "30", "--seed", "9"])
        assert result.exit_code == 0 and "30 synthetic images" in result.output
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == "emotion,pixels,Usage"
    assert load(tmp_path / "a.csv").synthetic  # marker beside it, though the name does not say so


def test_rewriting_real_data_removes_synthetic_marker(tmp_path):
    data = synthesize(5, seed=0)
    path = write_fer_csv(tmp_path / "faces.csv", data)
    assert load(path).synthetic
    data.synthetic = False
    assert not load(write_fer_csv(path, data)).synthetic


def test_synth_options_are_validated(tmp_path):
    from edgefer.data import synth_csv_path, validate_synth_options

    with pytest.raises(DataError, match=r"^--seed must be a non-negative integer, got -1$"):
        synthesize(5, seed=-1)
    with pytest.raises(DataError, match=r"^--n must be a number of images, at least 1, got 0$"):
        validate_synth_options(0, 0)
    result = CliRunner().invoke(main, ["data", "synth", "--out", str(tmp_path / "s.csv"), "--n", "5", "--seed", "-1"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("edgefer: error: ") and "--seed" in result.output and "-1" in result.output
    assert synth_csv_path(tmp_path / "x.txt") == tmp_path / "x.txt"  # a file name, not a directory
    assert synth_csv_path(tmp_path / "out") == tmp_path / "out" / "fer2013_synthetic.csv"
    assert synth_csv_path(f"{tmp_path}/v1.0/") == tmp_path / "v1.0" / "fer2013_synthetic.csv"
    (tmp_path / "existing.csv").mkdir()
    assert synth_csv_path(tmp_path / "existing.csv") == tmp_path / "existing.csv" / "fer2013_synthetic.csv"
    (tmp_path / "plain").write_text("x")
    assert synth_csv_path(tmp_path / "plain") == tmp_path / "plain"
    with pytest.raises(DataError, match=r"plain/a.csv: .*plain is a file, not a directory"):
        synth_csv_path(tmp_path / "plain" / "a.csv")
    (tmp_path / "d" / "fer2013_synthetic.csv").mkdir(parents=True)
    with pytest.raises(DataError, match=r"d/fer2013_synthetic.csv: is a directory, not a file"):
        synth_csv_path(tmp_path / "d")


def test_labels_match_by_name_and_scores_do_not_depend_on_output_order():
    from edgefer.errors import ModelError
    from edgefer.labels import match_labels
    from edgefer.metrics import report_by_name
    from edgefer.spec import FER2013_LABELS

    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    scores = rng.normal(0, 1, (300, 7))
    scores[np.arange(300), y] += rng.normal(1.5, 1, 300)  # right on most images
    base = report_by_name(y, scores, match_labels(FER2013_LABELS, FER2013_LABELS))
    assert 0.5 < base["accuracy"] < 1 and base["excluded"] == 0 and base["classes_compared"] == list(FER2013_LABELS)
    # a Keras-style model: another order and other spellings; outputs permuted with its labels
    keras = ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"]
    order = [FER2013_LABELS.index(canonical) for canonical in
             ["neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"]]
    permuted = report_by_name(y, scores[:, order], match_labels(FER2013_LABELS, keras))
    for key in ("accuracy", "macro_f1", "confusion_matrix", "per_class"):
        assert permuted[key] == base[key]
    # an 8-class model with contempt and data without disgust: scored over the 6 + ... shared classes
    match = match_labels(FER2013_LABELS, keras + ["contempt"])
    assert match.model_only == ("contempt",) and match.data_only == () and not match.identical
    partial = match_labels([c for c in FER2013_LABELS if c != "disgust"], keras)
    assert partial.model_only == ("disgusted",) and "model labels the data lacks: disgusted" in partial.note()
    with pytest.raises(ModelError, match=r"'happy' and 'Happiness' are the same class \(happy\)"):
        match_labels(FER2013_LABELS, ["happy", "Happiness", "sad"])
    with pytest.raises(ModelError, match=r"no class in common"):
        match_labels(FER2013_LABELS, ["cat", "dog"])
