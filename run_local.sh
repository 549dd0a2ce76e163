#!/usr/bin/env bash
# Build a dataset on this machine with all cores. With no arguments: the demo
# dataset from demo/inputs into demo/output. Any argument passes through to
# `python -m pipeline.build` and overrides the demo's choice of the same option.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
python -m pipeline.build \
  --bg 'demo/inputs/bg/*' --fg 'demo/inputs/fg/*' --fg_mask 'demo/inputs/fg_mask/*' \
  --output demo/output \
  --depth_model none \
  --runner FnApiRunner --direct_num_workers 0 --direct_running_mode multi_processing \
  "$@"
