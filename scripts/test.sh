#!/usr/bin/env bash
# The test command: set-up, a debug build with module-boundary checks, all tests, then the HTML
# report opened in headless Chromium (scripts/browser-check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
swift build --build-tests --explicit-target-dependency-import-check error
swift test --skip-build
python3 scripts/browser-check.py
