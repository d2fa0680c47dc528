#!/usr/bin/env bash
# Runs `idem demo` once per task with several seeds and gathers the tables into one Markdown
# file, each under the exact command that made it, its wall time and the run's commit: the raw
# material of docs/results.md (mean ± 95 % CI per cell, paired Δ over none and bn).
#   tools/results_tables.sh IDEM OUT_DIR [DEMO ARGS...]
# e.g. tools/results_tables.sh build/idem results_out --seeds 3
#      tools/results_tables.sh build/idem results_out --seeds 3 --quick    # a CPU smoke run
# Environment: TASKS (default "fmnist tabular airfoil"), FMNIST_DATA (an IDX directory for
# fmnist; default: the demo's own default). Writes OUT_DIR/<task>/ (run directories),
# OUT_DIR/<task>.log and OUT_DIR/tables.md; exits non-zero when a demo fails.
set -u -o pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 IDEM OUT_DIR [DEMO ARGS...]" >&2
  exit 2
fi
idem=$1 out=$2
shift 2
mkdir -p "$out"
tables="$out/tables.md"
: >"$tables"
status=0
for task in ${TASKS:-fmnist tabular airfoil}; do
  args=(demo --task "$task" "$@")
  [ "$task" = fmnist ] && [ -n "${FMNIST_DATA:-}" ] && args+=(--data "$FMNIST_DATA")
  start=$(date +%s)
  if "$idem" "${args[@]}" --quiet --out "$out/$task" >"$out/$task.log" 2>&1; then
    secs=$(( $(date +%s) - start ))
    commit=$(grep -o '"git_commit": *"[^"]*"' "$out/$task/config.json" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
    {
      echo "## $task"
      echo
      echo "Command: \`idem ${args[*]}\` (commit ${commit:-unknown}; ${secs} s wall)"
      echo
      sed 's/^### /#### /' "$out/$task/results.md"
      echo
    } >>"$tables"
    echo "$task: ok (${secs} s)"
  else
    echo "$task: FAILED; last lines of $out/$task.log:" >&2
    tail -n 20 "$out/$task.log" >&2
    status=1
  fi
done
echo "tables: $tables"
exit $status
