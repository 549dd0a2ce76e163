#!/usr/bin/env bash
# Build a dataset on this machine (the default workers for its kind of build
# and cores: docs/thread-budgets.md). With no arguments: the demo dataset from
# demo/inputs into demo/output. Any argument passes through to
# `python -m pipeline.build` and overrides the demo's choice of the same option.
#
# Depth: the published DenseDepth weights are used when they are at
# $FGBG_DEPTH_WEIGHTS (default models/nyu.h5, from the authors' repository
# ialhashim/DenseDepth). Without them, Depth Anything V2 Small's ONNX export
# on ONNX Runtime, from the Hugging Face cache, fetched into it once where the
# network allows (fgbg/depth/first_run.py, docs/onnx-runtime.md). Without that
# either, the demo runs DenseDepth's architecture with seeded random weights
# (--depth_model untrained): its depth maps are NOT real depth, and the
# manifest and report say so.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
weights="${FGBG_DEPTH_WEIGHTS:-models/nyu.h5}"
first_run=""
if [[ " $* " == *" --depth_model"* ]]; then
  # The caller's model, with its own defaults (weights, input size).
  depth=()
elif [ -f "$weights" ]; then
  depth=(--depth_model densedepth --depth_weights "$weights")
elif first_run="$(python -m fgbg.depth.first_run "$@")"; then
  # The model is in the Hugging Face cache now: the build reads it there.
  mapfile -t depth <<<"$first_run"
  export HF_HUB_OFFLINE=1
else
  # The untrained model's maps are meaningless at any size, so the demo spends
  # less CPU on them: 320x256 input instead of the recipe's 640x480 (about a
  # quarter of the pixels).
  cat >&2 <<WARN
################################################################################
WARNING: no DenseDepth weights at $weights, and no Depth Anything V2 Small (the
line above says why). The demo's depth maps come from the UNTRAINED
architecture (seeded random weights): they are not real depth. Put the
published nyu.h5 there (or set FGBG_DEPTH_WEIGHTS), or fetch the model as the
line above says, for real depth maps.
################################################################################
WARN
  depth=(--depth_model untrained --depth_input_size 320x256)
fi
# A GPU, where nvidia-smi sees one: the torch extra goes into .venv first if
# it is missing (once; a few GB), then depth runs on the torch runtime, one
# model on the GPU (in GPU-sized batches) that every worker process hands
# uint8 composites through shared memory, resized there (docs/gpu.md, "Depth on a
# GPU", says why this configuration).
# FGBG_GPU=0, or a --depth_runtime argument, keeps the GPU out of it, as does
# the first-run model (its ONNX export runs on the CPU).
gpu=()
if [ "${FGBG_GPU:-auto}" != 0 ] && [[ " $* " != *" --depth_runtime"* ]] && [ -z "$first_run" ] &&
  command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
  if ! python -c 'import torch' 2>/dev/null; then
    echo "GPU found: installing PyTorch into $VIRTUAL_ENV (pip install -e '.[torch]'" \
      "at the lock's versions, once, a few GB)." >&2
    python -m pip install -q -c requirements/dev.txt -e '.[torch]'
  fi
  if python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "GPU found: depth runs on it (--depth_runtime torch)." >&2
    gpu=(--depth_runtime torch --depth_device cuda --depth_share_model --depth_resize_on_device)
  else
    echo "nvidia-smi sees a GPU but PyTorch does not: depth stays on the CPU." >&2
  fi
fi
python -m pipeline.build \
  --bg 'demo/inputs/bg/*' --fg 'demo/inputs/fg/*' --fg_mask 'demo/inputs/fg_mask/*' \
  --output demo/output \
  --placements_per_scale 1 \
  ${depth[@]+"${depth[@]}"} ${gpu[@]+"${gpu[@]}"} \
  "$@"
