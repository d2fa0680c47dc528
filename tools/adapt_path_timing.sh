#!/usr/bin/env bash
# What `idem adapt` reports per test batch on each execution path (eager, auto = the one-call
# fused path for a small MLP on a GPU, else a CUDA graph where it applies), beside `idem bench it3` for a model of the same shape and batch: issue 15's check
# that the command line runs on the fast path (docs/it3.md, "Execution paths").
#
#   tools/adapt_path_timing.sh IDEM OUTDIR [FMNIST_DATA]
#
# Trains a tabular model (the bench's mlp_tab shape, 30-20-10) and a small fmnist model once, then
# adapts each with --path eager and --path auto and prints the µs per batch of every method from
# results.csv, then the bench's eager, graph and fused times for mlp_tab at the tabular test batch (32).
set -euo pipefail
idem=${1:?usage: adapt_path_timing.sh IDEM OUTDIR [FMNIST_DATA]}
out=${2:?usage: adapt_path_timing.sh IDEM OUTDIR [FMNIST_DATA]}
fmnist_data=${3:-}
mkdir -p "$out"

# Prints "method us_per_batch" for every row of a results.csv (by header name, so the column
# order may change), averaged over seeds and shifts.
per_method() {
  python3 - "$1" <<'EOF'
import csv, sys, collections
acc = collections.defaultdict(list)
with open(sys.argv[1]) as f:
    for row in csv.DictReader(f):
        acc[row["method"]].append(float(row["us_per_batch"]))
for m, v in acc.items():
    print(f"{m} {sum(v) / len(v):.1f}")
EOF
}

"$idem" train --task tabular --out "$out/tabular-run" --quiet
fm_args=(--task fmnist --max-train 4000 --max-test 1000 --epochs 1 --out "$out/fmnist-run" --quiet)
[ -n "$fmnist_data" ] && fm_args+=(--data "$fmnist_data")
"$idem" train "${fm_args[@]}"

echo "| task | method | eager µs/batch | auto µs/batch | eager / auto |"
echo "|---|---|---:|---:|---:|"
for task in tabular fmnist; do
  methods=none,it3
  [ "$task" = fmnist ] && methods=none,bn,tent,it3
  for path in eager auto; do
    "$idem" adapt --run "$out/$task-run" --method "$methods" --shift clean --path "$path" \
      --out "$out/$task-$path" --quiet >/dev/null
  done
  join <(per_method "$out/$task-eager/results.csv" | sort) <(per_method "$out/$task-auto/results.csv" | sort) |
    awk -v t="$task" '{ printf "| %s | %s | %.1f | %.1f | %.2f |\n", t, $1, $2, $3, $2 / $3 }'
done

echo
echo "idem bench it3, mlp_tab, batch 32, K 1:"
for p in eager graph fused; do
  "$idem" bench it3 --model mlp_tab --batch 32 --steps 1 --path "$p" --json |
    python3 2>/dev/null -c 'import json,sys; v=json.loads(sys.stdin.read()); print("  path %s: %.1f µs/batch median" % (v["path"], v["us_per_batch_median"]))' ||
    echo "  path $p: not available here"
done
