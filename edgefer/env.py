"""The machine and software a run is on, recorded with every export, QAT run and benchmark.

Standard library only (psutil optional): CPU model, cores and threads, memory, library versions, an
NVIDIA GPU through ``nvidia-smi``, and on Jetson the board model, JetPack (L4T) release, TensorRT version
and ``nvpmodel`` power mode, with a warning when clocks are not pinned by ``jetson_clocks``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

LIBRARIES = ("edgefer", "numpy", "torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt",
             "scikit-learn", "opencv-python-headless")
JETSON_MODEL = Path("/proc/device-tree/model")
L4T_RELEASE = Path("/etc/nv_tegra_release")


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of ``cmd``, or None when the tool is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_info() -> dict:
    """CPU model, logical/physical core counts, the cores this process may use, ISA flags that matter."""
    model, flags = None, set()
    text = _read(Path("/proc/cpuinfo")) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    lscpu = _run(["lscpu"]) or ""
    match = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    if match:
        model = match.group(1).strip()
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimd",
              "asimddp", "fp16")
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": sorted(f for f in wanted if f in flags),
    }


def memory_gib() -> float | None:
    text = _read(Path("/proc/meminfo")) or ""
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.M)
    return round(int(match.group(1)) / 2**20, 1) if match else None


def library_versions(names=LIBRARIES, skip_missing: bool = False) -> dict:
    """Installed versions of ``names`` (None, or left out with ``skip_missing``, when not installed)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if not skip_missing:
                versions[name] = None
    if versions.get("tensorrt") is None and "tensorrt" in sys.modules:  # JetPack's apt install has no dist-info
        versions["tensorrt"] = getattr(sys.modules["tensorrt"], "__version__", None)
    return versions


def machine_summary() -> dict:
    """The short machine record that export.json and qat.json carry."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def gpu_info() -> list[dict]:
    """NVIDIA GPUs from ``nvidia-smi`` (empty when there is none or no driver)."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm",
                "--format=csv,noheader"])
    gpus = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 5:
            gpus.append(dict(zip(("name", "driver", "memory", "sm_clock", "sm_clock_max"), parts)))
    return gpus


def jetson_info() -> dict | None:
    """Board model, L4T/JetPack release, nvpmodel power mode and whether clocks look pinned; None off Jetson."""
    model = _read(JETSON_MODEL)
    release = _read(L4T_RELEASE)
    if not release and not (model and "jetson" in model.lower()):
        return None
    info = {"model": model, "l4t_release": release.splitlines()[0] if release else None}
    nvp = _run(["nvpmodel", "-q"])
    info["power_mode"] = " ".join(nvp.split()) if nvp else None
    clocks = _run(["jetson_clocks", "--show"])
    info["clocks_fixed"] = _clocks_pinned(clocks) if clocks else None
    info["energy_source"] = "tegrastats" if shutil.which("tegrastats") else None
    return info


def _clocks_pinned(show: str) -> bool:
    """``jetson_clocks --show`` lists each CPU as ``MinFreq=... MaxFreq=... CurrentFreq=...``: pinned when
    every CPU's minimum equals its maximum."""
    pairs = re.findall(r"MinFreq=(\d+) MaxFreq=(\d+)", show)
    return bool(pairs) and all(lo == hi for lo, hi in pairs)


def _cpu_governor() -> str | None:
    return _read(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))


def capture(threads: int | None = None) -> dict:
    """Everything above plus warnings a reader of the numbers should see."""
    env = {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "cpu": cpu_info(),
        "memory_gib": memory_gib(),
        "threads": threads,
        "cpu_governor": _cpu_governor(),
        "libraries": library_versions(),
        "gpus": gpu_info(),
        "jetson": jetson_info(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "warnings": [],
    }
    warnings = env["warnings"]
    jetson = env["jetson"]
    if jetson is not None and jetson.get("clocks_fixed") is not True:
        warnings.append("Jetson clocks are not fixed (run `sudo jetson_clocks`): latencies vary with DVFS")
    governor = env["cpu_governor"]
    if governor and governor != "performance" and jetson is None:
        warnings.append(f"CPU frequency governor is '{governor}', not 'performance': latencies may vary")
    cores = env["cpu"]["usable_cores"] or 0
    load = env["load_average"]
    if load and cores and load[0] > 0.5 * cores:
        warnings.append(f"load average {load[0]:.1f} on {cores} cores: other processes compete for the CPU")
    if threads and cores and threads > cores:
        warnings.append(f"{threads} threads requested but only {cores} cores are usable")
    return env


def describe(env: dict) -> str:
    """One line naming the machine, for report headers."""
    cpu = env["cpu"]
    isa = ", ".join(cpu["isa"]) if cpu["isa"] else "no AVX-512/VNNI/AMX"
    parts = [f"{cpu['model']} ({cpu['usable_cores']} usable cores; {isa})"]
    if env.get("gpus"):
        parts.append(", ".join(g["name"] for g in env["gpus"]))
    else:
        parts.append("CPU only")
    if env.get("jetson"):
        parts.append(f"{env['jetson']['model']}, power mode {env['jetson']['power_mode']}")
    return "; ".join(parts)
