import os

os.environ.setdefault("EDGEFER_PROGRESS", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fer_csv(tmp_path_factory):
    """A small SYNTHETIC FER2013 CSV with Usage (600 images, seed 0; ~480 Training / 60 PublicTest /
    60 PrivateTest) and its ``.synthetic.json`` marker, written once per test session."""
    from edgefer.data import synthesize, write_fer_csv

    path = tmp_path_factory.mktemp("fer") / "fer2013_synthetic.csv"
    return write_fer_csv(path, synthesize(600, seed=0), provenance={"n": 600, "seed": 0})
