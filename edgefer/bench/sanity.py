"""Checks a bench run applies to its own numbers before reporting them.

- **Outliers**: a batch-1 model call (``model_b1``) whose p50 is far above the same row's end-to-end p50 cannot
  be right (end-to-end = preprocessing + the same model call + softmax), and a first timed call many times the
  median means warm-up did not cover the backend's lazy initialisation. ``checked`` re-measures a row whose
  numbers fail a check and, when the re-measurement still fails, keeps it with the failures listed in
  ``latency["outliers"]``; such a row is left out of the ``--min-speedup`` check.
- **Busy machine**: on a machine busier than its cores (``machine_busy``) speed ratios against PyTorch eager are
  not reliable; a ``--min-speedup`` check is still judged, with that note.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

B1_OVER_E2E = 1.5  # model_b1 p50 above 1.5x end_to_end_b1 p50: impossible if both measured the same model call
WARMUP_LEAK = 10.0  # first timed call above 10x the median (and above the p99 of the rest): warm-up leaked in
REMEASURE_ATTEMPTS = 2  # re-measurements of a row whose numbers fail a check
LOADED = 1.0  # 1-minute load average per usable core above which speed ratios are flagged as unreliable


@dataclass(frozen=True)
class Outlier:
    """One failed check on a row's timings."""

    measurement: str  # "model_b1", "end_to_end_b1" or "throughput[32]"
    kind: str  # "b1-above-end-to-end" | "warm-up-leak"
    message: str

    def to_dict(self) -> dict:
        return {"measurement": self.measurement, "kind": self.kind, "message": self.message}


def latency_outliers(latency: dict) -> list[Outlier]:
    """The checks ``latency`` (a row's ``latency`` dict: model_b1, end_to_end_b1, throughput) fails."""
    found: list[Outlier] = []
    b1, e2e = latency.get("model_b1"), latency.get("end_to_end_b1")
    if b1 and e2e and e2e["p50_ms"] > 0 and b1["p50_ms"] > B1_OVER_E2E * e2e["p50_ms"]:
        found.append(Outlier("model_b1", "b1-above-end-to-end",
                             f"batch-1 model call p50 {b1['p50_ms']:.2f} ms is {b1['p50_ms'] / e2e['p50_ms']:.1f}x the "
                             f"end-to-end p50 {e2e['p50_ms']:.2f} ms, which includes the same call"))
    measured = {"model_b1": b1, "end_to_end_b1": e2e}
    measured.update({f"throughput[{k}]": v for k, v in (latency.get("throughput") or {}).items() if k != "1"})
    for name, m in measured.items():
        first = (m or {}).get("first_ms")
        if first is None or m["runs"] < 3:
            continue
        if first > WARMUP_LEAK * m["p50_ms"] and first >= m["max_rest_ms"]:
            found.append(Outlier(name, "warm-up-leak",
                                 f"first timed call {first:.2f} ms is {first / m['p50_ms']:.0f}x the p50 "
                                 f"{m['p50_ms']:.2f} ms: warm-up did not cover the backend's first-call work"))
    return found


def checked(measure_row, attempts: int = REMEASURE_ATTEMPTS) -> dict:
    """``measure_row()`` (returns a row's latency dict), re-run up to ``attempts`` times while its numbers fail
    a check; the last result, with ``outliers`` (list of dicts, empty when clean) and ``remeasured`` (count)."""
    latency = measure_row()
    problems = latency_outliers(latency)
    tries = 0
    while problems and tries < attempts:
        tries += 1
        latency = measure_row()
        problems = latency_outliers(latency)
    latency["outliers"] = [p.to_dict() for p in problems]
    latency["remeasured"] = tries
    return latency


def trusted(row: dict | None) -> bool:
    """A row measured cleanly: status ok and no outlier left after re-measuring."""
    return bool(row) and row.get("status") == "ok" and not ((row.get("latency") or {}).get("outliers"))


def outlier_lines(report: dict) -> list[str]:
    """One line per timing check a row still failed after re-measuring (for the console and bench.md)."""
    return [f"{r['label']}: {o['message']} (kept after {r['latency'].get('remeasured', 0)} re-measurements; "
            f"left out of speed-up comparisons)"
            for r in report.get("rows", []) for o in ((r.get("latency") or {}).get("outliers") or [])]


def machine_busy(environment: dict) -> str | None:
    """Why speed ratios from this run's machine are not reliable (1-minute load average above its usable cores:
    other processes took CPU time, and PyTorch eager's spinning OpenMP threads slow down ~100x under such load,
    so ratios against it mean nothing), or None."""
    load = environment.get("load_average") or []
    cores = (environment.get("cpu") or {}).get("usable_cores") or 0
    if load and cores and load[0] > LOADED * cores:
        return (f"load average {load[0]:.1f} on {cores} cores when the run started: speed ratios against PyTorch "
                "eager are not reliable")
    return None
