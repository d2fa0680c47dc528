#!/usr/bin/env bash
# The README's main-job command: installs missing packages (Fashion-MNIST included), builds the
# `idem` command line, and runs the IT³ demo on its built-in default data (Fashion-MNIST under
# 15 corruptions; on the GPU when there is one). Extra arguments go to `idem demo`, e.g.
#   tools/demo.sh --quick            # a subset and one epoch: minutes on a 2-core CPU
#   tools/demo.sh --task airfoil     # the GNN task on panel-method data
set -euo pipefail
cd "$(dirname "$0")/.."
IDEM_NEED_DATA=1 source tools/setup_deps.sh
build=${IDEM_BUILD_DIR:-build}
jobs=${IDEM_JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs" --target idem_cli
"$build/idem" demo "$@"
