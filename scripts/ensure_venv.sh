# Sourced by run_local.sh and run_tests.sh: create .venv and install the
# package (with its test extra) at the lock's versions (requirements/app.txt,
# and dev.txt for the test extra; docs/dependencies.md) unless setup.py and
# the lock are unchanged since last time.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FGBG_VENV:-$repo/.venv}"
python="${FGBG_PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
stamp="$venv/.fgbg-installed"
want="$(cat "$repo/setup.py" "$repo"/requirements/*.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "fgbg: creating virtualenv $venv" >&2
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "fgbg: installing the package and its dependencies into $venv (a few minutes the first time)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip 'setuptools<82' wheel
  "$venv/bin/python" -m pip install -q -r "$repo/requirements/app.txt" \
    -c "$repo/requirements/dev.txt" -e "$repo[test]"
  echo "$want" > "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
