"""Calibration sets: deterministic bundles, stratification with a floor, strategies, the committed manifest."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.data.sampling import balanced_quota, stratified_quota
from edgefer.errors import ExportError
from edgefer.export.calibration import (
    CalibrationSet,
    CalibrationWarning,
    draw,
    from_data,
)
from edgefer.preprocess import prepare
from edgefer.spec import FER2013_LABELS, ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def _quiet_draw(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return from_data(*args, **kwargs)


def test_same_seed_same_bytes_and_every_training_class(fer_csv, tmp_path):
    first = _quiet_draw(fer_csv, 128, seed=3).save(tmp_path / "a")
    second = _quiet_draw(fer_csv, 128, seed=3).save(tmp_path / "b")
    for name in ("calib.npz", "manifest.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    manifest = json.loads((first / "manifest.json").read_text())
    present = [k for k, v in manifest["source_per_class"].items() if v > 0]
    assert sorted(present) == sorted(FER2013_LABELS)  # the synthetic data has every class, disgust included
    assert all(manifest["per_class"][k] > 0 for k in present)
    assert sum(manifest["per_class"].values()) == manifest["size"] == 128 == len(manifest["ids"])
    assert manifest["synthetic"] is True and manifest["strategy"] == "stratified"
    assert manifest["split"] == {"val_fraction": 0.1, "seed": 0, "val_from": "train (stratified, seeded)"}
    other = _quiet_draw(fer_csv, 128, seed=4)
    assert other.manifest["ids"] != manifest["ids"]


def test_floor_warning_names_the_short_classes(fer_csv):
    with pytest.warns(CalibrationWarning, match=r"fewer than the floor of 1000 .*disgust \(\d+\)") as caught:
        calib = from_data(fer_csv, 64, floor=1000)
    assert "angry" in str(caught[0].message)
    assert calib.manifest["warnings"] and "disgust" in calib.manifest["warnings"][0]


def test_stratified_floor_lifts_minority_class():
    counts = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965])  # FER2013 training distribution
    quota = stratified_quota(counts, 512, 16)
    assert quota.sum() == 512 and quota[1] == 16  # disgust: 9 by proportion, lifted to the floor
    others = [0, 2, 3, 4, 5, 6]  # share the remaining 496 in proportion to their counts
    assert np.all(np.abs(quota[others] - 496 * counts[others] / counts[others].sum()) < 1)
    tiny = np.array([3, 436, 0, 7215, 4830, 5, 4965])
    quota = stratified_quota(tiny, 512, 16)
    assert quota.sum() == 512 and quota[0] == 3 and quota[2] == 0 and quota[5] == 5
    balanced = balanced_quota(tiny, 512)
    assert balanced.sum() == 512 and list(balanced[[0, 2, 5]]) == [3, 0, 5]
    assert balanced[[1, 3, 4, 6]].max() - balanced[[1, 3, 4, 6]].min() <= 1


def test_strategies_and_small_data():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), [50, 4, 50, 200, 50, 50, 50])
    from types import SimpleNamespace

    data = SimpleNamespace(images=rng.integers(0, 256, (len(labels), 48, 48), dtype=np.uint8), labels=labels,
                           ids=np.array([f"x.csv:row={i}" for i in range(len(labels))]), source="/a/x.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        balanced = draw(data, 70, "balanced")
        everything = draw(data, 10_000, "stratified")
        random_a, random_b = draw(data, 100, "random", seed=1), draw(data, 100, "random", seed=1)
    assert balanced.manifest["per_class"]["disgust"] == 4 and balanced.manifest["per_class"]["happy"] == 11
    assert len(everything) == len(labels)  # asking for more than there is takes everything
    assert np.array_equal(random_a.ids, random_b.ids) and len(random_a) == 100
    assert balanced.manifest["source"] == "x.csv"  # no absolute path: the manifest is portable
    with pytest.raises(ExportError, match="strategy 'best'.*stratified, balanced, random"):
        draw(data, 10, "best")


def test_bundle_roundtrip_batches_and_tamper_detection(fer_csv, tmp_path):
    calib = _quiet_draw(fer_csv, 70)
    calib.save(tmp_path)
    loaded = CalibrationSet.load(tmp_path / "manifest.json")
    assert np.array_equal(loaded.images, calib.images) and loaded.manifest == calib.manifest
    spec = ModelSpec(input_size=32)
    batches = loaded.batches(spec, 32)
    first, second = list(batches), list(batches)  # re-iterable: every INT8 step consumes it again
    assert len(batches) == 3 and [b.shape[0] for b in first] == [32, 32, 6]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert np.array_equal(first[0], prepare(calib.images[:32], spec, color="gray"))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["content_sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="calib.npz: content does not match manifest.json"):
        CalibrationSet.load(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="not a calibration bundle \\(missing calib.npz\\)"):
        CalibrationSet.load(tmp_path / "empty")
    with pytest.raises(ExportError, match="nowhere: no such calibration bundle"):
        CalibrationSet.load(tmp_path / "nowhere")


def test_committed_synthetic_manifest_is_reproduced(tmp_path):
    """calibration/synthetic/manifest.json is what the recipe in calibration/README.md gives."""
    from edgefer.cli import main
    from edgefer.data import synthesize, write_fer_csv

    committed = ROOT / "calibration" / "synthetic" / "manifest.json"
    csv = write_fer_csv(tmp_path / "fer2013_synthetic.csv", synthesize(3000, seed=0), provenance={"n": 3000, "seed": 0})
    result = CliRunner().invoke(main, ["calibrate", "--data", str(csv), "--out", str(tmp_path / "calib")])
    assert result.exit_code == 0, result.output
    assert "512 SYNTHETIC images" in result.output
    assert (tmp_path / "calib" / "manifest.json").read_bytes() == committed.read_bytes()


def test_resolve_takes_the_first_source_given_and_refuses_two(fer_csv, tmp_path):
    """``calibration.resolve``: --calib, else --calib-data, else --data's training split, else a part carved from
    labelled data without one (disjoint from what is left); the same draws as the functions it calls."""
    from edgefer.data import evaluation_set, load, prepare_splits
    from edgefer.export.calibration import from_labelled, resolve
    from edgefer.export.config import CalibOptions

    options = CalibOptions(size=64, floor=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        splits = prepare_splits(fer_csv)
        drawn = resolve(options, splits=splits)
        assert drawn.how == "split" and drawn.calib.ids.tolist() == from_data(splits, 64, floor=2).ids.tolist()
        bundle = drawn.calib.save(tmp_path / "bundle")
        loaded = resolve(options, bundle=bundle, splits=splits)
        assert loaded.how == "bundle" and loaded.calib.ids.tolist() == drawn.calib.ids.tolist()
        assert resolve(options, bundle=drawn.calib).calib is drawn.calib
        labelled = resolve(options, labelled=fer_csv, splits=splits)
        assert labelled.how == "labelled" and labelled.calib.ids.tolist() == from_labelled(fer_csv, 64, floor=2).ids.tolist()
        whole = evaluation_set(load(fer_csv), "all")
        carved = resolve(options, whole=whole)
    assert carved.how == "carved" and len(carved.rest) + len(carved.calib) == len(whole)
    assert not set(carved.calib.ids.tolist()) & set(carved.rest.ids.tolist())
    assert resolve(options).how == "none" and resolve(options).calib is None
    with pytest.raises(ExportError, match=r"^give either --calib BUNDLE or --calib-data PATH, not both$"):
        resolve(options, bundle=bundle, labelled=fer_csv)
