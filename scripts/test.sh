#!/usr/bin/env bash
# The whole test suite: lint, then pytest. Exits non-zero on any failure or if no test ran.
set -uo pipefail
cd "$(dirname "$0")/.."

.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check . || exit 1

.venv/bin/pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
