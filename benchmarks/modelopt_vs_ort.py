"""NVIDIA ModelOpt INT8 vs edgefer's ONNX Runtime Q/DQ, on one FP32 ONNX, calibration bundle and validation split.

ModelOpt's ``[onnx]`` extra pins onnx/onnxruntime versions that conflict with constraints.txt, so it runs from
an isolated virtual environment that sees the project's packages through a .pth file:

    python3.11 -m venv /tmp/movenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/movenv/lib/python3.11/site-packages/zz_shared.pth
    /tmp/movenv/bin/pip install -c constraints.txt nvidia-modelopt==0.47.0 onnx-graphsurgeon onnxslim lief \
        ml_dtypes onnxconverter-common polygraphy cppimport
    cd WORKDIR && PYTHONPATH=/path/to/edgefer /tmp/movenv/bin/python benchmarks/modelopt_vs_ort.py \
        FP32.onnx CALIB_BUNDLE DATA.csv max entropy

Prints one JSON line per ModelOpt calibration method (CPU: calibration_eps=['cpu'], high_precision_dtype='fp32').
Compare with the ``checks.exported`` numbers of ``edgefer export --target tensorrt --int8`` on the same inputs.
"""

import json
import sys
import time

import numpy as np
from modelopt.onnx.quantization import quantize

from edgefer.data import prepare_splits
from edgefer.export import check
from edgefer.export.calibration import CalibrationSet
from edgefer.export.source import open_source


def main(fp32_onnx: str, bundle: str, data: str, *methods: str) -> None:
    spec = open_source(fp32_onnx).spec
    calib = np.concatenate(list(CalibrationSet.load(bundle).batches(spec, 64)))
    val = prepare_splits(data).val
    reference = check.logits(fp32_onnx, val.images, spec)
    reference_scores = check.scores(reference, val.labels, spec)
    for method in methods or ("max",):
        out = f"modelopt-{method}.onnx"
        start = time.perf_counter()
        quantize(fp32_onnx, quantize_mode="int8", calibration_data={"input": calib}, calibration_method=method,
                 calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=out, log_level="ERROR")
        seconds = time.perf_counter() - start
        result = check.check_against(out, reference, val.images, val.labels, spec, reference_scores)
        keys = ("top1_agreement", "max_abs_logit_diff", "mean_abs_logit_diff", "accuracy", "macro_f1")
        print(json.dumps({"method": method, "seconds": round(seconds, 1), **{k: result[k] for k in keys}}))


if __name__ == "__main__":
    main(*sys.argv[1:])
