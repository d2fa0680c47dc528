"""The four IT³ benchmark models in plain PyTorch, with idem's parameter names, the IT³
offline adaptation written four ways (Eager, TttStyle, Graphed, Compiled), and one IT³ training
step (TrainStep, as `idem bench train` times it).

Used by bench/compare_pytorch.py and bench/compare_pytorch_cpu.py. Module attribute names are chosen so that `state_dict()` keys
are exactly idem's (`net.layers.0.weight`, `body.0.weight`, `convs.0.lin_l.weight`, ...): weights
move between idem and PyTorch by name through safetensors (read_safetensors/write_safetensors
below, which need neither numpy nor the `safetensors` package).

Every model is a recursive-input model f(x, s): s is the second signal (the neutral "don't know"
value ∅, the target, or the model's own prediction). `ModelSpec` says, per model, how to build it,
how to make a batch of inputs, what ∅ is, and how to call it.

`sage` works on B disjoint 32×32 grid meshes. PyG is not needed: the mean over in-neighbours is
done by one of several plain-PyTorch methods (GraphBatch.METHODS); compare_pytorch.py --agg-bench
times them.
"""
import copy
import json
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# models


class MLPNet(nn.Module):
    """Linear/ReLU alternately in `layers` (keys layers.0.*, layers.2.*, ...)."""

    def __init__(self, widths):
        super().__init__()
        mods = []
        for i in range(len(widths) - 1):
            mods.append(nn.Linear(widths[i], widths[i + 1]))
            if i + 2 < len(widths):
                mods.append(nn.ReLU())
        self.layers = nn.Sequential(*mods)

    def forward(self, h):
        return self.layers(h)


class RecursiveMLP(nn.Module):
    """f(x, s) = MLP(concat(x, s)); s enters as extra input features (`concat`)."""

    def __init__(self, widths):
        super().__init__()
        self.net = MLPNet(widths)

    def forward(self, x, s, ctx=None):
        return self.net(torch.cat([x, s], dim=1))


class RecursiveCNN(nn.Module):
    """MNIST-style CNN; s (class probabilities) enters through an embedding added to the features."""

    def __init__(self, classes=10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.LeakyReLU(0.01),
            nn.Conv2d(10, 20, 5), nn.MaxPool2d(2), nn.LeakyReLU(0.01),
            nn.Flatten(), nn.Linear(320, 50), nn.LeakyReLU(0.01))
        self.embed = nn.Sequential(nn.Linear(classes, 50), nn.LeakyReLU(0.01))
        self.head = nn.Sequential(nn.Linear(50, 50), nn.LeakyReLU(0.01), nn.Linear(50, classes))

    def forward(self, x, s, ctx=None):
        return self.head(self.body(x) + self.embed(s))


class SAGEConv(nn.Module):
    """PyG SAGEConv defaults: lin_l(mean over in-neighbours of x) + lin_r(x); lin_r has no bias."""

    def __init__(self, fin, fout):
        super().__init__()
        self.lin_l = nn.Linear(fin, fout, bias=True)
        self.lin_r = nn.Linear(fin, fout, bias=False)

    def forward(self, x, graph):
        return self.lin_l(graph.mean_neighbours(x)) + self.lin_r(x)


class RecursiveSAGE(nn.Module):
    """Graph regression: node features concat(pos, s of the node's graph), 4 SAGE layers with
    ReLU, global mean pool per graph, Linear 64→1."""

    def __init__(self, widths=(3, 64, 64, 64, 64)):
        super().__init__()
        self.convs = nn.ModuleList(SAGEConv(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, pos, s, graph):
        h = torch.cat([pos, graph.broadcast(s)], dim=1)
        for conv in self.convs:
            h = torch.relu(conv(h, graph))
        return self.head(graph.pool(h))


# ---------------------------------------------------------------------------------------------
# graphs


class _CsrMean(torch.autograd.Function):
    """y = A x with A the (V,V) mean-aggregation matrix in CSR; backward uses the precomputed Aᵀ
    (also CSR) instead of letting autograd transpose A on every step."""

    @staticmethod
    def forward(ctx, x, a, at):
        ctx.at = at
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, g):
        # dx = Aᵀ·g : (V,V)(V,F) -> (V,F)
        return torch.sparse.mm(ctx.at, g.contiguous()), None, None


class GraphBatch:
    """A batch of graphs given by edge_index (2,E) (row 0 = source, row 1 = target) and batch (V)
    (the graph of each node). Everything the model needs per step is precomputed here, once per
    batch, outside the timed adaptation.

    mean_neighbours(x): mean of x over the sources of the edges pointing to each node (0 for a
    node without in-edges), by `method`:
      index_add       zeros.index_add_(0, dst, x[src]) * 1/deg   (float atomics)
      scatter_reduce  zeros.scatter_reduce_(0, dst, x[src], "mean", include_self=False)
      csr             cuSPARSE/MKL SpMM with the row-normalized adjacency, Aᵀ for backward
    pool / broadcast use a reshape when every graph has the same node count and nodes are sorted
    by graph (the meshes here), and index_add / index_select otherwise.
    """

    METHODS = ("index_add", "scatter_reduce", "csr")

    def __init__(self, edge_index, batch, num_graphs, method="index_add"):
        if method not in self.METHODS:
            raise ValueError(f"GraphBatch: unknown aggregation '{method}', expected one of {self.METHODS}")
        edge_index = edge_index.long()
        batch = batch.long()
        self.num_nodes = batch.numel()
        self.num_graphs = int(num_graphs)
        self.src = edge_index[0].contiguous()
        self.dst = edge_index[1].contiguous()
        self.batch = batch
        deg = torch.bincount(self.dst, minlength=self.num_nodes).to(torch.float32)
        self.inv_deg = (1.0 / deg.clamp(min=1.0)).unsqueeze(1)
        counts = torch.bincount(batch, minlength=self.num_graphs)
        self.inv_counts = (1.0 / counts.clamp(min=1).to(torch.float32)).unsqueeze(1)
        n = self.num_nodes // max(self.num_graphs, 1)
        self.uniform_n = None
        if n * self.num_graphs == self.num_nodes and n > 0:
            expect = torch.arange(self.num_graphs, device=batch.device).repeat_interleave(n)
            if torch.equal(expect, batch):
                self.uniform_n = n
        self.method = method
        self._a = self._at = None
        if method == "csr":
            self._build_csr()

    def with_method(self, method):
        """The same graph with another aggregation (shares the index tensors)."""
        other = object.__new__(GraphBatch)
        other.__dict__.update(self.__dict__)
        if method not in self.METHODS:
            raise ValueError(f"GraphBatch: unknown aggregation '{method}'")
        other.method = method
        if method == "csr" and other._a is None:
            other._build_csr()
        return other

    def _build_csr(self):
        v = self.num_nodes
        vals = self.inv_deg.squeeze(1).index_select(0, self.dst)
        a = torch.sparse_coo_tensor(torch.stack([self.dst, self.src]), vals, (v, v)).coalesce()
        at = torch.sparse_coo_tensor(torch.stack([self.src, self.dst]), vals, (v, v)).coalesce()
        self._a, self._at = a.to_sparse_csr(), at.to_sparse_csr()

    def to(self, dtype):
        """The same graph with float buffers in `dtype` (for the float64 reference)."""
        other = self.with_method(self.method)
        other.inv_deg = self.inv_deg.to(dtype)
        other.inv_counts = self.inv_counts.to(dtype)
        if self.method == "csr":
            other._build_csr()
        return other

    def mean_neighbours(self, x):
        if self.method == "csr":
            return _CsrMean.apply(x, self._a, self._at)
        msgs = x.index_select(0, self.src)
        out = x.new_zeros(x.shape[0], x.shape[1])  # sizes from x: compiles with dynamic shapes
        if self.method == "scatter_reduce":
            idx = self.dst.unsqueeze(1).expand(-1, x.shape[1])
            return out.scatter_reduce(0, idx, msgs, "mean", include_self=False)
        return out.index_add(0, self.dst, msgs) * self.inv_deg

    def broadcast(self, s):
        """(B,C) per-graph values -> (V,C) per-node values."""
        if self.uniform_n is not None:
            b, c = s.shape
            return s.unsqueeze(1).expand(b, self.uniform_n, c).reshape(b * self.uniform_n, c)
        return s.index_select(0, self.batch)

    def pool(self, h):
        """(V,F) node features -> (B,F) mean per graph."""
        if self.uniform_n is not None:
            return h.view(-1, self.uniform_n, h.shape[1]).mean(dim=1)
        out = h.new_zeros(self.num_graphs, h.shape[1]).index_add(0, self.batch, h)
        return out * self.inv_counts


def grid_meshes(num_graphs, side=32, device="cpu"):
    """B disjoint side×side grid meshes: node (i,j) = i*side+j at position (j/(side-1), i/(side-1));
    edges right, down and down-right, each in both directions; graph b's nodes offset by b*side².
    Returns pos (V,2) f32, edge_index (2,E) i64, batch (V) i64."""
    i, j = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    pos1 = torch.stack([j.reshape(-1) / (side - 1), i.reshape(-1) / (side - 1)], dim=1).float()
    idx = i * side + j
    pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :]), (idx[:-1, :-1], idx[1:, 1:])]
    a = torch.cat([p[0].reshape(-1) for p in pairs])
    b = torch.cat([p[1].reshape(-1) for p in pairs])
    e1 = torch.stack([torch.cat([a, b]), torch.cat([b, a])])
    n = side * side
    offs = (torch.arange(num_graphs) * n).repeat_interleave(e1.shape[1])
    edge_index = e1.repeat(1, num_graphs) + offs.unsqueeze(0)
    pos = pos1.repeat(num_graphs, 1)
    batch = torch.arange(num_graphs).repeat_interleave(n)
    return pos.to(device), edge_index.to(device), batch.to(device)


# ---------------------------------------------------------------------------------------------
# model specifications


class ModelSpec:
    """What the benchmark needs to know about one model.

    build()                    a fresh model with PyTorch's default initialization
    null(B, device, dtype)     the neutral signal ∅ for a batch of B
    make_batch(B, device, gen) (x, ctx): x the tensor that changes per batch (features, images,
                               node positions), ctx the fixed context (GraphBatch or None)
    classification             s = softmax(y0) and the loss compares probabilities
    """

    def __init__(self, name, build, null_value, out_dim, classification, keys):
        self.name = name
        self.build = build
        self.null_value = null_value
        self.out_dim = out_dim
        self.classification = classification
        self.keys = keys

    def null(self, batch, device, dtype=torch.float32):
        return torch.full((batch, self.out_dim), self.null_value, device=device, dtype=dtype)

    def make_batch(self, batch, device, gen, agg="index_add"):
        if self.name == "sage":
            pos, edge_index, gb = grid_meshes(batch, device=device)
            return pos, GraphBatch(edge_index, gb, batch, agg)
        if self.name == "cnn":
            x = torch.rand(batch, 1, 28, 28, generator=gen)
        else:
            x = torch.randn(batch, 13, generator=gen)
        return x.to(device), None

    def inputs_from_export(self, tensors, device, agg="index_add"):
        """(x, ctx, B) from idem's inputs.safetensors."""
        if self.name == "sage":
            pos = tensors["pos"].to(device=device, dtype=torch.float32)
            batch = tensors["batch"].to(device)
            b = int(batch.max().item()) + 1 if batch.numel() else 0
            return pos, GraphBatch(tensors["edge_index"].to(device), batch, b, agg), b
        x = tensors["x"].to(device=device, dtype=torch.float32)
        b = x.shape[0]
        x = x.reshape(b, 1, 28, 28) if self.name == "cnn" else x.reshape(b, 13)
        return x, None, b

    def make_target(self, batch, device, gen=None):
        """Training targets as `idem bench train` makes them: labels i % 10 (int64, (B)) for the
        cnn, (B, 1) standard normal values otherwise."""
        if self.classification:
            return (torch.arange(batch) % self.out_dim).to(device)
        return torch.randn(batch, self.out_dim, generator=gen).to(device)

    def train_loss(self, f, x, y, null, ctx):
        """The IT³ training objective (idem's it3_objective with p_feed 1, signal = target):
        ℓ(f(x, ∅), y) + ℓ(f(x, s(y)), y) with s(y) = one-hot y and ℓ cross-entropy for the cnn,
        s(y) = y and ℓ the mean squared error otherwise."""
        y0 = f(x, null, ctx)
        if self.classification:
            s = F.one_hot(y, self.out_dim).to(y0.dtype)
            return F.cross_entropy(y0, y) + F.cross_entropy(f(x, s, ctx), y)
        return F.mse_loss(y0, y) + F.mse_loss(f(x, y, ctx), y)

    def loss(self, f, anchor, x, null, ctx):
        """The IT³ idempotence loss: y0 = f(x, ∅); y1 = anchor(x, y0 or softmax y0); d(y1, y0).
        Gradients reach f's parameters directly and through the anchor's input."""
        y0 = f(x, null, ctx)
        if self.classification:
            s = torch.softmax(y0, dim=1)
            return (torch.softmax(anchor(x, s, ctx), dim=1) - s).abs().mean()
        return (anchor(x, y0, ctx) - y0).abs().mean()


def _mlp_keys():
    return [f"net.layers.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")]


def _cnn_keys():
    return [f"{m}.{p}" for m in ("body.0", "body.3", "body.7", "embed.0", "head.0", "head.2")
            for p in ("weight", "bias")]


def _sage_keys():
    keys = []
    for i in range(4):
        keys += [f"convs.{i}.lin_l.weight", f"convs.{i}.lin_l.bias", f"convs.{i}.lin_r.weight"]
    return keys + ["head.weight", "head.bias"]


SPECS = {
    "mlp_tab": ModelSpec("mlp_tab", lambda: RecursiveMLP((14, 30, 20, 10, 1)), 50.0, 1, False, _mlp_keys()),
    "mlp_256": ModelSpec("mlp_256", lambda: RecursiveMLP((14, 256, 256, 256, 1)), 50.0, 1, False, _mlp_keys()),
    "cnn": ModelSpec("cnn", RecursiveCNN, 0.1, 10, True, _cnn_keys()),
    "sage": ModelSpec("sage", RecursiveSAGE, 0.2, 1, False, _sage_keys()),
}

# ---------------------------------------------------------------------------------------------
# one IT³ offline adaptation per test batch, four ways

LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8


def make_adam(params, how):
    """how: fused | foreach | capturable (fused when PyTorch allows it, else foreach)."""
    params = list(params)
    if how == "foreach":
        return torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS)
    capturable = how == "capturable"
    if params[0].is_cuda:
        try:
            return torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, fused=True, capturable=capturable)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, capturable=capturable)


def reset_(params, theta, opt):
    """θ ← Θ and Adam's moments and step ← 0, in place (no allocation, no host sync)."""
    with torch.no_grad():
        if hasattr(torch, "_foreach_copy_"):
            torch._foreach_copy_(params, theta)
        else:
            for p, t in zip(params, theta):
                p.copy_(t)
        by_device = {}
        for p in params:
            st = opt.state.get(p)
            if st:
                for key in ("step", "exp_avg", "exp_avg_sq"):
                    if key in st:
                        by_device.setdefault(st[key].device, []).append(st[key])
        for tensors in by_device.values():
            torch._foreach_zero_(tensors)


class Problem:
    """One (model, batch) problem: the spec, Θ (base, trainable copy kept pristine), the frozen
    anchor F, ∅, the batch and its context."""

    def __init__(self, spec, base, x, ctx, device):
        self.spec, self.base, self.x, self.ctx, self.device = spec, base, x, ctx, device
        self.batch = x.shape[0] if ctx is None else ctx.num_graphs
        self.anchor = copy.deepcopy(base).requires_grad_(False)
        self.null = spec.null(self.batch, device, x.dtype)

    def loss(self, f, x):
        return self.spec.loss(f, self.anchor, x, self.null, self.ctx)

    def predict(self, f, x):
        with torch.no_grad():
            return f(x, self.null, self.ctx)


class Eager:
    """In-place reset, fused Adam, plain eager autograd."""

    def __init__(self, prob, steps, adam="fused"):
        self.prob, self.steps = prob, steps
        self.f = copy.deepcopy(prob.base)
        self.params = list(self.f.parameters())
        self.theta = list(prob.anchor.parameters())
        self.opt = make_adam(self.params, adam)

    def __call__(self, x):
        reset_(self.params, self.theta, self.opt)
        for _ in range(self.steps):
            self.opt.zero_grad(set_to_none=True)
            self.prob.loss(self.f, x).backward()
            self.opt.step()
        return self.prob.predict(self.f, x)


class TttStyle:
    """torch-ttt's IT3Engine habits: copy.deepcopy of the model and a new Adam every batch."""

    def __init__(self, prob, steps):
        self.prob, self.steps = prob, steps

    def __call__(self, x):
        f = copy.deepcopy(self.prob.base)
        opt = torch.optim.Adam(f.parameters(), lr=LR, betas=BETAS, eps=EPS)
        for _ in range(self.steps):
            opt.zero_grad(set_to_none=True)
            self.prob.loss(f, x).backward()
            opt.step()
        return self.prob.predict(f, x)


class Graphed:
    """The whole adaptation in one CUDA graph. Autograd remembers the stream its first backward
    ran on, so every eager warm-up step runs on a side stream and the capture uses that same
    stream (pytorch issue 180090; docs/bench_pytorch.md); warming up on the default stream and
    capturing on another makes the capture fail."""

    def __init__(self, prob, steps, warmup=2):
        if prob.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.static_x = prob.x.clone()
        self.inner = Eager(prob, steps, adam="capturable")
        side = torch.cuda.Stream(prob.device)
        side.wait_stream(torch.cuda.current_stream(prob.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):  # also creates Adam's state, so the capture allocates none
                self.inner(self.static_x)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=side):
                self.static_pred = self.inner(self.static_x)
        torch.cuda.current_stream(prob.device).wait_stream(side)

    def __call__(self, x):
        self.static_x.copy_(x)
        self.graph.replay()
        return self.static_pred


class Compiled:
    """torch.compile of the loss (AOTAutograd gives a compiled backward) and of the prediction;
    Adam is the fused one (one kernel already, nothing for the compiler to gain) and the reset
    stays two foreach calls. One object per model, its modules reused for every batch size, so
    dynamo's guards hold and only a new shape recompiles. With dynamic=None (PyTorch's default,
    "automatic dynamic") the first batch size compiles static and the second recompiles with the
    sizes that changed (the batch, node and edge counts) symbolic, which then serves every later
    batch size: two compiles per model. Graphs need the index_add aggregation: dynamo cannot
    trace sparse CSR tensors."""

    def __init__(self, spec, base, mode="default", dynamic=None):
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"torch.compile needs PyTorch 2.0+, this is {torch.__version__}")
        self.f = copy.deepcopy(base)
        self.anchor = copy.deepcopy(base).requires_grad_(False)
        self.params = list(self.f.parameters())
        self.theta = list(self.anchor.parameters())
        self.opt = make_adam(self.params, "fused")
        f, anchor = self.f, self.anchor
        kw = {} if dynamic is None else {"dynamic": dynamic}
        if mode not in (None, "", "default"):
            kw["mode"] = mode

        def loss(x, null, ctx):
            return spec.loss(f, anchor, x, null, ctx)

        def pred(x, null, ctx):
            return f(x, null, ctx)

        self.loss = torch.compile(loss, **kw)
        self.pred = torch.compile(pred, **kw)

    def __call__(self, x, null, ctx, steps):
        reset_(self.params, self.theta, self.opt)
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            self.loss(x, null, ctx).backward()
            self.opt.step()
        with torch.no_grad():
            return self.pred(x, null, ctx)


# ---------------------------------------------------------------------------------------------
# one IT³ training step


class TrainStep:
    """One training step of `model` (trained in place) as `idem bench train` times it:
    zero_grad; L = spec.train_loss (two forwards: f(x, ∅) and f(x, s(y))); one backward; one
    Adam step (lr 1e-3, betas .9/.999, eps 1e-8; fused where PyTorch has it, else the default
    implementation). Returns L, detached."""

    def __init__(self, spec, model, x, ctx, y, adam="fused"):
        self.spec, self.model, self.ctx, self.y = spec, model.train(), ctx, y
        self.opt = make_adam(model.parameters(), adam)
        batch = x.shape[0] if ctx is None else ctx.num_graphs
        self.null = spec.null(batch, x.device, x.dtype)

    def __call__(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = self.spec.train_loss(self.model, x, self.y, self.null, self.ctx)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def step_with(self, x, grads=None):
        """One step like __call__ that returns (L, {name: its gradient}); with `grads` ({name:
        tensor}) Adam steps with those gradients instead of the step's own."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.spec.train_loss(self.model, x, self.y, self.null, self.ctx)
        loss.backward()
        own = {k: p.grad.detach().clone() for k, p in self.model.named_parameters()}
        if grads is not None:
            for k, p in self.model.named_parameters():
                p.grad = grads[k].to(device=p.device, dtype=p.dtype).clone()
        self.opt.step()
        return loss.detach(), own


# ---------------------------------------------------------------------------------------------
# safetensors without dependencies: u64 little-endian header length, JSON header, raw data

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def read_safetensors(path):
    """{name: CPU tensor} from a safetensors file; raises ValueError naming the file on bad input."""
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors header ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} is longer than the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = [int(d) for d in info["shape"]]
        numel = 1
        for d in shape:
            numel *= d
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not (0 <= begin <= end <= len(body)) or end - begin != numel * itemsize:
            raise ValueError(f"{path}: tensor '{name}' offsets {begin}..{end} do not match shape "
                             f"{shape} ({info['dtype']}) or the file size")
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype).reshape(shape)
    return out


def _tensor_bytes(t):
    if t.numel() == 0:
        return b""
    u8 = t.reshape(-1).view(torch.uint8)
    try:
        return u8.numpy().tobytes()
    except (RuntimeError, ImportError):  # torch built without numpy support
        return bytes(u8.tolist())


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} (moved to the CPU, made contiguous) in the given order."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        raw = _tensor_bytes(t)
        header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)))
        fh.write(hb)
        for raw in blobs:
            fh.write(raw)


def load_tensors(path):
    """safetensors' own loader when it is installed, else read_safetensors."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        return read_safetensors(path)
    return load_file(path)
