#!/usr/bin/env bash
# The README's main-job command: installs missing packages, builds, and runs the main example.
# (Until the IT³ demo lands, the example fits a small MLP and prints its loss.)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_deps.sh
build=${IDEM_BUILD_DIR:-build}
jobs=${IDEM_JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs" --target fit_mlp
"$build/fit_mlp" "$@"
