"""``edgefer bench``: latency and accuracy / macro-F1 drop of every backend x precision against FP32.

Layout: ``run`` (run_bench, BenchSettings), ``rows`` (the backend x precision matrix, export + open per row),
``report`` (bench.json/csv/md, plots), ``timing``, ``memory``, ``energy``, ``env``. Re-exports only.
"""

from .run import SCHEMA, SCHEMA_VERSION, BenchSettings, evaluate, gate, run_bench, thresholds, time_row

__all__ = ["SCHEMA", "SCHEMA_VERSION", "BenchSettings", "evaluate", "gate", "run_bench", "thresholds", "time_row"]
