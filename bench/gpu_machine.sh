#!/usr/bin/env bash
# Every GPU figure of issue 13 in one command on the lent GPU machine (Python
# 3.12 and PyTorch; no Beam, no TensorFlow). Prepare here, once:
#   bash ../shared/tools/gpu-machine-wheels.sh h5py==3.14.0   # Beam's wheels (+ h5py) in .whl
# then run through the device tool, carrying .whl:
#   bash bench/gpu_machine.sh [bench_depth_gpu.py options]
# Measurements run most telling first and are saved after each, so a run cut
# short by the device's time limit still returns what it measured; if the
# network itself fails, the run stops at once. Results land in $OUT (the
# device tool's folder that comes back) or bench/results.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
results=${OUT:-bench/results}
mkdir -p "$results"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/bench_depth_gpu.py --device cuda --name depth_gpu --results "$results" "$@"
