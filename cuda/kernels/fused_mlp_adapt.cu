// CUDA: the whole IT³ adaptation of a small concat MLP in ONE launch. Contract:
// core/kernels/fused_mlp_adapt.h; reference (same phases, same order of every sum):
// core/cpu/fused_mlp_adapt.cpp.
//
// Why one kernel: at these sizes (≤ 256 wide, ≤ 256 rows) every op of the op-by-op path is a
// 2–4 µs launch doing well under a microsecond of work, so ~30 launches per adaptation cost
// far more than the arithmetic (docs/performance.md). Here the phases of the adaptation
// (reset, per layer: forward of f, forward of F, backward through F, backward through f with
// the optimizer update) run back to back inside one launch, separated by barriers:
//   - grid of 1 block (small models): __syncthreads() between phases;
//   - otherwise a cooperative grid (cudaLaunchCooperativeKernel), grid.sync() between phases.
// Every phase is a grid-stride loop over its outputs; each output is one thread's sum over a
// fixed index range in a fixed order (a wide layer's forward: one warp's, 32 strided partial
// sums and a fixed xor tree), so there are no atomics and repeated calls give the same bits.
// Weights, moments and activations live in global memory (a few MB at most: L2-resident).
// The optimizer of layer l + 1 runs in the phase that computes layer l's gradients (layer l + 1's
// weights are no longer read then), and layer 1's update in the thread that computes its
// gradient: no phase of its own.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>

#include "core/kernels/fused_mlp_adapt.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

namespace cg = cooperative_groups;

// A barrier between phases: the block's when the grid is one block (a plain launch), else the
// grid's (only valid in a cooperative launch, which fused_mlp_adapt uses whenever grid > 1).
__device__ __forceinline__ void phase_sync() {
  if (gridDim.x == 1)
    __syncthreads();
  else
    cg::this_grid().sync();
}

struct Geo {
  int L, B, S, d;
  int64_t off[kFusedMlpMaxLayers + 1];
};

__device__ __forceinline__ float input_at(const FusedMlpAdaptParams& p, const Geo& g, int b, int i,
                                          const float* s) {
  if (i < g.d) return p.x[int64_t(b) * g.d + i];
  return s ? s[int64_t(b) * g.S + (i - g.d)] : p.neutral;
}

__device__ __forceinline__ float dist_grad(const FusedMlpAdaptParams& p, const Geo& g, float y1,
                                           float y0) {
  const float scale = 1.0f / float(int64_t(g.B) * g.S);
  return math::distance_grad_factor(p.distance, y1 - y0) * scale;
}

// Inputs per output from which a layer's forward gives each output a whole warp: lanes take
// every 32nd input (coalesced reads of the weight row and of the activation row) and a fixed
// xor tree adds the 32 partial sums. Below it one thread sums a whole (short, L1-resident) row:
// a warp per output would leave most lanes idle.
constexpr int kWarpDotMinInputs = 64;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Forward of the network with θ (anchor false) or Θ on [x, s]: one phase per layer.
__device__ void forward(const FusedMlpAdaptParams& p, const Geo& g, bool anchor, const float* s,
                        float* acts, int64_t t0, int64_t stride) {
  for (int l = 1; l <= g.L; ++l) {
    const FusedMlpLayer& ly = p.layer[l - 1];
    const float* W = anchor ? ly.w0 : ly.w;
    const float* bias = anchor ? ly.b0 : ly.b;
    const int nin = p.widths[l - 1], nout = p.widths[l];
    const float* prev = l > 1 ? acts + g.off[l - 1] : nullptr;
    const int64_t n = int64_t(g.B) * nout;
    if (nin >= kWarpDotMinInputs) {
      // A warp per output; the loop bound is the same for every lane of a warp (o is
      // warp-uniform), so every lane reaches each shuffle.
      const int lane = int(t0 & 31);
      for (int64_t o = t0 >> 5; o < n; o += stride >> 5) {
        const int b = int(o / nout), j = int(o % nout);
        const float* w = W + int64_t(j) * nin;
        float acc = 0.0f;
        if (prev) {
          const float* a = prev + int64_t(b) * nin;
          for (int i = lane; i < nin; i += 32) acc += a[i] * w[i];
        } else {
          for (int i = lane; i < nin; i += 32) acc += input_at(p, g, b, i, s) * w[i];
        }
        acc = warp_sum(acc);
        if (lane == 0) {
          const float z = acc + bias[j];
          acts[g.off[l] + o] = l < g.L ? math::fused_act(p.act, z, p.slope) : z;
        }
      }
    } else {
      for (int64_t t = t0; t < n; t += stride) {
        const int b = int(t / nout), j = int(t % nout);
        const float* w = W + int64_t(j) * nin;
        float acc = 0.0f;
        if (prev) {
          const float* a = prev + int64_t(b) * nin;
          for (int i = 0; i < nin; ++i) acc += a[i] * w[i];
        } else {
          for (int i = 0; i < nin; ++i) acc += input_at(p, g, b, i, s) * w[i];
        }
        const float z = acc + bias[j];
        acts[g.off[l] + t] = l < g.L ? math::fused_act(p.act, z, p.slope) : z;
      }
    }
    phase_sync();
  }
}

// One optimizer update of element i (formulas of core/cpu/optim.cpp; explicit round-to-nearest
// so no a·b + c is contracted, as in cuda/kernels/optim.cu).
struct Step {
  float w1, b2, w2, step_size, bc2, eps, lr, mom;
  bool adam, first;
};

__device__ __forceinline__ Step step_scalars(const FusedMlpAdaptParams& p, int t) {
  Step s;
  s.adam = p.optim == OptimKind::adam;
  s.first = t == 1;
  s.w1 = float(1.0 - p.beta1), s.b2 = float(p.beta2), s.w2 = float(1.0 - p.beta2);
  s.step_size = float(p.lr / (1.0 - pow(p.beta1, double(t))));
  s.bc2 = float(sqrt(1.0 - pow(p.beta2, double(t))));
  s.eps = float(p.eps), s.lr = float(p.lr), s.mom = float(p.momentum);
  return s;
}

__device__ __forceinline__ void update(const Step& s, float* w, float* m, float* v, float g,
                                       int64_t i) {
  if (s.adam) {
    const float mi = __fadd_rn(m[i], __fmul_rn(s.w1, __fsub_rn(g, m[i])));
    const float vi = __fadd_rn(__fmul_rn(s.b2, v[i]), __fmul_rn(s.w2, __fmul_rn(g, g)));
    m[i] = mi;
    v[i] = vi;
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2), s.eps);
    w[i] = __fsub_rn(w[i], __fmul_rn(s.step_size, __fdiv_rn(mi, denom)));
    return;
  }
  if (m) {
    const float buf = s.first ? g : __fadd_rn(__fmul_rn(s.mom, m[i]), __fmul_rn(1.0f, g));
    m[i] = buf;
    g = buf;
  }
  w[i] = __fsub_rn(w[i], __fmul_rn(s.lr, g));
}

// Loss of this step into p.losses[k − 1]: block 0 only, a fixed-shape tree in double.
__device__ void loss_block0(const FusedMlpAdaptParams& p, const Geo& g, const float* y0,
                            const float* y1, int k) {
  __shared__ double part[kFusedMlpThreads];
  if (blockIdx.x != 0 || !p.losses) return;
  const int64_t n = int64_t(g.B) * g.S;
  double acc = 0.0;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x)
    acc += double(math::distance_term(p.distance, y1[e] - y0[e]));
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h /= 2) {
    if (int(threadIdx.x) < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) p.losses[k - 1] = float(part[0] / double(n));
}

__global__ void __launch_bounds__(kFusedMlpThreads) fused_mlp_adapt_kernel(const __grid_constant__ FusedMlpAdaptParams p) {
  Geo g;
  g.L = p.layers, g.B = p.batch, g.S = p.signal, g.d = p.widths[0] - p.signal;
  g.off[1] = 0;
  for (int l = 1; l < g.L; ++l) g.off[l + 1] = g.off[l] + int64_t(g.B) * p.widths[l];
  const int64_t t0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const float* y0 = p.fa + g.off[g.L];
  const float* y1 = p.Fa + g.off[g.L];

  if (p.steps > 0) {  // θ ← Θ, optimizer state ← 0
    for (int l = 0; l < g.L; ++l) {
      const FusedMlpLayer& ly = p.layer[l];
      const int64_t nw = int64_t(p.widths[l + 1]) * p.widths[l], nb = p.widths[l + 1];
      for (int64_t i = t0; i < nw + nb; i += stride) {
        const bool isw = i < nw;
        const int64_t e = isw ? i : i - nw;
        (isw ? ly.w : ly.b)[e] = (isw ? ly.w0 : ly.b0)[e];
        if (float* m = isw ? ly.mw : ly.mb) m[e] = 0.0f;
        if (float* v = isw ? ly.vw : ly.vb) v[e] = 0.0f;
      }
    }
    phase_sync();
  }

  for (int k = 1; k <= p.steps; ++k) {
    const Step st = step_scalars(p, k);
    forward(p, g, false, nullptr, p.fa, t0, stride);  // y0 = f_θ(x, ∅)
    forward(p, g, true, y0, p.Fa, t0, stride);        // y1 = F(x, y0)
    // Backward through F, input gradient only; δ of F's last layer computed where it is read.
    float* cur = p.d0;
    float* other = p.d1;
    for (int l = g.L; l >= 2; --l) {
      const float* W = p.layer[l - 1].w0;
      const int nin = p.widths[l - 1], nout = p.widths[l];
      const float* a = p.Fa + g.off[l - 1];
      const int64_t n = int64_t(g.B) * nin;
      for (int64_t t = t0; t < n; t += stride) {
        const int b = int(t / nin), i = int(t % nin);
        float acc = 0.0f;
        // Unrolled so that several independent weight loads are in flight (L2 latency bound);
        // the sum's order is unchanged.
#pragma unroll 8
        for (int j = 0; j < nout; ++j) {
          const int64_t o = int64_t(b) * nout + j;
          const float delta = l == g.L ? dist_grad(p, g, y1[o], y0[o]) : other[o];
          acc += delta * W[int64_t(j) * nin + i];
        }
        cur[t] = math::fused_act_grad(p.act, acc, a[t], p.slope);
      }
      phase_sync();
      float* tmp = cur;
      cur = other;
      other = tmp;
    }
    // ∂L/∂y0 = −dist_grad + the signal columns of F's input gradient; and the loss.
    {
      const float* W = p.layer[0].w0;
      const int nin = p.widths[0], nout = p.widths[1];
      const int64_t n = int64_t(g.B) * g.S;
      for (int64_t t = t0; t < n; t += stride) {
        const int b = int(t / g.S), s = int(t % g.S);
        float acc = 0.0f;
        for (int j = 0; j < nout; ++j) {
          const int64_t o = int64_t(b) * nout + j;
          const float delta = g.L == 1 ? dist_grad(p, g, y1[o], y0[o]) : other[o];
          acc += delta * W[int64_t(j) * nin + g.d + s];
        }
        p.gy0[t] = -dist_grad(p, g, y1[t], y0[t]) + acc;
      }
      loss_block0(p, g, y0, y1, k);
      phase_sync();
    }
    // Backward through f with the optimizer folded in (see the file comment).
    const float* delta = p.gy0;
    for (int l = g.L; l >= 1; --l) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const int nin = p.widths[l - 1], nout = p.widths[l];
      const float* a = l > 1 ? p.fa + g.off[l - 1] : nullptr;
      if (l < g.L) {  // layer l + 1: its gradients are complete and its weights unread now
        const FusedMlpLayer& up = p.layer[l];
        const int64_t nw = int64_t(p.widths[l + 1]) * p.widths[l], nb = p.widths[l + 1];
        for (int64_t i = t0; i < nw + nb; i += stride) {
          if (i < nw)
            update(st, up.w, up.mw, up.vw, up.gw[i], i);
          else
            update(st, up.b, up.mb, up.vb, up.gb[i - nw], i - nw);
        }
      }
      const int64_t nw = int64_t(nout) * nin;
      for (int64_t t = t0; t < nw + nout; t += stride) {
        float acc = 0.0f;
        if (t < nw) {
          const int j = int(t / nin), i = int(t % nin);
#pragma unroll 8
          for (int b = 0; b < g.B; ++b)
            acc += delta[int64_t(b) * nout + j] *
                   (a ? a[int64_t(b) * nin + i] : input_at(p, g, b, i, nullptr));
          if (l == 1)
            update(st, ly.w, ly.mw, ly.vw, acc, t);
          else
            ly.gw[t] = acc;
        } else {
          const int j = int(t - nw);
          for (int b = 0; b < g.B; ++b) acc += delta[int64_t(b) * nout + j];
          if (l == 1)
            update(st, ly.b, ly.mb, ly.vb, acc, j);
          else
            ly.gb[j] = acc;
        }
      }
      float* out = nullptr;
      if (l > 1) {
        out = delta == p.d0 ? p.d1 : p.d0;
        const int64_t n = int64_t(g.B) * nin;
        for (int64_t t = t0; t < n; t += stride) {
          const int b = int(t / nin), i = int(t % nin);
          float acc = 0.0f;
#pragma unroll 8
          for (int j = 0; j < nout; ++j) acc += delta[int64_t(b) * nout + j] * ly.w[int64_t(j) * nin + i];
          out[t] = math::fused_act_grad(p.act, acc, a[t], p.slope);
        }
      }
      phase_sync();
      if (out) delta = out;
    }
  }
  forward(p, g, false, nullptr, p.fa, t0, stride);  // the prediction f_θ(x, ∅)
  for (int64_t t = t0; t < int64_t(g.B) * g.S; t += stride) p.y[t] = y0[t];
}

// Blocks of this kernel that fit on the device at once (a cooperative grid may not exceed
// it), or 1 where cooperative launches are unsupported. Cached per device.
int coresident_blocks(int device) {
  static std::array<std::atomic<int>, 64> cache{};
  if (device >= 0 && device < 64 && cache[size_t(device)].load() > 0) return cache[size_t(device)].load();
  int coop = 0, sms = 0, per_sm = 0;
  IDEM_CUDA_CHECK("fused_mlp_adapt", cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  IDEM_CUDA_CHECK("fused_mlp_adapt", cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  IDEM_CUDA_CHECK("fused_mlp_adapt", cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                                         &per_sm, fused_mlp_adapt_kernel, kFusedMlpThreads, 0));
  const int n = coop ? std::max(1, sms * per_sm) : 1;
  if (device >= 0 && device < 64) cache[size_t(device)].store(n);
  return n;
}

}  // namespace

int fused_mlp_adapt_grid(const FusedMlpAdaptParams& p, int device) {
  const int64_t macs = fused_mlp_largest_phase_macs(p, p.batch);
  const int64_t want = (macs + kFusedMlpSingleBlockMacs - 1) / kFusedMlpSingleBlockMacs;
  if (want <= 1) return 1;
  set_device(device);
  return int(std::min<int64_t>(want, coresident_blocks(device)));
}

int fused_mlp_adapt(const FusedMlpAdaptParams& p, int device) {
  const char* op = "fused_mlp_adapt";
  IDEM_CHECK(p.layers >= 1 && p.layers <= kFusedMlpMaxLayers && p.batch >= 1 &&
                 p.batch <= kFusedMlpMaxBatch,
             op, "unsupported shape: ", p.layers, " layers, batch ", p.batch);
  set_device(device);
  const int grid = fused_mlp_adapt_grid(p, device);
  if (grid == 1) {
    fused_mlp_adapt_kernel<<<1, kFusedMlpThreads, 0, current_stream()>>>(p);
    IDEM_LAUNCH_CHECK(op);
  } else {
    FusedMlpAdaptParams arg = p;
    void* args[] = {&arg};
    IDEM_CUDA_CHECK(op, cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(fused_mlp_adapt_kernel),
                                                    dim3(unsigned(grid)), dim3(kFusedMlpThreads), args, 0,
                                                    current_stream()));
    IDEM_LAUNCH_CHECK(op);
  }
  return grid;
}

}  // namespace idem::cuda
