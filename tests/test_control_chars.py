"""File names with control characters (a newline, a carriage return, an escape) never split the one-line
error: they are shown the way repr writes them."""

import pytest
from click.testing import CliRunner

NAMES = ["a\nb", "cr\rret", "esc\x1b[31mred", "tab\tand\x7fdel", "line\u2028sep"]


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(result, *parts):
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgefer: error: "), lines
    assert lines[0].isprintable()
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_single_line_escapes_only_control_characters():
    from edgefer.cli.options import single_line

    assert single_line("plain name é.csv") == "plain name é.csv"
    assert single_line("a\nb\r\x1b\t\x7f\u2028") == "a\\nb\\r\\x1b\\t\\x7f\\u2028"
    assert single_line(b"caf\xe9\n.csv") == "caf\\xe9\\n.csv"


@pytest.mark.parametrize("name", NAMES)
def test_missing_input_with_control_characters_is_one_line(tmp_path, name):
    from edgefer.cli.options import single_line

    path = tmp_path / f"{name}.csv"
    _one_error_line(_cli("data", "inspect", path), single_line(str(path)), "no such file")


@pytest.mark.parametrize("name", NAMES[:3])
def test_bad_row_in_a_file_with_a_newline_in_its_name_is_one_line(tmp_path, name):
    path = tmp_path / f"{name}.csv"
    path.write_text("emotion,pixels\n9," + " ".join(["0"] * 2304) + "\n")
    _one_error_line(_cli("data", "inspect", path), repr(name)[1:-1] + ".csv row 1", "emotion 9 is outside")
    table = _cli("data", "inspect", path, "--skip-bad")  # no usable images: still one line
    _one_error_line(table, repr(name)[1:-1])


@pytest.mark.parametrize("name", NAMES[:3])
def test_output_under_a_file_with_a_newline_in_its_name_is_one_line(tmp_path, name):
    blocker = tmp_path / name
    blocker.write_text("a file, not a folder")
    _one_error_line(_cli("data", "synth", "--out", blocker / "faces.csv", "--n", "5"), repr(name)[1:-1],
                    "not a directory")
    (tmp_path / f"{name}.csv").write_text("taken")
    _one_error_line(_cli("data", "synth", "--out", tmp_path / f"{name}.csv", "--n", "5"),
                    repr(name)[1:-1] + ".csv: already exists")


def test_skipped_rows_of_a_file_with_a_newline_keep_one_line_each(tmp_path, fer_csv):
    path = tmp_path / "two\nlines.csv"
    rows = fer_csv.read_text().splitlines()
    path.write_text("\n".join(rows[:30] + ["9," + rows[1].split(",", 1)[1]]) + "\n")
    result = _cli("data", "inspect", path, "--skip-bad")
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if "is outside" in line]
    assert skipped == [f"  {tmp_path}/two\\nlines.csv row 30 (line 31): emotion 9 is outside 0..6"]
