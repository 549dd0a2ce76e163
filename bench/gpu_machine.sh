#!/usr/bin/env bash
# Every GPU figure in one command on the lent GPU machine (Python 3.12 and
# PyTorch; no Beam, no TensorFlow, no transformers). Prepare here, once:
#   bash bench/gpu_machine.sh --prepare   # Beam's wheels and WHEELS below, in .whl
# then run through the device tool, carrying .whl:
#   bash bench/gpu_machine.sh [bench_depth_gpu.py options]
# First each model alone (DenseDepth; Depth Anything V2 Small at 518 and
# 224) and the precision rule on the GPU; then the device stand-in at
# DenseDepth's rate predicts each build configuration on this machine's CPUs
# (bench/bench_serving.py); then a Depth Anything build, and every DenseDepth
# measurement, most telling first, each build beside its prediction.
# Each is saved as it ends, so a run cut short by the device's time limit
# still returns what it measured; if the network itself fails, the run stops
# at once. Results land in $OUT (the device tool's folder that comes back)
# or bench/results.
set -euo pipefail
cd "$(dirname "$0")/.."
# Besides Beam's: transformers and what it imports, and what Beam's local
# runner imports that the machine may lack (found in a bare virtualenv
# with PyTorch). All the wheels and the tree must fit the 64 MiB that
# travels (about 60 MiB with these).
WHEELS=(transformers==5.25.0 huggingface-hub==2.4.0 tokenizers==0.23.3 safetensors==0.8.0
  kernels==0.19.1 tomlkit==0.15.3 regex==2026.12.2 pyyaml==6.0.4 tqdm==4.70.1 packaging==26.4
  httpx2==2.17.0 httpcore2==2.17.0 h11==0.16.0 idna==3.21 truststore==0.10.5
  python-dateutil==4.0.0 six==1.17.0 sortedcontainers==2.4.0)
if [ "${1:-}" = "--prepare" ]; then
  rm -rf .whl  # exactly these: a wheel left from an earlier list still travels
  exec bash ../shared/tools/gpu-machine-wheels.sh "${WHEELS[@]}"
fi
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
# Depth Anything V2 Small alone: fp32 is what --depth_precision auto runs it
# in. Its failures are reported and the DenseDepth figures still run.
for side in 518 224; do
  python3 bench/bench_depth_gpu.py --device cuda --model da-small --input_size "${side}x${side}" \
    --precision fp32 --measurements model,model=bf16,model=fp16 --name "depth_gpu_da_${side}" \
    --results "$results" "$@" || echo "Depth Anything at $side: a measurement failed"
done
# The precision rule for this GPU's precisions (fgbg/depth/precision.py's
# table has no GPU entry until this has run).
python3 bench/bench_precision.py --device cuda --candidates torch-bf16,torch-fp16,torch-tf32 \
  --seeds 0,1 --sets demo,tests --name precision_gpu --results "$results"
# The same inputs as bench_depth_gpu.py's builds; no TensorFlow here, so no TFT.
python3 bench/bench_serving.py --configs shared:16,shared_pickle:16,threads:16 \
  --build_configs shared:16,threads:16,in_process --rates "$rate" --images 4096 \
  --backgrounds 25 --foregrounds 10 --placements 5 --build_flags=--no_tft \
  --name serving_gpu --results "$results"
# A Depth Anything build as run_local.sh makes it on a GPU, 4,000 samples.
python3 bench/bench_depth_gpu.py --device cuda --model da-small --input_size 518x518 \
  --measurements build=shared:16/device_resize --backgrounds 10 --foregrounds 10 \
  --build_flags=--no_tft --name depth_gpu_da_build --results "$results" "$@" ||
  echo "Depth Anything builds: a measurement failed"
python3 bench/bench_depth_gpu.py --device cuda --predictions "$results/serving_gpu.json" \
  --name depth_gpu --results "$results" "$@"
