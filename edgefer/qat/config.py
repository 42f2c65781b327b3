"""What ``edgefer qat`` is asked and what it measured: ``QatConfig`` (every option, with ``QAT_BOUNDS``),
``QatResult`` and ``Fidelity`` (``qat.json``), and the names of the files a QAT run writes. Torch-free, so the
CLI builds its options from here without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..bounds import INT32_MAX, SEED_MAX, Bound, check
from ..errors import InputError

ONNX_NAME = "model_qdq.onnx"
FP32_NAME = "model_fp32.onnx"  # the same graph without Q/DQ: for TensorRT implicit INT8 with the cache
IR_NAME = "model.int8.xml"  # the name every OpenVINO INT8 IR has (export, bench, docs)
WEIGHTS_NAME = "qat.safetensors"
RESULT_NAME = "qat.json"
SCALES_NAME = "qat_scales.json"
CACHE_NAME = "model_qdq.calib"
ENGINE = "nvidia-modelopt"
QAT_TOOLS = ("nvidia-modelopt", "torch", "onnx", "onnxruntime", "openvino")
QUANTIZED_LAYERS = ("Conv2d", "Conv2dSame", "Linear", "ResidualAdd")  # everything else: quantizers disabled


# The allowed range of every numeric option of QatConfig (checked by the CLI while parsing, and by validate()).
QAT_BOUNDS = {
    "epochs": Bound(int, 1, 100_000),
    "lr": Bound(float, 0, 10, min_open=True),
    "batch_size": Bound(int, 2, 65536),
    "distill": Bound(float, 0, 1),
    "limit_train": Bound(int, 2, INT32_MAX),
    "calib_size": Bound(int, 1, INT32_MAX),
    "calib_seed": Bound(int, 0, SEED_MAX),
    "threads": Bound(int, 1, 4096),
    "seed": Bound(int, 0, SEED_MAX),
}


@dataclass
class QatConfig:
    """Every option of ``edgefer qat``; ``from_run`` is the FP32 training run (or its model.json)."""

    from_run: str = ""
    out: str = ""
    data: str | None = None  # default: the data the run was trained on
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int | None = None  # default: the run's
    distill: float = 1.0  # weight of the KL term towards the FP32 model's logits (0 = the run's loss only)
    freeze_bn: bool = True  # keep BatchNorm statistics and dropout as trained (the model runs in eval mode)
    residual: bool = True  # also quantize both inputs of every residual addition (NVIDIA's placement)
    limit_train: int | None = None
    calib_size: int = 512
    calib_seed: int = 0
    split: str = "test"  # where fidelity is measured ("val" when the data has no test split)
    openvino: bool = True
    threads: int | None = None
    seed: int = 0
    exist_ok: bool = False

    def validate(self) -> QatConfig:
        def bad(option, why):
            raise InputError(f"--{option.replace('_', '-')}: {why}")

        for name, bound in QAT_BOUNDS.items():  # None: not given (the run's value or torch's default)
            check("--" + name.replace("_", "-"), getattr(self, name), bound, InputError)
        if self.split not in ("val", "test", "private_test"):
            bad("split", f"must be val, test or private_test, got {self.split!r}")
        if not self.from_run:
            raise InputError("--from is required: the training run to fine-tune")
        if not self.out:
            raise InputError("--out is required: the QAT run directory to create")
        return self



@dataclass
class Fidelity:
    """Agreement of one quantized model with the FP32 checkpoint on the evaluation split."""

    model: str
    agreement: float
    macro_f1: float
    macro_f1_drop_points: float



@dataclass
class QatResult:
    """What ``run_qat`` did and measured (saved as ``qat.json`` in the QAT run directory)."""

    out: str
    split: str
    images: int
    fp32_macro_f1: float
    fidelity: list[Fidelity]
    quantizers: int
    qdq_nodes: dict
    files: list[str]
    scales: int
    calibration_cache: str | None
    seconds: dict
    synthetic: bool = False
    engine: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    command: str = ""

    def get(self, model: str) -> Fidelity:
        return next(f for f in self.fidelity if f.model == model)
