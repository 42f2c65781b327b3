"""Tiny models shared by the CLI, info and README tests, made once per test process: timm test_efficientnet at
32 px exported to ONNX and OpenVINO IR (tests.runtime_models.export_tiny) and quantized to an INT8 Q/DQ ONNX
(ONNX Runtime's static quantizer, 16 synthetic faces)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.runtime_models import Exported, export_tiny


@dataclass(frozen=True)
class TinyModels:
    exported: Exported
    qdq: Path  # INT8 Q/DQ ONNX of the same network, spec embedded


@functools.cache
def tiny_models() -> TinyModels:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgefer.data import synthesize
    from edgefer.preprocess import prepare

    folder = Path(tempfile.mkdtemp(prefix="edgefer-test-cli-models-"))
    atexit.register(shutil.rmtree, folder, True)
    exported = export_tiny(folder)
    faces = synthesize(16, seed=0).images

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": prepare(faces, exported.spec, color="gray")}])

        def get_next(self):
            return next(self.batches, None)

    qdq = folder / "tiny.int8.qdq.onnx"
    quantize_static(str(exported.onnx), str(qdq), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return TinyModels(exported, qdq)
