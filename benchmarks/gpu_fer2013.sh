#!/usr/bin/env bash
# The paper-scale FER2013 recipe on a lent GPU machine (one command, within its 10-minute limit), figures only back.
#
# Prepare here (FER2013 never goes into git; the bundle is 46 MB, under the 64 MiB that travels):
#   tar czf fer2013-work/fer-bundle.tgz -C <dir holding data/train and data/test> data
# Then, through the device tool, from the repository root (carry: ["fer2013-work/fer-bundle.tgz"]):
#   bash benchmarks/gpu_fer2013.sh
# The device image has python3 with CUDA PyTorch, timm, onnx, Pillow, scikit-learn and click; edgefer runs from the
# checkout (PYTHONPATH=.). It writes train.log, metrics.csv, model.json (metrics only, no weights) and timing.json
# into $OUT. Environment: EPOCHS (30), SIZE (112), BATCH (256), LOSS (weighted-ce).
set -euo pipefail
OUT=${OUT:-/tmp/gpu-out}
EPOCHS=${EPOCHS:-30}; SIZE=${SIZE:-112}; BATCH=${BATCH:-256}; LOSS=${LOSS:-weighted-ce}
mkdir -p "$OUT" /tmp/fer
tar xzf fer2013-work/fer-bundle.tgz -C /tmp/fer
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
start=$(date +%s)
PYTHONPATH=. python3 -c 'from edgefer.cli import main; main()' train --data /tmp/fer/data --out /tmp/gpu-run \
    --arch tf_efficientnetv2_s --img-size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" --loss "$LOSS" \
    --amp bf16 --channels-last --workers 8 --seed 0 2>&1 | tee "$OUT/train.log"
end=$(date +%s)
cp /tmp/gpu-run/metrics.csv /tmp/gpu-run/model.json "$OUT/"
printf '{"wall_seconds": %d, "epochs": %s, "img_size": %s, "batch_size": %s, "loss": "%s"}\n' \
    $((end - start)) "$EPOCHS" "$SIZE" "$BATCH" "$LOSS" > "$OUT/timing.json"
