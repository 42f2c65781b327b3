"""Fake quantization and fine-tuning in PyTorch (NVIDIA ModelOpt): TensorRT's placement (the inputs of every
Conv2d/Linear, both inputs of every residual addition), calibration of the quantizers, the fine-tuning loop with
distillation from the FP32 model, and the fine-tuned weights. torch and ModelOpt are imported inside the functions."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .config import ENGINE, QUANTIZED_LAYERS, QatConfig


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

    from ..train.augment import prepare_batch

    batches = [prepare_batch(torch.as_tensor(images[i : i + batch_size]), spec)
               for i in range(0, len(images), batch_size)]

    def forward_loop(m):
        with torch.no_grad():
            for x in batches:
                m(x)

    model.eval()
    _register_same_padding_conv(mtq)
    with quiet():
        model = mtq.quantize(model, quantization_config(), forward_loop)
    for module in model.modules():
        if _base_name(module) not in QUANTIZED_LAYERS:
            for child_name, child in module.named_children():
                if child_name.endswith("_quantizer") and hasattr(child, "disable"):
                    child.disable()
    if residual and quantize_residual_adds(model):
        # the new quantizers: ModelOpt's max calibration again (deterministic: the layers' ranges do not move)
        with quiet():
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

    from ..compat import import_timm

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

    from ..progress import progress
    from ..train.augment import Augmentation
    from ..train.batches import EpochBatches, epoch_order
    from ..train.hardware import Hardware

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


def save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    from ..fileio import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if hasattr(v, "detach")}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "edgefer-qat/1", "engine": ENGINE})


class quiet:
    """Silence ModelOpt's prints and warnings unless --verbose."""

    def __enter__(self):
        import contextlib
        import io
        import warnings

        from .. import logs

        self._stack = contextlib.ExitStack()
        if logs.verbosity() < logs.VERBOSE:
            self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            self._stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False
