#!/usr/bin/env bash
# Refresh the lock to the newest releases setup.py's ranges allow, then run
# the whole suite on them (run_tests.sh installs from the lock), so an
# upstream release that breaks fgbg is found here first. Review and commit
# requirements/*.txt if it passes; `git checkout requirements` undoes it.
#
#   bash scripts/refresh_lock.sh [--lock-only] [--keep-versions] [PYTEST ARGS...]
#
# --lock-only: write the lock, run nothing. --keep-versions: re-lock after a
# change to setup.py or requirements/dev.in, moving only what must move.
# Needs PyPI (uv resolves against it alone, so the lock installs from PyPI
# on any machine). docs/dependencies.md says what each file locks and why.
set -euo pipefail
cd "$(dirname "$0")/.."
run_tests=true
upgrade=(--upgrade)
while (($#)); do
  case $1 in
    --lock-only) run_tests=false; shift ;;
    --keep-versions) upgrade=(); shift ;;
    *) break ;;
  esac
done
source scripts/ensure_venv.sh
# The lock covers Python 3.11 and later on every platform (uv's universal
# resolution); run_local.sh and the Dataflow workers run 3.11.
compile=(uv pip compile --quiet --universal --python-version 3.11
  --custom-compile-command "bash scripts/refresh_lock.sh" ${upgrade[@]+"${upgrade[@]}"})
# The application: what run_local.sh installs and Dataflow workers stage.
"${compile[@]}" setup.py -o requirements/app.txt
# The tests and the torch extra, at the application's versions where they
# share a package. The CUDA libraries are torch's build's own choice.
dev=("${compile[@]}" setup.py requirements/dev.in --extra test --extra torch
  -c requirements/app.txt)
cuda=$("${dev[@]}" --no-header --no-annotate -o /dev/stdout | sed -nE 's/^((nvidia|cuda)-[a-z0-9-]+)==.*/\1/p')
"${dev[@]}" $(printf -- '--no-emit-package %s ' $cuda) -o requirements/dev.txt
git --no-pager diff --stat -- requirements
if $run_tests; then
  bash run_tests.sh "$@"
fi
