#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, loopback, real-kernel).
# Real-kernel tests need root; each skip prints its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --no-tests=error -j1 "$@"
