"""``.ci/run`` says which CPU kind it ran on: ``.ci/cpu`` prints one line, model name and the AVX2 / AVX-512 /
AMX flags (the CPU kind decides what OpenVINO executes, so which tolerances apply)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPUS = {
    "avx2": ("AMD EPYC 7B13", "fpu sse4_2 avx avx2 fma bmi2",
             "ci: CPU AMD EPYC 7B13; flags: avx2"),
    "avx512_bf16": ("AMD EPYC 9B14", "avx2 avx512f avx512bw avx512_vnni avx512_bf16 sha_ni",
                    "ci: CPU AMD EPYC 9B14; flags: avx2 avx512_bf16 avx512_vnni avx512bw avx512f"),
    "amx": ("Intel(R) Xeon(R) Platinum 8481C", "avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8",
            "ci: CPU Intel(R) Xeon(R) Platinum 8481C; flags: amx_bf16 amx_int8 amx_tile avx2 avx512_bf16 "
            "avx512_fp16 avx512f"),
    "none": ("Some CPU", "fpu sse2", "ci: CPU Some CPU; flags: none of avx2/avx512*/amx*"),
}


@pytest.mark.parametrize("kind", list(CPUS))
def test_ci_prints_the_cpu_kind_in_one_line(kind, tmp_path):
    model, flags, line = CPUS[kind]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
                       f"processor\t: 1\nmodel name\t: {model}\nflags\t\t: {flags}\n")
    done = subprocess.run(["bash", str(ROOT / ".ci" / "cpu")], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "EDGEFER_CPUINFO": str(cpuinfo)})
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == line + "\n"


def test_ci_run_prints_it_before_the_tests():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert lines.index(next(x for x in lines if x.startswith("bash .ci/cpu"))) < lines.index("make test")
    done = subprocess.run(["bash", str(ROOT / ".ci" / "cpu")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("ci: CPU ") and done.stdout.count("\n") == 1
