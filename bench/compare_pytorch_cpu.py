#!/usr/bin/env python3
"""IT³ on the CPU: idem against PyTorch, side by side in one run, at 1 thread and at all cores.

For the four bench models (mlp_tab, mlp_256, cnn, sage) it times
  train  one IT³ training step, as `idem bench train` does it: zero_grad;
         L = ℓ(f(x, ∅), y) + ℓ(f(x, s(y)), y) (two forwards; s(y) = one-hot y and ℓ cross-entropy
         for the cnn, s(y) = y and ℓ the mean squared error otherwise); one backward; Adam
         (lr 1e-3) step  — PyTorch: torch_models.TrainStep
  K      one IT³ test-time adaptation with K steps (reset, K × (two forwards, backward, Adam),
         prediction), as `idem bench it3 --graph off` does it — PyTorch: the "eager" variant of
         bench/compare_pytorch.py (torch_models.Eager)
PyTorch runs with torch.set_num_threads(n); idem with the environment variable IDEM_NUM_THREADS=n
(read by idem's CPU thread pool where it has one; an idem without one ignores it). The CUDA-only
variants of compare_pytorch.py (CUDA graph) are not run, nor torch.compile (PyTorch 1.13, Debian's
python3-torch, has none; on PyTorch 2.x it is left out too, to keep the run short).

Before timing, a gate, once per model: `idem bench it3 --export` (the adaptation, K = --gate-steps)
and `idem bench train --export` (--gate-steps training steps from the same weights) write weights,
inputs and idem's results; PyTorch repeats them from the same weights on the same inputs and must
agree within atol 1e-4 + rtol 1e-3, with a float64 run of the same steps as the yardstick for both:
the adaptation as compare_pytorch.py checks it (the adapted prediction and f(x, ∅)); training step
by step (each step's loss and every gradient, the weights and f(x, ∅) after the last step, with
PyTorch's Adam fed idem's gradients: see gate_train).

sage on the CPU: its batch is a number of 32×32 meshes (1,024 nodes each); 64 and 256 meshes take
seconds per step on a small CPU, so the CPU run uses --sage-batches (default 1,8,32; --quick 1,8)
instead of --batches.

  /usr/bin/python3 bench/compare_pytorch_cpu.py --idem build/idem --quick   # 2-4 min on 2 busy cores
  /usr/bin/python3 bench/compare_pytorch_cpu.py --idem build/idem           # under ~15 min there
Writes results.md and results.json under --out; exits 1 when the gate fails, 2 when PyTorch loaded the
reference BLAS (unless --reference-blas-ok) or the idem executable is missing.
"""
import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import traceback

try:
    import torch
except ImportError:
    print(f"compare_pytorch_cpu: PyTorch is not installed for {sys.executable}. On Debian: "
          "apt-get install python3-torch (then run this script with /usr/bin/python3)", file=sys.stderr)
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_pytorch as cp  # noqa: E402  (the GPU script: timing, idem runner, adaptation gate)
from torch_models import SPECS, Eager, GraphBatch, Problem, TrainStep, load_tensors  # noqa: E402

ATOL, RTOL = cp.ATOL, cp.RTOL
CPU = torch.device("cpu")
log = cp.log


# ---------------------------------------------------------------------------------------------
# the machine


def all_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name():
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def mem_gib():
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return None


def blas_in_use():
    """The BLAS library PyTorch loaded (after one matmul), from /proc/self/maps."""
    torch.randn(64, 64) @ torch.randn(64, 64)
    libs = set()
    with open("/proc/self/maps") as fh:
        for line in fh:
            path = line.split()[-1]
            if "blas" in os.path.basename(path).lower():
                libs.add(path)
    return sorted(libs)


def repo_commit():
    """The commit of the checkout this script is in (best effort)."""
    try:
        out = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short",
                              "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def idem_has_threads_option(idem):
    """Whether `idem bench --help` lists --threads (an idem with a CPU thread pool)."""
    try:
        out = subprocess.run([idem, "bench", "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return "--threads" in out


# ---------------------------------------------------------------------------------------------
# the gate: the adaptation (compare_pytorch.run_gate) and the training step


def train_once(spec, weights, x, ctx, y, steps, dtype, idem_grads=None):
    """`steps` training steps from `weights` in `dtype`. With idem_grads ({"step{i}.{name}":
    tensor}), step i's Adam update uses idem's gradient of step i, so the weights follow idem's
    and every step's loss and gradient are computed at (up to rounding) idem's weights. Returns
    (losses, [{name: own gradient} per step], f(x, ∅) after, model)."""
    model = spec.build().to(dtype)
    res = model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=False)
    if res.missing_keys or res.unexpected_keys:
        raise RuntimeError(f"state dict mismatch: missing {res.missing_keys}, unexpected {res.unexpected_keys}")
    if dtype != torch.float32:
        x = x.to(dtype)
        ctx = None if ctx is None else GraphBatch(torch.stack([ctx.src, ctx.dst]), ctx.batch, ctx.num_graphs,
                                                 "index_add").to(dtype)
        y = y if spec.classification else y.to(dtype)
    step = TrainStep(spec, model, x, ctx, y, adam="fused" if dtype == torch.float32 else "foreach")
    losses, grads = [], []
    for i in range(steps):
        forced = None if idem_grads is None else {k: idem_grads[f"step{i}.{k}"] for k in spec.keys}
        loss, own = step.step_with(x, forced)
        losses.append(loss)
        grads.append(own)
    with torch.no_grad():
        pred = model(x, step.null, ctx)
    return torch.stack(losses), grads, pred, model


def max_diff_ok(pairs):
    """(max |a − b| over all pairs, all pairs allclose) for [(a, b reference), ...]."""
    worst, ok = 0.0, True
    for a, b in pairs:
        if a.numel() != b.numel():
            return float("inf"), False
        worst = max(worst, cp.max_abs_diff(a, b))
        ok = ok and cp.allclose(a, b)
    return worst, ok


def gate_train(args, spec):
    """idem's exported training steps against PyTorch's, step by step (and both against float64).

    Adam divides by √v, so a gradient element within rounding of 0 (|g| ≈ eps) moves its weight
    by up to ±lr either way: two correct fp32 runs, each from its own gradients, drift apart
    after one step (mlp_256 shows it). So PyTorch steps Adam with idem's gradient of each step
    (its weights follow idem's), and the gate compares, at every step, the loss (forward) and
    every gradient (backward) computed at the same weights, then the weights and f(x, ∅) after
    the last step (Adam). The free-running difference (PyTorch on its own gradients) is reported
    as free_run_pred_idem_vs_torch, not gated."""
    steps, batch = args.gate_steps, cp.gate_batch(spec.name)
    with tempfile.TemporaryDirectory(prefix=f"idem_gate_train_{spec.name}_") as tmp:
        _, err = cp.run_idem(args.idem, ["bench", "train", "--model", spec.name, "--batch", str(batch),
                                         "--steps", str(steps), "--device", "cpu", "--reps", "1", "--warmup", "1",
                                         "--export", tmp], args.idem_timeout)
        if err:
            raise RuntimeError(err)
        files = {n: load_tensors(os.path.join(tmp, f"{n}.safetensors"))
                 for n in ("weights", "inputs", "outputs", "trained", "grads")}
    weights, inputs, outputs, trained, igrads = (files[n] for n in
                                                 ("weights", "inputs", "outputs", "trained", "grads"))
    x, ctx, b = spec.inputs_from_export(inputs, CPU, args.agg)
    y = inputs["y"].long() if spec.classification else inputs["y"].float()
    losses, grads, pred, model = train_once(spec, weights, x, ctx, y, steps, torch.float32, igrads)
    losses64, grads64, pred64, _ = train_once(spec, weights, x, ctx, y, steps, torch.float64, igrads)
    _, _, free_pred, _ = train_once(spec, weights, x, ctx, y, steps, torch.float32)
    il, ip = outputs["loss"], outputs["pred"]
    sd = model.state_dict()
    per_step = [(i, k) for i in range(steps) for k in spec.keys]
    res = {"batch": b, "steps": "train", "train_steps": steps}
    res["loss_idem_vs_torch"], loss_ok = max_diff_ok([(il, losses)])
    res["grad_idem_vs_torch"], grad_ok = max_diff_ok([(igrads[f"step{i}.{k}"], grads[i][k]) for i, k in per_step])
    res["weights_idem_vs_torch"], adam_ok = max_diff_ok([(trained[k], sd[k]) for k in spec.keys])
    res["idem_vs_torch"], pred_ok = max_diff_ok([(ip, pred)])
    res["idem_vs_f64"], _ = max_diff_ok([(ip, pred64)])
    res["grad_idem_vs_f64"], _ = max_diff_ok([(igrads[f"step{i}.{k}"], grads64[i][k]) for i, k in per_step])
    res["grad_torch_vs_f64"], tgrad_ok = max_diff_ok([(grads[i][k], grads64[i][k]) for i, k in per_step])
    res["torch_vs_f64"], tpred_ok = max_diff_ok([(pred, pred64), (losses, losses64)])
    res["free_run_pred_idem_vs_torch"], _ = max_diff_ok([(ip, free_pred)])
    res["idem_ok"] = bool(loss_ok and grad_ok and adam_ok and pred_ok)
    res["torch_ok"] = bool(tgrad_ok and tpred_ok)
    res["passed"] = res["idem_ok"] and res["torch_ok"]
    return res


def run_gates(args, models):
    """Both gates for every model, PyTorch and idem at --gate-threads threads. (rows, passed)"""
    torch.set_num_threads(args.gate_threads)
    os.environ["IDEM_NUM_THREADS"] = str(args.gate_threads)  # inherited by cp.run_gate's idem calls
    rows, passed = cp.run_gate(args, CPU, models)
    for name in models:
        row = {"model": name}
        try:
            row.update(gate_train(args, SPECS[name]))
        except Exception as exc:  # noqa: BLE001 - one failing model must not stop the others
            row.update({"steps": "train", "passed": False, "error": cp.short_error(exc)})
            traceback.print_exc()
        passed = passed and row["passed"]
        rows.append(row)
        log(f"gate {name} train: {'PASS' if row['passed'] else 'FAIL'} "
            f"{ {k: v for k, v in row.items() if k != 'model'} }")
    os.environ.pop("IDEM_NUM_THREADS", None)
    return rows, passed


# ---------------------------------------------------------------------------------------------
# timing


def idem_cell(args, model, batch, mode, threads, reps):
    """One `idem bench train|it3 ... --device cpu --json` run with IDEM_NUM_THREADS=threads."""
    cmd = ["bench", "train" if mode == "train" else "it3", "--model", model, "--batch", str(batch),
           "--device", "cpu", "--reps", str(reps), "--warmup", str(args.warmup), "--seed", str(args.seed), "--json"]
    if mode != "train":
        cmd += ["--steps", str(mode), "--graph", "off"]
    objs, err = cp.run_idem(args.idem, cmd, args.idem_timeout, env={"IDEM_NUM_THREADS": str(threads)})
    key = "us_per_step" if mode == "train" else "us_per_batch"
    for o in reversed(objs):
        if f"{key}_median" in o:
            cell = {"median": o[f"{key}_median"], "p10": o.get(f"{key}_p10"), "p90": o.get(f"{key}_p90"),
                    "reps": o.get("reps", reps)}
            if "us_inference_median" in o:
                cell["infer"] = o["us_inference_median"]
            return cell
    return {"error": err or f"idem printed no JSON line with {key}_median"}


def reps_for(est_us, args):
    """Repetitions that fill about --target-s at `est_us` µs a call (within min/max reps)."""
    if args.reps:
        return args.reps
    return int(max(args.min_reps, min(args.max_reps, args.target_s * 1e6 / max(est_us, 1.0))))


def idem_estimate(known, model, mode, batch, threads, fallback):
    """µs a call for idem, to choose its repetitions: its own time for this cell at another
    thread count, else at a smaller batch scaled up linearly, else `fallback` (PyTorch's)."""
    same = [v for (m, k, b, _), v in known.items() if (m, k, b) == (model, mode, batch)]
    if same:
        return min(same)
    smaller = [(b, v) for (m, k, b, t), v in known.items() if (m, k) == (model, mode) and b < batch]
    if smaller:
        b, v = max(smaller)
        return v * batch / b
    return fallback


def batches_for(args, model):
    return args.sage_batches if model == "sage" else args.batches


def sweep(args, on_row):
    results, idem_known = [], {}
    policy = cp.RepPolicy(reps=args.reps, target_s=args.target_s, min_reps=args.min_reps,
                          max_reps=args.max_reps, warmup=args.warmup)
    modes = (["train"] if args.train else []) + args.steps
    for name in args.models:
        spec = SPECS[name]
        torch.manual_seed(args.seed)
        base = spec.build()
        for batch in batches_for(args, name):
            gen = torch.Generator().manual_seed(args.seed + batch)
            x, ctx = spec.make_batch(batch, CPU, gen, args.agg)
            y = spec.make_target(batch, CPU, gen)
            prob = Problem(spec, base, x, ctx, CPU)
            for mode in modes:
                # one PyTorch object per (batch, mode), reused at every thread count
                fn = TrainStep(spec, copy.deepcopy(base), x, ctx, y) if mode == "train" else Eager(prob, mode)
                for threads in args.threads:
                    torch.set_num_threads(threads)
                    row = {"model": name, "batch": batch, "mode": mode, "threads": threads}
                    try:
                        row["torch"], _ = cp.measure(fn, x, CPU, policy)
                    except Exception as exc:  # noqa: BLE001 - recorded in the table cell
                        row["torch"] = {"error": cp.short_error(exc)}
                        if args.verbose:
                            traceback.print_exc()
                    est = idem_estimate(idem_known, name, mode, batch, threads,
                                        row["torch"].get("median", args.target_s * 1e6 / args.min_reps))
                    row["idem"] = idem_cell(args, name, batch, mode, threads, reps_for(est, args))
                    if "median" in row["idem"]:
                        idem_known[(name, mode, batch, threads)] = row["idem"]["median"]
                    results.append(row)
                    on_row(results)
                    log(f"{name} B={batch} {'train' if mode == 'train' else f'K={mode}'} threads={threads}: "
                        f"idem {cp.fmt_cell(row['idem'], 0)} ({row['idem'].get('reps', '–')} reps), "
                        f"PyTorch {cp.fmt_cell(row['torch'], 0)} ({row['torch'].get('reps', '–')} reps), "
                        f"PyTorch/idem {cp.ratio(row['torch'], row['idem'])}")
                fn = None
            prob = None
    return results


# ---------------------------------------------------------------------------------------------
# report


def render(args, env, gate_rows, gate_passed, results, partial):
    out = ["# IT³ on the CPU: idem vs PyTorch\n"]
    out.append(f"{env['cpu']} · {env['cores']} cores · {env['mem_gib']} GiB · PyTorch {env['torch']} "
               f"(BLAS: {', '.join(env['blas']) or 'none found'}) · idem at commit {env['commit']} · fp32 · "
               f"sage aggregation: {args.agg} · "
               f"load average {env['load_start']} at the start, {env.get('load_end', '–')} at the end\n")
    if any("/blas/libblas" in b for b in env["blas"]):
        out.append("**PyTorch ran on the reference BLAS (--reference-blas-ok): its Linear layers are 10–20× "
                   "slower than with OpenBLAS, so the ratios below are not a fair comparison.**\n")
    out.append("## Gate\n")
    out.append(f"PyTorch and idem at {args.gate_threads} thread(s). K = the adaptation's steps; `train` = "
               f"{args.gate_steps} training steps from idem's initial weights (losses, f(x, ∅) after).\n")
    out += cp.gate_markdown(gate_rows, args.no_gate, gate_passed)
    out.append("## Timings (µs per training step or per adapted test batch, median)\n")
    out.append("| model | B | K | threads | idem µs | PyTorch µs | PyTorch / idem |")
    out.append("|---|---|---|---|---|---|---|")
    for r in results:
        model = r["model"] + (" †" if r["model"] == "sage" else "")
        out.append(f"| {model} | {r['batch']} | {r['mode']} | {r['threads']} | {cp.fmt_cell(r['idem'])} | "
                   f"{cp.fmt_cell(r['torch'])} | {cp.ratio(r['torch'], r['idem'])} |")
    out.append(f"\nK = `train`: one training step (two forwards f(x, ∅) and f(x, s(y)), one backward, Adam); "
               f"K = 1, 3: one IT³ adaptation with K steps and the prediction. PyTorch: "
               f"torch.set_num_threads(threads), eager (the adaptation is compare_pytorch.py's `eager` variant; "
               f"no CUDA graph on the CPU, no torch.compile). idem: IDEM_NUM_THREADS=threads"
               f"{'' if env.get('idem_threads_option') else ' (this idem has no --threads option: it is single-threaded and ignores the variable)'}. "
               f"Median of {'--reps ' + str(args.reps) if args.reps else f'as many calls as fit in {args.target_s} s (at least {args.min_reps}, at most {args.max_reps})'} "
               f"after at least {args.warmup} warm-up calls and 0.25 s; p10/p90 in results.json.")
    if "sage" in args.models:
        out.append(f"\n† sage: B is a number of 32×32 meshes (1,024 nodes each); the CPU run uses "
                   f"{', '.join(map(str, args.sage_batches))} meshes (--sage-batches) instead of "
                   f"{', '.join(map(str, args.batches))}: 64 and 256 meshes take seconds per step on a small CPU.")
    errors = sorted({c["error"] for r in results for c in (r["idem"], r["torch"]) if "error" in c})
    if errors:
        out.append("\nErrors:\n" + "\n".join(f"- {e}" for e in errors))
    if partial:
        out.append("\n(partial: the run was still going when this was written)")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------


def int_list(text):
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--idem", default="./build/idem", help="the idem executable (default ./build/idem)")
    p.add_argument("--models", default="all", help="all or a comma list of " + ",".join(SPECS))
    p.add_argument("--batches", default=None, help="comma list (default 8,64,256; --quick 8,64)")
    p.add_argument("--sage-batches", default=None, help="sage's mesh counts on the CPU (default 1,8,32; --quick 1,8)")
    p.add_argument("--steps", default="1,3", help="comma list of adaptation steps K (default 1,3)")
    p.add_argument("--no-train", dest="train", action="store_false", help="skip the training step")
    p.add_argument("--threads", default="1,all",
                   help="comma list of thread counts; 'all' = the cores this process may use (default 1,all)")
    p.add_argument("--reps", type=int, default=None, help="fixed repetitions per timing (default: time-based)")
    p.add_argument("--target-s", type=float, default=None, help="seconds per timing (default 0.2; --quick 0.05)")
    p.add_argument("--min-reps", type=int, default=None, help="default 5 (--quick 3)")
    p.add_argument("--max-reps", type=int, default=400)
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up calls before timing, and at least 0.25 s of them (default 2; --quick 1)")
    p.add_argument("--quick", action="store_true",
                   help="batches 8,64 (sage 1,8), shorter timings (a few minutes on 2 cores)")
    p.add_argument("--out", default="compare_pytorch_cpu_out", help="folder for results.md and results.json")
    p.add_argument("--agg", default="csr", choices=GraphBatch.METHODS,
                   help="sage mean aggregation in PyTorch (default csr, also the fastest on the CPU)")
    p.add_argument("--gate-steps", type=int, default=3)
    p.add_argument("--gate-threads", default="all", help="threads for the gate (default all)")
    p.add_argument("--no-gate", action="store_true")
    p.add_argument("--reference-blas-ok", action="store_true",
                   help="time PyTorch even when it loaded the reference BLAS (Debian's libblas3, 10-20x slower "
                        "Linear layers); by default the script stops and names the package to install")
    p.add_argument("--idem-timeout", type=float, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failing cells")
    args = p.parse_args(argv)
    args.models = cp.parse_models(p, args.models)
    args.batches = int_list(args.batches or ("8,64" if args.quick else "8,64,256"))
    args.sage_batches = int_list(args.sage_batches or ("1,8" if args.quick else "1,8,32"))
    args.steps = int_list(args.steps)
    cores = all_cores()
    args.threads = list(dict.fromkeys(cores if t.strip() == "all" else int(t)
                                      for t in args.threads.split(",") if t.strip()))
    args.gate_threads = cores if args.gate_threads == "all" else int(args.gate_threads)
    if any(t < 1 for t in args.threads + [args.gate_threads]):
        p.error("thread counts must be >= 1")
    if args.target_s is None:
        args.target_s = 0.05 if args.quick else 0.2
    if args.min_reps is None:
        args.min_reps = 3 if args.quick else 5
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    # what compare_pytorch.run_gate reads
    args.device, args.torch_only = "cpu", False
    return args


def main(argv=None):
    args = parse_args(argv)
    if not os.access(args.idem, os.X_OK):
        print(f"compare_pytorch_cpu: idem executable not found at {args.idem} (--idem PATH)", file=sys.stderr)
        return 2
    env = {"cpu": cpu_name(), "cores": all_cores(), "mem_gib": mem_gib(), "torch": torch.__version__,
           "python": platform.python_version(), "blas": blas_in_use(),
           "load_start": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
           "idem_threads_option": idem_has_threads_option(args.idem), "commit": repo_commit(),
           "parallel_info": torch.__config__.parallel_info().strip().splitlines()[-1],
           "args": {k: v for k, v in vars(args).items()}}
    log(f"{env['cpu']}, {env['cores']} cores, PyTorch {env['torch']}, BLAS {env['blas']}, load {env['load_start']}; "
        f"models {args.models}, batches {args.batches} (sage {args.sage_batches}), K {args.steps}, "
        f"threads {args.threads}")
    if any("/blas/libblas" in b for b in env["blas"]):
        # A comparison against the reference BLAS flatters idem 10-20x on the MLPs: refuse it
        # unless asked, so that no such table is taken for the real one.
        msg = ("PyTorch loaded the reference BLAS (Debian's libblas3, ~2 GFLOP/s), so its Linear layers "
               "are 10-20x slower than with an optimized BLAS; install one: apt-get install libopenblas0-openmp")
        if not args.reference_blas_ok:
            print(f"compare_pytorch_cpu: {msg} (or pass --reference-blas-ok to time it anyway)", file=sys.stderr)
            return 2
        log(f"warning: {msg}")
    gate_rows, gate_passed = [], True
    if not args.no_gate:
        gate_rows, gate_passed = run_gates(args, args.models)
    os.makedirs(args.out, exist_ok=True)

    def save(results, partial=True):
        if not partial:
            env["load_end"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        report = render(args, env, gate_rows, gate_passed, results, partial)
        with open(os.path.join(args.out, "results.md"), "w") as fh:
            fh.write(report)
        with open(os.path.join(args.out, "results.json"), "w") as fh:
            json.dump({"env": env, "partial": partial, "gate": gate_rows, "gate_passed": gate_passed,
                       "results": results}, fh, indent=1, default=str)
        return report

    results = sweep(args, save)
    print(save(results, partial=False))
    log(f"wrote {args.out}/results.md and results.json")
    return 0 if gate_passed else 1


if __name__ == "__main__":
    sys.exit(main())
