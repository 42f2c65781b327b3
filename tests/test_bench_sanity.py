"""Bench's checks on its own numbers (outliers, warm-up leaks) and the --min-speedup figure, on fabricated timings."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.bench import thresholds
from edgefer.bench.sanity import checked, latency_outliers, outlier_lines, trusted
from edgefer.bench.timing import summarize


def timing(samples_ms, batch: int = 1) -> dict:
    return summarize(np.asarray(samples_ms, np.float64), batch=batch)


def latency(b1, e2e, b32=None) -> dict:
    b1 = timing(b1)
    return {"model_b1": b1, "end_to_end_b1": timing(e2e),
            "throughput": {"1": b1, **({"32": timing(b32, 32)} if b32 is not None else {})}}


def test_batch1_far_above_end_to_end_is_an_outlier():
    # the reported case: a PyTorch batch-1 p50 of 261.69 ms while the same row's end-to-end p50 was 2.28 ms
    found = latency_outliers(latency([261.69] * 5, [2.28] * 5))
    assert [(o.measurement, o.kind) for o in found] == [("model_b1", "b1-above-end-to-end")]
    assert "261.69 ms is 114.8x the end-to-end p50 2.28 ms" in found[0].message


def test_clean_timings_pass():
    assert latency_outliers(latency([2.0, 2.1, 1.9, 2.0], [2.3, 2.4, 2.2], b32=[40.0, 41.0, 39.5])) == []
    # b1 a little above end-to-end (noise) is not an outlier
    assert latency_outliers(latency([3.0] * 4, [2.5] * 4)) == []


def test_first_call_warm_up_leak():
    found = latency_outliers(latency([2.0] * 4, [2.5] * 4, b32=[900.0, 40.0, 41.0, 40.5]))
    assert [(o.measurement, o.kind) for o in found] == [("throughput[32]", "warm-up-leak")]
    assert "first timed call 900.00 ms is 22x the p50" in found[0].message
    # one slow call later in the run is noise, not a warm-up leak
    assert latency_outliers(latency([2.0] * 4, [2.5] * 4, b32=[40.0, 900.0, 41.0, 40.5])) == []


def test_checked_remeasures_until_clean():
    runs = iter([latency([261.69] * 3, [2.28] * 3), latency([2.1] * 3, [2.28] * 3)])
    result = checked(lambda: next(runs))
    assert result["outliers"] == [] and result["remeasured"] == 1
    assert result["model_b1"]["p50_ms"] == 2.1


def test_checked_flags_what_stays_wrong():
    calls = []

    def measure():
        calls.append(1)
        return latency([261.69] * 3, [2.28] * 3)

    result = checked(measure, attempts=2)
    assert len(calls) == 3 and result["remeasured"] == 2
    assert [o["kind"] for o in result["outliers"]] == ["b1-above-end-to-end"]
    row = {"key": "pytorch-fp32", "label": "PyTorch eager FP32", "status": "ok", "latency": result}
    assert not trusted(row)
    assert outlier_lines({"rows": [row]}) == [
        "PyTorch eager FP32: batch-1 model call p50 261.69 ms is 114.8x the end-to-end p50 2.28 ms, which "
        "includes the same call (kept after 2 re-measurements; left out of speed-up comparisons)"]


def _row(key, precision, b1_ms, b32_ms, outliers=()):
    lat = latency([b1_ms] * 3, [b1_ms + 0.3] * 3, b32=[b32_ms] * 3)
    lat["outliers"] = list(outliers)
    return {"key": key, "label": key, "precision": precision, "device": "cpu", "status": "ok", "latency": lat,
            "vs_reference": None}


def _report(rows=(), load=0.5):
    return {"model": {"arch": "tf_efficientnetv2_s", "input_size": 112}, "settings": {"threads": 2},
            "rows": list(rows), "environment": {"load_average": [load, load, load], "cpu": {"usable_cores": 2}}}


def test_no_speed_figure_without_a_threshold():
    rows = [_row("pytorch-fp32", "fp32", 30.0, 400.0), _row("openvino-int8", "int8", 5.0, 100.0)]
    assert thresholds(_report(rows=rows)) == []  # bench has no built-in speed targets
    (speedup,) = thresholds(_report(rows=rows), min_speedup=5)
    assert (speedup["value"], speedup["row"], speedup["passed"]) == (6.0, "openvino-int8", True)


def test_min_speedup_skips_rows_left_with_outliers():
    flagged = [{"measurement": "model_b1", "kind": "b1-above-end-to-end", "message": "..."}]
    rows = [_row("pytorch-fp32", "fp32", 261.69, 400.0, outliers=flagged), _row("openvino-int8", "int8", 5.0, 100.0),
            _row("ort-int8", "int8", 1.0, 900.0, outliers=flagged)]
    (speedup,) = thresholds(_report(rows=rows), min_speedup=2)
    assert speedup["value"] is None and speedup["passed"] is False  # the eager row's numbers are not trusted
    assert "outlier checks" in speedup["violations"][0]
    rows[0]["latency"]["outliers"] = []
    (speedup,) = thresholds(_report(rows=rows), min_speedup=2)
    assert speedup["row"] == "openvino-int8" and speedup["value"] == pytest.approx(261.69 / 5.0)


def test_min_speedup_on_a_busy_machine_carries_a_note():
    # measured: PyTorch eager 4914 ms at batch 1 under load average 15.6 on 2 cores (18 ms quiet)
    rows = [_row("pytorch-fp32", "fp32", 4914.56, 1.2), _row("openvino-int8", "int8", 78.04, 16.4)]
    (speedup,) = thresholds(_report(rows=rows, load=15.6), min_speedup=10)
    assert speedup["value"] == pytest.approx(62.97, abs=0.01) and speedup["passed"] is True
    assert "load average 15.6 on 2 cores when the run started: speed ratios against PyTorch eager are not reliable" in (
        speedup["note"])
    assert "note" not in thresholds(_report(rows=rows, load=1.9), min_speedup=10)[0]
