#!/usr/bin/env bash
# The table behind docs/performance.md's fused-kernel entry: `idem bench it3` for each model,
# batch and K on the eager, graph and fused paths (GPU), one Markdown row per shape with the
# median µs per adaptation of each path and the launches per batch.
#   tools/it3_path_sweep.sh IDEM [MODELS] [BATCHES] [STEPS]
#   defaults: "mlp_tab mlp_256"  "8 16 32 64 256"  "1 3"
set -u -o pipefail
idem=${1:?usage: tools/it3_path_sweep.sh IDEM [MODELS] [BATCHES] [STEPS]}
models=${2:-mlp_tab mlp_256}
batches=${3:-8 16 32 64 256}
steps=${4:-1 3}
median() {  # idem bench it3 --json: the median µs and the launches per batch
  "$idem" bench it3 --model "$1" --batch "$2" --steps "$3" --path "$4" --json --quiet 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f (%s)" % (d["us_per_batch_median"], d["launches_per_batch"]))' 2>/dev/null ||
    echo "failed"
}
echo "| model | B | K | eager µs | graph µs | fused µs |"
echo "|---|---:|---:|---:|---:|---:|"
for m in $models; do for b in $batches; do for k in $steps; do
  echo "| $m | $b | $k | $(median "$m" "$b" "$k" eager) | $(median "$m" "$b" "$k" graph) | $(median "$m" "$b" "$k" fused) |"
done; done; done
