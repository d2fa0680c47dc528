#!/usr/bin/env bash
# The GPU machine's check, in one call: configure (Release, IDEM_CUDA=ON, build folder outside
# the tree), build with -j16, run the test suite through CTest, then the kernel report and the
# benchmarks when idem_bench was built. Full logs go under $OUT (else ./gpu_check_out; past
# eight files under $OUT, all but the summary and the most-read logs are packed into
# more.tgz: GPU_CHECK_MAX_FILES); a short summary (GPU, tests passed/failed, benchmark lines)
# ends the output. Exits non-zero when any step fails. Meant to finish in under ~8 minutes on
# a 16-core H100 machine.
#
# Environment knobs:
#   GPU_CHECK_TESTS=REGEX       run only the CTest tests matching REGEX (e.g. 'Parity|Cuda')
#   GPU_CHECK_BENCH=REGEX       --benchmark_filter for idem_bench ('' = all; 'none' = skip, and
#                               idem_bench is not built)
#   GPU_CHECK_MIN_TIME=SECONDS  --benchmark_min_time (default 0.05)
#   GPU_CHECK_BUILD_DIR=DIR     build folder (default /tmp/idem-build)
#   GPU_CHECK_JOBS=N            build parallelism (default 16)
#   GPU_CHECK_BUDGET=SECONDS    wall-clock budget for all steps (default 450); a step gets at
#                               most what is left, so the summary always prints
#   GPU_CHECK_SANITIZE=1        also run the CUDA tests under compute-sanitizer
#                               (tools/gpu_sanitize.sh: memcheck, racecheck); its own
#                               GPU_SANITIZE_* knobs pass through, and GPU_CHECK_SANITIZE_ENV
#                               ("VAR=value ...") sets variables for it alone (e.g.
#                               IDEM_FUSED_KERNEL=cluster to check an opt-in kernel)
#   GPU_CHECK_COMPARE=ARGS      also run bench/compare_pytorch.py with ARGS ('default' = none):
#                               idem vs PyTorch, IT³ adaptation per batch, one table
#   GPU_CHECK_DEMO=TASKS        also run `idem demo --task T` for each comma-separated task and
#                               copy each run directory (table, plots) under $OUT/demo-T
#   GPU_CHECK_NCU=LIST          also time the kernels of one adaptation under ncu for each
#                               comma-separated MODEL:BATCH:STEPS[:PATH[:ARG]] (PATH eager by
#                               default, or fused; ARG one more idem argument, e.g.
#                               --fused-head=on; tools/ncu_adapt.sh); tables
#                               in $OUT/ncu.log
#   GPU_CHECK_STALLS=LIST       also, for each semicolon-separated MODEL:BATCH:STEPS:PATH:REGEX
#                               (PATH eager or fused, empty for fused: `idem bench it3
#                               --profiler-range` brackets those paths only),
#                               where the first launch matching REGEX (the demangled name, e.g.
#                               'conv2d_fwd_tiled_kernel<4') of one adaptation waits
#                               (tools/ncu_stalls.sh); the headline lines in $OUT/stalls.log
#   GPU_CHECK_NO_CTEST=1        skip the test suite (e.g. a benchmark-only call)
#   GPU_CHECK_KERNELS=LIST      also, for each comma-separated IDEM_FUSED_KERNEL value (e.g.
#                               "phase,cluster"), the CTest tests matching 'Fused' under it
#                               ($OUT/kernel-K-ctest.log) and `idem bench it3 --path fused` on
#                               GPU_CHECK_KERNEL_CASES (MODEL:BATCH:STEPS, comma-separated;
#                               default mlp_256 at batch 8 and 64, K 1 and 3): one table in
#                               $OUT/kernels_compare.log (the kernel that ran, µs per batch),
#                               with the CUDA-graph path's time of each case beside them
#   GPU_CHECK_SAGE_CONV=LIST    also the sage tests under IDEM_SAGE_CONV=fused ($OUT/sage_conv.log)
#                               and `idem bench it3 --model sage` under composed and fused for each
#                               comma-separated MESHES:K:PATH (PATH eager or graph): one table
#   GPU_CHECK_AB=VAR:V1,V2,...  also time `idem bench it3` under each value of the environment
#                               variable VAR (e.g. IDEM_GEMM_CLUSTER_SPLIT:on,off), two rounds in
#                               turn (V1 V2 … V1 V2 …, so drift shows), for each comma-separated
#                               MODEL:BATCH:STEPS:PATH of GPU_CHECK_AB_CASES: one table in
#                               $OUT/ab.log. VAR = IDEM_BIN times binaries instead: the value
#                               `tree` is this tree's idem, `base` the one GPU_CHECK_BASE_PATCH
#                               builds (GPU_CHECK_AB=IDEM_BIN:tree,base). VAR = IDEM_ARGS
#                               passes each value's words as more arguments to `idem bench it3`
#                               instead (GPU_CHECK_AB=IDEM_ARGS:--fused-head=off,--fused-head=on),
#                               except words NAME=value, which set that variable for the run, so
#                               one table compares settings of both kinds
#                               (...,IDEM_IT3_HEAD_STAGED=off --fused-head=on)
#   GPU_CHECK_AB_ARGS=ARGS      more arguments for every `idem bench it3` of GPU_CHECK_AB (split at
#                               spaces), e.g. "--fused-head on" while A/B-ing an environment variable
#   GPU_CHECK_BASE_PATCH=FILE   a code A/B in one call: FILE is a patch from the baseline to this
#                               tree (e.g. `git diff HEAD~1 -- cuda/ > base.patch` at the tree
#                               root, left untracked so it travels); after the build the script
#                               reverses it, builds idem as $GPU_CHECK_BASE_EXE (default
#                               /tmp/idem-base), applies it again and rebuilds idem, so every
#                               later step runs this tree's code
#   GPU_CHECK_RESULTS=ARGS      also regenerate the tables of docs/results.md: every task's demo
#                               with ARGS (e.g. "--seeds 3"), then fmnist with --recipe
#                               paper-mnist and paper-cifar (tools/results_tables.sh); run
#                               directories stay in /tmp, the tables and CSVs go under $OUT/results;
#                               GPU_CHECK_RESULTS_CONFIGS picks a subset of "default paper-mnist
#                               paper-cifar" (e.g. to split the work over two calls)
#   GPU_CHECK_PATHS=1           also time `idem adapt` on the eager and auto (fused or CUDA graph) paths
#                               beside `idem bench it3` (tools/adapt_path_timing.sh)
#   GPU_CHECK_MAX_FILES=N       at the end, when more than N files are under $OUT, keep N − 1 of
#                               summary.txt, ctest.log, ab.log, compare_pytorch.log,
#                               sanitize.log, ncu.log and stalls.log (in that order) and pack
#                               everything else into $OUT/more.tgz (default 8, what the GPU
#                               machine's tool brings back, when OUT is set; else 0; below 2 =
#                               never pack)
set -u -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/gpu_check_out}"
build="${GPU_CHECK_BUILD_DIR:-/tmp/idem-build}"
jobs="${GPU_CHECK_JOBS:-16}"
tests_re="${GPU_CHECK_TESTS:-}"
bench_re="${GPU_CHECK_BENCH:-}"
min_time="${GPU_CHECK_MIN_TIME:-0.05}"
budget="${GPU_CHECK_BUDGET:-450}"
base_exe="${GPU_CHECK_BASE_EXE:-/tmp/idem-base}"
export base_exe
mkdir -p "$out"
t_start=$(date +%s)
failed_steps=()

elapsed() { echo "$(( $(date +%s) - t_start ))s"; }

# bench_numbers JSON [FIELD...]: from `idem bench it3 --json` (its first row when a list), the
# named fields ("-" where missing), then the median, p10 and p90 µs per batch, one line. The
# timing steps below run in `bash -c`, hence the export.
bench_numbers() {
  python3 - "$@" <<'PY'
import json, sys
v = json.loads(sys.argv[1])
v = v[0] if isinstance(v, list) else v
times = ["%.1f" % v[k] for k in ("us_per_batch_median", "us_per_batch_p10", "us_per_batch_p90")]
print(" ".join([str(v.get(f, "-")) for f in sys.argv[2:]] + times))
PY
}
export -f bench_numbers

# env_ab BUILD VAR VALUES ROUNDS CASES: `idem bench it3` for each comma-separated
# MODEL:BATCH:STEPS:PATH of CASES under each comma-separated value of the environment variable
# VAR, the values in turn, ROUNDS times (so drift shows): one table, median / p10 / p90 µs.
# VAR = IDEM_BIN picks the binary instead (tree: BUILD's idem, base: $base_exe) and sets nothing;
# VAR = IDEM_ARGS appends the value's words to the command line instead (e.g. --x=y), except
# words NAME=value, which set that variable for the run (so one table can mix both).
# Returns non-zero when a run failed (its row is left out).
env_ab() {
  local build=$1 var=$2 vals=$3 rounds=$4 cases=$5 rc=0 c m b k r round v w j n med p10 p90 exe
  local -a vs cs set_env extra fixed words
  read -r -a fixed <<<"${GPU_CHECK_AB_ARGS:-}"
  IFS="," read -r -a vs <<<"$vals"
  IFS="," read -r -a cs <<<"$cases"
  local width=24
  for v in "${vs[@]}"; do [ ${#v} -gt $width ] && width=${#v}; done
  printf "%-${width}s %-8s %5s %2s %-6s %5s %10s %10s %10s\n" "$var" model batch K path round us_median us_p10 us_p90
  for c in "${cs[@]}"; do
    IFS=":" read -r m b k r <<<"$c"
    for ((round = 1; round <= rounds; ++round)); do
      for v in "${vs[@]}"; do
        exe=$build/idem set_env=("$var=$v") extra=()
        if [ "$var" = IDEM_ARGS ]; then
          # Words of the value: NAME=value sets a variable, anything else is an argument.
          set_env=() extra=()
          read -r -a words <<<"$v"
          for w in "${words[@]}"; do
            if [[ "$w" =~ ^[A-Z_][A-Z0-9_]*= ]]; then set_env+=("$w"); else extra+=("$w"); fi
          done
        elif [ "$var" = IDEM_BIN ]; then
          set_env=()
          case "$v" in
            tree) ;;
            base)
              exe=$base_exe
              [ -x "$exe" ] || { echo "env_ab: no baseline binary $exe (GPU_CHECK_BASE_PATCH unset, or its step failed)" >&2; rc=1; continue; } ;;
            *) echo "env_ab: IDEM_BIN takes tree or base, got $v" >&2; rc=1; continue ;;
          esac
        fi
        j=$(env ${set_env[@]+"${set_env[@]}"} "$exe" bench it3 --model "$m" --path "$r" --batch "$b" --steps "$k" ${fixed[@]+"${fixed[@]}"} ${extra[@]+"${extra[@]}"} --json) || { rc=1; continue; }
        n=$(bench_numbers "$j") || { rc=1; continue; }
        read -r med p10 p90 <<<"$n"
        printf "%-${width}s %-8s %5s %2s %-6s %5s %10s %10s %10s\n" "$v" "$m" "$b" "$k" "$r" "$round" "$med" "$p10" "$p90"
      done
    done
  done
  return $rc
}
export -f env_ab

# step NAME TIMEOUT_S CMD...: runs CMD with its output in $out/NAME.log; reports and records
# a failure (with the log's tail) without stopping the script.
step() {
  local name="$1" limit="$2"
  shift 2
  local left=$(( budget - ($(date +%s) - t_start) - 10 ))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    echo "== $name: skipped, the time budget (${budget}s) is spent" | tee "$out/$name.log"
    failed_steps+=("$name(no-time)")
    return 124
  fi
  echo "== [$(elapsed)] $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    [ $rc -eq 124 ] && echo "   TIMED OUT after ${limit}s" >>"$out/$name.log"
    echo "   FAILED (rc $rc); last lines of $name.log:"
    tail -n 40 "$out/$name.log" | sed 's/^/   | /'
    failed_steps+=("$name")
  else
    echo "   ok"
  fi
  return $rc
}

summary() {
  local s="$out/summary.txt"
  {
    echo "================ gpu_check summary ($(elapsed)) ================"
    echo "GPU:      $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 4 | tr '\n' ';' || echo unknown)"
    if [ -f "$out/ctest.log" ]; then
      echo "tests:    $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -n 1)"
      local skipped
      skipped=$(grep -c '\*\*\*Skipped' "$out/ctest.log" || true)
      echo "skipped:  $skipped"
      grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception|Not Run)\)' \
        "$out/ctest.log" | head -n 40 | sed 's/^/  failed: /'
    else
      echo "tests:    not run"
    fi
    if [ -f "$out/kernels.log" ]; then
      grep -E '^\[(device|bench|philox)\]' "$out/kernels.log" | head -n 30
    fi
    if [ -f "$out/bench.log" ]; then
      echo "benchmarks (idem_bench, medians):"
      grep -E '_median|summary|hand|cublas|GB/s|TFLOP' "$out/bench.log" | grep -v -E '_mean|_stddev|_cv' |
        head -n 60 | sed 's/^/  /'
    fi
    for f in "$out"/demo-*.log; do
      [ -f "$f" ] && echo "$(basename "$f" .log): $(grep -E 'wall seconds' "$f" | tail -n 1)"
    done
    [ -f "$out/adapt_paths.log" ] && grep -E '^\||path (eager|graph|fused)' "$out/adapt_paths.log" | sed 's/^/  /'
    [ -f "$out/ncu.log" ] && grep -E '^ncu.*one eager adaptation' "$out/ncu.log" | sed 's/^/  /'
    [ -f "$out/compare_pytorch.log" ] && tail -n 40 "$out/compare_pytorch.log" | sed 's/^/  /'
    [ -f "$out/kernels_compare.log" ] && sed 's/^/  /' "$out/kernels_compare.log"
    [ -f "$out/sage_conv.log" ] && grep -E 'tests passed|tests failed|^(IDEM_SAGE_CONV|composed|fused) ' "$out/sage_conv.log" | sed 's/^/  /'
    [ -f "$out/ab.log" ] && grep -v -E '^(==|\+|real|user|sys)' "$out/ab.log" | sed 's/^/  /'
    [ -f "$out/sanitize.log" ] && grep -E 'ERROR SUMMARY|summary|memcheck|racecheck' "$out/sanitize.log" | tail -n 10 | sed 's/^/  /'
    if [ ${#failed_steps[@]} -eq 0 ]; then
      echo "result:   OK"
    else
      echo "result:   FAILED steps: ${failed_steps[*]}"
    fi
  } | tee "$s"
}

# ---- environment ----
{
  nvidia-smi || true
  echo; nvcc --version || true
  echo; cmake --version || true
  echo; nproc; free -g || true
} >"$out/env.log" 2>&1
echo "== GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"

# ---- configure (benchmarks on when Google Benchmark is found and GPU_CHECK_BENCH is not
# "none": then idem_bench is not built at all, a shorter build) ----
cfg=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DIDEM_CUDA=ON -DIDEM_TESTS=ON)
command -v ninja >/dev/null 2>&1 && [ ! -f "$build/CMakeCache.txt" ] && cfg+=(-G Ninja)
want_bench=ON
[ "$bench_re" = "none" ] && want_bench=OFF
if ! step configure 120 cmake "${cfg[@]}" -DIDEM_BENCH=$want_bench; then
  echo "   retrying without benchmarks"
  failed_steps=()
  rm -rf "$build"
  step configure 120 cmake "${cfg[@]}" -DIDEM_BENCH=OFF || { summary; exit 1; }
fi

# ---- build ----
step build 330 cmake --build "$build" -j "$jobs" || { summary; exit 1; }

# ---- the baseline of a code A/B (GPU_CHECK_BASE_PATCH): the tree with the patch reversed,
# built as its own idem (target idem_cli: `idem` is the library's target); then the patch is
# applied again and idem rebuilt, also when the baseline's build fails (the EXIT trap). An old
# baseline binary is removed first, so a failed step cannot leave one to be timed ----
if [ -n "${GPU_CHECK_BASE_PATCH:-}" ]; then
  step base 300 bash -c 'set -eu; root=$1 patchf=$2 build=$3 jobs=$4 exe=$5
      rm -f "$exe"
      cd "$root"
      patch -R -p1 -s --dry-run <"$patchf"
      patch -R -p1 -s <"$patchf"
      trap "patch -p1 -s <\"$patchf\"; cmake --build \"$build\" --target idem_cli -j $jobs >/dev/null" EXIT
      cmake --build "$build" --target idem_cli -j "$jobs"
      cp "$build/idem" "$exe"
      echo "baseline: $exe"' base "$root" "$(cd "$root" && realpath "$GPU_CHECK_BASE_PATCH")" "$build" "$jobs" "$base_exe"
fi

# ---- tests ----
ctest_args=(--output-on-failure -j 8 --timeout 240)
[ -n "$tests_re" ] && ctest_args+=(-R "$tests_re")
[ -z "${GPU_CHECK_NO_CTEST:-}" ] &&
  step ctest 270 bash -c 'cd "$1" && shift && exec ctest "$@"' ctest "$build" "${ctest_args[@]}"

# ---- the fused kernels side by side (issue 15): tests and timings under each IDEM_FUSED_KERNEL ----
if [ -n "${GPU_CHECK_KERNELS:-}" ]; then
  step kernels_compare 240 bash -c 'set -u; build=$1 list=$2 cases=$3 out=$4 rc=0
      IFS="," read -r -a ks <<<"$list"; IFS="," read -r -a cs <<<"$cases"
      for k in "${ks[@]}"; do
        (cd "$build" && IDEM_FUSED_KERNEL=$k ctest -R Fused --output-on-failure -j 8 --timeout 120) \
          >"$out/kernel-$k-ctest.log" 2>&1 || rc=1
        echo "IDEM_FUSED_KERNEL=$k: $(grep -E "tests passed|tests failed" "$out/kernel-$k-ctest.log" | tail -n 1)"
      done
      printf "%-8s %-8s %5s %2s  %-12s %10s %10s %10s\n" setting model batch K kernel "us_median" "us_p10" "us_p90"
      for c in "${cs[@]}"; do IFS=":" read -r m b s <<<"$c"
        for k in "${ks[@]}" graph; do
          if [ "$k" = graph ]; then path=graph; else path=fused; fi
          j=$(IDEM_FUSED_KERNEL=${k/graph/auto} "$build/idem" bench it3 --model "$m" --path "$path" --batch "$b" --steps "$s" --json) || { rc=1; continue; }
          n=$(bench_numbers "$j" fused_kernel) || { rc=1; continue; }
          read -r kern med p10 p90 <<<"$n"
          printf "%-8s %-8s %5s %2s  %-12s %10s %10s %10s\n" "$k" "$m" "$b" "$s" "$kern" "$med" "$p10" "$p90"
        done
      done; exit $rc' kernels "$build" "$GPU_CHECK_KERNELS" "${GPU_CHECK_KERNEL_CASES:-mlp_256:8:1,mlp_256:8:3,mlp_256:64:1,mlp_256:64:3}" "$out"
fi

# ---- SAGEConv's fused forward against the composed ops ----
if [ -n "${GPU_CHECK_SAGE_CONV:-}" ]; then
  step sage_conv 180 bash -c 'set -u; build=$1 cases=$2 rc=0
      (cd "$build" && IDEM_SAGE_CONV=fused ctest -R "Sage|sage|Gnn|Graph" --output-on-failure -j 8 --timeout 120) || rc=1
      env_ab "$build" IDEM_SAGE_CONV composed,fused 1 "sage:${cases//,/,sage:}" || rc=1
      exit $rc' sage_conv "$build" "$GPU_CHECK_SAGE_CONV"
fi

if [ -n "${GPU_CHECK_AB:-}" ]; then
  step ab 240 bash -c 'env_ab "$1" "${2%%:*}" "${2#*:}" 2 "$3"' ab "$build" "$GPU_CHECK_AB" \
    "${GPU_CHECK_AB_CASES:?GPU_CHECK_AB needs GPU_CHECK_AB_CASES}"
fi

# ---- GPU memory checking ----
if [ -n "${GPU_CHECK_SANITIZE:-}" ]; then
  # shellcheck disable=SC2086  # GPU_CHECK_SANITIZE_ENV is a list of VAR=value words
  step sanitize "${GPU_SANITIZE_BUDGET:-300}" env ${GPU_CHECK_SANITIZE_ENV:-} bash "$root/tools/gpu_sanitize.sh" "$build"
fi

# ---- idem vs PyTorch, side by side (issue 7) ----
if [ -n "${GPU_CHECK_COMPARE:-}" ]; then
  compare_args=()
  [ "$GPU_CHECK_COMPARE" != "default" ] && read -r -a compare_args <<<"$GPU_CHECK_COMPARE"
  step compare_pytorch 420 python3 "$root/bench/compare_pytorch.py" --idem "$build/idem" \
    --out "$out/compare_pytorch" "${compare_args[@]}"
fi

# ---- kernel durations of one adaptation under ncu (issue 7) ----
if [ -n "${GPU_CHECK_NCU:-}" ]; then
  step ncu 240 bash -c 'set -e; IFS="," read -r -a cfgs <<<"$3"; for c in "${cfgs[@]}"; do
      IFS=":" read -r m b k pth ex <<<"$c"; bash "$1/tools/ncu_adapt.sh" "$2/idem" "$m" "$b" "$k" "$4" "${pth:-eager}" "${ex:-}"; echo; done' \
    ncu "$root" "$build" "$GPU_CHECK_NCU" "$out/ncu"
fi

# ---- where one kernel of an adaptation waits, under ncu ----
if [ -n "${GPU_CHECK_STALLS:-}" ]; then
  step stalls 240 bash -c 'set -e; IFS=";" read -r -a cfgs <<<"$3"; for c in "${cfgs[@]}"; do
      IFS=":" read -r m b k pth re <<<"$c"; echo "=== $c"
      NCU_NAME_BASE=demangled bash "$1/tools/ncu_stalls.sh" "$2/idem" "$m" "$b" "$k" "$4" \
        "${pth:-fused}" "${re:-fused_mlp_adapt_kernel}"; echo; done' \
    stalls "$root" "$build" "$GPU_CHECK_STALLS" "$out/stalls"
fi

# Fashion-MNIST comes from Debian's dataset-fashion-mnist; a machine without the package can
# get a copy carried in .data/fashion-mnist (an ignored folder). "" = the demo's own default.
fmnist_data=""
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -d "$root/.data/fashion-mnist" ]; then
  fmnist_data="$root/.data/fashion-mnist"
fi

# ---- the demos (issue 6): the full IT³ experiment of each task ----
if [ -n "${GPU_CHECK_DEMO:-}" ]; then
  demo_data=()
  [ -n "$fmnist_data" ] && demo_data=(--data "$fmnist_data")
  IFS=',' read -r -a demo_tasks <<<"$GPU_CHECK_DEMO"
  for t in "${demo_tasks[@]}"; do
    args=(demo --task "$t" --out "$out/demo-$t" --quiet)
    [ "$t" = fmnist ] && args+=("${demo_data[@]}")
    step "demo-$t" 300 bash -c 'start=$(date +%s); "$@"; rc=$?; echo "wall seconds: $(( $(date +%s) - start ))"; exit $rc' \
      demo "$build/idem" "${args[@]}"
  done
fi

# ---- the command line's execution paths (issue 15): eager vs auto, beside the bench ----
if [ -n "${GPU_CHECK_PATHS:-}" ]; then
  step adapt_paths 240 bash "$root/tools/adapt_path_timing.sh" "$build/idem" "$out/adapt_paths" "$fmnist_data"
fi

# ---- docs/results.md's tables (issue 16): several seeds, every task, the authors' recipes ----
if [ -n "${GPU_CHECK_RESULTS:-}" ]; then
  step results 540 bash -c 'set -u; root=$1 idem=$2 out=$3 fm=$4; shift 4; rc=0; tmp=/tmp/idem-results
      for cfg in ${GPU_CHECK_RESULTS_CONFIGS:-default paper-mnist paper-cifar}; do
        extra=(); tasks="fmnist tabular airfoil"
        [ "$cfg" != default ] && extra=(--recipe "$cfg") && tasks=fmnist
        FMNIST_DATA=$fm TASKS=$tasks bash "$root/tools/results_tables.sh" "$idem" "$tmp/$cfg" "$@" "${extra[@]}" || rc=1
        mkdir -p "$out/results/$cfg"; cp "$tmp/$cfg/tables.md" "$out/results/$cfg/" 2>/dev/null
        for t in $tasks; do cp "$tmp/$cfg/$t/results.csv" "$out/results/$cfg/$t-results.csv" 2>/dev/null
          cp "$tmp/$cfg/$t/config.json" "$out/results/$cfg/$t-config.json" 2>/dev/null; done
      done; exit $rc' results "$root" "$build/idem" "$out" "$fmnist_data" $GPU_CHECK_RESULTS
fi

# ---- kernel report: device line, Philox agreement, reduction bandwidth ----
if [ -x "$build/idem_tests" ]; then
  step kernels 60 "$build/idem_tests" \
    --gtest_filter='CudaRuntime.DeviceQuery:CudaRuntime.PhiloxCpuEqualsGpu:CudaReduce.BandwidthReport'
fi

# ---- benchmarks ----
if [ -x "$build/idem_bench" ] && [ "$bench_re" != "none" ]; then
  bench_args=(--benchmark_min_time="$min_time")
  [ -n "$bench_re" ] && bench_args+=(--benchmark_filter="$bench_re")
  # The benchmarks get whatever is left of the budget (step() caps the limit).
  step bench "$budget" "$build/idem_bench" "${bench_args[@]}"
fi

# The GPU machine's tool brings back at most 8 files from $OUT (16 MiB each) and drops the rest
# (a call with the sanitizers, ncu and a comparison writes more): past GPU_CHECK_MAX_FILES,
# keep the files read most often and pack the others, subfolders included, into more.tgz; ncu
# report files are left out of it when it would pass 15 MiB. Names are passed NUL-separated.
pack_out() {
  local max f tmp
  local -a keep=() skip=()
  if [ -n "${GPU_CHECK_MAX_FILES:-}" ]; then max=$GPU_CHECK_MAX_FILES
  elif [ -n "${OUT:-}" ]; then max=8  # the GPU machine's limit
  else max=0; fi                     # a local ./gpu_check_out: never pack
  [[ "$max" =~ ^[0-9]+$ ]] || { echo "pack_out: GPU_CHECK_MAX_FILES is '$max'; expected a whole number" >&2; return 1; }
  [ "$max" -ge 2 ] || return 0
  [ "$(find "$out" -type f | wc -l)" -gt "$max" ] || return 0
  for f in summary.txt ctest.log ab.log compare_pytorch.log sanitize.log ncu.log stalls.log; do
    [ -f "$out/$f" ] && [ ${#keep[@]} -lt $((max - 1)) ] && keep+=("$f") skip+=(! -path "./$f")
  done
  tmp=$(mktemp -d /tmp/gpu_check_pack.XXXX) || return 1
  for f in '' '*.ncu-rep'; do  # the second pass, only when the first is too large, drops ncu reports
    (cd "$out" && find . -type f "${skip[@]}" ${f:+! -name "$f"} -print0 >"$tmp/list" &&
      tar czf "$tmp/more.tgz" --null --no-unquote -T "$tmp/list") || { rm -rf "$tmp"; return 1; }
    [ "$(stat -c %s "$tmp/more.tgz")" -gt $((15 * 1024 * 1024)) ] || break
    [ -n "$f" ] || echo "pack_out: over 15 MiB with the ncu reports; packing without them (they stay behind)"
  done
  (cd "$out" && xargs -0 rm -f <"$tmp/list")
  mv "$tmp/more.tgz" "$out/more.tgz"
  find "$out" -mindepth 1 -type d -empty -delete
  echo "packed $(tr -cd '\0' <"$tmp/list" | wc -c) more files into $out/more.tgz (kept: ${keep[*]})" |
    tee -a "$out/summary.txt"
  rm -rf "$tmp"
}

summary
pack_out
[ ${#failed_steps[@]} -eq 0 ]
