"""Energy per inference on Jetson, from ``tegrastats`` power rails (optional; None elsewhere).

While a measurement runs, ``tegrastats --interval N`` prints one line per interval with the board's power
rails (``VDD_IN 5010mW/5010mW`` on Orin Nano/NX, ``POM_5V_IN 2145/2145`` on Nano/TX2, several rails to add
up on AGX Orin/Xavier). The mean input power times the measurement's wall time, divided by the number of
inferences, is the energy per inference (the whole board's, idle power included: say so when reporting).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # rails that already measure the whole module's input
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)(?:mW)?/(\d+)(?:mW)?")
_NOT_POWER = {"RAM", "SWAP", "IRAM", "LFB", "EMC_FREQ", "GR3D_FREQ", "APE"}


def board_power_mw(line: str) -> tuple[float, str] | None:
    """(instantaneous input power in mW, how it was read) from one tegrastats line, or None."""
    rails = {name: float(now) for name, now, _ in _RAIL.findall(line) if name not in _NOT_POWER}
    for name in TOTAL_RAILS:
        if name in rails:
            return rails[name], name
    if rails:
        return sum(rails.values()), "sum of " + "+".join(sorted(rails))
    return None


class PowerMonitor:
    """``with PowerMonitor() as pm: work()`` then ``pm.energy(runs, seconds)``; inert without tegrastats."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.samples: list[float] = []
        self.method: str | None = None
        self._proc = None
        self._reader = None

    @staticmethod
    def available() -> bool:
        return shutil.which("tegrastats") is not None

    def __enter__(self) -> PowerMonitor:
        if self.available():
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
            reading = board_power_mw(line)
            if reading is not None:
                self.samples.append(reading[0])
                self.method = reading[1]

    def __exit__(self, *exc) -> None:
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
                "rails": self.method, "source": "tegrastats"}
