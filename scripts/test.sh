#!/usr/bin/env bash
# The whole test suite: lint, then pytest. Exits non-zero on any failure, and when no test ran.
set -uo pipefail
cd "$(dirname "$0")/.."

.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check . || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Two workers (pytest-xdist), a test file to each at a time (the end-to-end files as one),
# the longest first (tests/conftest.py says why): two cores run two files side by side.
# METERBOOK_TEST_WORKERS=0 runs everything in one process.
workers=${METERBOOK_TEST_WORKERS:-2}
parallel=()
[ "$workers" != "0" ] && parallel=(-n "$workers" --dist loadfile --no-loadscope-reorder)
.venv/bin/pytest "${parallel[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
# DuckDB's bindings may print leak notices as the interpreter exits; repeat pytest's verdict last.
summary=$(grep -E "^=*[ ]*[0-9]+ (passed|failed)" "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
printf "\npytest: %s\n" "${summary:-no summary line (exit $status)}"
exit "$status"
