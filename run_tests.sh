#!/usr/bin/env bash
# Set up (first run) and run every test: the house style (ruff.toml), the
# pipeline's suite in .venv, then the Airflow DAG's in its own virtualenv.
# Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
bash scripts/install_chromium.sh
# The torch extra's tests (tests/test_torch_data.py); run_local.sh goes without.
python -m pip install -q torch==2.13.0
ruff format --check .
ruff check .
python -m pytest -q "$@" tests
if [ -f composer/run_tests.sh ]; then
  bash composer/run_tests.sh
fi
