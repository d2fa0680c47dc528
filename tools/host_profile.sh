#!/usr/bin/env bash
# Where the host time of an eager CUDA op goes (issue 15, item 5), as text. Usage:
#   tools/host_profile.sh IDEM_BENCH_EXE OUT_DIR
# 1. The host-time benchmarks (bench/host_overhead_bench.cpp): host_op/cuda/* (a chain of 96
#    one-element ops), host_launch/cuda/* (an empty kernel launched as an op launches it: the
#    floor) and host_alloc/cuda (the caching allocator), 5 repetitions, medians
#    -> OUT_DIR/host_bench.txt.
# 2. When Nsight Systems (nsys) is installed: the CUDA API calls of host_op/cuda/nograd with
#    their counts and mean times (cuda_api_sum), so each runtime call an op makes is visible
#    -> OUT_DIR/host_nsys_api.txt.
# 3. When perf is installed: a flat CPU profile of the same benchmark -> OUT_DIR/host_perf.txt.
# Exits non-zero only when the benchmarks fail; missing profilers are reported and skipped.
set -u -o pipefail
exe="$1" out="$2"
mkdir -p "$out"
filter='^host_(op|launch|alloc)/cuda/'
"$exe" --benchmark_filter="$filter" --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true >"$out/host_bench.txt" 2>&1 ||
  { echo "host_profile: the benchmarks failed; last lines:" >&2; tail -n 20 "$out/host_bench.txt" >&2; exit 1; }
grep -E 'median|^Run|^--' "$out/host_bench.txt"

one="--benchmark_filter=^host_op/cuda/nograd\$ --benchmark_min_time=2s"
nsys_bin="${NSYS:-$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)}"
if [ -n "$nsys_bin" ] && [ -x "$nsys_bin" ]; then
  # shellcheck disable=SC2086
  "$nsys_bin" profile --trace=cuda,osrt --sample=none --force-overwrite=true \
    -o "$out/host_nsys" "$exe" $one >"$out/host_nsys_run.log" 2>&1 &&
    "$nsys_bin" stats --report cuda_api_sum --format table "$out/host_nsys.nsys-rep" \
      >"$out/host_nsys_api.txt" 2>&1 &&
    head -n 40 "$out/host_nsys_api.txt" ||
    { echo "host_profile: nsys failed; last lines:"; tail -n 20 "$out/host_nsys_run.log"; }
else
  echo "host_profile: nsys not found (set NSYS=/path/to/nsys): no CUDA API table"
fi

if command -v perf >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  perf record -g -o "$out/host_perf.data" "$exe" $one >"$out/host_perf_run.log" 2>&1 &&
    perf report -i "$out/host_perf.data" --stdio --no-children --percent-limit 1 \
      >"$out/host_perf.txt" 2>&1 && head -n 80 "$out/host_perf.txt" ||
    echo "host_profile: perf failed (see host_perf_run.log)"
else
  echo "host_profile: perf not found: no CPU profile"
fi
exit 0
