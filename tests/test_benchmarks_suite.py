"""benchmarks/ is one suite: one argument parser and one reader of the command line (benchmarks/common.py), every
script answers --help, names the RESULTS.md section it produces, and imports no private name of another; every
script RESULTS.md names exists, and every section of it names one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py"))
TEXT = {path: path.read_text(encoding="utf-8") for path in sorted(BENCH.glob("*.py")) + sorted(BENCH.glob("*.sh"))}
RESULTS = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
CITED = re.compile(r"benchmarks/([A-Za-z0-9_]+\.(?:py|sh))")


@pytest.mark.parametrize("needle", ["argparse.ArgumentParser(", "sys.argv"])
def test_one_parser_and_one_command_line_reader(needle):
    holders = [path.name for path, text in TEXT.items() if needle in text]
    assert holders in ([], ["common.py"]), f"{needle} appears in {holders}: use benchmarks/common.py"


def test_every_script_cited_by_results_exists():
    cited = set(CITED.findall(RESULTS))
    assert cited, "RESULTS.md names no script"
    missing = sorted(name for name in cited if not (BENCH / name).is_file())
    assert not missing, f"RESULTS.md names scripts that do not exist: {missing}"


def test_every_results_section_names_an_existing_script():
    sections = re.split(r"^## ", RESULTS, flags=re.M)[1:]
    assert sections
    for section in sections:
        title = section.splitlines()[0]
        names = [name for name in CITED.findall(section) if (BENCH / name).is_file()]
        assert names, f"RESULTS.md section {title!r} names no script of benchmarks/ that exists"


def test_every_script_says_what_it_produces():
    for path in SCRIPTS:
        if path.name == "common.py":
            continue
        doc = re.match(r'\s*(?:#[^\n]*\n)*\s*"""(.*?)"""', TEXT[path], re.S)
        assert doc and "\nProduces: " in doc.group(1), f"{path.name}: its docstring has no 'Produces:' line"


def test_no_script_imports_a_private_name_of_another():
    siblings = "|".join(re.escape(p.stem) for p in SCRIPTS)
    private = re.compile(rf"from ({siblings}) import [^\n]*\b_[A-Za-z]|\b({siblings})\._[A-Za-z]")
    for path in SCRIPTS:
        assert not private.search(TEXT[path]), f"{path.name} imports a private name of another script"


def test_every_script_answers_help():
    """Scripts with a command line print their help; the modules without one (common, raw_backends) import."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {}
    for path in SCRIPTS:
        if 'if __name__ == "__main__":' in TEXT[path]:
            cmd = [sys.executable, str(path), "--help"]
        else:
            cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCH)!r}); import {path.stem}"]
        procs[path.name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True)
    failed = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0 or (" --help" in " ".join(proc.args) and "usage:" not in out):
            failed[name] = (proc.returncode, err.strip().splitlines()[-1:] if err.strip() else out[:200])
    assert not failed, failed


def test_results_record_the_command_and_the_machine(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import common

    p = common.parser(common.__doc__, out=tmp_path / "r.json", threads=2)
    p.add_argument("--label", default="x")
    args = common.parse(p, ["--threads", "1", "--label", "a b"], BENCH / "soak.py")
    assert args.threads == 1 and args.out == tmp_path / "r.json"
    assert args.command == "python benchmarks/soak.py --threads 1 --label 'a b'"
    written = json.loads(common.write_result(args.out, {"rows": [1]}, args).read_text())
    assert written["command"] == args.command and written["rows"] == [1]
    assert written["machine"] and written["versions"]["python"] and "created_utc" in written
    with pytest.raises(TypeError):
        common.parser(None, nonsense=1)
