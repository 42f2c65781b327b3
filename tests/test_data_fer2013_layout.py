"""FER2013 as Kaggle ships it (image folders with PublicTest_/PrivateTest_ file names) gives the CSV's official
splits, and every capped sample of a split is a seeded stratified one, even on class-sorted data."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.data import FERDataset, load, synthesize
from edgefer.data.sampling import stratified_sample
from edgefer.data.splits import evaluation_set
from edgefer.data.synth import write_fer_csv
from edgefer.spec import FER2013_LABELS

Image = pytest.importorskip("PIL.Image", reason="Pillow (edgefer[data]) reads image folders")

PREFIX = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """The same faces as a Kaggle-layout folder (train/<class>/Training_N.jpg, test/<class>/PublicTest_N.jpg and
    PrivateTest_N.jpg, lossless PNG here so pixels compare) and as fer2013.csv with its Usage column."""
    root = tmp_path_factory.mktemp("kaggle")
    faces = synthesize(210, seed=3)
    for i, (image, label, usage) in enumerate(zip(faces.images, faces.labels, faces.usage)):
        path = root / "folders" / PREFIX[usage] / FER2013_LABELS[label] / f"{usage}_{1000 + i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    write_fer_csv(root / "fer2013.csv", faces)
    return root, faces


def per_class(dataset):
    return dataset.class_counts().tolist()


def test_kaggle_folders_give_the_csv_splits(kaggle):
    root, faces = kaggle
    folders, csv = load(root / "folders"), load(root / "fer2013.csv")
    assert set(folders.splits) == set(csv.splits) == {"train", "test", "private_test"}
    for name in ("train", "test", "private_test"):
        assert per_class(folders[name]) == per_class(csv[name]), name
        # the same faces: every folder image's pixels are those of the CSV row of the same index
        index = [int(Path(i).stem.split("_")[1]) - 1000 for i in folders[name].ids]
        assert np.array_equal(folders[name].images, faces.images[index])
    assert all(Path(i).name.startswith("PrivateTest_") for i in folders["private_test"].ids)
    assert "PrivateTest_" in folders.test_split and csv.test_split == "Usage column"
    assert evaluation_set(folders, "private_test").name == "private_test"


def test_data_inspect_shows_public_and_private_test(kaggle):
    root, faces = kaggle
    result = CliRunner().invoke(main, ["data", "inspect", str(root / "folders"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    n = {name: split["n"] for name, split in report["splits"].items()}
    assert n["train"] + n["val"] == int((faces.usage == "Training").sum())
    assert n["test"] == int((faces.usage == "PublicTest").sum())
    assert n["private_test"] == int((faces.usage == "PrivateTest").sum())
    assert "PrivateTest_" in report["test_split"]
    text = CliRunner().invoke(main, ["data", "inspect", str(root / "folders")]).output
    assert "private_test" in text and "test splits: test = PublicTest_*" in text


def test_a_test_folder_without_every_prefix_stays_one_split(tmp_path, kaggle):
    root, _ = kaggle
    src = root / "folders"
    for path in src.rglob("*.png"):
        dest = tmp_path / path.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    odd = next((tmp_path / "test").rglob("PublicTest_*.png"))
    odd.rename(odd.with_name("face.png"))
    loaded = load(tmp_path)
    assert "private_test" not in loaded.splits
    assert len(loaded["test"]) == len(load(src)["test"]) + len(load(src)["private_test"])
    assert "1 of" in loaded.test_split and "one test split" in loaded.test_split


def test_folders_are_not_read_class_by_class(kaggle):
    """A slice of a split read from class folders holds several classes (the files are interleaved)."""
    root, _ = kaggle
    train = load(root / "folders")["train"]
    assert len(np.unique(train.labels[:20])) >= 4
    assert load(root / "folders")["train"].ids.tolist() == train.ids.tolist()  # the same order every time


@pytest.mark.parametrize("n", [1, 7, 50, 99, 250, 999])
@pytest.mark.parametrize("seed", [0, 1])
def test_stratified_sample_has_every_class_in_proportion(n, seed):
    counts = np.array([400, 44, 410, 722, 483, 317, 497])
    labels = np.repeat(np.arange(7), counts)  # class-sorted, like an image folder read class by class
    pick = stratified_sample(labels, n, seed=seed)
    assert len(pick) == n == len(np.unique(pick))
    got = np.bincount(labels[pick], minlength=7)
    assert np.all(np.abs(got - n * counts / counts.sum()) <= 1), got
    assert np.array_equal(pick, stratified_sample(labels, n, seed=seed))
    if n >= 50:
        assert len(np.unique(labels[pick[:20]])) > 1  # the sample itself is shuffled, not class-sorted


def test_stratified_sample_of_everything_keeps_the_order():
    labels = np.array([2, 0, 1, 1])
    assert stratified_sample(labels, None).tolist() == stratified_sample(labels, 10).tolist() == [0, 1, 2, 3]


def class_sorted(n_per_class=(40, 4, 41, 72, 48, 31, 50)):
    labels = np.repeat(np.arange(7), n_per_class)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (labels.size, 48, 48), dtype=np.uint8)
    return FERDataset(images, labels, np.array([f"x/{i}.png" for i in range(labels.size)]), name="val")


def test_export_check_set_is_stratified_on_class_sorted_data():
    from edgefer.export.pipeline import _check_set

    whole = class_sorted()
    images, labels, name, _ = _check_set(None, whole, None, 100)
    counts = whole.class_counts()
    assert len(labels) == 100 and name == "val"
    assert np.all(np.abs(np.bincount(labels, minlength=7) - 100 * counts / counts.sum()) <= 1)
    index = [int(np.flatnonzero((whole.images == im).all(axis=(1, 2)))[0]) for im in images[:5]]
    assert np.array_equal(whole.labels[index], labels[:5])  # images and labels stay paired


def test_bench_limit_is_a_stratified_sample(tmp_path):
    from edgefer.bench.run import BenchSettings, _load_split

    data = class_sorted()
    folder = tmp_path / "faces"
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        path = folder / FER2013_LABELS[label] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    _, dataset, _, usage = _load_split(folder, BenchSettings(limit=50), int8=False)
    counts = data.class_counts()
    assert usage["evaluated_n"] == len(dataset) == 50
    assert np.all(np.abs(dataset.class_counts() - 50 * counts / counts.sum()) <= 1)


def test_train_limit_is_stratified(tmp_path):
    from edgefer.train.batches import load_splits
    from edgefer.train.config import TrainConfig

    faces = synthesize(400, seed=1)
    order = np.argsort(faces.labels, kind="stable")  # a class-sorted CSV
    sorted_faces = faces.subset(order)
    write_fer_csv(tmp_path / "sorted.csv", sorted_faces, usage=np.full(len(order), "Training"))
    splits, train = load_splits(TrainConfig(data=str(tmp_path / "sorted.csv"), limit_train=70))
    counts = splits.train.class_counts()
    assert len(train) == 70
    assert np.all(np.abs(train.class_counts() - 70 * counts / counts.sum()) <= 1)
