#!/usr/bin/env bash
# The paper-size SE3ResNet34 on the CATH pool, on one GPU, inside a fixed training budget.
#
#   bash scripts/train_gpu.sh [POOL.tar.xz]      (default: ../shared/data/cath10/pool.tar.xz)
#
# Unpacks the pool, builds the Cα + secondary-structure dataset, trains `se3resnet34` with
# the oriented input fields (bf16, rotation augmentation) for at most $MINUTES minutes of
# training (`--time-limit`: no epoch starts that would end later), evaluates the best epoch
# on validation split 8 with 4 random rotations, and writes everything to $OUT:
#   best.json / best.safetensors   the checkpoint, loadable by `cathnet predict --model`
#   metrics.jsonl                  per-epoch train / validation accuracy and seconds
#   val8.json, timing.txt          evaluation and the wall-clock of each step
# Environment: OUT (default runs/se3resnet34-gpu), WORK (unpacked pool and dataset,
# default /tmp/cathnet-gpu), MINUTES (default 9), EPOCHS (upper bound, default 100),
# BATCH (default 32). Split 9 stays untouched: test once, on the final recipe.
set -euo pipefail

POOL=${1:-../shared/data/cath10/pool.tar.xz}
OUT=${OUT:-runs/se3resnet34-gpu}
WORK=${WORK:-/tmp/cathnet-gpu}
MINUTES=${MINUTES:-9}
EPOCHS=${EPOCHS:-100}
BATCH=${BATCH:-32}

python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'train_gpu.sh: no CUDA device visible to torch')"
mkdir -p "$WORK" "$OUT"
stamp() { echo "$1 $(( $(date +%s) - start ))s" | tee -a "$OUT/timing.txt"; }
start=$(date +%s)

[ -f "$WORK/labels.csv" ] || tar -xJf "$POOL" -C "$WORK"
stamp unpacked
[ -f "$WORK/cath10-ss.npz" ] || cathnet dataset build --labels "$WORK/labels.csv" --pdb "$WORK/pdb" \
    --atoms ca-ss -o "$WORK/cath10-ss.npz"
stamp dataset

# The paper's network (widths as in Weiler et al. 2018); a short schedule: the budget ends it.
cathnet train --data "$WORK/cath10-ss.npz" --model se3resnet34 --fields ss-orientation --sigma 1.5 \
    --out "$OUT" --epochs "$EPOCHS" --time-limit "$MINUTES" --batch-size "$BATCH" --lr 1e-3 \
    --burn-in 5 --lr-decay 0.92 --augment --val-splits 8 --test-splits 9 \
    --device cuda --precision bf16 --no-progress ${RESUME:+--resume}
stamp trained
cathnet evaluate "$OUT/best.json" --data "$WORK/cath10-ss.npz" --splits 8 --rotations 4 \
    --device cuda -o "$OUT/val8.json"
stamp evaluated
