#!/usr/bin/env bash
# Builds everything into build/ (binaries in build/bin/). Extra args go to cmake configure,
# e.g. scripts/build.sh -DTAPIO_SANITIZE=ON. BUILD_DIR overrides the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
