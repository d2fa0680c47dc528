#!/usr/bin/env bash
# Where ONE kernel of an IT³ adaptation waits: Nsight Compute's warp-state and per-instruction
# (SASS) stall samples, printed as text, since a report file alone needs ncu to read it. Usage:
#   tools/ncu_stalls.sh IDEM_EXE MODEL BATCH STEPS OUT_DIR [PATH [KERNEL_REGEX]]
# PATH is idem bench's --path (fused by default); KERNEL_REGEX picks the kernel to profile
# (default: the fused MLP adaptation kernel). Writes under OUT_DIR:
#   stalls-*.details.txt  every section of the details page (warp state statistics: the stall
#                         reasons in cycles per issued instruction, occupancy, launch shape);
#   stalls-*.source.csv   the source page: one row per SASS instruction with its samples;
#   stalls-*.top.txt      the 40 instructions with the most samples, with their stall columns.
# The library is built with -lineinfo (CMakeLists.txt), so the report can map SASS to CUDA
# lines. Clocks and caches as in tools/ncu_adapt.sh (no flush, no lock: the kernel's data
# stays in L2 as in a run).
# KERNEL_REGEX matches ncu's --kernel-name-base, `function` by default (the name without its
# template arguments); NCU_NAME_BASE=demangled matches the whole demangled name instead, so one
# instantiation can be picked (e.g. 'conv2d_fwd_tiled_kernel<4'). The first matching launch of
# the adaptation is profiled. Also writes stalls-*.summary.txt: the details page's headline lines
# (duration, launch shape, occupancy, issue rate, the stall reasons), and prints it last. The
# file names carry the kernel regex (non-alphanumerics as _), so runs for two kernels of one
# adaptation keep their own reports.
set -eu -o pipefail
exe="$1" model="$2" batch="$3" steps="$4" out="$5" path="${6:-fused}"
kernel="${7:-fused_mlp_adapt_kernel}"
ncu_bin="${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}"
[ -x "$ncu_bin" ] || { echo "ncu_stalls: ncu not found (set NCU=/path/to/ncu)" >&2; exit 2; }
mkdir -p "$out"
tag="stalls-$model-b$batch-k$steps-$path-$(printf '%s' "$kernel" | tr -c 'A-Za-z0-9_' '_')"
rep="$out/$tag"
"$ncu_bin" --profile-from-start off --cache-control none --clock-control none \
  --kernel-name-base "${NCU_NAME_BASE:-function}" --kernel-name "regex:$kernel" --launch-count 1 \
  --warp-sampling-interval 0 \
  --section WarpStateStats --section SourceCounters --section LaunchStats --section Occupancy \
  --section SpeedOfLight --section SchedulerStats --import-source yes -f -o "$rep" \
  "$exe" bench it3 --model "$model" --batch "$batch" --steps "$steps" --device cuda \
  --reps 1 --warmup 3 --profiler-range --path "$path" >"$rep.run.log" 2>&1 ||
  { echo "ncu_stalls: ncu failed; last lines:" >&2; tail -n 20 "$rep.run.log" >&2; exit 1; }
"$ncu_bin" -i "$rep.ncu-rep" --page details --print-details all >"$rep.details.txt"
grep -E "^  [a-zA-Z_].*\(|Duration|Registers Per Thread|Block Size|Grid Size|Waves Per SM|Achieved Occupancy|Issued Ipc|Warp Cycles Per|No Eligible|Stall|Memory Throughput|Compute \(SM\)|L1/TEX Hit|L2 Hit|Dynamic Shared" \
  "$rep.details.txt" >"$rep.summary.txt" || true
"$ncu_bin" -i "$rep.ncu-rep" --page source --print-source sass --csv >"$rep.source.csv" 2>&1 ||
  "$ncu_bin" -i "$rep.ncu-rep" --page source --csv >"$rep.source.csv" 2>&1 || true
python3 - "$rep.source.csv" >"$rep.top.txt" <<'PY' || true
import csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
head = next((i for i, r in enumerate(rows) if any("Sampl" in c for c in r)), None)
if head is None:
    sys.exit("no sample column in the source page; see the .source.csv")
cols = rows[head]
samp = next(i for i, c in enumerate(cols) if "Sampl" in c)
def num(s):
    try: return float(s.replace(",", ""))
    except ValueError: return 0.0
body = [r for r in rows[head + 1:] if len(r) == len(cols)]
total = sum(num(r[samp]) for r in body) or 1.0
print(f"{len(body)} instructions, {total:.0f} samples ({cols[samp]})")
stall_cols = [i for i, c in enumerate(cols) if "stall" in c.lower() or "Stall" in c]
for r in sorted(body, key=lambda r: -num(r[samp]))[:40]:
    stalls = ", ".join(f"{cols[i]}={r[i]}" for i in stall_cols if num(r[i]) > 0)
    print(f"{100 * num(r[samp]) / total:5.1f} %  {' | '.join(r[:3])}  [{stalls}]")
PY
echo "ncu_stalls: $model b$batch K$steps ($path) $kernel: $rep.{details.txt,source.csv,top.txt,summary.txt}"
cat "$rep.summary.txt"
