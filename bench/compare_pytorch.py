#!/usr/bin/env python3
"""IT³ test-time adaptation: idem against PyTorch, same models, shapes and semantics.

One IT³ offline adaptation per test batch x:
  reset: θ ← Θ (in place), Adam moments and step ← 0
  K times: y0 = f_θ(x, ∅); s = y0 (softmax(y0) for the cnn); y1 = F(x, s) with F the frozen Θ
           (gradients reach F's input only); L = mean|y1 − y0| (mean|softmax(y1) − s|);
           backward; Adam(lr 1e-3, betas .9/.999, eps 1e-8) step
  predict: f_θ(x, ∅) under no_grad
PyTorch variants (see docs/bench_pytorch.md):
  eager     in-place reset (foreach copy + zeroed Adam state), fused Adam: the best plain eager
  ttt       torch-ttt style: copy.deepcopy of the model and a new Adam for every batch
  graph     the whole adaptation (reset, K steps, prediction) captured in one CUDA graph:
            warm-up on a side stream, capture on that same stream, replay; x copied into a
            static buffer before each replay
  compile   torch.compile of the loss (forward+backward) and of the prediction, fused Adam
plus `infer` = f(x, ∅) under no_grad, eager. Then `idem bench it3 ... --json` with --graph off/on.

Before timing, a gate: for every model, `idem bench it3 --export DIR` gives weights, inputs and
idem's adapted prediction; PyTorch adapts the same weights on the same inputs and must agree
within atol 1e-4 + rtol 1e-3. With --torch-only, idem is skipped and the gate checks PyTorch
alone (names, safetensors round trip, float32 on the device against float64 on the CPU, graph
aggregation against a dense reference and PyG when installed).

  python3 bench/compare_pytorch.py --idem build/idem            # under ~6 min on an H100
  python3 bench/compare_pytorch.py --torch-only --quick         # ~1.3 min, PyTorch alone
Writes results.md and results.json under --out; exits 1 when the gate fails.
"""
import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import (LR, SPECS, Compiled, Eager, GraphBatch, Graphed, Problem, TttStyle,  # noqa: E402
                          grid_meshes, load_tensors, read_safetensors, write_safetensors)

ATOL, RTOL = 1e-4, 1e-3
# Known, harmless notices that would bury the progress lines: CSR is "beta", inductor suggests
# TF32 (which this comparison turns off on purpose), the profiler's per-cycle note.
for _msg in ("Sparse CSR tensor support is in beta", "Sparse invariant checks are implicitly disabled",
             "TensorFloat32 tensor cores", "Profiler clears events"):
    warnings.filterwarnings("ignore", message=".*" + _msg)
VARIANTS = ("eager", "ttt", "graph", "compile")
EXTRA_VARIANTS = ("eager_foreach",)  # on request: eager with the default (foreach) Adam
T0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def short_error(exc):
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# numerics


def set_fp32_ieee():
    """Plain fp32 everywhere (idem computes in fp32): no TF32 in cuBLAS (PyTorch's default) nor
    in cuDNN (PyTorch allows it by default). Only the legacy flags are used: PyTorch 2.9+ raises
    "mix of the legacy and new APIs" when the new `fp32_precision` setting is used and inductor
    then reads the legacy flag."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # autotune conv algorithms during warm-up
    return {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


def max_abs_diff(a, b):
    return (a.detach().double().cpu().reshape(-1) - b.detach().double().cpu().reshape(-1)).abs().max().item()


def allclose(a, b):
    a = a.detach().double().cpu().reshape(-1)
    b = b.detach().double().cpu().reshape(-1)
    return a.shape == b.shape and bool(((a - b).abs() <= ATOL + RTOL * b.abs()).all())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# torch.compile


def configure_dynamo():
    """One process compiles 4 models × several batch sizes; dynamo's default recompile limit (8
    per function) would silently fall back to eager, so raise it (and reset per model)."""
    try:
        import torch._dynamo as dynamo
    except ImportError:
        return
    # recompile_limit is the 2.6+ name of cache_size_limit; set only one of a pair
    for new, old in (("recompile_limit", "cache_size_limit"),
                     ("accumulated_recompile_limit", "accumulated_cache_size_limit")):
        name = new if hasattr(dynamo.config, new) else old
        with contextlib.suppress(Exception):
            setattr(dynamo.config, name, max(getattr(dynamo.config, name), 256))


@contextlib.contextmanager
def time_box(seconds, what):
    """Raises TimeoutError inside the block after `seconds` (main thread, POSIX only)."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} took longer than {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------------
# timing


class RepPolicy:
    def __init__(self, reps=None, target_s=0.2, min_reps=10, max_reps=400, warmup=3):
        self.reps, self.target_s, self.min_reps, self.max_reps, self.warmup = reps, target_s, min_reps, max_reps, warmup


WARMUP_S = 0.25  # idem bench warms up for as long (apps/idem/bench.cpp, warm_up)


def percentile(sorted_vals, q):
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = q * (len(sorted_vals) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def measure(fn, x, device, policy):
    """µs per call: CUDA events around each call (after warm-up), median / p10 / p90. No host
    synchronization inside the loop, so an event interval is the GPU's time for one call when
    the GPU is the bottleneck and the host's issue time when the host is."""
    # At least `warmup` calls and at least WARMUP_S seconds: an idle GPU runs at low clocks for
    # a while, and the first configuration of a sweep would otherwise be timed on them. Each
    # call is waited for, so a graph replay (which returns at once) cannot queue seconds of work.
    t = time.perf_counter()
    done = 0
    while done < policy.warmup or time.perf_counter() - t < WARMUP_S:
        out = fn(x)
        sync(device)
        done += 1
    t = time.perf_counter()
    out = fn(x)
    sync(device)
    one = time.perf_counter() - t
    n = policy.reps or max(policy.min_reps, min(policy.max_reps, int(policy.target_s / max(one, 1e-7))))
    times = []
    if device.type == "cuda":
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for a, b in ev:
            a.record()
            out = fn(x)
            b.record()
        sync(device)
        times = [a.elapsed_time(b) * 1000.0 for a, b in ev]
    else:
        for _ in range(n):
            t = time.perf_counter()
            out = fn(x)
            times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return {"median": percentile(times, 0.5), "p10": percentile(times, 0.1),
            "p90": percentile(times, 0.9), "reps": n}, out


# ---------------------------------------------------------------------------------------------
# idem


def run_idem(idem, args, timeout, env=None):
    """Runs idem (with extra environment variables `env`, if given); returns (list of JSON
    objects printed one per line, error text or None)."""
    cmd = [idem] + args
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=None if env is None else {**os.environ, **env})
    except FileNotFoundError:
        return [], f"idem not found at {idem}"
    except subprocess.TimeoutExpired:
        return [], f"idem timed out after {timeout} s: {' '.join(cmd)}"
    objs = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return objs, f"idem exit {proc.returncode}: {tail[-1][:240] if tail else ''}"
    return objs, None


# Models that `idem bench it3 --path fused` takes (small concat MLPs).
FUSED_MODELS = ("mlp_tab", "mlp_256")


def idem_bench(idem, model, batch, steps, device, graph, timeout, path=None):
    """`idem bench it3` with --graph on|off, or with --path eager|graph|fused when `path` is given."""
    how = ["--path", path] if path else ["--graph", graph]
    objs, err = run_idem(idem, ["bench", "it3", "--model", model, "--batch", str(batch), "--steps",
                                str(steps), "--device", device] + how + ["--json"], timeout)
    match = [o for o in objs if o.get("model", model) == model and int(o.get("batch", batch)) == batch
             and int(o.get("steps", steps)) == steps]
    if match:
        o = match[-1]
        if "us_per_batch_median" in o:
            return {"median": o["us_per_batch_median"], "p10": o.get("us_per_batch_p10"),
                    "p90": o.get("us_per_batch_p90"), "infer": o.get("us_inference_median"),
                    "kernels": o.get("kernels_per_batch"), "gpu": o.get("gpu"), "raw": o}
    return {"error": err or "idem printed no JSON line with us_per_batch_median"}


# ---------------------------------------------------------------------------------------------
# the gate


def gate_batch(model):
    return 2 if model == "sage" else 8


def adapt_reference_f64(spec, weights, x, ctx, steps):
    """The same adaptation on the CPU in float64: the yardstick for both fp32 results."""
    base = spec.build().double()
    base.load_state_dict({k: v.double() for k, v in weights.items()})
    xd = x.detach().double().cpu()
    cd = None if ctx is None else GraphBatch(torch.stack([ctx.src, ctx.dst]).cpu(), ctx.batch.cpu(),
                                             ctx.num_graphs, "index_add").to(torch.float64)
    prob = Problem(spec, base, xd, cd, torch.device("cpu"))
    return Eager(prob, steps, adam="foreach")(xd), prob.predict(base, xd)


def gate_one(spec, weights, x, ctx, steps, device, idem_out=None):
    """PyTorch's adapted prediction from `weights` on (x, ctx) against idem's (when given) and
    against the float64 reference. Returns a result dict (passed: bool)."""
    base = spec.build().to(device)
    missing = base.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        return {"passed": False, "error": f"state dict mismatch: missing {missing.missing_keys}, "
                                          f"unexpected {missing.unexpected_keys}"}
    prob = Problem(spec, base, x, ctx, device)
    pred = Eager(prob, steps)(x).detach().clone()
    infer = prob.predict(base, x)
    ref, ref_infer = adapt_reference_f64(spec, {k: v.cpu() for k, v in weights.items()}, x, ctx, steps)
    res = {"torch_vs_f64": max_abs_diff(pred, ref), "torch_ok": allclose(pred, ref),
           "infer_torch_vs_f64": max_abs_diff(infer, ref_infer)}
    passed = res["torch_ok"]
    if device.type == "cuda":
        try:
            gpred = Graphed(prob, steps)(x).detach().clone()
            res["graph_vs_eager"] = max_abs_diff(gpred, pred)
            passed = passed and allclose(gpred, pred)
        except Exception as exc:  # noqa: BLE001 - reported, the timing table shows it too
            res["graph_error"] = short_error(exc)
    if idem_out is not None:
        ip = idem_out["pred"]
        res["idem_vs_torch"] = max_abs_diff(ip, pred) if ip.numel() == pred.numel() else float("inf")
        res["idem_vs_f64"] = max_abs_diff(ip, ref) if ip.numel() == ref.numel() else float("inf")
        res["idem_ok"] = ip.numel() == pred.numel() and allclose(ip, pred)
        passed = passed and res["idem_ok"]
        if "pred_inference" in idem_out:
            pi = idem_out["pred_inference"]
            res["infer_idem_vs_torch"] = max_abs_diff(pi, infer) if pi.numel() == infer.numel() else float("inf")
            passed = passed and pi.numel() == infer.numel() and allclose(pi, infer)
    res["passed"] = bool(passed)
    return res


def check_aggregation(device):
    """Every aggregation method against a dense reference on two meshes (and PyG's SAGEConv on
    one layer when torch_geometric is installed)."""
    pos, ei, b = grid_meshes(2, device=device)
    v = pos.shape[0]
    dense = torch.zeros(v, v, dtype=torch.float64, device=device)
    dense[ei[1], ei[0]] = 1.0
    dense = dense / dense.sum(1, keepdim=True).clamp(min=1)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(v, 7, generator=gen).to(device)
    w = torch.randn(v, 7, generator=gen).to(device)
    ref = dense @ x.double()
    ref_grad = dense.t() @ w.double()
    out = {}
    for m in GraphBatch.METHODS:
        try:
            g = GraphBatch(ei, b, 2, m)
            xr = x.clone().requires_grad_(True)
            y = g.mean_neighbours(xr)
            (y * w).sum().backward()
            out[m] = max(max_abs_diff(y, ref), max_abs_diff(xr.grad, ref_grad))
        except Exception as exc:  # noqa: BLE001
            out[m] = short_error(exc)
    try:
        from torch_geometric.nn import SAGEConv as PygSAGE
        from torch_models import SAGEConv
        torch.manual_seed(4)
        ours = SAGEConv(7, 5).to(device)
        theirs = PygSAGE(7, 5).to(device)
        theirs.lin_l.weight.data.copy_(ours.lin_l.weight)
        theirs.lin_l.bias.data.copy_(ours.lin_l.bias)
        theirs.lin_r.weight.data.copy_(ours.lin_r.weight)
        out["pyg_sageconv"] = max_abs_diff(ours(x, GraphBatch(ei, b, 2)), theirs(x, ei))
    except ImportError:
        out["pyg_sageconv"] = "torch_geometric not installed"
    except Exception as exc:  # noqa: BLE001
        out["pyg_sageconv"] = short_error(exc)
    return out


def run_gate(args, device, models):
    """Returns (rows, passed)."""
    rows, passed = [], True
    steps = args.gate_steps
    for name in models:
        spec = SPECS[name]
        row = {"model": name, "steps": steps}
        try:
            if args.torch_only:
                torch.manual_seed(args.seed)
                model = spec.build()
                keys = list(model.state_dict().keys())
                if keys != spec.keys:
                    raise RuntimeError(f"state dict keys {keys} != idem's {spec.keys}")
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "weights.safetensors")
                    write_safetensors(path, model.state_dict())
                    weights = read_safetensors(path)
                    pkg = load_tensors(path)
                    same = all(torch.equal(weights[k], model.state_dict()[k]) and torch.equal(pkg[k], weights[k])
                               for k in spec.keys)
                    if not same:
                        raise RuntimeError("safetensors round trip changed the weights")
                batch = gate_batch(name)
                row["batch"] = batch
                x, ctx = spec.make_batch(batch, device, torch.Generator().manual_seed(args.seed + 1), args.agg)
                row.update(gate_one(spec, weights, x, ctx, steps, device))
            else:
                row.update(gate_with_idem(args, spec, steps, device))
                if spec.name in FUSED_MODELS:  # the one-launch path passes the same gate
                    fused = gate_with_idem(args, spec, steps, device, path="fused")
                    row.update({"fused_" + k: fused[k] for k in ("idem_vs_torch", "idem_ok", "passed") if k in fused})
                    row["passed"] = row.get("passed", False) and fused.get("passed", False)
        except Exception as exc:  # noqa: BLE001 - one failing model must not stop the others
            row.update({"passed": False, "error": short_error(exc)})
            traceback.print_exc()
        passed = passed and row.get("passed", False)
        rows.append(row)
        log(f"gate {name}: {'PASS' if row.get('passed') else 'FAIL'} "
            f"{ {k: v for k, v in row.items() if k not in ('model',)} }")
    return rows, passed


def gate_with_idem(args, spec, steps, device, path=None):
    """idem's exported adaptation (`--path` when given, else idem bench's default) against PyTorch."""
    batch = gate_batch(spec.name)
    with tempfile.TemporaryDirectory(prefix=f"idem_gate_{spec.name}_") as tmp:
        # --reps/--warmup: only the export is wanted (sage's default 200 timed adaptations take
        # most of a minute on a CPU)
        _, err = run_idem(args.idem, ["bench", "it3", "--model", spec.name, "--batch", str(batch),
                                      "--steps", str(steps), "--device", args.device, "--reps", "2",
                                      "--warmup", "1", "--export", tmp] + (["--path", path] if path else []),
                          args.idem_timeout)
        if err:
            raise RuntimeError(err)
        weights = load_tensors(os.path.join(tmp, "weights.safetensors"))
        inputs = load_tensors(os.path.join(tmp, "inputs.safetensors"))
        outputs = load_tensors(os.path.join(tmp, "outputs.safetensors"))
    x, ctx, b = spec.inputs_from_export(inputs, device, args.agg)
    res = {"batch": b}
    if ctx is not None:  # is idem's mesh the one PyTorch builds for the timings?
        _, ei, _ = grid_meshes(b)
        ours = set(map(tuple, ei.t().tolist()))
        theirs = set(map(tuple, torch.stack([ctx.src, ctx.dst]).t().cpu().tolist()))
        res["mesh_matches"] = ours == theirs
    res.update(gate_one(spec, weights, x, ctx, steps, device, outputs))
    return res


# ---------------------------------------------------------------------------------------------
# the timing sweep


def time_variant(name, prob, steps, args, device, policy, compile_state):
    if name == "eager":
        fn = Eager(prob, steps)
    elif name == "eager_foreach":
        fn = Eager(prob, steps, adam="foreach")
    elif name == "ttt":
        fn = TttStyle(prob, steps)
    elif name == "graph":
        fn = Graphed(prob, steps)
    else:
        key = prob.spec.name
        if compile_state.get("failed"):
            raise RuntimeError(compile_state["failed"])
        left = min(args.compile_budget - compile_state["spent"],
                   args.compile_timeout - compile_state["model_spent"])
        if left <= 1:
            raise RuntimeError(f"skipped: compile time spent (at most {args.compile_timeout:.0f} s "
                               f"a model, {args.compile_budget:.0f} s in all)")
        if compile_state.get("obj") is None:
            compile_state["obj"] = Compiled(prob.spec, prob.base, args.compile_mode,
                                             False if args.compile_static else None)
        comp = compile_state["obj"]
        ctx = prob.ctx.with_method("index_add") if prob.ctx is not None else None

        def fn(x):
            return comp(x, prob.null, ctx, steps)

        t = time.perf_counter()
        try:
            with time_box(left, "torch.compile"):
                fn(prob.x)
                fn(prob.x)
                sync(device)
        except Exception as exc:
            compile_state["failed"] = f"failed at B={prob.batch} K={steps}: {short_error(exc)}"
            raise
        finally:
            dt = time.perf_counter() - t
            compile_state["spent"] += dt
            compile_state["model_spent"] += dt
            compile_state.setdefault("compile_s", {})[f"{key}/B{prob.batch}/K{steps}"] = round(dt, 2)
    stats, out = measure(fn, prob.x, device, policy)
    if args.count_kernels and name in ("eager", "graph") and device.type == "cuda":
        try:
            stats["kernels"] = count_kernels(fn, prob.x)
        except Exception as exc:  # noqa: BLE001 - the profiler is an extra, not the measurement
            stats["kernels"] = short_error(exc)
    return stats, out


def count_kernels(fn, x):
    """GPU activities (kernels, memcpy, memset) of one call, from the PyTorch profiler."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(x)
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA"))


def sweep(args, device, models, policy, on_row=None):
    """Times every (model, batch, K); on_row(results, compile_state) after each row, so a run
    stopped from outside still leaves what it measured."""
    results = []
    compile_state = {"spent": 0.0}
    if "compile" in args.variants and hasattr(torch, "compile"):
        t = time.perf_counter()
        with contextlib.suppress(Exception):  # the one-time import, not charged to the first model
            importlib.import_module("torch._inductor.compile_fx")
        log(f"imported inductor in {time.perf_counter() - t:.1f} s")
    for name in models:
        spec = SPECS[name]
        compile_state.update(model_spent=0.0, obj=None, failed=None)
        torch.manual_seed(args.seed)
        base = spec.build().to(device)
        if "compile" in args.variants and hasattr(torch, "_dynamo"):
            torch._dynamo.reset()
        for batch in args.batches:
            gen = torch.Generator().manual_seed(args.seed + batch)
            x, ctx = spec.make_batch(batch, device, gen, args.agg)
            prob = Problem(spec, base, x, ctx, device)
            try:
                infer, _ = measure(lambda xx: prob.predict(base, xx), x, device, policy)
            except Exception as exc:  # noqa: BLE001
                infer = {"error": short_error(exc)}
            for steps in args.steps:
                row = {"model": name, "batch": batch, "steps": steps, "infer": infer}
                ref = None
                for var in args.variants:
                    try:
                        stats, pred = time_variant(var, prob, steps, args, device, policy, compile_state)
                        pred = pred.detach().clone()
                        if ref is None:
                            ref = pred
                        stats["vs_first"] = max_abs_diff(pred, ref)
                        stats["agrees"] = allclose(pred, ref)
                        row[var] = stats
                    except Exception as exc:  # noqa: BLE001 - recorded in the table cell
                        row[var] = {"error": short_error(exc)}
                        if args.verbose:
                            traceback.print_exc()
                        with contextlib.suppress(Exception):
                            sync(device)
                if not args.torch_only:
                    for mode in ("off", "on"):
                        row[f"idem_{mode}"] = idem_bench(args.idem, name, batch, steps, args.device, mode,
                                                         args.idem_timeout)
                    if name in FUSED_MODELS:  # the one-launch path (it3/fused_adapt.h): MLPs only
                        row["idem_fused"] = idem_bench(args.idem, name, batch, steps, args.device, None,
                                                       args.idem_timeout, path="fused")
                results.append(row)
                if on_row is not None:
                    on_row(results, compile_state)
                log(f"{name} B={batch} K={steps}: " + ", ".join(
                    f"{k} {fmt_cell(row.get(k), 0)}" for k in ("infer",) + tuple(args.variants) +
                    (() if args.torch_only else ("idem_off", "idem_on", "idem_fused"))))
            prob = None  # frees the batch and its graph before the next one
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results, compile_state


def agg_bench(args, device, policy):
    """Times the sage adaptation (K=1) with each aggregation method, eager and graphed."""
    rows = []
    spec = SPECS["sage"]
    torch.manual_seed(args.seed)
    base = spec.build().to(device)
    for batch in (16, 64):
        x, ctx = spec.make_batch(batch, device, None, "index_add")
        for m in GraphBatch.METHODS:
            row = {"method": m, "batch": batch}
            prob = Problem(spec, base, x, ctx.with_method(m), device)
            for var, make in (("infer", None), ("eager", lambda: Eager(prob, 1)),
                              ("graph", lambda: Graphed(prob, 1))):
                try:
                    fn = (lambda xx: prob.predict(base, xx)) if make is None else make()
                    row[var], _ = measure(fn, x, device, policy)
                except Exception as exc:  # noqa: BLE001
                    row[var] = {"error": short_error(exc)}
            rows.append(row)
            log(f"agg {m} B={batch}: " + ", ".join(f"{v} {fmt_cell(row[v], 0)}" for v in ("infer", "eager", "graph")))
    return rows


# ---------------------------------------------------------------------------------------------
# report


def fmt_us(v):
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def fmt_cell(cell, width=60):
    if cell is None:
        return "–"
    if "error" in cell:
        text = "ERR: " + cell["error"].replace("|", "/")
        return text if width <= 0 or len(text) <= width else text[:width - 1] + "…"
    mark = "" if cell.get("agrees", True) else " (≠)"
    return fmt_us(cell["median"]) + mark


def ratio(a, b):
    if a is None or b is None or "median" not in a or "median" not in b or not b["median"]:
        return "–"
    return f"{a['median'] / b['median']:.2f}"


def best_of(row, names):
    cells = [row[n] for n in names if n in row and "median" in row[n]]
    return min(cells, key=lambda c: c["median"]) if cells else None


def gate_markdown(gate_rows, no_gate, gate_passed):
    """The gate's table and verdict as Markdown lines (this script and compare_pytorch_cpu.py)."""
    out = ["| model | B | K | result | max\\|Δ\\| details |", "|---|---|---|---|---|"]
    for r in gate_rows:
        det = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                        if k not in ("model", "batch", "steps", "passed"))
        out.append(f"| {r['model']} | {r.get('batch', '–')} | {r.get('steps', '–')} | "
                   f"{'pass' if r.get('passed') else '**FAIL**'} | {det.replace('|', '/')} |")
    verdict = "not run (--no-gate)" if no_gate else ("**passed**" if gate_passed else "**FAILED**")
    out.append(f"\nGate: {verdict} (atol {ATOL} + rtol {RTOL}).\n")
    return out


def render(args, device, env, gate_rows, gate_passed, results, compile_state, agg_rows):
    out = []
    out.append("# IT³ adaptation: PyTorch vs idem\n")
    out.append(f"{env['gpu']} · PyTorch {env['torch']} · CUDA {env['cuda']} · fp32 (no TF32) · "
               f"sage aggregation: {args.agg} · Adam lr {LR} · µs per test batch (median of "
               f"CUDA-event timings after warm-up; p10/p90 in results.json)\n")
    out.append("## Gate\n")
    if args.torch_only:
        out.append("`--torch-only`: idem skipped; PyTorch fp32 on the device against fp64 on the CPU, "
                   "the CUDA graph against eager, names and a safetensors round trip.\n")
    out += gate_markdown(gate_rows, args.no_gate, gate_passed)
    out.append("## Timings (µs per batch)\n")
    head = ["model", "B", "K", "torch infer"] + list(args.variants)
    if args.count_kernels:
        head.append("GPU ops eager/graph")
    if not args.torch_only:
        head += ["idem infer", "idem eager", "idem graph", "idem kernels", "best eager / idem eager",
                 "graph / idem graph", "idem fused", "graph / idem fused"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in results:
        cells = [r["model"], str(r["batch"]), str(r["steps"]), fmt_cell(r["infer"])]
        cells += [fmt_cell(r.get(v)) for v in args.variants]
        if args.count_kernels:
            cells.append(f"{r.get('eager', {}).get('kernels', '–')}/{r.get('graph', {}).get('kernels', '–')}")
        if not args.torch_only:
            io = r.get("idem_off", {})
            cells.append(fmt_us(io["infer"]) if io.get("infer") is not None else "–")
            cells += [fmt_cell(r.get("idem_off")), fmt_cell(r.get("idem_on"))]
            cells.append(str(io.get("kernels", "–")))
            cells += [ratio(best_of(r, ("eager", "ttt")), r.get("idem_off")), ratio(r.get("graph"), r.get("idem_on"))]
            cells += [fmt_cell(r.get("idem_fused")) if "idem_fused" in r else "–",
                      ratio(r.get("graph"), r.get("idem_fused")) if "idem_fused" in r else "–"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("\neager: in-place reset, fused Adam · ttt: deepcopy + new Adam per batch · graph: whole "
               "adaptation in one CUDA graph · compile: torch.compile "
               f"(mode {args.compile_mode}) of loss and prediction, fused Adam; (≠) marks a prediction that "
               "differs from the first variant's beyond tolerance. Best eager = min(eager, ttt).")
    if compile_state.get("compile_s"):
        out.append(f"\ntorch.compile warm-up (compile) seconds: {json.dumps(compile_state['compile_s'])}")
    errors = sorted({c["error"] for r in results for c in r.values() if isinstance(c, dict) and "error" in c})
    if errors:
        out.append("\nErrors:\n" + "\n".join(f"- {e}" for e in errors))
    if agg_rows:
        out.append("\n## sage mean aggregation (K=1, µs per batch)\n")
        out.append("| method | B | infer | eager | graph |\n|---|---|---|---|---|")
        for r in agg_rows:
            out.append(f"| {r['method']} | {r['batch']} | {fmt_cell(r['infer'])} | {fmt_cell(r['eager'])} | "
                       f"{fmt_cell(r['graph'])} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------


def parse_models(parser, text):
    """--models: 'all' or a comma list of SPECS names; an unknown name is a usage error."""
    models = list(SPECS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for m in models:
        if m not in SPECS:
            parser.error(f"--models: unknown model '{m}' (expected {', '.join(SPECS)} or all)")
    return models


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--idem", default="./build/idem", help="the idem executable (default ./build/idem)")
    p.add_argument("--torch-only", action="store_true", help="skip idem (gate checks PyTorch alone)")
    p.add_argument("--models", default="all", help="all or a comma list of " + ",".join(SPECS))
    p.add_argument("--batches", default=None, help="comma list (default 1,8,64,256; --quick 8,64)")
    p.add_argument("--steps", default="1,3", help="comma list of K (default 1,3)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ",".join(VARIANTS))
    p.add_argument("--reps", type=int, default=None, help="fixed repetitions per timing (default: time-based)")
    p.add_argument("--target-s", type=float, default=None, help="seconds per timing (default 0.2; --quick 0.05)")
    p.add_argument("--quick", action="store_true", help="fewer batch sizes, shorter timings (~1.5 min)")
    p.add_argument("--out", default="compare_pytorch_out", help="folder for results.md and results.json")
    p.add_argument("--device", default="cuda",
                   help="cuda (default) or cpu (development: no graph variant; the CPU benchmark is "
                        "bench/compare_pytorch_cpu.py)")
    p.add_argument("--agg", default="csr", choices=GraphBatch.METHODS,
                   help="sage mean aggregation (default csr, the fastest measured; compile always uses index_add)")
    p.add_argument("--agg-bench", action="store_true", help="also time every sage aggregation method")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode (default: 'default'; max-autotune-no-cudagraphs may autotune for minutes)")
    p.add_argument("--compile-budget", type=float, default=None,
                   help="seconds of compiling in all (default 160; --quick 60); past it, cells say skipped")
    p.add_argument("--compile-timeout", type=float, default=None,
                   help="seconds of compiling per model (default 60; --quick 30)")
    p.add_argument("--compile-static", action="store_true",
                   help="compile with dynamic=False (a recompile per batch size)")
    p.add_argument("--no-count-kernels", dest="count_kernels", action="store_false",
                   help="skip counting the GPU operations of one adaptation with the profiler")
    p.add_argument("--gate-steps", type=int, default=3)
    p.add_argument("--no-gate", action="store_true")
    p.add_argument("--idem-timeout", type=float, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failing variants")
    args = p.parse_args(argv)
    args.models = parse_models(p, args.models)
    args.batches = [int(b) for b in (args.batches or ("8,64" if args.quick else "1,8,64,256")).split(",")]
    args.steps = [int(k) for k in args.steps.split(",")]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in args.variants:
        if v not in VARIANTS + EXTRA_VARIANTS:
            p.error(f"--variants: unknown variant '{v}' (expected {', '.join(VARIANTS + EXTRA_VARIANTS)})")
    args.count_kernels = args.count_kernels and args.device.startswith("cuda")  # the profiler's CUDA view
    if args.target_s is None:
        args.target_s = 0.05 if args.quick else 0.2
    if args.compile_budget is None:
        args.compile_budget = 60.0 if args.quick else 160.0
    if args.compile_timeout is None:
        args.compile_timeout = 30.0 if args.quick else 60.0
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("compare_pytorch: --device cuda but PyTorch sees no GPU (use --device cpu to develop)",
              file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if not args.torch_only and not os.access(args.idem, os.X_OK):
        print(f"compare_pytorch: idem executable not found at {args.idem} (--idem PATH, or --torch-only)",
              file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.cuda.set_device(device)
    precision = set_fp32_ieee()
    configure_dynamo()
    env = {"precision": precision, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "args": {k: v for k, v in vars(args).items()}}
    log(f"{env['gpu']}, PyTorch {env['torch']}, models {args.models}, batches {args.batches}, K {args.steps}")
    policy = RepPolicy(reps=args.reps, target_s=args.target_s, min_reps=5 if args.quick else 10)

    gate_rows, gate_passed, agg_rows = [], True, []
    if not args.no_gate:
        gate_rows, gate_passed = run_gate(args, device, args.models)
        if args.torch_only:
            agg = check_aggregation(device)
            ok = all(isinstance(v, float) and v < 1e-5 for k, v in agg.items() if k in GraphBatch.METHODS)
            pyg = agg.get("pyg_sageconv")
            ok = ok and (not isinstance(pyg, float) or pyg < 1e-4)  # a str: PyG absent or failed
            gate_rows.append({"model": "sage-aggregation", "steps": "–", "passed": ok, **agg})
            gate_passed = gate_passed and gate_rows[-1]["passed"]
            log(f"aggregation check: {agg}")
    if args.agg_bench and device.type == "cuda":
        agg_rows = agg_bench(args, device, policy)
    os.makedirs(args.out, exist_ok=True)

    def save(results, compile_state, partial=True):
        report = render(args, device, env, gate_rows, gate_passed, results, compile_state, agg_rows)
        if partial:
            report += "\n(partial: the run was still going when this was written)\n"
        with open(os.path.join(args.out, "results.md"), "w") as fh:
            fh.write(report)
        with open(os.path.join(args.out, "results.json"), "w") as fh:
            json.dump({"env": env, "partial": partial, "gate": gate_rows, "gate_passed": gate_passed,
                       "results": results, "aggregation": agg_rows,
                       "compile": {k: v for k, v in compile_state.items() if k != "obj"}},
                      fh, indent=1, default=str)
        return report

    results, compile_state = sweep(args, device, args.models, policy, on_row=save)
    print(save(results, compile_state, partial=False))
    log(f"wrote {args.out}/results.md and results.json")
    return 0 if gate_passed else 1


if __name__ == "__main__":
    sys.exit(main())
