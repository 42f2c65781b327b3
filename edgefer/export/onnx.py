"""PyTorch -> ONNX (opset 18, dynamic batch, input "input", output "logits"), optional simplification,
spec metadata, and the parity check against PyTorch that fails an export outside tolerance."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from ..errors import ExportError, require
from ..fileio import atomic_path
from ..spec import ModelSpec, embed_in_onnx
from . import check
from .config import EXPORTERS, OPSET

INPUT_NAME, OUTPUT_NAME = "input", "logits"
PARITY_ATOL = 1e-3  # max |logit difference| allowed between PyTorch and ONNX Runtime (FP32)
PARITY_MIN_AGREEMENT = 0.99  # top-1 agreement allowed (near-ties may flip)


def torch_to_onnx(model, spec: ModelSpec, exporter: str = "auto", opset: int = OPSET, *,
                  dynamic_batch: bool = True) -> tuple[object, dict]:
    """Export ``model`` to an ONNX ModelProto with a dynamic batch (or a static batch of 1); return (proto, info).

    ``auto`` uses the dynamo exporter and falls back to the legacy TorchScript exporter only when dynamo
    fails; ``info`` records which one ran, why it fell back, and how long it took.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter {exporter!r} is not supported; use one of {', '.join(EXPORTERS)}")
    require("onnxscript", "onnx", "exporting to ONNX")
    import torch

    example = torch.zeros(2 if dynamic_batch else 1, spec.channels, spec.input_size, spec.input_size)
    info = {"opset": opset} if dynamic_batch else {"opset": opset, "batch": 1}
    start = time.perf_counter()
    if exporter in ("auto", "dynamo"):
        try:
            proto = _export_dynamo(model, example, opset, dynamic_batch)
            info.update(exporter="dynamo", seconds=round(time.perf_counter() - start, 3))
            return proto, info
        except Exception as exc:  # any dynamo failure means "try the legacy exporter"; the reason is recorded
            if exporter == "dynamo":
                raise ExportError(f"dynamo ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}; "
                                  "try --exporter legacy") from exc
            info["fallback_reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    start = time.perf_counter()
    proto = _export_legacy(model, example, opset, dynamic_batch)
    info.update(exporter="legacy", seconds=round(time.perf_counter() - start, 3))
    return proto, info


def _export_dynamo(model, example, opset: int, dynamic_batch: bool = True):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's own pytree deprecation notices
        program = torch.onnx.export(
            model, (example,), None, dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic_batch else None,
        )
    return program.model_proto


def _export_legacy(model, example, opset: int, dynamic_batch: bool = True):
    import warnings

    import onnx
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, still works
        torch.onnx.export(
            model, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
        )
    return onnx.load_from_string(buffer.getvalue())


def simplify(proto):
    """Constant folding and dead-code removal with the onnxscript optimizer (shape inference included)."""
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(proto)


def save_onnx(proto, path: str | Path, spec: ModelSpec) -> Path:
    """Embed ``spec`` in ``metadata_props``, validate and save the model atomically (weights inline)."""
    import onnx

    embed_in_onnx(proto, spec)
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return Path(path)


def io_names(path: str | Path) -> tuple[str, str]:
    """(input name, output name) of a single-input, single-output ONNX model."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in initializers]
    return inputs[0], proto.graph.output[0].name


def torch_logits(model, images: np.ndarray, spec: ModelSpec, batch_size: int = 64) -> np.ndarray:
    """Logits of the PyTorch model on uint8 images, fed through the same ``prepare`` as every other backend."""
    import torch

    from ..preprocess import prepare

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(prepare(images[start : start + batch_size], spec, color="gray"))
            outputs.append(model(x).float().numpy())
    return np.concatenate(outputs)


def parity(model, onnx_path: str | Path, images: np.ndarray, spec: ModelSpec, *, atol: float = PARITY_ATOL,
           min_agreement: float = PARITY_MIN_AGREEMENT) -> dict:
    """Compare PyTorch and ONNX Runtime logits on ``images``; raise ExportError outside tolerance."""
    reference = torch_logits(model, images, spec)
    result = check.compare(reference, check.logits(onnx_path, images, spec))
    result.update(atol=atol, min_agreement=min_agreement)
    if not (result["max_abs_logit_diff"] <= atol and result["top1_agreement"] >= min_agreement):
        raise ExportError(
            f"{onnx_path}: ONNX output differs from PyTorch on {result['n']} images: max |dlogit| "
            f"{result['max_abs_logit_diff']:.3g} (allowed {atol:g}), top-1 agreement "
            f"{result['top1_agreement']:.4f} (required {min_agreement:g})"
        )
    return result
