#!/usr/bin/env bash
# The main job end to end on embedded defaults (installs from the lock file first).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
exec python scripts/demo.py "$@"
