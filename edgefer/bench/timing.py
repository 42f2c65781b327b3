"""Latency timing: warm-up, then time a call until an iteration or time budget is spent.

Standard library + numpy only. Each sample is one call measured with ``time.perf_counter_ns``; the
summary reports how many runs the budget bought, so a number always comes with its sample size.
"""

from __future__ import annotations

import time

import numpy as np

DEFAULT_WARMUP = 5
DEFAULT_DURATION_S = 3.0
MIN_RUNS = 3


def measure(fn, *, batch: int = 1, warmup: int = DEFAULT_WARMUP, iters: int | None = None,
            duration: float | None = None, min_runs: int = MIN_RUNS) -> dict:
    """Call ``fn()`` ``warmup`` times, then time it until ``iters`` runs or ``duration`` seconds
    (whichever comes first; ``duration`` defaults to 3 s when neither is given), at least ``min_runs``.

    Returns milliseconds per call (p50/p90/p99/mean/std/min/max), ``runs``, ``warmup``, ``total_s``
    and ``throughput_ips`` (images per second: ``batch`` / mean call time).
    """
    if iters is not None and iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    if iters is None and duration is None:
        duration = DEFAULT_DURATION_S
    for _ in range(warmup):
        fn()
    limit_ns = None if duration is None else int(duration * 1e9)
    samples: list[int] = []
    start = time.perf_counter_ns()
    while True:
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        n = len(samples)
        if n >= max(min_runs, 1) and (
            (iters is not None and n >= iters) or (limit_ns is not None and t1 - start >= limit_ns)
        ):
            break
    return summarize(np.asarray(samples, np.float64) / 1e6, batch=batch, warmup=warmup,
                     total_s=(time.perf_counter_ns() - start) / 1e9)


def summarize(ms: np.ndarray, *, batch: int = 1, warmup: int = 0, total_s: float | None = None) -> dict:
    """Summary statistics of per-call times in milliseconds, in call order (``first_ms`` is the first timed
    call and ``max_rest_ms`` the slowest of the others: ``edgefer.bench.sanity`` checks them for warm-up leaks)."""
    ms = np.asarray(ms, np.float64)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    mean = float(ms.mean())
    return {
        "batch": int(batch),
        "runs": int(ms.size),
        "warmup": int(warmup),
        "total_s": float(ms.sum() / 1e3 if total_s is None else total_s),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": mean,
        "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "first_ms": float(ms[0]),
        "max_rest_ms": float(ms[1:].max()) if ms.size > 1 else float(ms[0]),
        "throughput_ips": float(batch * 1e3 / mean) if mean > 0 else 0.0,
    }
