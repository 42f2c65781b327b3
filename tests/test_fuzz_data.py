"""Property tests: whatever the CSV, image tree or model spec, only EdgeferError subclasses escape, and what is
accepted is well formed. Bounded (explicit max_examples, no deadline: the shared CI machine is slow at times);
tests/fuzz.py runs the same generators for tens of thousands of cases."""

import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edgefer.data import load
from edgefer.errors import EdgeferError, ModelError
from edgefer.spec import ModelSpec
from tests import fuzz


def bounded(max_examples: int):
    """Explicit bounds: fixed examples, no deadline, no shrinking (a failure prints its unshrunk example)."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def only_edgefer_errors(run):
    """Run ``run(work_dir)``; an EdgeferError is an accepted outcome, anything else fails the test."""
    work = Path(tempfile.mkdtemp(prefix="edgefer-fuzz-test-"))
    try:
        run(work)
    except EdgeferError as exc:
        str(exc).encode("utf-8")  # the message prints: file names that are not UTF-8 come out escaped
    finally:
        shutil.rmtree(work, ignore_errors=True)


@bounded(120)
@given(data=st.binary(max_size=4000), skip_bad=st.booleans())
def test_csv_random_bytes(data, skip_bad):
    def run(work):
        path = work / "fer.csv"
        path.write_bytes(data)
        fuzz.check_loaded(load(path, skip_bad=skip_bad))

    only_edgefer_errors(run)


PIXELS = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(0, 2303)).map(lambda v: " ".join(  # valid, one varied value
        [str(v[0])] * v[1] + ["0"] + [str(v[0])] * (2303 - v[1]))),
    st.lists(st.one_of(st.integers(-10**30, 10**30).map(str), st.sampled_from(fuzz.JUNK_FIELDS)), max_size=40)
    .map(" ".join),
    st.text(st.characters(blacklist_characters=',"\r\n\x00'), max_size=60),
)
FIELD = st.text(st.characters(blacklist_characters=',"\r\n\x00'), max_size=12)  # one field, one line


@bounded(120)
@given(label=st.one_of(st.integers(-3, 9).map(str), FIELD, st.sampled_from(fuzz.JUNK_FIELDS)),
       pixels=PIXELS, usage=st.one_of(st.sampled_from(["Training", "PublicTest", "PrivateTest"]), FIELD),
       ends=st.lists(st.sampled_from(fuzz.LINE_ENDS), min_size=3, max_size=3), skip_bad=st.booleans())
def test_csv_random_fields_and_line_ends(label, pixels, usage, ends, skip_bad):
    good = " ".join(["7"] * 2304)
    text = f"emotion,pixels,Usage{ends[0]}0,{good},Training{ends[1]}{label},{pixels},{usage}{ends[2]}"

    def run(work):
        path = work / "fer.csv"
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        loaded = load(path, skip_bad=skip_bad)
        fuzz.check_loaded(loaded)
        if not set('"\x00') & set(text):  # a quote or NUL changes how the rows split
            assert len(loaded.report) + sum(len(d) for d in loaded.splits.values()) == 2  # each row read or counted

    only_edgefer_errors(run)


@bounded(60)
@given(rng=st.randoms(use_true_random=False))
def test_csv_generated_files(rng):
    only_edgefer_errors(lambda work: fuzz.csv_case(rng, work))


@bounded(80)
@given(rng=st.randoms(use_true_random=False))
def test_folder_random_trees(rng):
    pytest.importorskip("PIL.Image")
    only_edgefer_errors(lambda work: fuzz.folder_case(rng, work))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(fuzz.SPEC_FIELDS + ("spec", "x")), children, max_size=5),
    max_leaves=12,
)


@bounded(200)
@given(value=JSON, base=st.booleans())
def test_spec_from_random_json(value, base):
    """Random JSON, or a valid spec with one field replaced by random JSON."""
    if base and isinstance(value, dict):
        value = {**ModelSpec().to_dict(), **value}
    text = json.dumps(value)
    try:
        spec = ModelSpec.from_json(text, source="fuzz.json")
    except ModelError as exc:
        assert str(exc).startswith("fuzz.json: ")
    else:
        assert ModelSpec.from_json(spec.to_json()).to_json() == spec.to_json()


@bounded(60)
@given(rng=st.randoms(use_true_random=False))
def test_spec_generated_texts_and_sidecars(rng):
    only_edgefer_errors(lambda work: fuzz.spec_case(rng, work))


def test_fuzz_script_summary(tmp_path):
    """tests/fuzz.py writes its JSON summary (cases, escapes by kind, wall time, machine)."""
    out = tmp_path / "fuzz.json"
    assert fuzz.main(["--cases", "15", "--target", "spec", "--seed", "3", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    result = summary["targets"]["spec"]
    assert result["cases"] == 15 and result["escapes"] == 0 and result["escape_kinds"] == {}
    assert result["accepted"] + result["rejected_with_edgefer_error"] == 15
    assert summary["machine"]["cpu"] and summary["command"].endswith("--out " + str(out))
    replay = fuzz.run_target("spec", fuzz.spec_case, 1, seed=3, start=7)
    assert replay["cases"] == 1 and replay["start"] == 7


def test_fuzz_counts_escapes_by_kind():
    def case(rng: random.Random, work: Path):
        if rng.random() < 0.5:
            raise KeyError("boom")
        raise ModelError("fine")

    result = fuzz.run_target("x", case, 40, seed=0)
    (kind, entry), = result["escape_kinds"].items()
    assert kind.startswith("KeyError at test_fuzz_data.py:") and entry["count"] == result["escapes"] > 0
    assert result["rejected_with_edgefer_error"] == 40 - result["escapes"] and "KeyError: 'boom'" in entry["traceback"]
