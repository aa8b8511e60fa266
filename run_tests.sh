#!/usr/bin/env bash
# Sets up .venv if needed, then lints, type-checks (mypy, strict), checks the import layers
# (lint-imports) and runs the whole test suite. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "run_tests.sh: pytest collected no tests — that is a failure" >&2
  exit 1
fi
exit "$status"
