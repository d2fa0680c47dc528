// Device helpers shared by the CUDA kernels of the fused IT³ MLP adaptation: the phase kernel
// (fused_mlp_adapt.cu), the row kernel (fused_mlp_rows.cu), its padded variant
// (fused_mlp_rows_padded.cu) and the cluster kernel (fused_mlp_cluster.cu). All four follow the CPU
// reference core/cpu/fused_mlp_adapt.cpp sum for sum, so these are its formulas on the device.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "core/kernels/fused_mlp_adapt.h"
#include "core/kernels/optim_math.h"
#include "cuda/cluster.cuh"
#include "cuda/common.cuh"
#include "cuda/dynamic_shared_memory.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda::fused_mlp {

// The shape of one adaptation. Every index fits 32 bits (at most 256 rows, 256 wide: the
// header's limits), so the phases index with int: 64-bit index math and division were most of
// the kernel's instructions (ncu, tools/ncu_stalls.sh), and a phase's time is its longest
// thread's chain of instructions, not its arithmetic.
struct Geo {
  int L, B, S, d;
  float scale;  // 1 / (B·S), the mean's factor in the distance's gradient
  const int* off;  // off[l]: layer l's activations in fa / Fa (block-shared, see the kernel)
};

// off[l] for l = 1 … L, the start of layer l's activations in fa / Fa (layer after layer, B·n_l
// each). One thread writes them into the block-shared array; a barrier must follow.
__device__ inline void layer_offsets(const FusedMlpAdaptParams& p, int* off) {
  off[1] = 0;
  for (int l = 1; l < p.layers; ++l) off[l + 1] = off[l] + p.batch * p.widths[l];
}

__device__ inline Geo make_geo(const FusedMlpAdaptParams& p, const int* off) {
  Geo g;
  g.L = p.layers, g.B = p.batch, g.S = p.signal, g.d = p.widths[0] - p.signal;
  g.scale = 1.0f / float(int64_t(g.B) * g.S);
  g.off = off;
  return g;
}

__device__ __forceinline__ float input_at(const FusedMlpAdaptParams& p, const Geo& g, int b, int i,
                                          const float* s) {
  if (i < g.d) return p.x[b * g.d + i];
  return s ? s[b * g.S + (i - g.d)] : p.neutral;
}

__device__ __forceinline__ float dist_grad(const FusedMlpAdaptParams& p, const Geo& g, float y1,
                                           float y0) {
  return math::distance_grad_factor(p.distance, y1 - y0) * g.scale;
}

// The sums the phase kernel and the compact row kernel compute (the padded one has its own
// unrolled dots, the same terms in the same order), one thread per output, each over a fixed index range in the
// reference's order (the loops' unrolling leaves the order as written). Each kernel maps its
// threads onto the outputs its own way (a warp per row, or a grid-stride loop per phase).

// θ ← Θ and optimizer state ← 0, the first phase of an adaptation with steps: element i of
// every layer's W then b, for i = first, first + stride, …. `layer` holds θ's and the state's
// pointers (the params' own, or the row kernel's copies in shared memory) and Θ's.
__device__ inline void reset_params(const FusedMlpAdaptParams& p, const FusedMlpLayer* layer,
                                    int first, int stride) {
  for (int l = 0; l < p.layers; ++l) {
    const FusedMlpLayer& ly = layer[l];
    const int nw = p.widths[l + 1] * p.widths[l], nb = p.widths[l + 1];
    for (int i = first; i < nw + nb; i += stride) {
      const bool isw = i < nw;
      const int e = isw ? i : i - nw;
      (isw ? ly.w : ly.b)[e] = (isw ? ly.w0 : ly.b0)[e];
      if (float* m = isw ? ly.mw : ly.mb) m[e] = 0.0f;
      if (float* v = isw ? ly.vw : ly.vb) v[e] = 0.0f;
    }
  }
}

// Σ_i a[i]·w[i] over the nin inputs of row b, in input order: w is row j of a layer's W, a is
// row b of the activations below, or null for layer 1, whose input is [x, s] (s null: ∅).
__device__ __forceinline__ float forward_dot(const FusedMlpAdaptParams& p, const Geo& g,
                                             const float* w, const float* a, const float* s, int b,
                                             int nin) {
  float acc = 0.0f;
  if (a) {
#pragma unroll 8
    for (int i = 0; i < nin; ++i) acc += a[i] * w[i];
  } else {
#pragma unroll 8
    for (int i = 0; i < nin; ++i) acc += input_at(p, g, b, i, s) * w[i];
  }
  return acc;
}

// Layer l's output from its dot: plus the bias, then the activation (none on the last layer).
__device__ __forceinline__ float layer_output(const FusedMlpAdaptParams& p, const Geo& g, int l,
                                              float dot, float bias) {
  const float z = dot + bias;
  return l < g.L ? math::fused_act(p.act, z, p.slope) : z;
}

// Σ_j δ[j]·W[j, i] in j order: input i's gradient before the activation's derivative, with δ
// one row's nout output gradients and W the layer's nout × nin weights (or a column block of
// them: W + d for the signal columns, the row stride staying nin). `delta(j)` gives δ[j]: a
// row of a gradient buffer, or F's last layer's δ, the distance's gradient, computed where it
// is read.
template <typename Delta>
__device__ __forceinline__ float back_dot(Delta delta, const float* W, int nin, int nout, int i) {
  const float* wi = W + i;
  float acc = 0.0f;
#pragma unroll 8
  for (int j = 0; j < nout; ++j) acc += delta(j) * wi[j * nin];
  return acc;
}

// δ read from a gradient buffer: δ(e) = d[e].
__device__ __forceinline__ auto buffer_delta(const float* d) {
  return [d](int e) { return d[e]; };
}

// The same sum by the 32 lanes of a warp, for a dot over kFusedMlpWarpDotMinInputs or more
// terms (the rule of the wide forward): lane l sums j = l, l + 32, … in order, then warp_sum's
// fixed xor tree; every lane gets the total. Lanes read 32 rows of W at column i: each warp
// touches one 32-byte sector per row, which the warps of the neighbouring columns reuse from L1.
template <typename Delta>
__device__ __forceinline__ float back_dot_warp(Delta delta, const float* W, int nin, int nout, int i,
                                               int lane) {
  const float* wi = W + i;
  float acc = 0.0f;
  for (int j = lane; j < nout; j += 32) acc += delta(j) * wi[j * nin];
  return warp_sum(acc);
}

// The gradient of parameter t of a layer with nin inputs and nout outputs, a sum over the rows
// in row order: t < nout·nin is W[j, i] (t = j·nin + i), Σ_b δ[b, j]·a[b, i]; above it is bias
// j = t − nout·nin, Σ_b δ[b, j]. δ is (B, nout); a is (B, nin), or null for layer 1 (its
// input [x, ∅]).
__device__ __forceinline__ float param_grad(const FusedMlpAdaptParams& p, const Geo& g,
                                            const float* delta, const float* a, int nin, int nout,
                                            int t) {
  const int nw = nout * nin;
  float acc = 0.0f;
  if (t < nw) {
    const int j = t / nin, i = t - j * nin;
    const float* dj = delta + j;
    if (a) {
      const float* ai = a + i;
#pragma unroll 8
      for (int b = 0; b < g.B; ++b) acc += dj[b * nout] * ai[b * nin];
    } else {
#pragma unroll 8
      for (int b = 0; b < g.B; ++b) acc += dj[b * nout] * input_at(p, g, b, i, nullptr);
    }
  } else {
    const int j = t - nw;
#pragma unroll 8
    for (int b = 0; b < g.B; ++b) acc += delta[b * nout + j];
  }
  return acc;
}

// The optimizer's scalars of step t. The update of one element is the formula every optimizer
// update uses (core/kernels/optim_math.h: round-to-nearest intrinsics on the device, so no
// a·b + c is contracted), with the Adapter's settings: no weight decay, dampening or Nesterov.
struct Step {
  math::AdamCoeffs<float> adam;
  math::SgdCoeffs<float> sgd;
  bool is_adam;
};

__device__ __forceinline__ Step step_scalars(const FusedMlpAdaptParams& p, int t) {
  Step s;
  s.is_adam = p.optim == OptimKind::adam;
  s.adam = math::adam_coeffs<float>(p.beta1, p.beta2, p.eps,
                                    math::adam_corrections(p.lr, p.beta1, p.beta2, double(t)));
  s.sgd = {float(p.lr), float(p.momentum), 1.0f, false, t == 1};
  return s;
}

// One update of the parameter w with gradient g and its moments *m, *v (m null: plain SGD;
// v null unless Adam).
__device__ __forceinline__ void update_one(const Step& s, float& w, float* m, float* v, float g) {
  if (s.is_adam)
    math::adam_step(s.adam, g, *m, *v, w);
  else if (m)
    math::sgd_step(s.sgd, g, true, *m, w);
  else  // plain SGD keeps no buffer: sgd_step never touches its buffer argument then
    math::sgd_step(s.sgd, g, false, w, w);
}

// One update of element i of w, m, v (one layout for the three).
__device__ __forceinline__ void update(const Step& s, float* w, float* m, float* v, float g, int i) {
  update_one(s, w[i], m ? m + i : nullptr, v ? v + i : nullptr, g);
}

// The update of parameter t of layer `ly` (nw weights): t < nw is W[t], else bias t − nw.
__device__ __forceinline__ void update_param(const Step& s, const FusedMlpLayer& ly, int nw, int t,
                                             float g) {
  if (t < nw)
    update(s, ly.w, ly.mw, ly.vw, g, t);
  else
    update(s, ly.b, ly.mb, ly.vb, g, t - nw);
}

// Loss of this step into p.losses[k − 1]: block 0 only, a fixed-shape tree in double over
// kFusedMlpThreads slots (slot t holds the terms t, t + kFusedMlpThreads, …), the same in every
// kernel whatever its block size (every thread of block 0 must call it: it has barriers).
// Only the first n slots can be non-zero and every term is ≥ 0, so a level whose upper half
// lies entirely at or past n adds exact zeros and is skipped, and the levels below 32 run in
// warp 0 with shuffles (lane i adds lane i + h's partial, the tree's own operands): the same
// bits as the whole tree, with fewer block barriers.
// diff(e) gives y1 − y0 of element e = b·S + s (row b, signal column s).
template <typename Diff>
__device__ inline void loss_block0(const FusedMlpAdaptParams& p, const Geo& g, Diff diff, int k) {
  __shared__ double part[kFusedMlpThreads];
  if (blockIdx.x != 0 || !p.losses) return;
  const int n = g.B * g.S;
  const int t = int(threadIdx.x);
  if (t < kFusedMlpThreads) {
    double acc = 0.0;
    for (int e = t; e < n; e += kFusedMlpThreads)
      acc += double(math::distance_term(p.distance, diff(e)));
    part[t] = acc;
  }
  __syncthreads();
  for (int h = kFusedMlpThreads / 2; h >= 32; h /= 2) {
    if (n > h) {  // block-uniform: n and h are the same in every thread
      if (t < h) part[t] += part[t + h];
      __syncthreads();
    }
  }
  if (t < 32) {
    double v = part[t];
    for (int h = 16; h > 0; h /= 2) {
      const double up = __shfl_down_sync(0xffffffffu, v, h);
      if (t < h) v += up;
    }
    if (t == 0) p.losses[k - 1] = float(v / double(n));
  }
}

}  // namespace idem::cuda::fused_mlp

namespace idem::cuda {
// The row kernel's launch (fused_mlp_rows.cu), for cuda::fused_mlp_adapt: one block on
// current_stream() of `device`, which must be the current device; requires
// fused_mlp_rows_eligible(p). It takes the padded kernel where that fits, else the compact one,
// and says which.
FusedMlpKernel fused_mlp_rows(const FusedMlpAdaptParams& p, int device);
// The padded row kernel's launch (fused_mlp_rows_padded.cu), as fused_mlp_rows; returns false,
// launching nothing, when the net is not row-eligible or its padded layout does not fit one
// block's shared memory on `device`.
bool fused_mlp_rows_padded(const FusedMlpAdaptParams& p, int device);
// The cluster kernel's launch (fused_mlp_cluster.cu) on current_stream() of the current device,
// as one cluster of `blocks` blocks: fused_mlp_cluster_blocks(p, device), non-zero.
void fused_mlp_cluster(const FusedMlpAdaptParams& p, int blocks);

// IDEM_FUSED_KERNEL, read once per process (fused_mlp_adapt.cu): auto; rows (the row kernel
// wherever the net is eligible, whatever the batch; padded where it fits); compact (the same,
// never padded: for comparisons); cluster (the cluster kernel wherever it can run and the row
// kernel does not take the call, else as auto); phase (the phase kernel).
enum class FusedKernelChoice { automatic, rows, compact, cluster, phase };
FusedKernelChoice fused_kernel_choice();

}  // namespace idem::cuda
