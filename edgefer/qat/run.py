"""``run_qat``: calibrate, fine-tune, export and measure one QAT run, published whole as its output directory."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict
from pathlib import Path

from ..env import library_versions, machine_summary
from ..errors import InputError, require
from .config import (
    CACHE_NAME,
    ENGINE,
    FP32_NAME,
    IR_NAME,
    ONNX_NAME,
    QAT_TOOLS,
    RESULT_NAME,
    SCALES_NAME,
    WEIGHTS_NAME,
    QatConfig,
    QatResult,
)
from .fidelity import macro_f1, measure_fidelity, runtime_logits, torch_logits
from .graph import activation_amax, export_graphs, qdq_node_counts, strip_qdq, write_cache
from .training import count_quantizers, fine_tune, insert_fake_quantization, quiet, save_weights


def _log_stderr(message: str) -> None:
    from .. import logs

    logs.info(message)


def run_qat(config: QatConfig, log=_log_stderr, command: str = "edgefer qat") -> QatResult:
    """Calibrate, fine-tune and export as configured; return the measurements (also written to qat.json)."""
    from ..fileio import check_output

    config.validate()
    check_output(config.out, "dir", config.exist_ok)
    require("torch", "train", "quantization-aware training")
    with quiet():  # ModelOpt warns on import about optional packages it does not need here
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

    from ..export import calibration
    from ..fileio import staged_dir, write_json
    from ..models import load_checkpoint, read_checkpoint_meta, training_data
    from ..train.batches import load_splits
    from ..train.config import TrainConfig
    from ..train.losses import build_loss

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
    fp32 = torch_logits(teacher, evaluation.images, spec)
    ptq = torch_logits(quantized, evaluation.images, spec)

    criterion, _ = build_loss(train_config, train.class_counts(spec.num_classes))
    start = time.perf_counter()
    fine_tune(quantized, teacher, train, spec, train_config, criterion, config, log)
    seconds["fine_tune"] = round(time.perf_counter() - start, 3)
    qat = torch_logits(quantized, evaluation.images, spec)

    out = Path(config.out)
    with staged_dir(out) as stage:
        files = export_graphs(quantized, spec, stage, config.openvino, seconds)
        fidelity_rows = [("pytorch-fake-quant-ptq", ptq), ("pytorch-fake-quant-qat", qat)]
        fidelity_rows.append(("onnxruntime-qdq", runtime_logits(stage / ONNX_NAME, evaluation.images)))
        if config.openvino:
            fidelity_rows.append(("openvino-int8", runtime_logits(stage / IR_NAME, evaluation.images)))
        amax = activation_amax(stage / ONNX_NAME)
        write_json(stage / SCALES_NAME, {"format": "edgefer-qat-scales/1", "onnx": ONNX_NAME,
                                         "note": "scale = amax / 127 of the QuantizeLinear input tensor",
                                         "scales": {name: value / 127.0 for name, value in amax.items()}})
        files.append(SCALES_NAME)
        strip_qdq(stage / ONNX_NAME, stage / FP32_NAME, spec)
        files.append(FP32_NAME)
        cache = write_cache(stage / CACHE_NAME, amax)
        if cache:
            files.append(CACHE_NAME)
        save_weights(quantized, stage / WEIGHTS_NAME)
        files.append(WEIGHTS_NAME)
        reference = fp32.argmax(1)
        fp32_f1 = macro_f1(evaluation.labels, reference, spec)
        fidelity = [measure_fidelity(name, reference, logits, evaluation.labels, spec, fp32_f1) for name, logits in
                    fidelity_rows]
        seconds["total"] = round(time.perf_counter() - clock, 3)
        engine = {"engine": ENGINE, **library_versions(QAT_TOOLS, skip_missing=True)}
        result = QatResult(out=str(out), split=split, images=len(evaluation), fp32_macro_f1=fp32_f1,
                           fidelity=fidelity, quantizers=count_quantizers(quantized),
                           qdq_nodes=qdq_node_counts(stage / ONNX_NAME), files=sorted(files + [RESULT_NAME]),
                           scales=len(amax), calibration_cache=CACHE_NAME if cache else None, seconds=seconds,
                           synthetic=bool(splits.synthetic), engine=engine,
                           machine=machine_summary(),
                           command=command)
        write_json(stage / RESULT_NAME, {**asdict(result), "config": asdict(config), "arch": meta.get("arch"),
                                         "calibration": calib.manifest})
    return result
