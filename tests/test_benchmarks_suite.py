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



def test_int8_error_sources_puts_each_group_back_in_float(fer_csv, tmp_path, monkeypatch):
    """benchmarks/int8_error_sources.py on a tiny Q/DQ graph: 'weights only' removes every activation Q/DQ, each
    group has its 'in float' and 'only' rows, every agreement is a fraction, and the result names its data."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    monkeypatch.syspath_prepend(str(BENCH))
    import int8_error_sources

    from edgefer.export import ExportConfig, export
    from edgefer.export.onnx import save_onnx, torch_to_onnx
    from edgefer.models import create_model, spec_for

    model = create_model("test_efficientnet").eval()
    spec = spec_for(model, 16)
    proto, _ = torch_to_onnx(model, spec, "legacy")
    save_onnx(proto, tmp_path / "model.onnx", spec)
    export(tmp_path / "model.onnx", ExportConfig.build("tensorrt", "int8", calib_size=32, calib_floor=1),
           tmp_path / "trt", data=fer_csv)
    out = tmp_path / "sources.json"
    int8_error_sources.main(["--fp32", str(tmp_path / "model.onnx"), "--qdq", str(tmp_path / "trt/model.int8.qdq.onnx"),
                             "--data", str(fer_csv), "--split", "private_test", "--limit", "20",
                             "--work", str(tmp_path / "work"), "--out", str(out)])
    result = json.loads(out.read_text())
    rows = {r["variant"]: r for r in result["rows"]}
    groups = result["reads_per_group"]
    assert result["faces"] == 20 and result["synthetic"] is True and "other convolutions" in groups
    assert set(rows) == {"all (the graph as given)", "weights only (every activation in float)",
                         *(f"{g} in float" for g in groups), *(f"only {g}" for g in groups)}
    assert all(0.0 <= r["agreement"] <= 1.0 and r["mean_abs_logit_change"] >= 0 for r in rows.values())
    assert result["command"].startswith("python benchmarks/int8_error_sources.py --fp32")
