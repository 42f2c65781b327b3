"""Peak resident memory of one benchmark row, measured inside the benchmarking process.

On Linux the kernel's high-water mark (``VmHWM``) can be reset to the current RSS by writing ``5`` to
``/proc/self/clear_refs``; a row's peak is then the highest RSS reached while it was opened, evaluated
and timed, and its delta is that peak minus the RSS just before it started. Libraries imported by an
earlier row stay loaded, so a later row of the same runtime shows a smaller delta (documented in
docs/bench.md). Elsewhere the peak is the process-lifetime ``ru_maxrss`` and the method says so.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        text = STATUS.read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s*(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


def _ru_maxrss_kib() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


class PeakMemory:
    """``with PeakMemory() as mem: ...`` then ``mem.result()`` -> peak/before/delta in MiB and the method."""

    def __enter__(self) -> PeakMemory:
        self.method = "ru_maxrss (process lifetime peak)"
        try:
            CLEAR_REFS.write_text("5")
            self.method = "VmHWM reset via /proc/self/clear_refs (peak during this row)"
        except OSError:
            pass
        self.before_kib = _status_kib("VmRSS") or _ru_maxrss_kib()
        return self

    def __exit__(self, *exc) -> None:
        peak = _status_kib("VmHWM") if self.method.startswith("VmHWM") else None
        self.peak_kib = peak if peak is not None else _ru_maxrss_kib()

    def result(self) -> dict:
        return {
            "peak_rss_mib": round(self.peak_kib / 1024, 1),
            "rss_before_mib": round(self.before_kib / 1024, 1),
            "delta_mib": round(max(self.peak_kib - self.before_kib, 0) / 1024, 1),
            "method": self.method,
        }
