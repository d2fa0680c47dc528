#!/usr/bin/env bash
# Installs the Debian packages idem needs, when run as root; otherwise names what is missing.
# Sourced by tools/demo.sh and tools/test.sh.
set -euo pipefail
IDEM_PACKAGES=(g++ cmake make ninja-build libeigen3-dev zlib1g-dev libgtest-dev libbenchmark-dev)
# The fuzz targets (tests/fuzz) need clang and its libFuzzer runtime: Debian's default-version
# pair, so the two always match (bookworm: clang-14 and libclang-rt-14-dev). tools/test.sh
# asks for them with IDEM_NEED_FUZZ_DEPS=1.
if [[ ${IDEM_NEED_FUZZ_DEPS:-0} == 1 ]]; then
  IDEM_PACKAGES+=(clang libclang-rt-dev)
fi
# The demo's default data: Fashion-MNIST as gzip IDX files in /usr/share/datasets/fashion-mnist.
if [[ ${IDEM_NEED_DATA:-0} == 1 ]]; then
  IDEM_PACKAGES+=(dataset-fashion-mnist)
fi

missing=()
for p in "${IDEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "idem: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "idem: missing Debian packages: ${missing[*]}" >&2
    echo "      install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
# nvcc in the usual place but not on PATH: let CMake find it (CUDA is optional).
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi

# The generator for a new build folder: Ninja (ninja-build above). It starts compiling a target's
# objects while the libraries it links against are still building, so both cores of a small
# machine stay busy; make waits for each library first (the Release build from scratch on the
# 2-core CI-like VM: 5 min 46 s with Ninja, 6 min 26 s with make). A folder that already has a
# CMakeCache.txt keeps the generator it was made with (CMake refuses to switch).
idem_generator_args() {
  [[ -f $1/CMakeCache.txt ]] && return 0
  command -v ninja >/dev/null && echo "-G Ninja"
  return 0
}
