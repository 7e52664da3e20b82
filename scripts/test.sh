#!/usr/bin/env bash
# The test command: set-up, a debug build with module-boundary checks, all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests --explicit-target-dependency-import-check error
swift test --skip-build
