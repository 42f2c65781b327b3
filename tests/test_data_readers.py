"""Image-folder readers, class-name aliases, image conversion, and every bad-input case (API and CLI)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.data import (
    LABELS,
    canonical_label,
    is_known_label,
    label_index,
    load,
    prepare_splits,
    synthesize,
    to_gray48,
)
from edgefer.errors import DataError

Image = pytest.importorskip("PIL.Image", reason="Pillow (edgefer[data]) reads image folders")

ROW = " ".join(["7"] * 2304)


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.fixture(scope="module")
def faces():
    return synthesize(70, seed=5)


def test_split_folders_round_trip(tmp_path, faces):
    """train/<class>/*.png + test/<class>/*.png: pixels, labels and relative-path ids come back exactly."""
    for i, (image, label) in enumerate(zip(faces.images, faces.labels)):
        split = "train" if i < 56 else "test"
        save(tmp_path / split / LABELS[label] / f"{i:03d}.png", image)
    (tmp_path / "README.txt").write_text("files at the root are not data")
    (tmp_path / "train" / LABELS[faces.labels[0]] / ".DS_Store").write_bytes(b"\0junk")
    loaded = load(tmp_path)
    assert loaded.format == "split-folders" and not loaded.synthetic
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 56, "test": 14}
    for name, ds in loaded.splits.items():
        index = [int(Path(i).stem) for i in ds.ids]
        assert all(i.startswith(f"{name}/") for i in ds.ids)
        assert np.array_equal(ds.images, faces.images[index]) and np.array_equal(ds.labels, faces.labels[index])
    splits = prepare_splits(tmp_path, seed=0)
    assert len(splits.train) + len(splits.val) == 56 and len(splits.test) == 14


def test_class_folders_with_aliases_any_size_and_colour(tmp_path, faces):
    """Arbitrary class folder spellings, colour JPEGs and big/non-square PNGs -> 48x48 gray, all train."""
    spellings = ["Anger", "disgusted", "fearful", "happiness", "sadness", "surprised", "neutrality"]
    for i, (image, label) in enumerate(zip(faces.images[:21], faces.labels[:21])):
        folder = tmp_path / spellings[label]
        if i % 3 == 0:
            save(folder / f"{i}.png", np.kron(image, np.ones((3, 3), np.uint8)))  # 144x144 gray
        elif i % 3 == 1:
            save(folder / f"{i}.jpg", np.repeat(image[:, :, None], 3, axis=2), quality=95)  # colour JPEG
        else:
            save(folder / "nested" / f"{i}.bmp", np.pad(image, ((0, 0), (20, 20)), mode="edge"))  # 48x88
    loaded = load(tmp_path)
    assert loaded.format == "class-folders" and list(loaded.splits) == ["train"]
    ds = loaded["train"]
    assert len(ds) == 21 and ds.images.shape == (21, 48, 48)
    by_id = dict(zip(ds.ids.tolist(), range(len(ds))))
    for i, label in enumerate(faces.labels[:21]):
        name = {0: f"{i}.png", 1: f"{i}.jpg", 2: f"nested/{i}.bmp"}[i % 3]
        row = by_id[f"{spellings[label]}/{name}"]
        assert ds.labels[row] == label
        tolerance = {0: 0, 1: 3, 2: 0}[i % 3]  # 3x area average is exact, JPEG loses a little, centre crop exact
        assert np.abs(ds.images[row].astype(int) - faces.images[i]).mean() <= tolerance


def test_to_gray48_conversions():
    rgb = np.zeros((60, 60, 3), np.uint8)
    rgb[..., 0] = 200  # pure red -> ITU-R 601 luma 0.299 * 200
    assert np.all(to_gray48(Image.fromarray(rgb)) == round(0.299 * 200))
    flat = to_gray48(Image.fromarray(np.full((100, 300), 90, np.uint8)))
    assert flat.shape == (48, 48) and np.all(flat == 90)
    deep = Image.fromarray(np.full((48, 48), 40000, np.uint16))
    assert np.all(to_gray48(deep) == 40000 >> 8)


@pytest.mark.parametrize("name, canonical, index", [
    ("angry", "angry", 0), ("Anger", "angry", 0), ("disgusted", "disgust", 1), ("Fearful", "fear", 2),
    ("happiness", "happy", 3), ("3_happy", "happy", 3), ("sadness", "sad", 4), ("Surprised", "surprise", 5),
    ("neutrality", "neutral", 6), ("6", "neutral", 6), ("contempt", "contempt", 7), ("Contemptuous", "contempt", 7),
    ("7", "7", None), ("Calm ", "calm", None),
])
def test_canonical_label(name, canonical, index):
    assert canonical_label(name) == canonical and label_index(name) == index
    assert is_known_label(name) == (index is not None)


def test_val_folder_is_used_as_validation(tmp_path, faces):
    for i, (image, label) in enumerate(zip(faces.images[:30], faces.labels[:30])):
        save(tmp_path / ("validation" if i % 5 == 0 else "train") / LABELS[label] / f"{i}.png", image)
    splits = prepare_splits(tmp_path)
    assert len(splits.val) == 6 and len(splits.train) == 24 and splits.manifest["val_from"] == "val folder"


# ---------------------------------------------------------------------------------------- bad input

def csv_file(tmp_path, text, name="fer.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = f"0,{ROW},Training\n"
CSV_CASES = {
    # case: (file text, message pattern naming row and reason)
    "pixel_count": (f"emotion,pixels,Usage\n{GOOD}3,{' '.join(['7'] * 2303)},Training\n",
                    r"fer.csv row 2 \(line 3\): expected 2304 pixel values \(48x48\), got 2303"),
    "non_integer_pixel": (f"emotion,pixels,Usage\n{GOOD}3,{ROW[:-1]}x,PublicTest\n",
                          r"fer.csv row 2 \(line 3\): pixel 2304 'x' is not an integer"),
    "float_pixel": (f"emotion,pixels,Usage\n{GOOD}3,12.5 {ROW[2:]},Training\n",
                    r"fer.csv row 2 \(line 3\): pixel 1 '12.5' is not an integer"),
    "pixel_range": (f"emotion,pixels,Usage\n{GOOD}3,256 {ROW[2:]},Training\n",
                    r"fer.csv row 2 \(line 3\): pixel 1 value 256 is outside 0..255"),
    "label_range": (f"emotion,pixels,Usage\n{GOOD}7,{ROW},Training\n",
                    r"fer.csv row 2 \(line 3\): emotion 7 is outside 0..6"),
    "label_text": (f"emotion,pixels,Usage\n{GOOD}happy,{ROW},Training\n",
                   r"fer.csv row 2 \(line 3\): emotion 'happy' is not an integer label 0..6"),
    "field_count": (f"emotion,pixels,Usage\n{GOOD}3,{ROW}\n",
                    r"fer.csv row 2 \(line 3\): expected 3 fields \(emotion,pixels,Usage\), got 2"),
    "usage_value": (f"emotion,pixels,Usage\n{GOOD}3,{ROW},Validation\n",
                    r"fer.csv row 2 \(line 3\): Usage 'Validation' is not Training, PublicTest or PrivateTest"),
    # a spreadsheet's non-breaking space separates like a space; a number too large for int64 is out of range
    "nbsp_huge_pixel": (f"emotion,pixels,Usage\n{GOOD}3,99999999999999999999\u00a0{ROW[2:]},Training\n",
                        r"fer.csv row 2 \(line 3\): pixel 1 value 99999999999999999999 is outside 0..255"),
    "huge_label": (f"emotion,pixels,Usage\n{GOOD}{'9' * 5000},{ROW},Training\n",
                   r"fer.csv row 2 \(line 3\): emotion '99999999999999999999\.\.\.' is outside 0..6"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv_rows_raise_or_are_counted(tmp_path, case):
    text, message = CSV_CASES[case]
    path = csv_file(tmp_path, text)
    with pytest.raises(DataError, match=message):
        load(path)
    loaded = load(path, skip_bad=True)
    assert len(loaded["train"]) == 1 and loaded["train"].ids.tolist() == ["fer.csv:row=1"]
    assert loaded.report.per_file() == {str(path): 1}
    assert loaded.report.skipped[0]["where"] == "row 2 (line 3)"
    # through the CLI: exit code 2 and one line without a traceback; --skip-bad reports the skipped row
    result = CliRunner().invoke(main, ["data", "inspect", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("edgefer: error: ")
    result = CliRunner().invoke(main, ["data", "inspect", str(path), "--skip-bad", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["bad"]["skipped"] == 1 and report["bad"]["entries"][0]["where"] == "row 2 (line 3)"
    text_report = CliRunner().invoke(main, ["data", "inspect", str(path), "--skip-bad"]).output
    assert "bad rows/files skipped: 1" in text_report and "row 2 (line 3)" in text_report


@pytest.mark.parametrize("text, message", [
    ("emotion,Usage\n0,Training\n", r"fer.csv: missing column 'pixels'"),
    (f"pixels\n{ROW}\n", r"fer.csv: missing column 'emotion'"),
    ("", r"fer.csv: empty file"),
    (f"emotion,pixels\n9,{ROW}\n", r"fer.csv: no usable images \(1 bad rows/files skipped\)"),
])
def test_bad_csv_files_fail_even_with_skip_bad(tmp_path, text, message):
    path = csv_file(tmp_path, text)
    with pytest.raises(DataError, match=message):
        load(path, skip_bad=True)


def test_binary_file_as_csv(tmp_path):
    path = tmp_path / "fer.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    with pytest.raises(DataError, match="fer.csv: not a text CSV file"):
        load(path)
    archive = tmp_path / "fer2013.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08")
    with pytest.raises(DataError, match="fer2013.tar.gz: is an archive; extract it first"):
        load(archive)


def folder_with(tmp_path, faces, extra):
    """A class-folder data set (angry, happy) plus one bad thing made by ``extra(root)``."""
    for i in range(4):
        save(tmp_path / ("angry" if i % 2 else "happy") / f"{i}.png", faces.images[i])
    extra(tmp_path)
    return tmp_path


FOLDER_CASES = {
    "non_image_file": (lambda root: (root / "angry" / "notes.txt").write_text("not an image"),
                       r"angry/notes.txt: not a readable image"),
    "truncated_image": (lambda root: (root / "happy" / "cut.png").write_bytes(
        (root / "happy" / "0.png").read_bytes()[:60]), r"happy/cut.png: not a readable image"),
    "empty_class_folder": (lambda root: (root / "sad").mkdir(), r"sad: empty class folder"),
    "unknown_class_name": (lambda root: save(root / "bored" / "x.png", np.zeros((48, 48), np.uint8)),
                           r"bored: unknown class name 'bored' \(1 files"),
    "broken_symlink": (lambda root: (root / "happy" / "gone.png").symlink_to(root / "nowhere.png"),
                       r"happy/gone.png: broken symlink \(its target does not exist\)"),
    "looping_symlink": (lambda root: (root / "happy" / "self.png").symlink_to(root / "happy" / "self.png"),
                        r"happy/self.png: symlink loop"),
    "folder_symlink_loop": (lambda root: (root / "happy" / "again").symlink_to(root / "happy"),
                            r"happy/again: symlink loop \(leads back to a folder already read\)"),
    "non_utf8_name": (lambda root: (root / "angry" / os.fsdecode(b"caf\xe9.txt")).write_text("not an image"),
                      r"angry/caf\\xe9.txt: not a readable image"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_bad_folder_entries_raise_or_are_counted(tmp_path, faces, case):
    make, message = FOLDER_CASES[case]
    root = folder_with(tmp_path, faces, make)
    with pytest.raises(DataError, match=message):
        load(root)
    loaded = load(root, skip_bad=True)
    assert len(loaded["train"]) == 4 and len(loaded.report) == 1
    result = CliRunner().invoke(main, ["data", "inspect", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.output.count("\n") == 1
    result = CliRunner().invoke(main, ["data", "inspect", str(root), "--skip-bad", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["bad"]["skipped"] == 1


def test_split_layout_bad_entries(tmp_path, faces):
    save(tmp_path / "train" / "angry" / "a.png", faces.images[0])
    save(tmp_path / "train" / "happy" / "b.png", faces.images[1])
    save(tmp_path / "train" / "stray.png", faces.images[2])
    save(tmp_path / "extra" / "angry" / "c.png", faces.images[3])
    with pytest.raises(DataError, match=r"extra: folder 'extra' is not a split \(expected .*train"):
        load(tmp_path)
    (tmp_path / "extra" / "angry" / "c.png").rename(tmp_path / "c.png")  # files at the root are ignored
    (tmp_path / "extra" / "angry").rmdir()
    (tmp_path / "extra").rmdir()
    with pytest.raises(DataError, match=r"train/stray.png: file outside a class folder"):
        load(tmp_path)
    save(tmp_path / "Validation" / "extra" / "d.png", faces.images[3])
    loaded = load(tmp_path, skip_bad=True)
    reasons = sorted(entry["reason"] for entry in loaded.report.skipped)
    assert len(reasons) == 2 and reasons[0] == "file outside a class folder"
    assert reasons[1].startswith("unknown class name 'extra' (1 files")
    assert len(loaded["train"]) == 2 and "val" not in loaded.splits


def test_unrecognised_directory(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match=r"no FER2013 CSV, split folders .* \(sub-folders: photos\)"):
        load(tmp_path)
    (tmp_path / "a.csv").write_text("emotion,pixels\n")
    (tmp_path / "b.csv").write_text("emotion,pixels\n")
    with pytest.raises(DataError, match=r"holds 2 CSV files \(a.csv, b.csv\)"):
        load(tmp_path)


def test_pixel_parser_round_trips_any_whitespace():
    """Property: any 48x48 uint8 image written with arbitrary runs of spaces/tabs parses back exactly."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from edgefer.data.readers import _parse_pixels

    @settings(max_examples=30, deadline=None)
    @given(st.integers(0, 2**32 - 1))
    def check(seed):
        rng = np.random.default_rng(seed)
        values = rng.integers(0, 256, 2304).astype(np.uint8)
        separators = rng.choice([" ", "  ", "\t", " \t "], 2304)
        text = "".join(f"{v}{sep}" for v, sep in zip(values.tolist(), separators.tolist()))
        assert np.array_equal(_parse_pixels(" " + text), values)

    check()


def test_cr_only_line_ends(tmp_path):
    """Old Mac / some exporters end lines with a lone CR: rows and line numbers are read as with LF."""
    data = synthesize(3, seed=0)
    lines = ["emotion,pixels,Usage"] + [f"{label},{' '.join(map(str, image.ravel()))},Training"
                                        for image, label in zip(data.images, data.labels)]
    path = tmp_path / "fer.csv"
    path.write_bytes("\r".join(lines).encode())  # no line end after the last row either
    loaded = load(path)
    assert np.array_equal(loaded["train"].images, data.images) and loaded["train"].ids[2] == "fer.csv:row=3"
    path.write_bytes(("\r".join(lines[:2] + ["9" + lines[2][1:]] + lines[3:]) + "\r").encode())
    with pytest.raises(DataError, match=r"fer.csv row 2 \(line 3\): emotion 9 is outside 0..6"):
        load(path)


def test_file_names_that_are_not_utf8_become_printable_ids(tmp_path, faces):
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    save(tmp_path / "happy" / name, faces.images[0])
    save(tmp_path / "angry" / "b.png", faces.images[1])
    loaded = load(tmp_path)
    assert sorted(loaded["train"].ids.tolist()) == ["angry/b.png", "happy/caf\\xe9.png"]
    json.dumps(loaded["train"].ids.tolist(), ensure_ascii=False).encode("utf-8")  # printable: no lone surrogates
    result = CliRunner().invoke(main, ["data", "inspect", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    csv_path = tmp_path.parent / os.fsdecode(b"donn\xe9es.csv")
    csv_path.write_text(f"emotion,pixels\n3,{ROW}\n")
    assert load(csv_path)["train"].ids.tolist() == ["donn\\xe9es.csv:row=1"]


def test_broken_symlink_at_the_data_root_is_counted(tmp_path, faces):
    for i in range(2):
        save(tmp_path / "happy" / f"{i}.png", faces.images[i])
    (tmp_path / "sad").symlink_to(tmp_path / "moved-away")
    with pytest.raises(DataError, match=r"/sad: broken symlink \(its target does not exist\)"):
        load(tmp_path)
    loaded = load(tmp_path, skip_bad=True)
    assert len(loaded["train"]) == 2 and [e["reason"] for e in loaded.report.skipped] == [
        "broken symlink (its target does not exist)"]


# ------------------------------------------------------------------------ data as users have it


def test_plain_class_folder_and_test_only_folder_are_evaluated_whole(tmp_path, faces):
    from edgefer.data import evaluation_set

    plain, test_only = tmp_path / "plain", tmp_path / "only_test"
    for i in range(10):
        save(plain / LABELS[faces.labels[i]] / f"{i}.png", faces.images[i])
        save(test_only / "test" / LABELS[faces.labels[i]] / f"{i}.png", faces.images[i])
    whole = evaluation_set(plain)
    assert whole.name == "all" and len(whole) == 10 and sorted(whole.ids)[0] == sorted(
        f"{LABELS[faces.labels[i]]}/{i}.png" for i in range(10))[0]
    with pytest.raises(DataError, match=r"plain: no 'test' split \(the data has: train; use split 'all' to "):
        evaluation_set(plain, "test")
    test = evaluation_set(test_only)
    assert test.name == "test" and len(test) == 10 and test.ids[0].startswith("test/")
    assert evaluation_set(test_only, "all").ids.tolist() == test.ids.tolist()
    with pytest.raises(DataError, match=r"only_test: no training data \(.*the data has: test\)"):
        prepare_splits(test_only)
    with pytest.raises(DataError, match=r"unknown split 'dev' \(use 'auto', 'all' or one of train"):
        evaluation_set(plain, "dev")


def test_evaluation_set_of_a_csv_prefers_the_test_split(fer_csv):
    from edgefer.data import evaluation_set

    assert evaluation_set(fer_csv).name == "test" and len(evaluation_set(fer_csv)) == 60
    everything = evaluation_set(fer_csv, "all")
    assert everything.name == "all" and len(everything) == 600 and len(set(everything.ids)) == 600
    assert evaluation_set(fer_csv, "private_test").name == "private_test"


def test_calibration_split_is_stratified_seeded_and_disjoint():
    from edgefer.data import calibration_split

    data = synthesize(300, seed=2)
    keep, calib = calibration_split(data, 60, seed=1)
    assert len(calib) == 60 and len(keep) == 240 and not set(keep) & set(calib)
    assert sorted(np.concatenate([keep, calib]).tolist()) == list(range(300))
    share = np.bincount(data.labels[calib], minlength=7) - 60 * data.class_counts() / 300
    assert np.abs(share).max() < 1  # proportional per class
    assert (np.bincount(data.labels[keep], minlength=7) > 0).all()  # every class still evaluated
    again_keep, again_calib = calibration_split(data, 0.2, seed=1)
    assert again_calib.tolist() == calib.tolist() and again_keep.tolist() == keep.tolist()
    order = np.random.default_rng(0).permutation(300)  # read in another order: the same images are drawn
    shuffled = data.subset(order)
    assert sorted(shuffled.ids[calibration_split(shuffled, 60, seed=1)[1]]) == sorted(data.ids[calib])
    assert calibration_split(data, 60, seed=2)[1].tolist() != calib.tolist()
    tiny = data.subset(np.flatnonzero(data.labels == 1)[:2])  # two disgust images: one stays for evaluation
    assert [len(part) for part in calibration_split(tiny, 1)] == [1, 1]
    for bad, message in [(0, "from 1 to 299"), (300, "from 1 to 299"), (1.5, "between 0 and 1"), ("9", "'9'")]:
        with pytest.raises(DataError, match=message):
            calibration_split(data, bad)


def test_contempt_folder_loads_as_an_eighth_class(tmp_path, faces):
    for i in range(6):
        save(tmp_path / ["happy", "sad", "Contempt"][i % 3] / f"{i}.png", faces.images[i])
    loaded = load(tmp_path)
    assert loaded.classes == LABELS + ("contempt",)
    assert loaded["train"].stats()["class_counts"] == {**dict.fromkeys(LABELS, 0), "happy": 2, "sad": 2,
                                                       "contempt": 2}
    splits = prepare_splits(tmp_path, val_fraction=0.0)
    assert splits.manifest["labels"][-1] == "contempt" and len(splits.class_weights()) == 8
    result = CliRunner().invoke(main, ["data", "inspect", str(tmp_path), "--json", "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["splits"]["train"]["class_counts"]["contempt"] == 2


def test_messages_about_non_utf8_names_print(tmp_path):
    root = tmp_path / os.fsdecode(b"d\xe9j\xe0")
    (root / os.fsdecode(b"ph\xf6tos")).mkdir(parents=True)
    with pytest.raises(DataError, match=r"d\\xe9j\\xe0: no FER2013 CSV, .*\(sub-folders: ph\\xf6tos\)") as caught:
        load(root)
    str(caught.value).encode("utf-8")
    (root / os.fsdecode(b"a\xff.csv")).write_text("")
    (root / "b.csv").write_text("")
    with pytest.raises(DataError, match=r"holds 2 CSV files \(a\\xff.csv, b.csv\)"):
        load(root)
    with pytest.raises(DataError, match=r"a\\xff.csv: empty file"):
        load(root / os.fsdecode(b"a\xff.csv"))
