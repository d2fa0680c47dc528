// Kernel contract: the whole IT³ offline adaptation of a small concat-injection MLP in one call
// (one launch on a GPU). cpu:: in core/cpu/fused_mlp_adapt.cpp (the reference, plain loops),
// cuda:: in cuda/kernels/fused_mlp_adapt.cu (the dispatch and the phase kernel),
// cuda/kernels/fused_mlp_rows.cu (the row kernel) and cuda/kernels/fused_mlp_rows_padded.cu (its
// padded layout), stub in cuda/no_cuda.cpp. The planner that
// decides eligibility and fills the description is it3/fused_adapt.h.
//
// The network: L Linear layers n_0 → n_1 → … → n_L with bias, activation `act` after every
// layer but the last; input n_0 = d + S (features x, then the signal s), output n_L = S.
// One call computes, exactly as it3::Adapter does op by op (it3/adapt.cpp):
//   if steps > 0: θ ← Θ; optimizer state ← 0
//   for k in 1..steps:
//     y0 = f_θ([x, ∅])  (∅ = the constant `neutral`)
//     y1 = F_Θ([x, y0]) (the frozen anchor F is Θ; regression: signal(y0) = y0)
//     L  = mean d(y1 − y0) over B·S elements (|·| or (·)²), losses[k−1] = L
//     g  = ∂L/∂θ: through y0 directly (the distance's second argument) AND through F's input
//          (F's weights get no gradient; only the signal columns of its input gradient matter)
//     θ ← optimizer step (Adam or SGD with momentum, torch.optim formulas of core/kernels/optim.h,
//         bias corrections of step k; weight decay 0, no dampening, no Nesterov: the Adapter's)
//   y = f_θ([x, ∅])
// Numerics: every sum runs in a fixed order (no atomics), so repeated calls give the same bits.
// The CPU reference and the kernel sum in the same order, except the forward of a layer with
// 64 or more inputs and, up to kFusedMlpWarpBackMaxBatch rows, the input gradient of a layer
// with 64 or more outputs, which the kernel gives a warp per output (32 strided partial sums,
// then a fixed xor tree); the GPU may also contract a·b + c into FMAs. So the two agree to rounding,
// not bit for bit (the tests' gate: atol 1e-4 + rtol 1e-3).
#pragma once
#include <cstdint>

#include "core/kernels/fused.h"  // FusedAct, DistanceKind
#include "core/kernels/optim.h"  // OptimKind

namespace idem {

constexpr int kFusedMlpMaxLayers = 8;
constexpr int kFusedMlpMaxWidth = 256;
constexpr int kFusedMlpMaxBatch = 256;
constexpr int kFusedMlpThreads = 256;  // threads per block of the CUDA phase kernel
constexpr int kFusedMlpRowThreads = 1024;  // threads per block of the CUDA row kernel
// The row kernel's largest batch: 32 warps, so above 64 rows each warp walks 3 or more rows
// one after the other, and the phase kernel (or a CUDA graph) measured faster.
constexpr int kFusedMlpRowMaxBatch = 64;
// Inputs per output from which the phase kernel's forward gives each output a whole warp: lanes
// take every 32nd input (coalesced reads of the weight row and of the activation row) and a
// fixed xor tree adds the 32 partial sums. Below it one thread sums a whole (short,
// L1-resident) row: a warp per output would leave most lanes idle.
constexpr int kFusedMlpWarpDotMinInputs = 64;
// The largest batch at which the phase kernel's input gradients (a dot over a layer's nout
// outputs, reading a column of W) also take a warp per output when nout is at least
// kFusedMlpWarpDotMinInputs. Measured on an H100 for mlp_256, K = 1 (docs/performance.md): a
// warp per output took 148 / 177 µs at batch 8 / 64 against 227 / 237 with a thread per output,
// but 492 against 356 at batch 256, where a thread per output already has a grid's worth of
// work and the warps' scattered column reads cost more than the long chains they shorten.
constexpr int kFusedMlpWarpBackMaxBatch = 64;

// One Linear layer's tensors, all f32, row-major as PyTorch: W (out, in), b (out).
struct FusedMlpLayer {
  float* w = nullptr;          // θ: adapted in place
  float* b = nullptr;
  const float* w0 = nullptr;   // Θ: the pristine copy, also the frozen anchor F
  const float* b0 = nullptr;
  float* mw = nullptr;         // Adam exp_avg / SGD momentum buffer (null: plain SGD)
  float* mb = nullptr;
  float* vw = nullptr;         // Adam exp_avg_sq (null for SGD)
  float* vb = nullptr;
  float* gw = nullptr;         // gradient scratch (steps > 0)
  float* gb = nullptr;
};

struct FusedMlpAdaptParams {
  int layers = 0;                               // L
  int widths[kFusedMlpMaxLayers + 1] = {};      // n_0 … n_L
  int batch = 0;                                // B
  int signal = 1;                               // S = n_L
  int steps = 0;                                // K
  FusedAct act = FusedAct::relu;
  float slope = 0.01f;
  DistanceKind distance = DistanceKind::l1;
  float neutral = 50.0f;
  // optimizer: kind adam or sgd (momentum 0 = plain SGD)
  OptimKind optim = OptimKind::adam;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, momentum = 0.0;
  FusedMlpLayer layer[kFusedMlpMaxLayers];
  const float* x = nullptr;  // (B, d) contiguous
  float* y = nullptr;        // (B, S): the prediction
  float* losses = nullptr;   // (steps): the adaptation loss of each step (may be null)
  // Scratch, f32: fa / Fa = activations of f / F for layers 1..L (Σ_l B·n_l each, layer after
  // layer), d0 / d1 = two (B, max n_l) gradient buffers used in turn, gy0 = (B, S), fd = the
  // gradients of f's layers 1..L (fa's layout; the CUDA row kernel keeps them all until the
  // weight-gradient phase).
  float* fa = nullptr;
  float* Fa = nullptr;
  float* d0 = nullptr;
  float* d1 = nullptr;
  float* gy0 = nullptr;
  float* fd = nullptr;
};

// The scratch's layout for a batch of B: where fa, Fa, d0, d1, gy0 and fd start, in floats
// from its start (in that order), and the floats of all of it. One definition for the global
// scratch (fused_mlp_carve_scratch) and the CUDA row kernel's copy of it in shared memory.
struct FusedMlpScratchLayout {
  int64_t fa, Fa, d0, d1, gy0, fd, total;
};
IDEM_HOST_DEVICE inline FusedMlpScratchLayout fused_mlp_scratch_layout(const FusedMlpAdaptParams& p,
                                                                       int64_t batch) {
  int64_t acts = 0, widest = 0;
  for (int l = 1; l <= p.layers; ++l) {
    acts += batch * p.widths[l];
    widest = widest > p.widths[l] ? widest : p.widths[l];
  }
  FusedMlpScratchLayout s;
  s.fa = 0;
  s.Fa = s.fa + acts;
  s.d0 = s.Fa + acts;
  s.d1 = s.d0 + batch * widest;
  s.gy0 = s.d1 + batch * widest;
  s.fd = s.gy0 + batch * p.signal;
  s.total = s.fd + acts;
  return s;
}
// Points the scratch pointers of `to` (FusedMlpAdaptParams, or anything with the same six
// members) into `base`, laid out as `s` says.
template <typename Scratch>
IDEM_HOST_DEVICE inline void fused_mlp_point_scratch(Scratch& to, float* base, const FusedMlpScratchLayout& s) {
  to.fa = base + s.fa;
  to.Fa = base + s.Fa;
  to.d0 = base + s.d0;
  to.d1 = base + s.d1;
  to.gy0 = base + s.gy0;
  to.fd = base + s.fd;
}

// Floats of scratch (fa, Fa, d0, d1, gy0, fd together) for a batch of B.
int64_t fused_mlp_scratch_floats(const FusedMlpAdaptParams& p, int64_t batch);
// Points p's scratch pointers into `s`, which holds fused_mlp_scratch_floats(p, batch) floats.
void fused_mlp_carve_scratch(FusedMlpAdaptParams& p, float* s, int64_t batch);

// The largest batch at which `automatic` (the command line's auto on a GPU) takes a net the row
// kernel cannot (a layer 64 or more wide, e.g. the bench mlp_256): the phase kernel then runs
// as a cooperative grid of at least one block per SM. Measured on an H100 against a CUDA graph
// replay of the op-by-op path, mlp_256, K = 1: 61.5 / 72.4 / 95.3 / 140.8 / 178.0 µs at batch
// 1 / 8 / 16 / 32 / 64 against 94.8 / 103.7 / 113.8 / 142.4 / 170.3 (docs/performance.md,
// "The phase kernel for wide nets"): a clear win up to 16 rows, a tie at 32.
constexpr int kFusedMlpAutoWideMaxBatch = 16;
// Whether `automatic` takes a call of `batch` rows on a GPU: the row kernel takes it, or the
// phase kernel's largest phase fits one block (kFusedMlpSingleBlockMacs), or the net is not
// row-eligible and the batch is at most kFusedMlpAutoWideMaxBatch.
bool fused_mlp_auto_takes(const FusedMlpAdaptParams& p, int64_t batch);
// The batch limit of that rule past one block: kFusedMlpRowMaxBatch for a row-eligible net,
// else kFusedMlpAutoWideMaxBatch.
int fused_mlp_auto_max_batch(const FusedMlpAdaptParams& p);

// Multiply-adds of the largest phase of one step for a batch of B: a layer's forward or input
// gradient, B·n_l·n_{l−1} (the weight gradient has the same count). The CUDA kernel sizes its
// grid from it: one block up to kFusedMlpThreads · kFusedMlpMacsPerThread, else a cooperative grid.
int64_t fused_mlp_largest_phase_macs(const FusedMlpAdaptParams& p, int64_t batch);
// Multiply-adds per thread a phase should give each block before another block pays off.
constexpr int64_t kFusedMlpMacsPerThread = 64;
constexpr int64_t kFusedMlpSingleBlockMacs = int64_t(kFusedMlpThreads) * kFusedMlpMacsPerThread;

namespace cpu {
void fused_mlp_adapt(const FusedMlpAdaptParams& p);
}

// Whether the CUDA row kernel can take this network: every width under 64 (a row's layer is
// then one warp's work, and every forward sum is one thread's, in the order of the reference).
bool fused_mlp_rows_eligible(const FusedMlpAdaptParams& p);
// Whether it takes a call of `batch` rows: eligible, and at most kFusedMlpRowMaxBatch rows.
bool fused_mlp_rows_takes(const FusedMlpAdaptParams& p, int64_t batch);

// The padded row kernel (cuda/kernels/fused_mlp_rows_padded.cu): the row kernel with every
// width padded to NP = 16, 32 or 64 (the smallest at least every n_l) and zeros in the padding,
// so each dot is an unrolled float4 loop over the layer's real width rounded up to 4 (picked by a
// warp-uniform switch) from shared memory instead of a runtime-length loop (under ncu the compact row kernel spent about 17 instructions of
// index arithmetic and branching per multiply-add). Sums keep the reference's order: the padded
// terms are exact zeros added after the real ones. Its shared memory, in floats from the start:
//   θ, then Θ: per layer l (0-based) W at l·NP·(NP + 4) (row j at j·(NP + 4): float4 rows
//   whose eight-lane quarters hit distinct banks), then the biases, NP per layer;
//   rows: per-row buffers of NP floats, buffer k of row b at k·B·NP + b·NP, in this order:
//   f's input [x, ∅], F's input [x, y0], f's activations of layers 1..L, F's of layers 1..L,
//   f's gradients of layers 1..L (layer L's: ∂L/∂y0), two δ buffers for F's backward;
//   state: the optimizer's moments, compact: every layer's [mW | mb], then (Adam) every
//   layer's [vW | vb], layer after layer.
struct FusedMlpPaddedLayout {
  int pad = 0, stride = 0;  // NP and a padded W's row stride (NP + 4); pad 0: not row-eligible
  int64_t theta = 0, anchor = 0, rows = 0, state = 0, total = 0;
  IDEM_HOST_DEVICE int64_t weights_floats() const { return int64_t(pad) * stride; }  // one padded W
};
IDEM_HOST_DEVICE inline FusedMlpPaddedLayout fused_mlp_padded_layout(const FusedMlpAdaptParams& p,
                                                                     int64_t batch) {
  FusedMlpPaddedLayout s;
  int widest = 0;
  int64_t params = 0;
  for (int l = 0; l <= p.layers; ++l) widest = widest > p.widths[l] ? widest : p.widths[l];
  for (int l = 1; l <= p.layers; ++l) params += int64_t(p.widths[l]) * (p.widths[l - 1] + 1);
  s.pad = widest <= 16 ? 16 : widest <= 32 ? 32 : widest < 64 ? 64 : 0;
  if (s.pad == 0) return s;
  s.stride = s.pad + 4;
  const int64_t block = p.layers * (s.weights_floats() + s.pad);  // θ's (or Θ's) W and b
  s.theta = 0;
  s.anchor = block;
  s.rows = 2 * block;
  s.state = s.rows + (4 + 3 * int64_t(p.layers)) * batch * s.pad;
  // The moments the params carry (Adam: both; SGD with momentum: the first; plain SGD: none).
  const int moments = (p.layer[0].mw ? 1 : 0) + (p.layer[0].vw ? 1 : 0);
  s.total = s.state + moments * params;
  return s;
}

// The cluster kernel (cuda/kernels/fused_mlp_cluster.cu), for nets with a layer 64 or more wide
// (mlp_256) at up to kFusedMlpClusterMaxBatch rows: one thread-block cluster of `blocks` blocks
// (16 on an H100), block q owning units [q·rows_l, (q + 1)·rows_l) of every layer l (rows_l =
// ⌈n_l / blocks⌉; the last blocks may own fewer or none). Each block keeps its units' rows of
// W and b in shared memory for the whole call: θ, then Θ, then the moments the params carry
// (Adam: m then v; SGD with momentum: m), each a `section` of floats laid out alike: per layer
// l (0-based) its rows_l rows of n_l inputs at woff[l], then its rows_l biases. Another block's
// rows are read through distributed shared memory (the input gradients need W's columns).
constexpr int kFusedMlpClusterThreads = 512;
constexpr int kFusedMlpClusterMaxBatch = 64;
struct FusedMlpClusterLayout {
  int blocks = 0;
  int rows[kFusedMlpMaxLayers] = {};       // units per block of layer l + 1
  int64_t woff[kFusedMlpMaxLayers] = {};   // layer l + 1's rows in a section
  int64_t section = 0;                     // floats of θ (or Θ, m, v)
  int64_t theta = 0, anchor = 0, m = -1, v = -1, total = 0;  // m / v: −1 when absent
};
IDEM_HOST_DEVICE inline FusedMlpClusterLayout fused_mlp_cluster_layout(const FusedMlpAdaptParams& p, int blocks) {
  FusedMlpClusterLayout s;
  s.blocks = blocks;
  for (int l = 0; l < p.layers; ++l) {
    s.rows[l] = (p.widths[l + 1] + blocks - 1) / blocks;
    s.woff[l] = s.section;
    s.section += int64_t(s.rows[l]) * (p.widths[l] + 1);
  }
  s.theta = 0;
  s.anchor = s.section;
  s.total = 2 * s.section;
  if (p.layer[0].mw) s.m = s.total, s.total += s.section;
  if (p.layer[0].vw) s.v = s.total, s.total += s.section;
  return s;
}

// Which kernel ran a fused adaptation on a GPU, and as how many blocks: cuda::fused_mlp_adapt's
// answer (the tests and `idem bench it3 --json` report it).
enum class FusedMlpKernel { none, rows_padded, rows_compact, cluster, phase };
const char* fused_mlp_kernel_name(FusedMlpKernel k);  // "rows_padded", "cluster", …
struct FusedMlpLaunch {
  FusedMlpKernel kernel = FusedMlpKernel::none;
  int blocks = 0;
};

namespace cuda {
// ONE launch on current_stream() of `device`: the row kernel (one block; a warp per row of the
// batch, block barriers only around the weight update) when fused_mlp_rows_takes, else the
// cluster kernel for a wide net at up to kFusedMlpClusterMaxBatch rows whose work is more than
// one block's (sm_90), else the phase kernel: a single block when the work is small, a
// thread-block cluster or a cooperative grid otherwise. Never allocates, never synchronizes.
// Returns the kernel it launched and its blocks.
FusedMlpLaunch fused_mlp_adapt(const FusedMlpAdaptParams& p, int device);
// The grid fused_mlp_adapt would use for this shape on `device` (1: one block).
int fused_mlp_adapt_grid(const FusedMlpAdaptParams& p, int device);
// The blocks of the one cluster the cluster kernel would run `p` as on `device` (16 on an
// H100, or 8), or 0 where it cannot: a batch over kFusedMlpClusterMaxBatch, a device or build
// before sm_90, no cluster of 8 blocks, or the layout over a block's shared memory.
int fused_mlp_cluster_blocks(const FusedMlpAdaptParams& p, int device);
}  // namespace cuda

}  // namespace idem
