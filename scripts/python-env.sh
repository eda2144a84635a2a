#!/usr/bin/env bash
# Creates (once) and prints the path of a Python venv with the interop clients.
#
# The venv lives outside the clone, under ~/.cache/workbench/, keyed by a hash of the
# requirements file, so every clone and every CI run on a machine reuses it.
#
#   scripts/python-env.sh [requirements-file]   -> prints the venv's python on stdout
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="${1:-$here/requirements-interop.txt}"
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: \`$python\` not found; the interop checks need Python 3.9 or newer" >&2
  exit 1
fi
hash="$(sha256sum "$req" | cut -c1-16)"
venv="${WORKBENCH_VENV_ROOT:-$HOME/.cache/workbench}/venv-$(basename "$req" .txt)-$hash"
mkdir -p "$(dirname "$venv")"
# One installer at a time per venv (tests and benchmarks may ask at once).
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "Creating the Python venv for interop checks at \`$venv\` (once per machine)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  # Lines after a `# --no-deps` line are installed apart, without their dependencies: for
  # packages whose pins conflict with the rest but whose code needs only what is listed above.
  main_req="$(mktemp)"
  nodeps_req="$(mktemp)"
  trap 'rm -f "$main_req" "$nodeps_req"' EXIT
  awk -v main="$main_req" -v nodeps="$nodeps_req" \
    '/^# --no-deps/ {apart = 1; next} {print > (apart ? nodeps : main)}' "$req"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$main_req" >&2
  if grep -q '^[[:space:]]*[^#[:space:]]' "$nodeps_req"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps -r "$nodeps_req" >&2
  fi
  rm -f "$main_req" "$nodeps_req"
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
