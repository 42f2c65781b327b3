"""Energy per inference on Jetson, from the module's INA3221 power rails (optional; None elsewhere).

The rails are read from ``tegrastats --interval N`` (one line per interval: ``VDD_IN 5010mW/5010mW ...``) or,
without tegrastats, from the INA3221 hwmon files (``in<N>_label``, ``in<N>_input`` mV, ``curr<N>_input`` mA).
Which rails make the module's input power depends on the board (``RAIL_MAPS``; sources in docs/tensorrt.md):

- Orin NX / Orin Nano (and Xavier NX): ``VDD_IN`` is the module's total input; ``VDD_CPU_GPU_CV`` and
  ``VDD_SOC`` are parts of it and are never added to it.
- AGX Orin has no ``VDD_IN``: the monitored rails are ``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0`` and
  ``VDDQ_VDD2_1V8AO``; their sum is the module figure (approximate: converter losses upstream of the shunts and
  the carrier board are not measured).
- Nano / TX2: ``POM_5V_IN`` is the total.

The mean input power times the measurement's wall time, divided by the number of inferences, is the energy per
inference (the whole module's, idle power included: say so when reporting); every figure records the rails used.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RailMap:
    """The rails whose sum is a board's module input power, and what that sum covers."""

    board: str
    total: tuple[str, ...]
    note: str


RAIL_MAPS = (  # first match wins: a board is recognised by its total rails being present
    RailMap("Jetson Orin NX / Orin Nano / Xavier NX", ("VDD_IN",),
            "VDD_IN is the module input (VDD_CPU_GPU_CV, VDD_SOC, DDR and I/O are inside it)"),
    RailMap("Jetson Nano / TX2", ("POM_5V_IN",), "POM_5V_IN is the module input"),
    RailMap("Jetson AGX Orin", ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"),
            "no VDD_IN rail: sum of the module's monitored rails (converter losses and carrier not measured)"),
    RailMap("Jetson AGX Xavier", ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"),
            "no input rail: sum of the module's monitored rails"),
)
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # rails that already measure the whole module's input
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)(?:mW)?/(\d+)(?:mW)?")
_NOT_POWER = {"RAM", "SWAP", "IRAM", "LFB", "EMC_FREQ", "GR3D_FREQ", "APE"}
INA3221_ROOT = Path("/sys/bus/i2c/drivers/ina3221")


def tegrastats_rails(line: str) -> dict[str, float]:
    """Instantaneous power (mW) of every rail in one tegrastats line."""
    return {name: float(now) for name, now, _ in _RAIL.findall(line) if name not in _NOT_POWER}


def sysfs_rails(root: str | Path = INA3221_ROOT) -> dict[str, float]:
    """Instantaneous power (mW) of every labelled INA3221 channel under ``root`` (bus mV x shunt mA)."""
    rails: dict[str, float] = {}
    for label in sorted(Path(root).glob("*/hwmon/hwmon*/in*_label")):
        name = label.read_text().strip()
        channel = label.name.removeprefix("in").removesuffix("_label")
        volts, amps = label.with_name(f"in{channel}_input"), label.with_name(f"curr{channel}_input")
        if not name or name == "NC" or not volts.is_file() or not amps.is_file():
            continue
        try:
            rails[name] = float(volts.read_text()) * float(amps.read_text()) / 1000.0
        except (OSError, ValueError):
            continue
    return rails


def rail_map(rails) -> RailMap | None:
    """The board whose total rails appear in ``rails`` (names), or None."""
    names = set(rails)
    for board in RAIL_MAPS:
        if board.total[0] in names:
            return board
    return None


def module_power(rails: dict[str, float]) -> tuple[float, tuple[str, ...], str] | None:
    """(module input power in mW, rails added, board) for one reading; an unknown board sums every rail."""
    if not rails:
        return None
    board = rail_map(rails)
    if board is None:
        return sum(rails.values()), tuple(sorted(rails)), "unknown board (sum of every rail)"
    used = tuple(r for r in board.total if r in rails)
    return sum(rails[r] for r in used), used, board.board


def board_power_mw(line: str) -> tuple[float, str] | None:
    """(instantaneous input power in mW, how it was read) from one tegrastats line, or None."""
    reading = module_power(tegrastats_rails(line))
    if reading is None:
        return None
    mw, used, _ = reading
    return mw, used[0] if len(used) == 1 else "sum of " + "+".join(sorted(used))


class PowerMonitor:
    """``with PowerMonitor() as pm: work()`` then ``pm.energy(runs, seconds)``: tegrastats, else the INA3221
    hwmon files; inert without either."""

    def __init__(self, interval_ms: int = 100, sysfs_root: str | Path = INA3221_ROOT):
        self.interval_ms = interval_ms
        self.sysfs_root = Path(sysfs_root)
        self.samples: list[float] = []
        self.method: str | None = None
        self.rails: tuple[str, ...] = ()
        self.board: str | None = None
        self.source: str | None = None
        self._proc = None
        self._reader = None
        self._stop = threading.Event()

    @staticmethod
    def available() -> bool:
        return shutil.which("tegrastats") is not None or INA3221_ROOT.is_dir()

    def _record(self, rails: dict[str, float], source: str) -> None:
        reading = module_power(rails)
        if reading is None:
            return
        mw, self.rails, self.board = reading
        self.samples.append(mw)
        self.method = self.rails[0] if len(self.rails) == 1 else "sum of " + "+".join(sorted(self.rails))
        self.source = source

    def _poll_sysfs(self) -> None:
        while not self._stop.is_set():
            self._record(sysfs_rails(self.sysfs_root), "ina3221 sysfs")
            self._stop.wait(self.interval_ms / 1000.0)

    def __enter__(self) -> PowerMonitor:
        if shutil.which("tegrastats") is None:
            if self.sysfs_root.is_dir() and sysfs_rails(self.sysfs_root):
                self._reader = threading.Thread(target=self._poll_sysfs, daemon=True)
                self._reader.start()
            return self
        try:
            self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self._proc = None
        else:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            self._record(tegrastats_rails(line), "tegrastats")

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._proc is None and self._reader is not None:
            self._reader.join(timeout=2)
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._reader.join(timeout=2)

    def energy(self, runs: int, seconds: float) -> dict | None:
        """Mean board power and millijoules per inference over ``runs`` inferences in ``seconds``."""
        if not self.samples or runs < 1:
            return None
        mean_mw = sum(self.samples) / len(self.samples)
        return {"mean_power_mw": mean_mw, "mj_per_inference": mean_mw * seconds / runs, "samples": len(self.samples),
                "rails": self.method, "rails_used": list(self.rails), "board": self.board,
                "source": self.source or "tegrastats"}
