#!/usr/bin/env bash
# The README's test command (and CI's, through .ci/run). Three stages:
#   1. release:  checks the docs' links (tools/check_doc_links.sh, a second), installs missing
#                packages, builds everything (Release, CUDA when nvcc is present) and runs the
#                whole test suite with CTest (CUDA tests skip without a GPU);
#   2. sanitize: the `sanitize` preset (ASan + UBSan, CPU only) and the CPU suite under it;
#   2b. tsan:    the `tsan` preset (ThreadSanitizer, CPU only) over the thread pool and the
#                threaded CPU kernels (idem_tsan_tests: every kernel family at 1, 2 and 5 threads);
#   3. fuzz:     the `fuzz` preset (clang + libFuzzer) and a bounded run of every fuzz target,
#                seeded from tests/fuzz/corpus/<target>/; any crash, sanitizer report, leak,
#                timeout or out-of-memory is a finding and fails the run (docs/reliability.md).
# Knobs (environment):
#   IDEM_BUILD_DIR      release build folder (default: build)
#   IDEM_SANITIZE_DIR   sanitize build folder (default: build-sanitize)
#   IDEM_TSAN_DIR       ThreadSanitizer build folder (default: build-tsan)
#   IDEM_FUZZ_DIR       fuzz build folder (default: build-fuzz)
#   IDEM_JOBS           parallel build jobs and parallel fuzz targets (default: number of cores)
#   IDEM_SKIP_SANITIZE=1  skip stages 2 and 2b (quick local runs; CI runs everything)
#   IDEM_SKIP_FUZZ=1      skip stage 3
#   IDEM_FUZZ_SECONDS   seconds per fuzz target (default: 60)
set -euo pipefail
cd "$(dirname "$0")/.."
skip_sanitize=${IDEM_SKIP_SANITIZE:-0}
skip_fuzz=${IDEM_SKIP_FUZZ:-0}
[[ $skip_fuzz == 1 ]] || export IDEM_NEED_FUZZ_DEPS=1
source tools/setup_deps.sh
build=${IDEM_BUILD_DIR:-build}
sanitize_build=${IDEM_SANITIZE_DIR:-build-sanitize}
tsan_build=${IDEM_TSAN_DIR:-build-tsan}
fuzz_build=${IDEM_FUZZ_DIR:-build-fuzz}
jobs=${IDEM_JOBS:-$(nproc)}
fuzz_seconds=${IDEM_FUZZ_SECONDS:-60}
fuzz_targets=(safetensors npy json idx table)
summary=()
passed=0
start=$SECONDS

stage() { echo; echo "==== idem test: $1 ($(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s so far)"; }

# Runs ctest on $1 with the remaining arguments, and adds its count to the summary line.
run_ctest() {
  local dir=$1 label=$2
  shift 2
  local log="$dir/ctest.log"
  local rc=0
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log" || rc=$?
  local line n
  line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1 || true)
  n=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  summary+=("$label: ${line:-no ctest summary}")
  if ((rc != 0)) || [[ -z $line ]]; then
    echo "idem test: $label failed" >&2
    exit 1
  fi
  passed=$((passed + n))
}

# ---- 1. doc links, release build and the whole suite ----------------------------------------------
stage "doc links"
tools/check_doc_links.sh || { echo "idem test: tools/check_doc_links.sh failed" >&2; exit 1; }
summary+=("doc links: no problems")
stage "release build"
cmake -S . -B "$build" $(idem_generator_args "$build") -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"
stage "release tests"
run_ctest "$build" "release ctest"

# ---- 2. ASan + UBSan ----------------------------------------------------------------------------
if [[ $skip_sanitize != 1 ]]; then
  stage "sanitize build (ASan + UBSan, CPU only)"
  cmake --preset sanitize -B "$sanitize_build" $(idem_generator_args "$sanitize_build")
  cmake --build "$sanitize_build" -j "$jobs" --target idem_tests
  stage "sanitize tests"
  # halt_on_error: the first report fails its test; UBSan prints the stack of each report.
  ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_stack_use_after_return=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    run_ctest "$sanitize_build" "sanitize ctest (ASan+UBSan)"
  stage "tsan build (ThreadSanitizer, CPU only: the thread pool and the threaded kernels)"
  cmake --preset tsan -B "$tsan_build" $(idem_generator_args "$tsan_build")
  cmake --build "$tsan_build" -j "$jobs" --target idem_tsan_tests
  stage "tsan tests"
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1} \
    run_ctest "$tsan_build" "tsan ctest (ThreadSanitizer)"
else
  summary+=("sanitize: skipped (IDEM_SKIP_SANITIZE=1)")
fi

# ---- 3. fuzzing ---------------------------------------------------------------------------------
if [[ $skip_fuzz != 1 ]]; then
  stage "fuzz build (clang, libFuzzer + ASan + UBSan)"
  cmake --preset fuzz -B "$fuzz_build" $(idem_generator_args "$fuzz_build")
  cmake --build "$fuzz_build" -j "$jobs" --target fuzz_all
  stage "fuzz runs: ${#fuzz_targets[@]} targets x ${fuzz_seconds} s, $jobs at a time"
  findings_dir="$fuzz_build/findings"
  mkdir -p "$findings_dir"
  run_target() {
    local t=$1
    # The first corpus folder is the fuzzer's own (it adds new inputs there); the seeds in the
    # source tree are only read.
    mkdir -p "$fuzz_build/corpus/$t"
    "$fuzz_build/fuzz_$t" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings_dir/$t-" \
      "$fuzz_build/corpus/$t" "tests/fuzz/corpus/$t" >"$fuzz_build/fuzz_$t.log" 2>&1
  }
  declare -A fuzz_rc=()
  pids=()
  names=()
  running=0
  for t in "${fuzz_targets[@]}"; do
    run_target "$t" &
    pids[$running]=$!
    names[$running]=$t
    running=$((running + 1))
    if ((running == jobs)); then
      for i in "${!pids[@]}"; do
        rc=0
        wait "${pids[$i]}" || rc=$?
        fuzz_rc[${names[$i]}]=$rc
      done
      pids=()
      names=()
      running=0
    fi
  done
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    fuzz_rc[${names[$i]}]=$rc
  done
  total_execs=0
  total_findings=0
  for t in "${fuzz_targets[@]}"; do
    log="$fuzz_build/fuzz_$t.log"
    execs=$(grep -E "^stat::number_of_executed_units:" "$log" | awk '{print $2}' | tail -1)
    execs=${execs:-0}
    found=$(find "$findings_dir" -name "$t-*" -type f | wc -l)
    if ((${fuzz_rc[$t]} != 0 && found == 0)); then found=1; fi
    printf 'fuzz_%-12s %10d executions in %d s, %d findings\n' "$t" "$execs" "$fuzz_seconds" "$found"
    total_execs=$((total_execs + execs))
    total_findings=$((total_findings + found))
    if ((found > 0)); then
      echo "---- fuzz_$t: finding (log: $log) ----"
      grep -E "ERROR|SUMMARY|runtime error|what\(\)|Test unit written|Base64" "$log" | head -20 || true
      echo "reproduce: $fuzz_build/fuzz_$t <file>; then add the file to tests/fuzz/corpus/$t/ as"
      echo "regress_ok_* or regress_bad_* with the fix (tests/fuzz_corpus_test.cpp replays it)"
    fi
  done
  summary+=("fuzz: ${#fuzz_targets[@]} targets, $total_execs executions, $total_findings findings")
  if ((total_findings > 0)); then
    echo "idem test: the fuzzers found $total_findings problem(s); inputs in $findings_dir" >&2
    exit 1
  fi
  passed=$((passed + ${#fuzz_targets[@]}))
else
  summary+=("fuzz: skipped (IDEM_SKIP_FUZZ=1)")
fi

echo
echo "==== idem test: summary ($(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s)"
printf '  %s\n' "${summary[@]}"
echo "idem: $passed passed, 0 failed"
