#!/usr/bin/env bash
# Runs the CUDA tests under NVIDIA compute-sanitizer on the GPU machine (docs/reliability.md):
#   memcheck   out-of-bounds and misaligned device accesses, invalid frees — on every CUDA test
#              and every CPU-vs-CUDA parity row (hand kernels, cuBLAS, cuDNN);
#   racecheck  shared-memory data races — on the parity rows and tests of the kernels that use
#              shared memory (matmul, conv, reductions, softmax, normalization, transpose,
#              the fused MLP/distance kernels).
# Each tool runs with --error-exitcode=1; the script prints one summary line per tool and exits
# non-zero when a tool reports anything or a test fails. Full logs go under $OUT (else
# BUILD_DIR/gpu_sanitize_out).
#
# Usage:  tools/gpu_sanitize.sh [BUILD_DIR]
#   BUILD_DIR holds idem_tests built with IDEM_CUDA=ON (default /tmp/idem-build, as
#   tools/gpu_check.sh). To build one:
#     cmake -S . -B /tmp/b -DCMAKE_BUILD_TYPE=Release -DIDEM_CUDA=ON -DIDEM_BENCH=OFF
#     cmake --build /tmp/b -j16 --target idem_tests
# Environment knobs:
#   GPU_SANITIZE_BUDGET=SECONDS   wall-clock budget for all tools (default 420); memcheck gets
#                                 up to 60% of it, the others what is left, so the summary prints
#                                 (on an H100, 2026-11-27: memcheck 27 s, racecheck 69 s)
#   GPU_SANITIZE_TOOLS="memcheck racecheck"   which tools to run, in order (initcheck also known)
#   GPU_SANITIZE_MEMCHECK_FILTER  gtest filter for memcheck (default below)
#   GPU_SANITIZE_RACECHECK_FILTER gtest filter for racecheck (default: the groups below)
#
# racecheck is slow (about 10x memcheck per test), so by default it runs in groups, one
# idem_tests process each, the quick ones first: a group that runs out of time loses only its
# own result, and the summary has one line per group. (One filter for all of it took more than
# 300 s on an H100 on 2026-12-06, and a timeout then reported nothing.)
#
# Notes: API errors are not reported by the tool (--report-api-errors no) because some tests
# provoke them on purpose (out of memory, a missing device) and idem checks every CUDA call
# itself, so a real one fails its test. The caching allocator rounds blocks up to a size class,
# so memcheck sees an overrun only past the rounded size. Reads of never-written device memory
# are initcheck's job: GPU_SANITIZE_TOOLS="memcheck racecheck initcheck" adds it (same filter as
# memcheck). IDEM_POISON_ALLOC is left unset: its fills count as GPU operations and would fail
# the launch-count tests (FusedCuda.*Launch*).
set -u -o pipefail

build="${1:-/tmp/idem-build}"
out="${OUT:-$build/gpu_sanitize_out}"
budget="${GPU_SANITIZE_BUDGET:-420}"
tools="${GPU_SANITIZE_TOOLS:-memcheck racecheck}"
# Everything that launches a kernel, minus what only measures (bandwidth report), fills the
# device on purpose (out-of-memory tests: slow under the tool and not about access errors), or
# runs its check in a re-executed child process (EnvSwitchCuda.*: gtest death tests; under
# memcheck the child did not finish in 40 s on an H100, 2026-12-06, while the test takes under a
# second without the tool; what they check is how an environment switch is read).
memcheck_filter="${GPU_SANITIZE_MEMCHECK_FILTER:-*Cuda*:*Parity*:*Gpu*:*OnGpu*:-CudaReduce.BandwidthReport:CudaOom.*:EnvSwitchCuda.*}"
p='OpCases/Parity.CpuVsCuda'
# racecheck groups, NAME=FILTER, quick ones first: the kernels that keep data in shared memory.
racecheck_groups=(
  "fused_mlp=FusedAdaptCuda.*:FusedCuda.*"
  "norm=$p/batch*:$p/layer*:$p/group*:NormCuda.*"
  "reduce=$p/sum*:$p/mean*:$p/max*:$p/var*:$p/argmax*:$p/reduce*:$p/softmax*:$p/log_softmax*:CudaReduce.KernelShapesMatchCpu"
  "small=$p/transpose*:$p/linear*:$p/l1*:$p/mse*:GraphLongSegmentsCuda.*"
  "matmul=$p/matmul*"
  "conv=$p/conv*:Conv2dCuda.*"
)
if [ -n "${GPU_SANITIZE_RACECHECK_FILTER:-}" ]; then
  racecheck_groups=("custom=$GPU_SANITIZE_RACECHECK_FILTER")
fi
mkdir -p "$out"
t_start=$(date +%s)
failed=()
summaries=()

sanitizer=""
for c in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer \
  /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  if command -v "$c" >/dev/null 2>&1; then
    sanitizer=$(command -v "$c")
    break
  fi
done
if [ -z "$sanitizer" ]; then
  echo "gpu_sanitize: compute-sanitizer not found (looked on PATH and under /usr/local/cuda)" >&2
  exit 2
fi
if [ ! -x "$build/idem_tests" ]; then
  echo "gpu_sanitize: $build/idem_tests not found; build it with IDEM_CUDA=ON first (see the header)" >&2
  exit 2
fi
echo "== GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
echo "== $("$sanitizer" --version 2>/dev/null | grep -i version | head -n 1)"

# run_tool TOOL[:GROUP] FILTER LIMIT_S EXTRA_ARGS...  (the log is $out/TOOL[-GROUP].log)
run_tool() {
  local name=$1 filter=$2 limit=$3
  shift 3
  local tool=${name%%:*}
  local log="$out/${name/:/-}.log"
  local elapsed=$(($(date +%s) - t_start))
  local left=$((budget - elapsed - 5))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    summaries+=("$name: not run, the budget (${budget}s) is spent")
    failed+=("$name(no-time)")
    return
  fi
  echo "== [${elapsed}s] $name (limit ${limit}s), filter: $filter"
  timeout --kill-after=10 "$limit" \
    "$sanitizer" --tool "$tool" --error-exitcode=1 --report-api-errors no "$@" \
    "$build/idem_tests" --gtest_filter="$filter" --gtest_brief=1 >"$log" 2>&1
  local rc=$?
  local tests passed failed_tests report
  tests=$(grep -oE '^\[==========\] [0-9]+ tests? from' "$log" | tail -n 1 | grep -oE '[0-9]+' | head -n 1)
  passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
  failed_tests=$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$log" || true)
  report=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$log" | tail -n 1 | sed 's/^=* *//')
  local line="$name: ${tests:-?} tests, ${passed:-0} passed, ${failed_tests} failed; ${report:-no summary from the tool}; rc $rc"
  [ $rc -eq 124 ] && line="$line (timed out after ${limit}s)"
  if grep -q "Device not supported" "$log"; then
    line="$name: compute-sanitizer does not support this device/runtime (see $log)"
  fi
  summaries+=("$line")
  echo "   $line"
  if [ $rc -ne 0 ]; then
    failed+=("$name")
    grep -E '^========= (Invalid|Race|Error|Program hit|  (at|by) )|\[  FAILED  \]' "$log" |
      head -n 40 | sed 's/^/   | /'
  fi
}

for tool in $tools; do
  case "$tool" in
    memcheck) run_tool memcheck "$memcheck_filter" $((budget * 6 / 10)) ;;
    racecheck)
      for g in "${racecheck_groups[@]}"; do
        run_tool "racecheck:${g%%=*}" "${g#*=}" "$budget" --racecheck-report all
      done
      ;;
    initcheck) run_tool initcheck "$memcheck_filter" "$budget" ;;
    *) echo "gpu_sanitize: unknown tool '$tool'" >&2; failed+=("$tool") ;;
  esac
done

{
  echo "================ gpu_sanitize summary ($(($(date +%s) - t_start))s, build $build) ================"
  printf '%s\n' "${summaries[@]}"
  if [ ${#failed[@]} -eq 0 ]; then echo "result: OK (zero reports)"; else echo "result: FAILED: ${failed[*]}"; fi
} | tee "$out/summary.txt"
[ ${#failed[@]} -eq 0 ]
