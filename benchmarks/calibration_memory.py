"""Peak RSS of one INT8 Q/DQ calibration + quantization (``edgefer.export.qdq.quantize_qdq``, TensorRT cache
included) in a fresh process that only loads an FP32 ONNX, draws SYNTHETIC calibration images and quantizes.

    PYTHONPATH=. .venv/bin/python benchmarks/calibration_memory.py model.onnx moving-average 512

Export the FP32 ONNX first (e.g. ``edgefer export --target onnx``), one process per measurement. Prints one
JSON line: peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), RSS before calibrating, seconds.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    source, method, n = Path(argv[0]), argv[1], int(argv[2])
    warnings.simplefilter("ignore")
    import onnx

    from edgefer.data import synthesize
    from edgefer.export.calibration import draw
    from edgefer.export.qdq import quantize_qdq
    from edgefer.spec import METADATA_KEY, ModelSpec

    props = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    spec = ModelSpec.from_dict(json.loads(props[METADATA_KEY]))
    calib = draw(synthesize(max(2 * n, 100), seed=0), n, floor=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        quantize_qdq(source, calib, spec, Path(tmp) / "q.onnx", method=method, trt_cache=Path(tmp) / "q.calib")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"onnx": source.name, "input_size": spec.input_size, "method": method, "images": n,
                      "peak_rss_mib": round(peak / 1024), "before_mib": round(before / 1024),
                      "seconds": round(time.time() - start, 1)}))


if __name__ == "__main__":
    main()
