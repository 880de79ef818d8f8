#!/usr/bin/env bash
# Runs the whole suite. pytest's exit code 5 (no tests collected) is a failure, and so is any
# skipped e2e/chaos test (tests/conftest.py turns those skips into failures).
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
.venv/bin/pytest -q -p no:cacheprovider --durations=15 "$@" tests
rc=$?
echo "make test: pytest exit code $rc after $((SECONDS - t0)) s"
if [ $rc -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi
exit $rc
