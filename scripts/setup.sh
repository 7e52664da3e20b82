#!/usr/bin/env bash
# Installs kvplan's system dependencies on Debian: GLPK for the planner's ILPs, OpenBLAS as the
# baseline of `kvplan bench kernels` (loaded at run time; nothing links it).
set -euo pipefail
if ! [ -f /usr/include/glpk.h ] || ! ls /usr/lib/x86_64-linux-gnu/libopenblas.so.0 >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends libglpk-dev libopenblas-dev
fi
