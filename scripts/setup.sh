#!/usr/bin/env bash
# Installs kvplan's system dependencies on Debian (GLPK for the planner's ILPs).
set -euo pipefail
if ! [ -f /usr/include/glpk.h ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends libglpk-dev
fi
