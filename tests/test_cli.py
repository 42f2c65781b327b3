"""The edgefer command group: one-line usage errors, --help, shared options on data/predict/info."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgefer.cli import main
from tests.signals import default_sigint


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["data", "synth", "--out", "x.csv", "--zzz"], "data synth: No such option '--zzz'."),
    (["data", "synth", "--out", "x.csv", "--n", "abc"], "--n: must be an integer in [1, 1000000], got abc"),
    (["predict"], "predict: Missing argument 'SOURCE'."),
    (["predict", "a.png", "-m", "m.onnx", "--backend", "nope"],
     "predict: Invalid value for '--backend': 'nope' is not one of 'onnx', 'onnxruntime', 'openvino', 'ort', 'ov', 'tensorrt', 'trt'."),
    (["--bogus"], "No such option '--bogus'."),
    (["nope"], "No such command 'nope'."),
    (["data", "nope"], "data: No such command 'nope'."),
])
def test_click_usage_errors_are_one_line(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"edgefer: error: {message}"]


def test_help_still_works():
    for args in (["-h"], ["--help"], ["data", "synth", "--help"], ["predict", "-h"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.output, (args, result.output)
    assert all("Commands:" in run(*args).output for args in ([], ["data"]))  # no subcommand: help, as click shows it


def test_usage_error_from_the_console_script_goes_to_stderr():
    code = "import sys; from edgefer.cli import main; sys.argv[0] = 'edgefer'; main()"
    done = subprocess.run([sys.executable, "-c", code, "data", "synth"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "edgefer: error: data synth: Missing option '--out'.\n")


def _commands(group=main, prefix=()):
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_has_help_and_the_shared_options():
    import inspect

    mine = {("data", "synth"), ("data", "inspect"), ("predict",), ("info",)}
    seen = set()
    for path, command in _commands():
        result = run(*path, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, (path, result.output)
        if path in mine:
            seen.add(path)
            assert "-q, --quiet" in result.output and "-v, --verbose" in result.output, path
            assert len(inspect.signature(command.callback).parameters) <= 12, path  # options grouped in configs
    assert seen == mine
    help_text = run("predict", "--help").output
    assert "[onnx|onnxruntime|openvino|ort|ov|tensorrt|trt]" in help_text and "[bf16|f16|f32|fp16|fp32]" in help_text
    assert "--exist-ok" in help_text and "--exist-ok" in run("data", "synth", "--help").output


def test_click_errors_raised_inside_a_command_are_one_line(monkeypatch):
    import click

    def broken(*args, **kwargs):
        raise click.FileError("x.csv", hint="disk on fire")

    monkeypatch.setattr("edgefer.data.synthesize", broken)
    result = run("data", "synth", "--out", "/tmp/edgefer-never-written.csv", "--n", 3)
    assert result.exit_code == 2
    assert result.output == "edgefer: error: Could not open file 'x.csv': disk on fire\n"


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch):
    import edgefer.data

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgefer.data, "synthesize", interrupted)
    result = run("data", "synth", "--out", tmp_path / "x.csv", "--n", 5)
    assert result.exit_code == 130
    assert result.output.splitlines() == ["edgefer: error: interrupted (Ctrl-C)"]
    assert list(tmp_path.iterdir()) == []


def test_sigint_to_a_running_command_is_one_line_and_exit_130(tmp_path):
    import signal

    code = ("import time, edgefer.data\n"
            "def slow(*a, **k):\n"
            "    print('working', flush=True)\n"
            "    time.sleep(60)\n"
            "edgefer.data.synthesize = slow\n"
            "from edgefer.cli import main\n"
            f"main(['data', 'synth', '--out', {str(tmp_path / 'x.csv')!r}, '--n', '5'])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    try:
        assert proc.stdout.readline() == "working\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.splitlines() == ["edgefer: error: interrupted (Ctrl-C)"]
    assert list(tmp_path.iterdir()) == []
