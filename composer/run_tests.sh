#!/usr/bin/env bash
# Test the Cloud Composer DAG offline, in its own virtualenv (.venv-airflow at
# the repo root): Airflow cannot share one with tensorflow-transform. The first
# run installs composer/requirements-test.txt (a few minutes); later runs
# reuse the virtualenv until that file changes. Exits non-zero on failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$repo/.venv-airflow
requirements=$repo/composer/requirements-test.txt
stamp=$venv/.requirements.sha256

wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$wanted" ]]; then
  echo "composer/run_tests.sh: installing $requirements into $venv" >&2
  [[ -x $venv/bin/python ]] || python3.11 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" > "$stamp"
fi

# A throwaway Airflow home: DagBag parses files and the tests render templates
# without a metadata database, so nothing needs migrating.
AIRFLOW_HOME=$(mktemp -d)
trap 'rm -rf "$AIRFLOW_HOME"' EXIT
export AIRFLOW_HOME AIRFLOW__CORE__LOAD_EXAMPLES=False

# -c /dev/null, --rootdir and --confcutdir keep the repo's pytest settings and
# conftest files (written for the pipeline's virtualenv) out of this run.
"$venv/bin/python" -m pytest -c /dev/null --rootdir "$repo/composer" \
  --confcutdir "$repo/composer" -p no:cacheprovider "$repo/composer/tests" "$@"
