#!/usr/bin/env bash
# Sweeps IT³ adaptation knobs on a trained run and prints one line per configuration: the mean
# metric over the shifts for it3 (and none, for reference). Used to answer "which settings make
# adaptation help on this task" (docs/results.md). A run trained with several seeds (idem train
# or idem demo --seeds N) gives mean ± 95 % CI over them in every line.
#   tools/it3_sweep.sh IDEM RUN_DIR OUT_DIR [SHIFTS]
set -u -o pipefail
idem=$1 run=$2 out=$3 shifts=${4:-demo}
mkdir -p "$out"
mean_row() { grep -E '^\| \*mean over all shifts\*' "$1/results.md" | head -n 1; }
"$idem" adapt --run "$run" --method none,bn --shift "$shifts" --quiet --out "$out/base" >/dev/null &&
  echo "baseline (none | bn): $(mean_row "$out/base")"
for method in it3 it3-online; do
  for lr in 1e-4 3e-4 1e-3 3e-3; do
    for steps in 1 3; do
      for bn in running batch; do
        d="$out/$method-lr$lr-k$steps-$bn"
        if "$idem" adapt --run "$run" --method "$method" --shift "$shifts" --adapt-lr "$lr" --steps "$steps" \
             --bn-mode "$bn" --quiet --out "$d" >"$d.log" 2>&1; then
          echo "$method lr $lr K $steps bn $bn: $(mean_row "$d")"
        else
          echo "$method lr $lr K $steps bn $bn: FAILED ($(tail -n 1 "$d.log"))"
        fi
      done
    done
  done
done
