#!/usr/bin/env bash
# Kernel durations of ONE IT³ adaptation under Nsight Compute, as a markdown table per
# kernel (launches, µs each, µs total, share). Usage:
#   tools/ncu_adapt.sh IDEM_EXE MODEL BATCH STEPS [OUT_DIR [PATH [EXTRA]]]
# PATH is idem bench's --path, eager (default) or fused: the fused path's one kernel then shows
# its device time, which set beside `idem bench it3`'s wall time per adaptation splits the
# time into kernel and host (launch, synchronization) parts.
# `idem bench it3 --profiler-range --reps 1` brackets exactly one adaptation with
# cudaProfilerStart/Stop, and ncu runs with --profile-from-start off, so setup, inference and
# warm-up kernels are not counted. ncu serializes kernels, so the sum is kernel time without
# launch gaps, not the wall time of a replay. By default ncu neither flushes the caches nor
# locks the clocks here (--cache-control none --clock-control none): an adaptation's weights and
# activations stay in the 50 MB L2 between kernels, and with flushing every tiny kernel would
# pay DRAM latency it never pays in a replay. NCU_COLD=1 restores ncu's flushed, locked defaults.
set -eu -o pipefail
exe="$1" model="$2" batch="$3" steps="$4" out="${5:-.}" path="${6:-eager}"
# EXTRA: one more argument for idem bench it3 (e.g. --fused-head=on), named in the files and title.
extra="${7:-}"
extra_args=()
tag=""
if [ -n "$extra" ]; then extra_args=("$extra"); tag="-$(printf '%s' "$extra" | tr -c 'A-Za-z0-9' '_')"; fi
ncu_bin="${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}"
[ -x "$ncu_bin" ] || { echo "ncu_adapt: ncu not found (set NCU=/path/to/ncu)" >&2; exit 2; }
mkdir -p "$out"
csv="$out/ncu-$model-b$batch-k$steps-$path$tag.csv"
mode=(--cache-control none --clock-control none)
[ -n "${NCU_COLD:-}" ] && mode=()
err="$out/ncu-$model-b$batch-k$steps-$path$tag.err"
if ! "$ncu_bin" --profile-from-start off "${mode[@]}" --metrics gpu__time_duration.sum --csv \
  "$exe" bench it3 --model "$model" --batch "$batch" --steps "$steps" --device cuda \
  --reps 1 --warmup 3 --profiler-range --path "$path" ${extra_args[@]+"${extra_args[@]}"} >"$csv.raw" 2>"$err"; then
  echo "ncu_adapt: ncu failed for $model batch $batch K $steps ($path); last lines of $err:" >&2
  tail -n 20 "$err" >&2
  exit 1
fi
# ncu prints the program's own output before the CSV: keep the lines from the CSV header on.
sed -n '/^"ID"/,$p' "$csv.raw" >"$csv"
rm -f "$csv.raw"
python3 - "$csv" "$model" "$batch" "$steps" "$path${extra:+ $extra}" <<'PY'
import csv, os, re, sys
from collections import OrderedDict
path, model, batch, steps, adapt_path = sys.argv[1:6]
rows = OrderedDict()
total = 0.0
n = 0
with open(path) as f:
    for r in csv.DictReader(f):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = r.get("Metric Unit", "ns")
        v = float(r["Metric Value"].replace(",", ""))
        scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3,
                 "s": 1e6, "second": 1e6}
        if unit not in scale:
            sys.exit(f"ncu_adapt: unknown time unit {unit!r} in {path}")
        us = v * scale[unit]
        # ncu abbreviates the anonymous namespace as "unnamed>::" (sometimes "<unnamed>::").
        name = re.sub(r"<?unnamed>::|\(anonymous namespace\)::", "", r["Kernel Name"])
        name = name.replace("void ", "")
        name = re.sub(r"\(.*$", "", name).replace("idem::cuda::", "")
        c = rows.setdefault(name, [0, 0.0])
        c[0] += 1
        c[1] += us
        total += us
        n += 1
cold = " (caches flushed, clocks locked)" if os.environ.get("NCU_COLD") else ""
print(f"ncu{cold}, one {adapt_path} adaptation: model {model}, batch {batch}, K = {steps}: {n} kernels, {total:.1f} µs")
print()
print("| kernel | launches | µs each | µs total | share |")
print("|---|---:|---:|---:|---:|")
for name, (cnt, us) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
    print(f"| `{name}` | {cnt} | {us / cnt:.1f} | {us:.1f} | {100 * us / total:.0f} % |")
PY
