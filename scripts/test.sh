#!/usr/bin/env bash
# Install streamlet with its test dependencies and run the whole test suite.
# Exits non-zero on any failure, and also when no test ran (pytest exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[dev]'
# the dashboard's browser tests keep their screenshots here (CI: keep this directory as an artifact)
export STREAMLET_SCREENSHOTS="${STREAMLET_SCREENSHOTS:-$PWD/.artifacts/screenshots}"
set +e
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: no tests ran" >&2
  exit 1
fi
exit "$rc"
