// Device helpers shared by the two CUDA kernels of the fused IT³ MLP adaptation: the phase
// kernel (fused_mlp_adapt.cu) and the row kernel (fused_mlp_rows.cu). Both follow the CPU
// reference core/cpu/fused_mlp_adapt.cpp sum for sum, so these are its formulas on the device.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/kernels/fused_mlp_adapt.h"
#include "cuda/common.cuh"

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

__device__ __forceinline__ float input_at(const FusedMlpAdaptParams& p, const Geo& g, int b, int i,
                                          const float* s) {
  if (i < g.d) return p.x[b * g.d + i];
  return s ? s[b * g.S + (i - g.d)] : p.neutral;
}

__device__ __forceinline__ float dist_grad(const FusedMlpAdaptParams& p, const Geo& g, float y1,
                                           float y0) {
  return math::distance_grad_factor(p.distance, y1 - y0) * g.scale;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
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

__device__ __forceinline__ void update(const Step& s, float* w, float* m, float* v, float g, int i) {
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

// Loss of this step into p.losses[k − 1]: block 0 only, a fixed-shape tree in double over
// kFusedMlpThreads slots (slot t holds the terms t, t + kFusedMlpThreads, …), the same in both
// kernels whatever their block size (every thread of block 0 must call it: it has barriers).
// Only the first n slots can be non-zero and every term is ≥ 0, so a level whose upper half
// lies entirely at or past n adds exact zeros and is skipped, and the levels below 32 run in
// warp 0 with shuffles (lane i adds lane i + h's partial, the tree's own operands): the same
// bits as the whole tree, with fewer block barriers.
__device__ inline void loss_block0(const FusedMlpAdaptParams& p, const Geo& g, const float* y0,
                                   const float* y1, int k) {
  __shared__ double part[kFusedMlpThreads];
  if (blockIdx.x != 0 || !p.losses) return;
  const int n = g.B * g.S;
  const int t = int(threadIdx.x);
  if (t < kFusedMlpThreads) {
    double acc = 0.0;
    for (int e = t; e < n; e += kFusedMlpThreads)
      acc += double(math::distance_term(p.distance, y1[e] - y0[e]));
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
// current_stream(); requires fused_mlp_rows_eligible(p).
void fused_mlp_rows(const FusedMlpAdaptParams& p);
}  // namespace idem::cuda
