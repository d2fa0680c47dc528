#!/usr/bin/env bash
# The README's test command: installs missing packages, builds everything (Release, CUDA when
# nvcc is present) and runs the whole test suite with CTest. CUDA tests skip without a GPU.
#   IDEM_BUILD_DIR  build folder (default: build)
#   IDEM_JOBS       parallel build jobs (default: number of cores)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_deps.sh
build=${IDEM_BUILD_DIR:-build}
jobs=${IDEM_JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
