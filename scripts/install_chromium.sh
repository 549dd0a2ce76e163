#!/usr/bin/env bash
# Install Debian's chromium for the report's browser test (tests/test_report.py)
# unless /usr/bin/chromium is already there: `bash scripts/install_chromium.sh`.
# Idempotent and quiet; needs root or password-less sudo. The package lists
# are refreshed only when they do not know chromium or the install fails
# (stale lists name versions the mirror no longer has), so a machine with
# usable lists makes no extra round trip.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
chromium=/usr/bin/chromium
if [ -x "$chromium" ]; then
  exit 0
fi
fail() {
  echo "install_chromium.sh: $1; install Debian's chromium so that $chromium exists" >&2
  exit 1
}
command -v apt-get >/dev/null || fail "no apt-get here"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || fail "not root and no sudo"
  as_root=(sudo -n)
fi
install_chromium() {
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
}
echo "install_chromium.sh: installing Debian's chromium (a minute or so)" >&2
if ! apt-cache show chromium >/dev/null 2>&1 || ! install_chromium; then
  "${as_root[@]}" apt-get update -qq >/dev/null
  install_chromium
fi
# The launcher's own shell snippets may complain on stderr; the version is what matters.
echo "install_chromium.sh: installed $("$chromium" --version 2>/dev/null)" >&2
