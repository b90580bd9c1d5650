#!/usr/bin/env bash
# The whole test suite, as CI runs it: install from the lock file, lint, type-check, then pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh

echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
echo "== pytest" && pytest -q -p no:cacheprovider "$@"
