"""Quantization-aware fine-tuning (QAT) of a trained edgefer checkpoint for TensorRT INT8.

Engine: NVIDIA TensorRT Model Optimizer (``modelopt.torch.quantization``), chosen by measurement (docs/qat.md).
Placement is TensorRT's: fake quantization on the inputs of every Conv2d/Linear (activations per-tensor
symmetric INT8, weights per-output-channel symmetric INT8) and on both inputs of every residual addition; SiLU,
Sigmoid, the squeeze-excite multiply and the pooling stay in floating point for TensorRT to fuse. Steps: stratified calibration (``edgefer.export.calibration``)
-> fine-tune with the run's class-weighted loss and augmentation (plus distillation from the FP32 checkpoint) ->
QAT run directory, Q/DQ ONNX (spec embedded, verified through ``edgefer.runtime``), OpenVINO INT8 IR (the Q/DQ
pairs become FakeQuantize), per-tensor activation scales (JSON, and a TensorRT calibration cache when the
cache writer is available), and ``qat.json`` with macro-F1 and agreement against the FP32 checkpoint.

``QatConfig`` is torch-free so the CLI can build its options without importing torch.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .bounds import INT32_MAX, SEED_MAX, Bound, check
from .env import library_versions, machine_summary
from .errors import InputError, require

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


def _log_stderr(message: str) -> None:
    from . import logs

    logs.info(message)


def run_qat(config: QatConfig, log=_log_stderr, command: str = "edgefer qat") -> QatResult:
    """Calibrate, fine-tune and export as configured; return the measurements (also written to qat.json)."""
    from .fileio import check_output

    config.validate()
    check_output(config.out, "dir", config.exist_ok)
    require("torch", "train", "quantization-aware training")
    with _quiet():  # ModelOpt warns on import about optional packages it does not need here
        require("modelopt.torch.quantization", "qat", "quantization-aware training")
    import torch

    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, log, command)
    finally:
        torch.set_num_threads(threads)


def _run(config: QatConfig, log, command: str) -> QatResult:
    import torch

    from .export import calibration
    from .fileio import staged_dir, write_json
    from .models import load_checkpoint, read_checkpoint_meta, training_data
    from .train.batches import load_splits
    from .train.config import TrainConfig
    from .train.losses import build_loss

    clock, seconds = time.perf_counter(), {}
    meta = read_checkpoint_meta(config.from_run)
    run_dir = Path(config.from_run)
    run_dir = run_dir if run_dir.is_dir() else run_dir.parent
    train_config = TrainConfig.load(run_dir)
    # the run's split seed and validation share stay: the calibration and fine-tuning images come from the
    # run's own training split, never from its validation split
    overrides = {"data": config.data or training_data(meta) or train_config.data,
                 "limit_train": config.limit_train if config.limit_train is not None else train_config.limit_train,
                 "batch_size": config.batch_size or train_config.batch_size}
    train_config = TrainConfig.from_dict({**train_config.to_dict(), **overrides}).resolved()
    if not Path(train_config.data).exists():
        raise InputError(f"--data {train_config.data}: no such file or directory")
    torch.manual_seed(config.seed)
    teacher, spec, _ = load_checkpoint(config.from_run)
    student, _, _ = load_checkpoint(config.from_run)
    splits, train = load_splits(train_config)
    trained_on = meta.get("data", {}).get("fingerprint")
    if trained_on and trained_on != splits.fingerprint:
        log(f"warning: {train_config.data} differs from the data {config.from_run} was trained on (fingerprint); "
            "its validation split is not the run's")
    evaluation = splits.get(config.split)
    split = config.split
    if evaluation is None or len(evaluation) == 0:
        evaluation, split = splits.val, "val"
    with warnings.catch_warnings(record=True) as caught:  # classes under the calibration floor: one line each
        warnings.simplefilter("always", calibration.CalibrationWarning)
        calib = calibration.from_data(splits, config.calib_size, "stratified", config.calib_seed,
                                      val_fraction=train_config.val_fraction, split_seed=train_config.seed)
    for warning in caught:
        log(f"warning: {warning.message}")
    log(f"{meta['arch']} @ {spec.input_size}px from {config.from_run}: calibrating on {len(calib)} images, "
        f"fine-tuning on {len(train)} for {config.epochs} epoch(s), measuring on {split} ({len(evaluation)})")

    quantized = insert_fake_quantization(student, calib.images, spec, residual=config.residual)
    seconds["calibrate"] = round(time.perf_counter() - clock, 3)
    fp32 = _logits(teacher, evaluation.images, spec)
    ptq = _logits(quantized, evaluation.images, spec)

    criterion, _ = build_loss(train_config, train.class_counts(spec.num_classes))
    start = time.perf_counter()
    fine_tune(quantized, teacher, train, spec, train_config, criterion, config, log)
    seconds["fine_tune"] = round(time.perf_counter() - start, 3)
    qat = _logits(quantized, evaluation.images, spec)

    out = Path(config.out)
    with staged_dir(out) as stage:
        files = _export(quantized, spec, stage, config.openvino, seconds)
        fidelity_rows = [("pytorch-fake-quant-ptq", ptq), ("pytorch-fake-quant-qat", qat)]
        fidelity_rows.append(("onnxruntime-qdq", _runtime_logits(stage / ONNX_NAME, evaluation.images)))
        if config.openvino:
            fidelity_rows.append(("openvino-int8", _runtime_logits(stage / IR_NAME, evaluation.images)))
        amax = activation_amax(stage / ONNX_NAME)
        write_json(stage / SCALES_NAME, {"format": "edgefer-qat-scales/1", "onnx": ONNX_NAME,
                                         "note": "scale = amax / 127 of the QuantizeLinear input tensor",
                                         "scales": {name: value / 127.0 for name, value in amax.items()}})
        files.append(SCALES_NAME)
        strip_qdq(stage / ONNX_NAME, stage / FP32_NAME, spec)
        files.append(FP32_NAME)
        cache = _write_cache(stage / CACHE_NAME, amax)
        if cache:
            files.append(CACHE_NAME)
        _save_weights(quantized, stage / WEIGHTS_NAME)
        files.append(WEIGHTS_NAME)
        reference = fp32.argmax(1)
        fp32_f1 = _macro_f1(evaluation.labels, reference, spec)
        fidelity = [_fidelity(name, reference, logits, evaluation.labels, spec, fp32_f1) for name, logits in
                    fidelity_rows]
        seconds["total"] = round(time.perf_counter() - clock, 3)
        engine = {"engine": ENGINE, **library_versions(QAT_TOOLS, skip_missing=True)}
        result = QatResult(out=str(out), split=split, images=len(evaluation), fp32_macro_f1=fp32_f1,
                           fidelity=fidelity, quantizers=count_quantizers(quantized),
                           qdq_nodes=qdq_consumers(stage / ONNX_NAME), files=sorted(files + [RESULT_NAME]),
                           scales=len(amax), calibration_cache=CACHE_NAME if cache else None, seconds=seconds,
                           synthetic=bool(splits.synthetic), engine=engine,
                           machine=machine_summary(),
                           command=command)
        write_json(stage / RESULT_NAME, {**asdict(result), "config": asdict(config), "arch": meta.get("arch"),
                                         "calibration": calib.manifest})
    return result


# ----------------------------------------------------------------------------------------------- quantization


def quantization_config() -> dict:
    """ModelOpt's INT8 default (weights per-channel axis 0, activations per-tensor, max calibration), i.e. Q/DQ on
    the inputs of quantized layers; quantizers outside Conv2d/Linear are switched off by ``insert_fake_quantization``."""
    import copy

    import modelopt.torch.quantization as mtq

    return copy.deepcopy(mtq.INT8_DEFAULT_CFG)


def insert_fake_quantization(model, images: np.ndarray, spec, batch_size: int = 64, *, residual: bool = True):
    """Replace Conv2d/Linear by ModelOpt quant modules (and, with ``residual``, wrap every residual block so both
    inputs of its addition are quantized) and calibrate their activation ranges (max) on ``images``."""
    import modelopt.torch.quantization as mtq
    import torch

    from .train.augment import prepare_batch

    batches = [prepare_batch(torch.as_tensor(images[i : i + batch_size]), spec)
               for i in range(0, len(images), batch_size)]

    def forward_loop(m):
        with torch.no_grad():
            for x in batches:
                m(x)

    model.eval()
    _register_same_padding_conv(mtq)
    with _quiet():
        model = mtq.quantize(model, quantization_config(), forward_loop)
    for module in model.modules():
        if _base_name(module) not in QUANTIZED_LAYERS:
            for child_name, child in module.named_children():
                if child_name.endswith("_quantizer") and hasattr(child, "disable"):
                    child.disable()
    if residual and quantize_residual_adds(model):
        # the new quantizers: ModelOpt's max calibration again (deterministic: the layers' ranges do not move)
        with _quiet():
            model = mtq.calibrate(model, algorithm="max", forward_loop=forward_loop)
    return model


@functools.cache
def _register_same_padding_conv(mtq) -> None:
    """Teach ModelOpt timm's ``Conv2dSame`` (TensorFlow "same" padding: the strided convolutions of the ``tf_``
    models, stem included). ModelOpt maps layer classes exactly, so it would leave these Conv2d subclasses in
    floating point; here the input quantizer sits after the padding, where the post-training placement puts the
    Q/DQ pair (on the Conv's input), and the weight quantizer on the weight."""
    import torch.nn.functional as F
    from modelopt.torch.quantization.nn import TensorQuantizer

    from .compat import import_timm

    layers = import_timm().layers

    class QuantConv2dSame(layers.Conv2dSame):
        def _setup(self):
            self.input_quantizer = TensorQuantizer()
            self.weight_quantizer = TensorQuantizer()

        def forward(self, x):
            x = layers.pad_same(x, self.weight.shape[-2:], self.stride, self.dilation)
            return F.conv2d(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias, self.stride,
                            (0, 0), self.dilation, self.groups)

    mtq.register(original_cls=layers.Conv2dSame, quantized_cls=QuantConv2dSame)


def quantize_residual_adds(model) -> int:
    """Wrap every timm block with a skip connection (``has_skip``: EfficientNet/MobileNet blocks) in a
    ``ResidualAdd`` that computes the block's branch, then ``branch_input_quantizer(branch) +
    skip_input_quantizer(x)``: the two Q/DQ pairs NVIDIA's placement puts on a residual addition, so TensorRT
    can fuse the addition into the INT8 convolution before it. Returns how many blocks were wrapped. (ModelOpt's
    ``*input_quantizer`` rule of the INT8 config enables and calibrates both quantizers.)"""
    import torch
    from modelopt.torch.quantization.nn import TensorQuantizer

    class ResidualAdd(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            block.has_skip = False  # the block now returns its branch (timm adds the shortcut only with has_skip)
            self.block = block
            self.branch_input_quantizer = TensorQuantizer()
            self.skip_input_quantizer = TensorQuantizer()

        def forward(self, x):
            return self.branch_input_quantizer(self.block(x)) + self.skip_input_quantizer(x)

    wrapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if getattr(child, "has_skip", False) is True and not isinstance(parent, ResidualAdd):
                setattr(parent, name, ResidualAdd(child))
                wrapped += 1
    return wrapped


def _base_name(module) -> str:
    """``QuantConv2d`` -> ``Conv2d``: the torch layer a ModelOpt quant module wraps."""
    name = type(module).__name__
    return name[len("Quant"):] if name.startswith("Quant") else name


def count_quantizers(model) -> int:
    return sum(1 for name, m in model.named_modules()
               if name.endswith("_quantizer") and getattr(m, "is_enabled", False))


def fine_tune(model, teacher, train, spec, train_config, criterion, config: QatConfig, log) -> None:
    """A few epochs of the run's recipe on the fake-quantized model: the run's augmentation and class-weighted
    loss, mixed with distillation towards the FP32 model; AdamW with a cosine decay from ``config.lr``."""
    import torch

    from .progress import progress
    from .train.augment import Augmentation
    from .train.batches import EpochBatches, epoch_order
    from .train.hardware import Hardware

    hardware = Hardware(torch.device("cpu"))
    augmentation = Augmentation.from_config(train_config)
    images, labels = torch.from_numpy(np.ascontiguousarray(train.images)), torch.from_numpy(train.labels)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    steps_per_epoch = max(1, len(train) // train_config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    teacher.eval()
    for epoch in range(config.epochs):
        model.train(not config.freeze_bn)
        order = epoch_order(train.labels, config.seed, epoch, hardware, train_config.balanced_sampler)
        batches = EpochBatches(images, labels, order, train_config.batch_size, augmentation, spec,
                               spec.num_classes, config.seed, epoch, 0)
        total = 0.0
        for x, target in progress(batches, total=len(batches), desc=f"qat epoch {epoch + 1}/{config.epochs}"):
            logits = model(x)
            loss = criterion(logits, target)
            if config.distill:
                with torch.no_grad():
                    soft = teacher(x).log_softmax(1)
                kl = torch.nn.functional.kl_div(logits.log_softmax(1), soft, log_target=True, reduction="batchmean")
                loss = (1 - config.distill) * loss + config.distill * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        log(f"qat epoch {epoch + 1}/{config.epochs}: loss {total / max(len(batches), 1):.4f}")
    model.eval()


# ----------------------------------------------------------------------------------------------- export


def _export(model, spec, stage: Path, openvino: bool, seconds: dict) -> list[str]:
    """Q/DQ ONNX (legacy exporter: ModelOpt's quantizers export as QuantizeLinear/DequantizeLinear) and the
    OpenVINO IR converted from it."""
    from .export.onnx import save_onnx, torch_to_onnx

    start = time.perf_counter()
    with _quiet():
        proto, _ = torch_to_onnx(model, spec, exporter="legacy")
    save_onnx(proto, stage / ONNX_NAME, spec.replace(precision="int8"))
    seconds["onnx"] = round(time.perf_counter() - start, 3)
    files = [ONNX_NAME]
    if openvino:
        from .export.openvino import to_ir

        start = time.perf_counter()
        to_ir(stage / ONNX_NAME, stage / IR_NAME, spec.replace(precision="int8"))
        seconds["openvino"] = round(time.perf_counter() - start, 3)
        files += [IR_NAME, Path(IR_NAME).with_suffix(".bin").name]
    return files


def _constant_values(graph) -> dict:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def activation_amax(onnx_path: str | Path) -> dict[str, float]:
    """Tensor name -> amax (127 x the QuantizeLinear scale) of every per-tensor quantized activation."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    constants = _constant_values(graph)
    produced_by_constant = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    amax = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants or node.input[0] in produced_by_constant:
            continue
        scale = np.asarray(constants[node.input[1]], dtype=np.float64)
        if scale.size == 1:
            amax[node.input[0]] = float(scale.reshape(-1)[0]) * 127.0
    return amax


def qdq_consumers(onnx_path: str | Path) -> dict:
    """Op type -> how many nodes of that type read a DequantizeLinear output (where the graph is quantized)."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    dq_outputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    counts: dict[str, int] = {}
    for node in graph.node:
        if any(i in dq_outputs for i in node.input):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    counts["QuantizeLinear"] = sum(n.op_type == "QuantizeLinear" for n in graph.node)
    counts["DequantizeLinear"] = len(dq_outputs)
    return dict(sorted(counts.items()))


def strip_qdq(onnx_path: str | Path, out_path: str | Path, spec) -> Path:
    """The Q/DQ graph without its QuantizeLinear/DequantizeLinear pairs: every tensor keeps its name, so the
    activation scales (``activation_amax``) apply to it as a TensorRT implicit-INT8 calibration cache."""
    import onnx

    from .export.onnx import save_onnx

    proto = onnx.load(str(onnx_path))
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    source = {}  # DequantizeLinear output -> the float tensor its QuantizeLinear read
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and producer.get(node.input[0]) is not None:
            quantize = producer[node.input[0]]
            if quantize.op_type == "QuantizeLinear":
                source[node.output[0]] = quantize.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
    used = {i for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear") for i in n.input}
    used |= {o.name for o in graph.output}
    keep = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and not (n.op_type == "Constant" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(keep)
    return save_onnx(proto, out_path, spec.replace(precision="fp32"))


def _write_cache(path: Path, amax: dict[str, float]) -> bool:
    """A TensorRT 10 calibration cache of the QAT ranges, where edgefer.export.trt_cache is available."""
    if importlib.util.find_spec("edgefer.export.trt_cache") is None:
        return False
    trt_cache = importlib.import_module("edgefer.export.trt_cache")
    trt_cache.write_cache(path, amax)
    return True


def _save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    from .fileio import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if hasattr(v, "detach")}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "edgefer-qat/1", "engine": ENGINE})


# ----------------------------------------------------------------------------------------------- measurement


def _logits(model, images, spec) -> np.ndarray:
    from .train.evaluation import predict_logits

    return predict_logits(model, images, spec, desc="eval").numpy()


def _runtime_logits(model_path: Path, images) -> np.ndarray:
    """Logits through edgefer.runtime (the deployment path), the whole split as one batch per 256 images."""
    from .runtime import EmotionRecognizer

    recognizer = EmotionRecognizer.open(model_path, threads=1)
    return np.concatenate([recognizer.predict(images[i : i + 256], color="gray", return_logits=True).logits
                           for i in range(0, len(images), 256)])


def _macro_f1(labels, predictions, spec) -> float:
    from .metrics import classification_report

    return float(classification_report(labels, predictions, spec.labels)["macro_f1"])


def _fidelity(name, reference, logits, labels, spec, fp32_f1) -> Fidelity:
    from .metrics import agreement

    predictions = np.asarray(logits).argmax(1)
    f1 = _macro_f1(labels, predictions, spec)
    return Fidelity(name, round(float(agreement(reference, predictions)), 6), round(f1, 6),
                    round((fp32_f1 - f1) * 100, 3))




class _quiet:
    """Silence ModelOpt's prints and warnings unless --verbose."""

    def __enter__(self):
        import contextlib
        import io
        import warnings

        from . import logs

        self._stack = contextlib.ExitStack()
        if logs.verbosity() < logs.VERBOSE:
            self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            self._stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False
