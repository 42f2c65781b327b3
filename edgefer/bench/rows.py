"""The backend x precision matrix: which rows exist, how each model is produced and opened.

Every row keeps its place in the report with a status: ``ok``, ``missing`` (its runtime or the
hardware is not here, with the reason), ``failed`` (export or run raised, with the error) or
``skipped`` (not selected by ``--targets``). Models are produced through ``edgefer.export.export``
and opened through ``edgefer.runtime``; only the PyTorch eager reference runs the torch model directly.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgeferError, ModelError
from ..preprocess import prepare


@dataclass(frozen=True)
class RowDef:
    """One row: a runtime backend running one export's artefact at one precision."""

    key: str
    label: str
    backend: str  # "torch" or an edgefer.runtime backend name
    precision: str  # fp32 / fp16 / int8
    target: str | None  # edgefer.export target producing the artefact (None: the torch model itself)
    artifact: str  # file suffix of the artefact this row runs
    needs: tuple[str, ...]  # importable modules the row needs (export + runtime)
    extra: str  # pip extra providing them
    device: str = "cpu"

    @property
    def family(self) -> str:
        return self.key.split("-")[0]


ROWS: tuple[RowDef, ...] = (
    RowDef("pytorch-fp32", "PyTorch eager FP32", "torch", "fp32", None, ".safetensors", ("torch", "timm"), "train"),
    RowDef("onnxruntime-fp32", "ONNX Runtime FP32", "onnxruntime", "fp32", "onnx", ".onnx",
           ("onnx", "onnxruntime"), "onnx"),
    RowDef("onnxruntime-int8", "ONNX Runtime INT8 (CPU)", "onnxruntime", "int8", "onnx", ".onnx",
           ("onnx", "onnxruntime"), "onnx"),  # edgefer export --target onnx --int8 (quantizer ort-cpu)
    RowDef("ort-trt-fp16", "TensorRT FP16 graph (ORT CPU)", "onnxruntime", "fp16", "tensorrt", ".onnx",
           ("onnx", "onnxruntime"), "onnx"),
    RowDef("ort-trt-int8", "TensorRT INT8 Q/DQ graph (ORT CPU)", "onnxruntime", "int8", "tensorrt", ".onnx",
           ("onnx", "onnxruntime"), "onnx"),
    RowDef("openvino-fp32", "OpenVINO FP32 (forced f32)", "openvino", "fp32", "openvino", ".xml",
           ("onnx", "openvino"), "openvino"),
    RowDef("openvino-fp16", "OpenVINO FP16", "openvino", "fp16", "openvino", ".xml", ("onnx", "openvino"), "openvino"),
    RowDef("openvino-int8", "OpenVINO INT8", "openvino", "int8", "openvino", ".xml", ("onnx", "openvino", "nncf"),
           "openvino"),
    RowDef("tensorrt-fp16", "TensorRT FP16 engine", "tensorrt", "fp16", "tensorrt", ".engine",
           ("onnx", "tensorrt"), "tensorrt", device="cuda"),
    RowDef("tensorrt-int8", "TensorRT INT8 engine", "tensorrt", "int8", "tensorrt", ".engine",
           ("onnx", "tensorrt"), "tensorrt", device="cuda"),
)
ROW_KEYS = tuple(r.key for r in ROWS)
# OpenVINO INFERENCE_PRECISION_HINT per row precision: FP32 is forced to f32 (the CPU plugin would run it in
# bf16 where the CPU has it); FP16/INT8 models keep the runtime's default (edgefer.runtime.openvino.default_hint:
# FP16 computes f16 where the CPU has it natively, else f32; INT8's float layers run the device default, bf16 or
# f32). ``row_label`` names what executed.
OPENVINO_INFERENCE_PRECISION = {"fp32": "f32"}
# --targets accepts row keys or these groups
GROUPS = {
    "all": ROW_KEYS,
    "torch": ("pytorch-fp32",),
    "pytorch": ("pytorch-fp32",),
    "onnx": ("onnxruntime-fp32",),
    "onnxruntime": ("onnxruntime-fp32", "onnxruntime-int8", "ort-trt-fp16", "ort-trt-int8"),
    "openvino": ("openvino-fp32", "openvino-fp16", "openvino-int8"),
    "tensorrt": ("ort-trt-fp16", "ort-trt-int8", "tensorrt-fp16", "tensorrt-int8"),
    "fp32": tuple(r.key for r in ROWS if r.precision == "fp32"),
    "fp16": tuple(r.key for r in ROWS if r.precision == "fp16"),
    "int8": tuple(r.key for r in ROWS if r.precision == "int8"),
}


def row_label(row: RowDef, executed: str | None) -> str:
    """The row's label naming the precision that executed (an OpenVINO backend's ``precision``, read from the
    compiled model): an FP16 IR computing in f32 or bf16 is not labelled FP16, an INT8 row names the precision
    of its float layers."""
    if row.backend != "openvino" or executed not in ("f32", "bf16", "f16"):
        return row.label
    if row.precision == "int8":
        return f"{row.label} ({executed} float layers)"
    if row.precision == "fp32":
        return row.label if executed == "f32" else f"OpenVINO FP32 IR ({executed} compute)"
    return {"f16": row.label, "f32": "OpenVINO FP16 weights (f32 compute)"}.get(
        executed, f"OpenVINO FP16 IR ({executed} compute)")


def select_rows(targets: str | list[str] | None) -> list[str]:
    """Row keys chosen by ``--targets`` (comma-separated keys or group names), in matrix order."""
    if not targets:
        return list(ROW_KEYS)
    names = targets.split(",") if isinstance(targets, str) else list(targets)
    chosen: set[str] = set()
    for name in (n.strip().lower() for n in names if n.strip()):
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in ROW_KEYS:
            chosen.add(name)
        else:
            raise ModelError(f"--targets: unknown row or group '{name}' (rows: {', '.join(ROW_KEYS)}; "
                             f"groups: {', '.join(GROUPS)})")
    return [k for k in ROW_KEYS if k in chosen]


def module_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_reason(row: RowDef, source_kind: str) -> str | None:
    """Why ``row`` cannot run here (a missing package, no GPU, no torch model), or None."""
    if row.backend == "torch" and source_kind != "checkpoint":
        return "the model is an ONNX file; the PyTorch eager row needs an edgefer checkpoint"
    absent = [m for m in row.needs if not module_available(m)]
    if absent:
        hint = ("TensorRT cannot be installed on this machine; run on a Jetson/GPU host"
                if "tensorrt" in absent else f"pip install 'edgefer[{row.extra}]'")
        return f"{', '.join(absent)} not installed ({hint})"
    return None


def artifact_size(path: str | Path) -> int:
    """Bytes on disk of a model file and its companions (OpenVINO ``.bin``, ONNX external data)."""
    path = Path(path)
    companions = [path.with_suffix(".bin")] if path.suffix == ".xml" else [
        path.with_name(path.name + ".data"), path.with_suffix(".data")]
    return path.stat().st_size + sum(p.stat().st_size for p in companions if p.is_file() and p != path)


def pick_artifact(result, row: RowDef, out_dir: Path) -> Path:
    """The file of an ``ExportResult`` that ``row`` runs."""
    if row.backend != "tensorrt":
        return out_dir / result.model
    step = result.tensorrt
    if result.engine() is None:
        reason = step.reason if step is not None else "no TensorRT"
        command = step.build_engine_command if step is not None else "edgefer build-engine MODEL.onnx"
        raise _Missing(f"no engine built here ({reason}); build it on the target with `{command}`")
    return out_dir / result.engine()


class _Missing(EdgeferError):
    """A row that cannot run here for a reason outside the user's control (status ``missing``)."""


class TorchRunner:
    """The PyTorch eager reference with the runtime's ``run``/``predict`` shape (no torch in the runtime)."""

    def __init__(self, model, spec, threads: int | None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch, self.model, self.spec = torch, model.eval(), spec

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(x)).numpy()

    def predict(self, faces, color: str = "bgr"):
        logits = self.run(prepare(faces, self.spec, color=color))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def close(self) -> None:
        self.model = None


class Producer:
    """Runs each export once (one ``target``/``precision`` serves several rows) and opens rows' models.

    The first export turns the checkpoint into ``model.onnx`` (with the spec embedded); later exports start
    from that file, so the torch model is exported (and parity-checked) once per bench run.
    """

    def __init__(self, source, work_dir: Path, data=None, calib=None, threads: int | None = None,
                 export_options: dict | None = None):
        self.source, self.work_dir, self.data, self.calib = source, Path(work_dir), data, calib
        self.threads, self.export_options = threads, dict(export_options or {})
        self._exports: dict[tuple[str, str], tuple[object, BaseException | None, float]] = {}
        self._fp32_onnx: Path | None = None

    def produce(self, row: RowDef) -> tuple[Path, float]:
        """(artefact path, seconds spent exporting it) for ``row``; export errors propagate."""
        if row.target is None:
            from ..models import checkpoint_paths

            return checkpoint_paths(self.source.path)[0], 0.0
        key = (row.target, row.precision)
        out_dir = self.work_dir / f"{row.target}-{row.precision}"
        if key not in self._exports:
            import time

            from ..export.config import ExportConfig
            from ..export.pipeline import export

            t0 = time.perf_counter()
            try:
                calib = self.calib if row.precision == "int8" else None
                config = ExportConfig.build(row.target, row.precision, **self.export_options)
                result = export(self._fp32_onnx or self.source, config, out_dir, data=self.data, calib=calib)
                if self._fp32_onnx is None:  # later exports start from it: no second torch export
                    self._fp32_onnx = out_dir / result.reference_model
                self._exports[key] = (result, None, time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - remembered so a shared export fails each row it serves
                self._exports[key] = (None, exc, time.perf_counter() - t0)
        result, error, seconds = self._exports[key]
        if error is not None:
            raise error
        return pick_artifact(result, row, out_dir), seconds

    def open(self, row: RowDef, path: Path):
        """A runner with ``.spec``, ``.run(x)``, ``.predict(faces, color=)`` and ``.close()``."""
        if row.backend == "torch":
            return TorchRunner(self.source.torch_model, self.source.spec, self.threads)
        from ..runtime import EmotionRecognizer

        precision = OPENVINO_INFERENCE_PRECISION.get(row.precision) if row.backend == "openvino" else None
        return EmotionRecognizer.open(path, backend=row.backend, device=row.device, threads=self.threads,
                                      precision=precision)
