#!/usr/bin/env bash
# What `idem adapt` reports per test batch on each execution path (eager, auto = the one-call
# fused path for a small MLP on a GPU, else a CUDA graph where it applies), beside `idem bench it3` for a model of the same shape and batch: issue 15's check
# that the command line runs on the fast path (docs/it3.md, "Execution paths").
#
#   tools/adapt_path_timing.sh IDEM OUTDIR [FMNIST_DATA]
#
# Trains a tabular model (30-20-10, as the bench's mlp_tab) and a small fmnist model once, then
# adapts each with --path eager and --path auto and prints the µs per batch of every method
# (median and mean over the full batches of steps.jsonl), then `idem bench it3` two ways:
#   --task T   the adaptation the command ran: T's model and T's options (for fmnist IT³ the
#              BatchNorm layers on batch statistics, lr 1e-4), T's test batch and K; the like-
#              for-like comparison of issue 15 (the command within 1.5× of the bench);
#   --model M  the bench model of that shape with the bench's options (for bn_cnn running
#              BatchNorm statistics, lr 1e-3): mlp_tab at batch 32, K = 3; bn_cnn at 128, K = 1.
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
# bench_us PATH ARGS...: idem bench it3's median µs per batch on PATH, or "n/a" (the path does
# not apply, or the run failed).
bench_us() {
  local path=$1
  shift
  "$idem" bench it3 "$@" --path "$path" --json --quiet 2>/dev/null |
    python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["us_per_batch_median"])' 2>/dev/null || echo n/a
}
# bench_row LABEL B K ARGS...: one row of the bench table, every path.
bench_row() {
  local label=$1 b=$2 k=$3
  shift 3
  echo "| $label | $b | $k | $(bench_us eager "$@" --batch "$b" --steps "$k") |" \
    "$(bench_us graph "$@" --batch "$b" --steps "$k") | $(bench_us fused "$@" --batch "$b" --steps "$k") |"
}
# ratio A B: A / B to two decimals, or "n/a".
ratio() {
  python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2" 2>/dev/null || echo n/a
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

# idem bench it3 on the same shapes: first the adaptation the command ran (--task: the task's
# model and options), then the bench model with the bench's options. tabular: batch 32, K = 3;
# fmnist: batch 128, K = 1 (the tasks' defaults, which the command above used).
echo
echo "idem bench it3, µs per batch (median; n/a: the path does not apply):"
echo
echo "| bench case | B | K | eager | graph | fused |"
echo "|---|---:|---:|---:|---:|---:|"
bench_row "--task tabular (the command's model and options)" 32 3 --task tabular
bench_row "--model mlp_tab (bench options)" 32 3 --model mlp_tab
bench_row "--task fmnist (the command's model and options: batch BN statistics, lr 1e-4)" 128 1 --task fmnist
bench_row "--model bn_cnn (bench options: running BN statistics, lr 1e-3)" 128 1 --model bn_cnn

# Issue 15's check, like for like: IT³ on the command's auto path against the bench with the
# task's own model and options on the path that auto took (on a GPU: fmnist a CUDA graph).
echo
echo "IT³ per batch, the command on --path auto / idem bench it3 --task on the path auto took"
echo "(issue 15 asks for at most 1.5):"
for task in tabular fmnist; do
  b=32 k=3
  [ "$task" = fmnist ] && b=128 k=1
  read -r cmd took < <(per_method "$out/$task-auto/steps.jsonl" | awk '$1 == "it3" { print $2, $4 }') || true
  bench=$(bench_us "${took:-eager}" --task "$task" --batch "$b" --steps "$k")
  echo "  $task (B $b, K $k, path ${took:-n/a}): ${cmd:-n/a} / $bench µs = $(ratio "${cmd:-x}" "$bench")"
done
