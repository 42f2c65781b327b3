"""Every numeric option of every command is checked while the command line is parsed: finite (NaN and +-inf never
pass), an integer where it must be, in range; one line naming the option and the allowed range, exit 2, before any
work."""

import math

import click
import pytest
from click.testing import CliRunner

from edgefer.bounds import Bound
from edgefer.cli import COMMANDS, main
from edgefer.cli.options import Number
from edgefer.errors import EdgeferError


def _commands():
    """(command words, click command) for every command and data subcommand."""
    ctx = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield [name, sub], command.get_command(ctx, sub)
        else:
            yield [name], command


def _numeric_options():
    for words, command in _commands():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, Number):
                yield words, param


NUMERIC = list(_numeric_options())
HUGE = {int: str(10**30), float: "1e308"}


def _cases():
    for words, param in NUMERIC:
        bound = param.type.bound
        option = max(param.opts, key=len)
        for value in ("nan", "inf", "-inf", "-1", "0", HUGE[bound.kind]):
            if bound.problem(value) is not None:
                yield pytest.param(words, option, value, bound, id=f"{' '.join(words)} {option} {value}")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_every_numeric_option_of_every_command_is_bounded():
    unbounded = []
    for words, command in _commands():
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                unbounded.append(f"{' '.join(words)} {param.opts[0]}")
    assert unbounded == []
    by_command = {tuple(w) for w, _ in NUMERIC}
    assert {("train",), ("eval",), ("qat",), ("calibrate",), ("export",), ("build-engine",), ("bench",),
            ("predict",), ("info",), ("data", "synth"), ("data", "inspect")} <= by_command
    assert len(NUMERIC) > 60
    for _, param in NUMERIC:  # every one refuses NaN, infinities and a huge value
        bound = param.type.bound
        assert bound.min is not None and bound.max is not None, param.opts


@pytest.mark.parametrize("words, option, value, bound", list(_cases()))
def test_bad_numbers_are_one_line_exit_2(words, option, value, bound):
    result = _run(*words, option, value)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"edgefer: error: {option}: must be {bound.describe()}"
        + (f" ({bound.note})" if bound.note else "") + f", got {value}"]


# Each case found by hand and by the fuzzer: (arguments, the line's start)
ISSUE_CASES = [
    (["train", "--lr", "nan"], "--lr: must be a finite number in (0, 10]"),
    (["train", "--lr", "inf"], "--lr: must be a finite number in (0, 10]"),
    (["train", "--min-lr", "nan"], "--min-lr: must be a finite number in [0, 10]"),
    (["train", "--min-lr", "-1"], "--min-lr: must be a finite number in [0, 10]"),
    (["train", "--warmup-epochs", "nan"], "--warmup-epochs: must be a finite number in [0, 100000]"),
    (["train", "--warmup-epochs", "inf"], "--warmup-epochs: must be a finite number in [0, 100000]"),
    (["train", "--eval-batch-size", "0"], "--eval-batch-size: must be an integer in [1, 65536]"),
    (["train", "--eval-batch-size", "-1"], "--eval-batch-size: must be an integer in [1, 65536]"),
    (["train", "--seed", "-1"], "--seed: must be an integer in [0, 4294967295]"),
    (["train", "--seed", "1e29"], "--seed: must be an integer in [0, 4294967295]"),
    (["train", "--seed", str(10**29)], "--seed: must be an integer in [0, 4294967295]"),
    (["train", "--weight-decay", "nan"], "--weight-decay: must be a finite number in [0, 10]"),
    (["train", "--weight-decay", "-1"], "--weight-decay: must be a finite number in [0, 10]"),
    (["train", "--grad-clip", "nan"], "--grad-clip: must be a finite number in [0, 1000000] (0 = off)"),
    (["train", "--grad-clip", "-1"], "--grad-clip: must be a finite number in [0, 1000000] (0 = off)"),
    (["train", "--rotation", "nan"], "--rotation: must be a finite number in [0, 180] (degrees)"),
    (["train", "--rotation", "inf"], "--rotation: must be a finite number in [0, 180] (degrees)"),
    (["train", "--brightness", "-1"], "--brightness: must be a finite number in [0, 1]"),
    (["train", "--contrast", "nan"], "--contrast: must be a finite number in [0, 1]"),
    (["train", "--focal-gamma", "nan"], "--focal-gamma: must be a finite number in [0, 100]"),
    (["train", "--focal-gamma", "-5"], "--focal-gamma: must be a finite number in [0, 100]"),
    (["train", "--patience", "-1"], "--patience: must be an integer in [1, 100000]"),
    (["train", "--freeze-epochs", "-1"], "--freeze-epochs: must be an integer in [0, 100000]"),
    (["eval", "--model", "x", "--batch-size", "0"], "--batch-size: must be an integer in [1, 65536]"),
    (["eval", "--model", "x", "--batch-size", "-1"], "--batch-size: must be an integer in [1, 65536]"),
    (["qat", "--from", "x", "--out", "y", "--lr", "nan"], "--lr: must be a finite number in (0, 10]"),
    (["qat", "--from", "x", "--out", "y", "--threads", "0"], "--threads: must be an integer in [1, 4096]"),
    (["calibrate", "--data", "x", "--out", "y", "--calib-seed", "-1"],
     "--calib-seed: must be an integer in [0, 4294967295]"),
    (["export", "--model", "x", "--target", "onnx", "--out", "y", "--calib-seed", "-1"],
     "--calib-seed: must be an integer in [0, 4294967295]"),
    (["export", "--model", "x", "--target", "onnx", "--out", "y", "--search-seconds", "nan"],
     "--search-seconds: must be a finite number in (0, 10000000]"),
    (["data", "inspect", "x.csv", "--val-fraction", "nan"], "--val-fraction: must be a finite number in [0, 1)"),
    (["data", "synth", "--out", "x.csv", "--n", str(10**12)], "--n: must be an integer in [1, 1000000]"),
    (["bench", "--model", __file__, "--data", __file__, "--duration", "nan"], "--duration: must be a finite number in (0, 3600]"),
    (["bench", "--model", __file__, "--data", __file__, "--duration", "inf"], "--duration: must be a finite number in (0, 3600]"),
    (["bench", "--model", __file__, "--data", __file__, "--duration", "1e308"],
     "--duration: must be a finite number in (0, 3600]"),
    (["bench", "--model", __file__, "--data", __file__, "--fail-on-drop", "nan"],
     "--fail-on-drop: must be a finite number in [0, 1]"),
    (["bench", "--model", __file__, "--data", __file__, "--parity-atol", "nan"],
     "--parity-atol: must be a finite number in [0, 1000]"),
    (["export", "--model", "x", "--target", "onnx", "--out", "y", "--parity-atol", "nan"],
     "--parity-atol: must be a finite number in [0, 1000]"),
]


@pytest.mark.parametrize("args, start", ISSUE_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in ISSUE_CASES])
def test_reported_numeric_options_are_refused_before_any_work(args, start, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing exists here: the number is refused before any path is used
    result = _run(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgefer: error: {start}"), result.output
    assert lines[0].endswith(f"got {args[-1]}")
    assert list(tmp_path.iterdir()) == []


def test_good_numbers_still_parse():
    assert Number(Bound(int, 1, 10)).convert("7", None, None) == 7
    assert Number(Bound(float, 0, 1)).convert("0.25", None, None) == 0.25
    assert Number(Bound(float, 0, 1)).convert(1, None, None) == 1.0
    assert Bound(int, 0, 10).problem(3) is None and Bound(int, 0, 10).problem(3.0) is None


@pytest.mark.parametrize("bound, value, why", [
    (Bound(int, 0, 10), True, "must be an integer in [0, 10], got True"),
    (Bound(int, 0, 10), "2.5", "must be an integer in [0, 10], got 2.5"),
    (Bound(int, 0, 10), 2.5, "must be an integer in [0, 10], got 2.5"),
    (Bound(float, 0, 1, max_open=True), 1.0, "must be a finite number in [0, 1), got 1.0"),
    (Bound(float, 0, min_open=True), float("nan"), "must be a finite number > 0, got nan"),
    (Bound(float, 0), "-inf", "must be a finite number >= 0, got -inf"),
    (Bound(float, max=1), "abc", "must be a finite number <= 1, got abc"),
    (Bound(float, 0, 1), False, "must be a finite number in [0, 1], got False"),
])
def test_bound_problems(bound, value, why):
    assert bound.problem(value) == why


def test_configs_refuse_the_same_numbers_through_the_python_api(tmp_path):
    from edgefer.bench import run_bench
    from edgefer.export.config import ExportConfig
    from edgefer.qat import QatConfig
    from edgefer.train.config import TrainConfig

    nan = math.nan
    with pytest.raises(EdgeferError, match=r"^--lr: must be a finite number in \(0, 10\], got nan$"):
        TrainConfig(lr=nan).validate()
    with pytest.raises(EdgeferError, match=r"^--min-lr: must be a finite number in \[0, 10\], got -1$"):
        TrainConfig(min_lr=-1).validate()
    with pytest.raises(EdgeferError, match=r"^--lr: must be a finite number in \(0, 10\], got nan$"):
        QatConfig(from_run="a", out="b", lr=nan).validate()
    with pytest.raises(EdgeferError, match=r"^--search-seconds: must be a finite number in \(0, 10000000\]"):
        ExportConfig.build("onnx", "int8", max_drop=0.01, search_seconds=nan).validate()
    with pytest.raises(EdgeferError, match=r"^--calib-seed: must be an integer in \[0, 4294967295\], got -1$"):
        ExportConfig.build("onnx", calib_seed=-1).validate()
    with pytest.raises(EdgeferError, match=r"^--fail-on-drop: must be a finite number in \[0, 1\], got nan$"):
        run_bench(tmp_path / "none.onnx", tmp_path / "none.csv", out_dir=tmp_path / "out", fail_on_drop=nan)
    assert list(tmp_path.iterdir()) == []  # refused before the report directory was staged
