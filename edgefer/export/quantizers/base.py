"""The interface every INT8 quantizer implements, the registry, and the shared arithmetic of sensitivity probes.

A quantizer owns its calibration recipes (what the search tries first), its fallback recipes and its
sensitivity probe (which layers add the most quantization error). The search imports quantizers, never the
reverse. Adding one: a class with this shape in a module of this package and a line in ``REGISTRY``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

# CLI name -> "module:class" (imported only when used)
REGISTRY = {
    "ort-cpu": "edgefer.export.quantizers.ort_cpu:OrtCpuQuantizer",
    "ort": "edgefer.export.quantizers.qdq:QdqQuantizer",
    "nncf": "edgefer.export.quantizers.nncf:NncfQuantizer",
}
SENSITIVITY_CHUNK = 4  # images per forward pass of the sensitivity probes
SENSITIVITY_MEASURE = ("added relative L2 error: ||int8 - fp32|| / ||fp32|| of the layer output minus the same "
                       "for its input before its own quantizer, INT8 graph of the best Stage-A recipe vs FP32")


class Quantizer(Protocol):
    """``name``: reported name; ``runtime``: what scores and times its models; ``suffix``: model file suffix;
    ``recipes``: Stage-A recipes of the search, in order; ``conv_ops``: the op types that count as convolution
    layers in its models (``macs``); ``qat``: whether a QAT Q/DQ graph (``edgefer.qat``) is a model of its kind
    (the search's QAT stage)."""

    name: str
    runtime: str
    suffix: str
    recipes: tuple[dict, ...]
    conv_ops: tuple[str, ...]
    qat: bool

    def default_recipe(self) -> dict:
        """The recipe of a single (unsearched) quantization, from the user's options."""

    def quantize(self, recipe: dict, excluded: list[str], path: Path) -> dict:
        """Quantize with ``recipe``, keeping ``excluded`` layers in floating point; write ``path``; return info."""

    def recipe_variants(self, best: dict) -> list[dict]:
        """More recipe changes (e.g. another Q/DQ placement) tried with the best Stage-A recipe, before any layer
        is kept in floating point."""

    def fallback_recipes(self, base: dict) -> list[dict]:
        """Recipes that may take convolutions out of INT8 (NNCF accuracy control): tried after the
        non-convolution fallback, before the search's own convolution fallback."""

    def layer_map(self, path: Path):
        """``macs.LayerMap`` of a quantized model: op types by name, convolution layers with MACs and INT8 status."""

    def copy(self, source: Path, target: Path) -> None:
        """Copy a quantized model (with its companion files)."""

    def sensitivity(self, int8_path: Path, x: np.ndarray) -> list[dict]:
        """Quantized layers ranked by added error (``rank``), most sensitive first."""


def create(name: str, fp32_onnx, calib, spec, options, *, quantize_bias: bool = False, validation=None,
           trt_cache: bool = False) -> Quantizer:
    """The quantizer registered as ``name`` for ``fp32_onnx`` (``options``: ``QuantOptions``; ``validation``:
    (images, labels, max_drop, attempts) for quantizers with their own accuracy control; ``trt_cache``: also
    write a TensorRT 10 calibration cache next to every Q/DQ graph, where the quantizer can)."""
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)(fp32_onnx, calib, spec, options, quantize_bias=quantize_bias,
                                                          validation=validation, trt_cache=trt_cache)


def relative_errors(fp32_run, int8_run, x: np.ndarray, chunk: int | None = None) -> dict:
    """||int8 - fp32|| / ||fp32|| per tensor over all of ``x``, accumulated ``chunk`` (default SENSITIVITY_CHUNK;
    a fixed-batch model's batch) images at a time (every intermediate tensor of a large model at once would not
    fit in memory)."""
    squared_error: dict = {}
    squared_norm: dict = {}
    chunk = chunk or SENSITIVITY_CHUNK
    for start in range(0, len(x), chunk):
        batch = x[start : start + chunk]
        reference, other = fp32_run(batch), int8_run(batch)
        for name, value in reference.items():
            if name not in other:  # a tensor the quantized graph no longer has
                continue
            value = np.asarray(value, np.float64)
            squared_error[name] = squared_error.get(name, 0.0) + float(((np.asarray(other[name]) - value) ** 2).sum())
            squared_norm[name] = squared_norm.get(name, 0.0) + float((value**2).sum())
    return {n: float(np.sqrt(squared_error[n]) / (np.sqrt(squared_norm[n]) + 1e-12)) for n in squared_error}


def rank(layers: list[tuple[str, str, list[str], str]], errors: dict) -> list[dict]:
    """``layers``: (name, op type, input tensors before their quantizer, output tensor); ``errors``: relative
    error per tensor; most sensitive (largest added error) first."""
    ranking = []
    for name, op, inputs, output in layers:
        if output not in errors or any(t not in errors for t in inputs):
            continue
        error_in = max((errors[t] for t in inputs), default=0.0)
        error_out = errors[output]
        ranking.append({"layer": name, "op": op, "error_in": round(error_in, 6), "error_out": round(error_out, 6),
                        "added_error": round(error_out - error_in, 6)})
    return sorted(ranking, key=lambda layer: -layer["added_error"])
