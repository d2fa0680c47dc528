#!/usr/bin/env python3
"""Per-corruption summary of an fmnist run directory's results.csv (long form, one line per
seed x shift x method): for each corruption family, each seed's mean over its severities, then
the mean +- 95 % Student-t interval over seeds, and the paired difference of one method against
a baseline. Prints a Markdown table. Standard library only.

  tools/family_means.py RUN/results.csv [--methods none,bn,it3] [--delta it3:bn]
"""
import argparse
import csv
import math
import statistics
from collections import defaultdict

# Two-sided 95 % Student-t quantiles for 1..30 degrees of freedom (then the normal's 1.96).
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
       2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
       2.052, 2.048, 2.045, 2.042]


def mean_ci(xs):
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("nan")
    t = T95[len(xs) - 2] if len(xs) - 1 <= len(T95) else 1.96
    return m, t * statistics.stdev(xs) / math.sqrt(len(xs))


def cell(xs):
    m, h = mean_ci(xs)
    return f"{m:.2f}" if math.isnan(h) else f"{m:.2f} ± {h:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--methods", default="", help="comma list (default: every method, file order)")
    ap.add_argument("--delta", action="append", default=[], help="M:BASE, a paired column M − BASE")
    a = ap.parse_args()
    # value[(family, method, seed)] = list of metrics over the family's severities
    value = defaultdict(list)
    methods, families, seeds = [], [], set()
    with open(a.csv, newline="") as f:
        for r in csv.DictReader(f):
            fam = r["shift"].split(":")[0]
            if r["method"] not in methods:
                methods.append(r["method"])
            if fam not in families:
                families.append(fam)
            seeds.add(r["seed"])
            value[(fam, r["method"], r["seed"])].append(float(r["metric"]))
    if a.methods:
        want = [m.strip() for m in a.methods.split(",") if m.strip()]
        unknown = [m for m in want if m not in methods]
        if unknown:
            raise SystemExit(f"family_means: no rows for method(s) {', '.join(unknown)} in {a.csv} "
                             f"(it has {', '.join(methods)})")
        methods = want
    deltas = [d.split(":") for d in a.delta]
    seeds = sorted(seeds, key=int)
    head = ["corruption"] + methods + [f"Δ {m} − {b}" for m, b in deltas]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for fam in families:
        per = lambda m: [statistics.fmean(value[(fam, m, s)]) for s in seeds if value[(fam, m, s)]]
        row = [fam] + [cell(per(m)) for m in methods]
        for m, b in deltas:
            row.append(cell([x - y for x, y in zip(per(m), per(b))]))
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(seeds)} seeds ({', '.join(seeds)}); each cell: the mean over seeds of the "
          "family's mean over its severities, ± the 95 % Student-t half-width.")


if __name__ == "__main__":
    main()
