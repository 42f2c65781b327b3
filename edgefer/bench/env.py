"""The machine description, under its earlier name: it lives in ``edgefer.env`` (below export, QAT and bench)."""

from ..env import (  # noqa: F401
    JETSON_MODEL,
    L4T_RELEASE,
    LIBRARIES,
    _clocks_pinned,
    _cpu_governor,
    capture,
    cpu_info,
    describe,
    gpu_info,
    jetson_info,
    library_versions,
    machine_summary,
    memory_gib,
)
