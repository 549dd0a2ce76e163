#!/usr/bin/env bash
# Set up (first run) and run every test: the house style (ruff.toml), the
# pipeline's suite in .venv, then the Airflow DAG's in its own virtualenv.
# Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
bash scripts/install_chromium.sh
# The torch extra (PyTorch readers, DenseDepth on PyTorch, transformers depth
# checkpoints) and its tests; run_local.sh goes without. torch is pinned to
# the CPU build this machine keeps on disk (a plain range pulls CUDA's GBs).
python -m pip install -q torch==2.13.0 -e ".[torch]"
ruff format --check .
ruff check .
python -m pytest -q "$@" tests
if [ -f composer/run_tests.sh ]; then
  bash composer/run_tests.sh
fi
