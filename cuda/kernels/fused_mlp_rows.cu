// CUDA: the fused IT³ adaptation of a narrow concat MLP (every width under 64) in one block,
// a warp per row of the batch. Contract: core/kernels/fused_mlp_adapt.h; reference (the same
// sums in the same order; the results agree to rounding, as the header says):
// core/cpu/fused_mlp_adapt.cpp.
//
// Why a second kernel: the phase kernel (fused_mlp_adapt.cu) puts a block barrier after every
// layer of every pass, 16 per step for a 4-layer net, and under ncu each phase cost about
// 1.5 µs of barrier waits and dependent instructions whatever its size. But most of a step only
// ever combines values of ONE row of the batch: f's forward, F's forward, the input gradients
// through F and through f. Here warp w owns rows w, w + 32, …; it runs those passes for its rows
// with __syncwarp() between layers (lane j computes output j, j + 32), and the block meets only
// where rows mix:
//   1. row passes: y0 = f_θ(x, ∅), y1 = F(x, y0), δ through F, ∂L/∂y0, δ through f (θ before
//      the update, as in the phase kernel), every δ kept (the fd buffer);
//   2. barrier; the loss (block 0's tree); every weight's and bias's gradient, a sum over the
//      rows in row order, and its optimizer update, one thread per parameter;
//   3. barrier, next step. After the last step the prediction is a row pass again.
// So a step costs two block barriers (plus the loss tree's) instead of 16.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/kernels/fused_mlp_adapt.h"
#include "cuda/common.cuh"
#include "cuda/kernels/fused_mlp_device.cuh"

namespace idem::cuda {

namespace {

using namespace fused_mlp;

constexpr int kRowWarps = kFusedMlpRowThreads / 32;

// Where the kernel keeps θ, the optimizer state and the scratch: shared memory when they fit
// (laid out by carve_shared), else the global buffers of the params.
// Each row pass is a chain of short dots whose every load waits on the value the warp wrote a
// layer before; from shared memory that wait is about 30 cycles, from L2 (a store leaves the
// line in L2 only) several hundred. Θ stays in global memory: read-only, it stays in L1.
struct Ctx {
  FusedMlpLayer layer[kFusedMlpMaxLayers];  // w, b, mw, mb, vw, vb redirected; w0, b0 as given
  float *fa, *Fa, *d0, *d1, *gy0, *fd;
};

// One layer of the forward for row b, lane's outputs j = lane, lane + 32, …: the dot in input
// order (the reference's), then bias and activation (none on the last layer).
__device__ __forceinline__ void row_layer_forward(const FusedMlpAdaptParams& p, const Ctx& c, const Geo& g, int l,
                                                  bool anchor, const float* s, float* acts, int b,
                                                  int lane) {
  const FusedMlpLayer& ly = c.layer[l - 1];
  const float* W = anchor ? ly.w0 : ly.w;
  const float* bias = anchor ? ly.b0 : ly.b;
  const int nin = p.widths[l - 1], nout = p.widths[l];
  const float* a = l > 1 ? acts + g.off[l - 1] + b * nin : nullptr;
  float* out = acts + g.off[l] + b * nout;
  for (int j = lane; j < nout; j += 32)
    out[j] = layer_output(p, g, l, forward_dot(p, g, W + j * nin, a, s, b, nin), bias[j]);
}

// f_θ(x, ∅) (anchor false, s null) or F(x, s) for row b: all layers, a warp barrier between.
__device__ void row_forward(const FusedMlpAdaptParams& p, const Ctx& c, const Geo& g, bool anchor, const float* s,
                            float* acts, int b, int lane) {
  for (int l = 1; l <= g.L; ++l) {
    row_layer_forward(p, c, g, l, anchor, s, acts, b, lane);
    __syncwarp();
  }
}

// Input gradient of layer l for row b: out[i] = act'(Σ_j δ[j]·W[j, i]) at the activation a[i],
// j in order; δ is row b's gradient of layer l's output (a pointer to its nout values).
__device__ __forceinline__ void row_input_grad(const FusedMlpAdaptParams& p, const float* W, int nin,
                                               int nout, const float* delta, const float* a, float* out,
                                               int lane) {
  for (int i = lane; i < nin; i += 32)
    out[i] = math::fused_act_grad(p.act, back_dot(buffer_delta(delta), W, nin, nout, i), a[i], p.slope);
}

// Step 1 for row b: both forwards, δ through F, ∂L/∂y0 and δ through f (into c.fd, and
// c.gy0 for the last layer). F's δ go through c.d0 / c.d1 in turn, row b at b·widest: rows
// are at different layers at the same moment, so a row's slot must not depend on the layer.
__device__ void row_backward_pass(const FusedMlpAdaptParams& p, const Ctx& c, const Geo& g, int widest, int b,
                                  int lane) {
  row_forward(p, c, g, false, nullptr, c.fa, b, lane);  // y0 = f_θ(x, ∅)
  const float* y0 = c.fa + g.off[g.L] + b * g.S;
  row_forward(p, c, g, true, c.fa + g.off[g.L], c.Fa, b, lane);  // y1 = F(x, y0)
  const float* y1 = c.Fa + g.off[g.L] + b * g.S;
  // δ of F's last layer, the distance's gradient; then back through F (Θ), input gradient only.
  float* cur = c.d0 + b * widest;  // the current layer's δ for row b
  float* other = c.d1 + b * widest;
  for (int s = lane; s < g.S; s += 32) cur[s] = dist_grad(p, g, y1[s], y0[s]);
  __syncwarp();
  for (int l = g.L; l >= 2; --l) {
    const int nin = p.widths[l - 1], nout = p.widths[l];
    row_input_grad(p, c.layer[l - 1].w0, nin, nout, cur, c.Fa + g.off[l - 1] + b * nin, other, lane);
    __syncwarp();
    float* t = cur;
    cur = other;
    other = t;
  }
  // ∂L/∂y0 = −dist_grad + the signal columns of F's input gradient (δ of F's layer 1 in cur).
  {
    const int nin = p.widths[0], nout = p.widths[1];
    const float* W = c.layer[0].w0 + g.d;
    for (int s = lane; s < g.S; s += 32)
      c.gy0[b * g.S + s] = -dist_grad(p, g, y1[s], y0[s]) + back_dot(buffer_delta(cur), W, nin, nout, s);
    __syncwarp();
  }
  // δ through f with θ as it is before this step's update; layer L's δ is ∂L/∂y0.
  for (int l = g.L; l >= 2; --l) {
    const int nin = p.widths[l - 1], nout = p.widths[l];
    const float* delta = l == g.L ? c.gy0 + b * g.S : c.fd + g.off[l] + b * nout;
    row_input_grad(p, c.layer[l - 1].w, nin, nout, delta, c.fa + g.off[l - 1] + b * nin,
                   c.fd + g.off[l - 1] + b * nin, lane);
    __syncwarp();
  }
}

// Step 2: every parameter's gradient (rows in order) and its update, one thread each.
__device__ void update_all(const FusedMlpAdaptParams& p, const Ctx& c, const Geo& g, const Step& st) {
  for (int l = 1; l <= g.L; ++l) {
    const FusedMlpLayer& ly = c.layer[l - 1];
    const int nin = p.widths[l - 1], nout = p.widths[l];
    const float* delta = l == g.L ? c.gy0 : c.fd + g.off[l];
    const float* a = l > 1 ? c.fa + g.off[l - 1] : nullptr;
    const int nw = nout * nin;
    for (int t = int(threadIdx.x); t < nw + nout; t += blockDim.x) {
      update_param(st, ly, nw, t, param_grad(p, g, delta, a, nin, nout, t));
    }
  }
}

// The kernel's shared memory (Ctx), one layout for the launch's sizing and the kernel's
// pointers: per layer W and b (θ), then mW, mb and vW, vb where the optimizer keeps them; then
// the scratch of p.batch rows, laid out as the global one (fused_mlp_scratch_layout). Returns
// the floats it spans; with c, also points c's θ, state and scratch at them in `sm` (thread 0).
__host__ __device__ int64_t carve_shared(const FusedMlpAdaptParams& p, Ctx* c, float* sm) {
  int64_t n = 0;
  auto take = [&](int64_t count) {  // the next `count` floats
    float* at = c ? sm + n : nullptr;
    n += count;
    return at;
  };
  for (int l = 0; l < p.layers; ++l) {
    const FusedMlpLayer& src = p.layer[l];
    const int64_t nw = int64_t(p.widths[l + 1]) * p.widths[l], nb = p.widths[l + 1];
    float* w = take(nw);
    float* b = take(nb);
    float* mw = src.mw ? take(nw) : nullptr;
    float* mb = src.mw ? take(nb) : nullptr;
    float* vw = src.vw ? take(nw) : nullptr;
    float* vb = src.vw ? take(nb) : nullptr;
    if (!c) continue;
    FusedMlpLayer& ly = c->layer[l];
    ly.w = w, ly.b = b;
    if (src.mw) ly.mw = mw, ly.mb = mb;
    if (src.vw) ly.vw = vw, ly.vb = vb;
  }
  const FusedMlpScratchLayout s = fused_mlp_scratch_layout(p, p.batch);
  if (c) fused_mlp_point_scratch(*c, sm + n, s);
  return n + s.total;
}

// Points c at shared memory `sm` (carve_shared's layout) or, when sm is null, at the params'
// global buffers. Thread 0 only.
__device__ void build_ctx(const FusedMlpAdaptParams& p, Ctx& c, float* sm) {
  for (int l = 0; l < p.layers; ++l) c.layer[l] = p.layer[l];
  if (sm)
    carve_shared(p, &c, sm);
  else
    c.fa = p.fa, c.Fa = p.Fa, c.d0 = p.d0, c.d1 = p.d1, c.gy0 = p.gy0, c.fd = p.fd;
}

// Copies every parameter tensor of c (θ and, when `state`, the optimizer's) from `from` to `to`
// (pointer members of FusedMlpLayer, e.g. the params' global ones and the shared ones).
__device__ void copy_params(const FusedMlpAdaptParams& p, const FusedMlpLayer* to,
                            const FusedMlpLayer* from, bool state) {
  for (int l = 0; l < p.layers; ++l) {
    const int nw = p.widths[l + 1] * p.widths[l], nb = p.widths[l + 1];
    for (int i = int(threadIdx.x); i < nw + nb; i += blockDim.x) {
      const bool isw = i < nw;
      const int e = isw ? i : i - nw;
      (isw ? to[l].w : to[l].b)[e] = (isw ? from[l].w : from[l].b)[e];
      if (state && to[l].mw) (isw ? to[l].mw : to[l].mb)[e] = (isw ? from[l].mw : from[l].mb)[e];
      if (state && to[l].vw) (isw ? to[l].vw : to[l].vb)[e] = (isw ? from[l].vw : from[l].vb)[e];
    }
  }
}

__global__ void __launch_bounds__(kFusedMlpRowThreads)
    fused_mlp_rows_kernel(const __grid_constant__ FusedMlpAdaptParams p, int in_shared) {
  extern __shared__ float sm[];
  __shared__ int off[kFusedMlpMaxLayers + 1];
  // Raw bytes, not `__shared__ Ctx c`: FusedMlpLayer's default member initializers would be a
  // dynamic initialization, which a __shared__ variable cannot have (nvcc warning #20054);
  // thread 0 fills every field in build_ctx before the barrier below.
  __shared__ alignas(Ctx) unsigned char ctx_bytes[sizeof(Ctx)];
  Ctx& c = *reinterpret_cast<Ctx*>(ctx_bytes);
  __shared__ Step step;
  int widest = 0;
  for (int l = 1; l <= p.layers; ++l) widest = max(widest, p.widths[l]);
  if (threadIdx.x == 0) {
    layer_offsets(p, off);
    build_ctx(p, c, in_shared ? sm : nullptr);
  }
  __syncthreads();  // off[] and c
  const Geo g = make_geo(p, off);
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;

  if (p.steps > 0) {  // θ ← Θ, optimizer state ← 0
    reset_params(p, c.layer, int(threadIdx.x), int(blockDim.x));
  } else if (in_shared) {  // no step: the prediction with θ as it is
    copy_params(p, c.layer, p.layer, false);
  }
  __syncthreads();  // θ before any row pass

  for (int k = 1; k <= p.steps; ++k) {
    // The optimizer's scalars for this step (double pow: a long dependent chain) by a thread
    // the row passes leave idle when the batch is under 32 rows, into shared memory.
    if (threadIdx.x == blockDim.x - 1) step = step_scalars(p, k);
    for (int b = warp; b < g.B; b += kRowWarps) row_backward_pass(p, c, g, widest, b, lane);
    __syncthreads();  // every row's activations and δ (and step) before the sums over rows
    {
      const float *y0 = c.fa + off[g.L], *y1 = c.Fa + off[g.L];
      loss_block0(p, g, [y0, y1](int e) { return y1[e] - y0[e]; }, k);
    }
    update_all(p, c, g, step);
    __syncthreads();  // the updated θ before the next forward
  }
  // θ and the optimizer state back to the params (they are the adapted model's), beside the
  // prediction: both only read θ.
  if (in_shared && p.steps > 0) copy_params(p, p.layer, c.layer, true);
  for (int b = warp; b < g.B; b += kRowWarps) {  // the prediction f_θ(x, ∅)
    row_forward(p, c, g, false, nullptr, c.fa, b, lane);
    const float* y0 = c.fa + off[g.L] + b * g.S;
    for (int s = lane; s < g.S; s += 32) p.y[b * g.S + s] = y0[s];
  }
}

}  // namespace

FusedMlpKernel fused_mlp_rows(const FusedMlpAdaptParams& p, int device) {
  const char* op = "fused_mlp_adapt";
  if (fused_kernel_choice() != FusedKernelChoice::compact && fused_mlp_rows_padded(p, device))
    return FusedMlpKernel::rows_padded;
  // Shared memory for everything when it fits the block's opt-in limit (227 KB on an H100:
  // mlp_tab up to about batch 200), else the global buffers.
  static DynamicSharedMemory smem(reinterpret_cast<const void*>(fused_mlp_rows_kernel));
  const int64_t bytes = carve_shared(p, nullptr, nullptr) * int64_t(sizeof(float));
  const bool in_shared = smem.fits(device, size_t(bytes), op);
  fused_mlp_rows_kernel<<<1, kFusedMlpRowThreads, in_shared ? size_t(bytes) : 0, current_stream()>>>(p, in_shared ? 1 : 0);
  IDEM_LAUNCH_CHECK(op);
  return FusedMlpKernel::rows_compact;
}

}  // namespace idem::cuda
