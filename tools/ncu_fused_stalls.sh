#!/usr/bin/env bash
# Where the fused IT³ kernel's time goes: one launch of it (`idem bench it3 --path fused`) under
# Nsight Compute with the stall-reason metrics (average warps stalled per issue, by reason),
# occupancy, instruction and scheduler statistics and the source counters (PC sampling; build
# with -lineinfo to map them to source lines). Writes OUT/ncu-fused-MODEL-bB-kK.{txt,ncu-rep}
# and, where this ncu can print it, OUT/…-source.csv (per source line).
#   tools/ncu_fused_stalls.sh IDEM MODEL BATCH STEPS OUT
set -u -o pipefail
exe=${1:?usage: ncu_fused_stalls.sh IDEM MODEL BATCH STEPS OUT} model=$2 batch=$3 steps=$4 out=$5
ncu_bin="${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}"
mkdir -p "$out"
base="$out/ncu-fused-$model-b$batch-k$steps"
"$ncu_bin" --kernel-name regex:fused_mlp --launch-skip 5 --launch-count 1 \
  --cache-control none --clock-control none \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section LaunchStats \
  --section Occupancy --section InstructionStats --section SourceCounters \
  --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,sm__cycles_elapsed.max,gpu__time_duration.sum' \
  --import-source yes --export "$base" --force-overwrite \
  "$exe" bench it3 --model "$model" --batch "$batch" --steps "$steps" --path fused --device cuda \
  --reps 10 --warmup 0 >"$base.txt" 2>&1
rc=$?
# The stall reasons, largest first (the metric names say the reason).
grep -E "stalled_.*_per_issue_active|inst_executed.sum|cycles_elapsed.max|gpu__time_duration" "$base.txt" |
  awk '{print $NF, $0}' | sort -gr | cut -d' ' -f2- | head -n 30
"$ncu_bin" --import "$base.ncu-rep" --page source --csv --print-source cuda >"$base-source.csv" 2>/dev/null ||
  rm -f "$base-source.csv"
exit $rc
