#!/usr/bin/env bash
# Install everything the project needs from the committed lock file (uv.lock) into ./.venv.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again (a no-op when up to date).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.8"
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"

if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
    echo "bootstrap: installing uv $UV_VERSION" >&2
    python3 -m pip install --quiet --user --disable-pip-version-check "uv==$UV_VERSION" \
        || python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
    hash -r
fi

PYTHON="$(command -v python3.11 || command -v python3)"
(cd "$ROOT" && uv sync --frozen --python "$PYTHON" --quiet)
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$ROOT/.venv/bin:$PATH"
