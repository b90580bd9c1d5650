#!/usr/bin/env bash
# Install everything the project needs from the committed lock file (uv.lock) into ./.venv.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again (a no-op when up to date).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.8"
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"

# uv itself: the pinned version on PATH, else a private venv under .cache/ (works where the system Python is
# "externally managed", PEP 668), else pip --user as a last resort.
UV_HOME="$ROOT/.cache/uv-$UV_VERSION"
have_uv() { command -v uv >/dev/null 2>&1 && [ "$(uv --version | awk '{print $2}')" = "$UV_VERSION" ]; }
if ! have_uv && [ -x "$UV_HOME/bin/uv" ]; then
    export PATH="$UV_HOME/bin:$PATH"
fi
if ! have_uv; then
    echo "bootstrap: installing uv $UV_VERSION" >&2
    if python3 -m venv "$UV_HOME" >/dev/null 2>&1 \
        && "$UV_HOME/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"; then
        export PATH="$UV_HOME/bin:$PATH"
    else
        rm -rf "$UV_HOME"
        python3 -m pip install --quiet --user --disable-pip-version-check "uv==$UV_VERSION" \
            || python3 -m pip install --quiet --user --break-system-packages --disable-pip-version-check \
                "uv==$UV_VERSION"
    fi
    hash -r
    have_uv || { echo "bootstrap: could not install uv $UV_VERSION (needs python3 with venv or pip)" >&2; exit 1; }
fi

# The interpreter itself, not a launcher such as a pyenv shim: uv checks a path request against the
# environment's interpreter and would build .venv anew at every run for a shim.
PYTHON="$("$(command -v python3.11 || command -v python3)" -c 'import sys; print(sys.executable)')"
# --compile-bytecode: the .pyc of every installed module is written now, once, so no start of the CLI, the
# tests or Airflow compiles them (a process cannot keep them where PYTHONDONTWRITEBYTECODE is set).
(cd "$ROOT" && uv sync --frozen --python "$PYTHON" --compile-bytecode --quiet)
# the project's own modules too: installed editable, uv leaves them out (only changed files are compiled again)
"$ROOT/.venv/bin/python" -m compileall -q "$ROOT/plugins" >/dev/null || true  # a syntax error: ruff names it
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$ROOT/.venv/bin:$PATH"
