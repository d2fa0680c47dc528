#!/usr/bin/env bash
# What `idem adapt` reports per test batch on each execution path (eager, auto = the one-call
# fused path for a small MLP on a GPU, else a CUDA graph where it applies), beside `idem bench it3` for a model of the same shape and batch: issue 15's check
# that the command line runs on the fast path (docs/it3.md, "Execution paths").
#
#   tools/adapt_path_timing.sh IDEM OUTDIR [FMNIST_DATA]
#
# Trains a tabular model (the bench's mlp_tab shape, 30-20-10) and a small fmnist model once, then
# adapts each with --path eager and --path auto and prints the µs per batch of every method
# (median and mean over the full batches of steps.jsonl), then `idem bench it3` on the same
# shapes: mlp_tab at the tabular test batch (32) and K (3), bn_cnn at fmnist's (128, K = 1).
set -euo pipefail
idem=${1:?usage: adapt_path_timing.sh IDEM OUTDIR [FMNIST_DATA]}
out=${2:?usage: adapt_path_timing.sh IDEM OUTDIR [FMNIST_DATA]}
fmnist_data=${3:-}
mkdir -p "$out"

# Prints "method median_us mean_us path" for every method of a run directory: the median and
# the mean of the wall time per full test batch, from steps.jsonl (one line per adapted batch),
# and the path of the last batch. The median is what `idem bench` reports; the mean (what
# results.csv reports) also carries one-time costs of a method's first batch (a process's
# first kernel launches, library handles); the partial last batch is left out of both.
per_method() {
  python3 - "$1" <<'EOF'
import json, sys, collections, statistics
walls, paths, full = collections.defaultdict(list), {}, collections.defaultdict(int)
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r.get("phase") == "adapt" and "cost" in r]
for r in rows:
    full[r["method"]] = max(full[r["method"]], r["cost"]["samples"])
for r in rows:
    if r["cost"]["samples"] == full[r["method"]]:
        walls[r["method"]].append(r["cost"]["wall_us"])
        paths[r["method"]] = r["path"]
for m, v in walls.items():
    print(f"{m} {statistics.median(v):.1f} {statistics.mean(v):.1f} {paths[m]}")
EOF
}
# bench_us MODEL BATCH STEPS PATH: idem bench it3's median µs per batch, or "n/a".
bench_us() {
  "$idem" bench it3 --model "$1" --batch "$2" --steps "$3" --path "$4" --json --quiet 2>/dev/null |
    python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["us_per_batch_median"])' 2>/dev/null || echo n/a
}

"$idem" train --task tabular --out "$out/tabular-run" --quiet
fm_args=(--task fmnist --max-train 4000 --max-test 1000 --epochs 1 --out "$out/fmnist-run" --quiet)
[ -n "$fmnist_data" ] && fm_args+=(--data "$fmnist_data")
"$idem" train "${fm_args[@]}"

echo "µs per full test batch (median over the batches; mean in brackets), clean test set:"
echo
echo "| task | method | eager | auto | auto's path | eager / auto |"
echo "|---|---|---:|---:|---|---:|"
for task in tabular fmnist; do
  methods=none,it3
  [ "$task" = fmnist ] && methods=none,bn,tent,it3
  for path in eager auto; do
    "$idem" adapt --run "$out/$task-run" --method "$methods" --shift clean --path "$path" \
      --out "$out/$task-$path" --quiet >/dev/null
  done
  join <(per_method "$out/$task-eager/steps.jsonl" | sort) <(per_method "$out/$task-auto/steps.jsonl" | sort) |
    awk -v t="$task" '{ printf "| %s | %s | %.1f (%.1f) | %.1f (%.1f) | %s | %.2f |\n", t, $1, $2, $3, $5, $6, $7, $2 / $5 }'
done

# The same shapes in idem bench it3: tabular is the bench's mlp_tab (30-20-10) at its test
# batch 32 with its K = 3; fmnist's model is the bench's bn_cnn (32-64) at batch 128, K = 1.
echo
echo "idem bench it3, µs per batch (median):"
echo
echo "| model | B | K | eager | graph | fused |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| mlp_tab | 32 | 3 | $(bench_us mlp_tab 32 3 eager) | $(bench_us mlp_tab 32 3 graph) | $(bench_us mlp_tab 32 3 fused) |"
echo "| bn_cnn | 128 | 1 | $(bench_us bn_cnn 128 1 eager) | $(bench_us bn_cnn 128 1 graph) | – |"
