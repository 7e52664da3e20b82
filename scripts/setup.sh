#!/usr/bin/env bash
# Installs kvplan's system dependencies on Debian: GLPK for the planner's ILPs, OpenBLAS as the
# baseline of `kvplan bench kernels` (loaded at run time; nothing links it). With --browser also
# Chromium, which the tests use to open `kvplan inspect --html` reports headless
# (scripts/browser-check.py).
set -euo pipefail
packages=()
[ -f /usr/include/glpk.h ] || packages+=(libglpk-dev)
ls /usr/lib/x86_64-linux-gnu/libopenblas.so.0 >/dev/null 2>&1 || packages+=(libopenblas-dev)
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then packages+=(chromium); fi
if [ ${#packages[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${packages[@]}"
fi
