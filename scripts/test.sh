#!/usr/bin/env bash
# The whole test suite, as CI runs it: install from the lock file, lint, type-check, then pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh

# Headless Chromium, its driver and a CJK font for the UI test (Debian packages; root on CI machines).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
    echo "== installing chromium, chromium-driver, fonts-wqy-microhei" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium chromium-driver fonts-wqy-microhei >/dev/null
fi

source scripts/services.sh

echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
echo "== pytest" && pytest -q -p no:cacheprovider "$@"
