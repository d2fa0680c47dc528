#!/usr/bin/env bash
# The README's main-job command: installs missing packages (Fashion-MNIST included), builds the
# `idem` command line, and runs the IT³ demo on its built-in default data (Fashion-MNIST under
# 15 corruptions). With a GPU it builds the CUDA backend and runs the full protocol; without one
# it builds the CPU-only binary (no nvcc pass, a faster build) and runs the protocol sized for a
# few minutes on 2 cores. Extra arguments go to `idem demo`, e.g.
#   tools/demo.sh --full             # the whole protocol on the CPU too (about an hour per seed on
#                                    # 2 cores; 3 seeds unless --seeds 1 is added)
#   tools/demo.sh --quick            # a smoke run: about a minute on 2 cores, build done
#   tools/demo.sh --task airfoil     # the GNN task on panel-method data
# Knobs (environment): IDEM_BUILD_DIR (default: build with a GPU, build-cpu without),
# IDEM_JOBS (parallel build jobs, default: the number of cores), IDEM_NUM_THREADS (CPU threads).
set -euo pipefail
cd "$(dirname "$0")/.."
IDEM_NEED_DATA=1 source tools/setup_deps.sh
jobs=${IDEM_JOBS:-$(nproc)}
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  build=${IDEM_BUILD_DIR:-build}
  cmake -S . -B "$build" $(idem_generator_args "$build") -DCMAKE_BUILD_TYPE=Release
else
  build=${IDEM_BUILD_DIR:-build-cpu}
  echo "idem demo: no GPU found; building the CPU-only binary in $build" >&2
  cmake -S . -B "$build" $(idem_generator_args "$build") -DCMAKE_BUILD_TYPE=Release -DIDEM_CUDA=OFF
fi
cmake --build "$build" -j "$jobs" --target idem_cli
"$build/idem" demo "$@"
