"""Make timm (which imports torchvision) importable on CPU-only torch.

The PyPI torchvision 0.28 wheel is built against CUDA torch and registers fake kernels for
``torchvision::nms`` / ``torchvision::qnms``; on a CPU torch wheel those op schemas do not exist and
``import torchvision`` fails with "operator torchvision::nms does not exist". Defining the two schemas
before the import fixes it. The guard runs only when the plain import fails.
"""

import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def import_timm():
    """Import and return timm, repairing the torchvision import on CPU-only torch if needed."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        _define_torchvision_schemas()
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # drop the half-initialised package before importing again
        import torchvision  # noqa: F401
    import timm

    return timm


def _define_torchvision_schemas():
    import torch

    # Kept alive at module level: a torch.library.Library deregisters its definitions when collected.
    global _LIBRARY
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _LIBRARY.define(schema)
