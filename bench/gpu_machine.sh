#!/usr/bin/env bash
# Every GPU figure in one command on the lent GPU machine (Python 3.12 and
# PyTorch; no Beam, no TensorFlow). Prepare here, once:
#   bash ../shared/tools/gpu-machine-wheels.sh h5py==3.14.0   # Beam's wheels (+ h5py) in .whl
# then run through the device tool, carrying .whl:
#   bash bench/gpu_machine.sh [bench_depth_gpu.py options]
# First the model alone and the precision rule on the GPU; then the device
# stand-in at the model's rate predicts each build configuration on this
# machine's CPUs (bench/bench_serving.py); then every measurement, most
# telling first, each build beside its prediction.
# Each is saved as it ends, so a run cut short by the device's time limit
# still returns what it measured; if the network itself fails, the run stops
# at once. Results land in $OUT (the device tool's folder that comes back)
# or bench/results.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
results=${OUT:-bench/results}
mkdir -p "$results"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/bench_depth_gpu.py --device cuda --measurements model --name depth_gpu_model \
  --results "$results" "$@"
rate=$(python3 -c 'import json, sys
model = json.load(open(sys.argv[1]))["results"][0]
print(model["images"] / model["wall_s"])' "$results/depth_gpu_model.json")
# The precision rule for this GPU's precisions (fgbg/depth/precision.py's
# table has no GPU entry until this has run).
python3 bench/bench_precision.py --device cuda --candidates torch-bf16,torch-fp16,torch-tf32 \
  --seeds 0,1 --sets demo,tests --name precision_gpu --results "$results"
# The same inputs as bench_depth_gpu.py's builds; no TensorFlow here, so no TFT.
python3 bench/bench_serving.py --configs shared:16,shared_pickle:16,threads:16 \
  --build_configs shared:16,threads:16,in_process --rates "$rate" --images 4096 \
  --backgrounds 25 --foregrounds 10 --placements 5 --build_flags=--no_tft \
  --name serving_gpu --results "$results"
python3 bench/bench_depth_gpu.py --device cuda --predictions "$results/serving_gpu.json" \
  --name depth_gpu --results "$results" "$@"
