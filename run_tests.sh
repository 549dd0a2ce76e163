#!/usr/bin/env bash
# Set up (first run) and run every test: the house style (ruff.toml), the
# pipeline's suite in .venv, then the Airflow DAG's in its own virtualenv.
# Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
bash scripts/install_chromium.sh
# The torch extra (PyTorch readers, DenseDepth on PyTorch, transformers depth
# checkpoints) and its tests, at the lock's versions (run_local.sh goes
# without): its torch pin takes the CPU build where the machine keeps one on
# disk (else PyPI's CUDA build), and triton comes either way, as on users'
# machines (docs/dependencies.md).
python -m pip install -q -r requirements/dev.txt -e ".[torch]"
ruff format --check .
ruff check .
# One pytest worker per core (pytest-xdist), each test module whole on one
# worker so its module-scoped builds are made once (docs/development.md,
# "How the suite runs"); `-n 0` after it runs the suite in this process.
# At most 8 workers: each holds a build's models (1-1.5 GB), and past the
# suite's largest modules more workers only wait.
python -m pytest -q -n auto --maxprocesses 8 --dist loadfile --durations=25 "$@" tests
if [ -f composer/run_tests.sh ]; then
  bash composer/run_tests.sh
fi
