"""What every script in benchmarks/ shares: one argument parser, the machine and library versions, and result
files that record the command line that made them.

Each script builds its parser with ``parser(__doc__, ...)`` (the docstring's first paragraph is the description;
the common options ``--out``, ``--threads``, ``--work``, ``--seed``, ``--size`` are added with one spelling and
one help text when the script asks for them), reads it with ``parse(p, argv, __file__)`` (which also sets
``args.command``, the command line as it would be typed again), and writes JSON with ``write_result``, which
adds the command, the machine, the library versions, the load average and the time. The machine comes from
edgefer's own probe (``cpu_info``/``capture``, the one ``edgefer bench`` records), so every table names the
machine the same way.

Scripts run as ``python benchmarks/NAME.py``: this folder is then ``sys.path[0]`` and ``import common`` finds
this module (and the public names of a sibling script, e.g. ``run_matrix.recalibrated_init``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ISA flags named in a machine description, in this order (those edgefer's probe reports)
_ISA_ORDER = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "asimd",
              "asimddp", "fp16")

_COMMON = {
    "out": ({"type": Path}, "where the result files go"),
    "threads": ({"type": int}, "inference threads"),
    "work": ({"type": Path}, "git-ignored folder for exported models and other intermediate files"),
    "seed": ({"type": int}, "random seed"),
    "size": ({"type": int}, "input size in pixels"),
}


def _probe():
    """edgefer's machine probe (imported when first needed: a script's --help and the torch-free child processes
    of soak.py need none of it)."""
    try:  # below both export and bench once it moves out of edgefer.bench
        from edgefer import env
    except ImportError:
        from edgefer.bench import env
    return env


def parser(doc: str | None, **common) -> argparse.ArgumentParser:
    """The argument parser of a benchmark script: its docstring's first paragraph as the description, the full
    docstring as the epilog (usage examples), and each common option named in ``common`` with that default
    (``parser(__doc__, out=Path("runs/x"), threads=2)``)."""
    text = (doc or "").strip()
    p = argparse.ArgumentParser(description=text.split("\n\n")[0], epilog=text.partition("\n\n")[2] or None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in common.items():
        if name not in _COMMON:
            raise TypeError(f"no common option --{name} (known: {', '.join(_COMMON)})")
        kwargs, help_text = _COMMON[name]
        p.add_argument(f"--{name}", default=default, help=f"{help_text} (default: {default})", **kwargs)
    return p


def argv_or_sys(argv: list[str] | None = None) -> list[str]:
    """The arguments given: ``argv`` when a caller passes them, else the process's command line."""
    return list(sys.argv[1:] if argv is None else argv)


def command(script: str | Path, argv: list[str] | None = None) -> str:
    """The command line that ran ``script`` with ``argv`` (default: this process's), as one would type it again
    from the repository root."""
    path = Path(script).resolve()
    try:
        shown = path.relative_to(ROOT).as_posix()
    except ValueError:
        shown = str(path)
    return shlex.join(["python", shown, *argv_or_sys(argv)])


def parse(p: argparse.ArgumentParser, argv: list[str] | None, script: str | Path) -> argparse.Namespace:
    """Parse ``argv`` (default: the process's arguments) and record the command line as ``args.command``."""
    args = p.parse_args(argv)
    args.command = command(script, argv)
    return args


def machine() -> str:
    """One line naming the machine, from edgefer's probe: CPU model, logical CPUs, the ISA flags that matter for
    inference, memory, and the GPUs when there are any."""
    env = _probe()
    cpu = env.cpu_info()
    isa = [f for f in _ISA_ORDER if f in cpu["isa"]]
    if cpu["arch"] in ("x86_64", "AMD64") and not any(f.startswith("amx") for f in isa):
        isa.append("no AMX")
    memory = env.memory_gib()
    text = f"{cpu['model']} ({cpu['logical_cores']} logical CPUs; {', '.join(isa) or 'no AVX2'})"
    return text + (f", {memory} GiB" if memory else "")


def versions() -> dict:
    """Python and the installed versions of the libraries that matter (missing ones left out)."""
    return _probe().library_versions(skip_missing=True)


def environment(threads: int | None = None) -> dict:
    """The full machine record ``edgefer bench`` writes (CPU, memory, libraries, GPUs, load, warnings)."""
    return _probe().capture(threads)


def load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def provenance(args: argparse.Namespace | None = None) -> dict:
    """The keys every result file starts with: command, machine, versions, load average, time (UTC)."""
    return {"command": getattr(args, "command", None) or command(sys.argv[0]), "machine": machine(),
            "versions": versions(), "load_average": load_average(),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_result(path: str | Path, payload: dict, args: argparse.Namespace | None = None) -> Path:
    """Write ``payload`` as JSON at ``path`` after the provenance keys (a key of ``payload`` wins)."""
    from edgefer.fileio import write_json

    path = Path(path)
    write_json(path, {**provenance(args), **payload})
    return path
