// CUDA softmax / log_softmax over the middle dim of (outer, D, inner), forward and backward.
// Contract: core/kernels/softmax.h. The reference is core/cpu/softmax.cpp; the special values
// follow it: NaN is skipped by the max (and then poisons the sum), a non-finite max is replaced
// by 0 so a line of all -inf or one holding +inf gives the IEEE answer (NaN) instead of a silent
// number.
//
// Paths:
//  - inner == 1, D <= 1024: one warp per row, the row cached in registers (VPT values per
//    lane), max and sum by warp shuffles: one read and one write per element.
//  - inner == 1, D > 1024: one block per row, block reductions through shared memory, the row
//    re-read from L2 for each pass.
//  - inner > 1: one thread per (outer, inner) line; neighbouring threads read neighbouring
//    addresses, so every pass over D is coalesced.
// All reductions use a fixed tree (cuda/device_utils.cuh), so results are deterministic.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/kernels/softmax.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

// A shift that is not finite (all -inf, or +inf present) is replaced by 0, as on the CPU.
__device__ __forceinline__ float finite_or_zero(float m) { return isfinite(m) ? m : 0.f; }

// ---------------------------------------------------------------------------------------------
// inner == 1, D <= 32 * VPT: warp per row.

template <int VPT>
__global__ void softmax_fwd_warp_kernel(float* __restrict__ out, const float* __restrict__ in,
                                        int64_t rows, int D, bool log) {
  const int lane = threadIdx.x % 32;
  for (const int64_t row : grid_stride_warps(rows)) {
    const float* x = in + row * D;
    float* y = out + row * D;
    float v[VPT];
    float m = -INFINITY;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      const int c = lane + i * 32;
      v[i] = c < D ? __ldg(x + c) : -INFINITY;
      m = fmaxf(m, v[i]);
    }
    m = finite_or_zero(warp_max(m));
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      if (lane + i * 32 < D) s += expf(v[i] - m);
    }
    s = warp_sum(s);
    if (log) {
      const float lse = m + logf(s);
#pragma unroll
      for (int i = 0; i < VPT; ++i) {
        const int c = lane + i * 32;
        if (c < D) y[c] = v[i] - lse;
      }
    } else {
      const float inv = 1.f / s;
#pragma unroll
      for (int i = 0; i < VPT; ++i) {
        const int c = lane + i * 32;
        if (c < D) y[c] = expf(v[i] - m) * inv;
      }
    }
  }
}

template <int VPT>
__global__ void softmax_bwd_warp_kernel(float* __restrict__ gin, const float* __restrict__ gout,
                                        const float* __restrict__ out, int64_t rows, int D,
                                        bool log) {
  const int lane = threadIdx.x % 32;
  for (const int64_t row : grid_stride_warps(rows)) {
    const float* g = gout + row * D;
    const float* y = out + row * D;
    float* dx = gin + row * D;
    float gv[VPT], yv[VPT];
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      const int c = lane + i * 32;
      gv[i] = c < D ? __ldg(g + c) : 0.f;
      yv[i] = c < D ? __ldg(y + c) : 0.f;
      // log_softmax needs Σ g; softmax needs Σ g·y.
      s += log ? gv[i] : gv[i] * yv[i];
    }
    s = warp_sum(s);
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      const int c = lane + i * 32;
      if (c < D) dx[c] = log ? gv[i] - expf(yv[i]) * s : yv[i] * (gv[i] - s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// inner == 1, D > 1024: block per row.

constexpr int kRowThreads = 512;

__global__ void softmax_fwd_row_kernel(float* __restrict__ out, const float* __restrict__ in,
                                       int64_t rows, int64_t D, bool log) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* x = in + row * D;
    float* y = out + row * D;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) m = fmaxf(m, __ldg(x + c));
    m = finite_or_zero(block_max(m, scratch));
    float s = 0.f;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) s += expf(__ldg(x + c) - m);
    s = block_sum(s, scratch);
    if (log) {
      const float lse = m + logf(s);
      for (int64_t c = threadIdx.x; c < D; c += blockDim.x) y[c] = __ldg(x + c) - lse;
    } else {
      const float inv = 1.f / s;
      for (int64_t c = threadIdx.x; c < D; c += blockDim.x) y[c] = expf(__ldg(x + c) - m) * inv;
    }
  }
}

__global__ void softmax_bwd_row_kernel(float* __restrict__ gin, const float* __restrict__ gout,
                                       const float* __restrict__ out, int64_t rows, int64_t D,
                                       bool log) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* g = gout + row * D;
    const float* y = out + row * D;
    float* dx = gin + row * D;
    float s = 0.f;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x)
      s += log ? __ldg(g + c) : __ldg(g + c) * __ldg(y + c);
    s = block_sum(s, scratch);
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      const float gc = __ldg(g + c), yc = __ldg(y + c);
      dx[c] = log ? gc - expf(yc) * s : yc * (gc - s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// inner > 1: one thread per (o, i) line, stride `inner` along D.

__global__ void softmax_fwd_strided_kernel(float* __restrict__ out, const float* __restrict__ in,
                                           int64_t outer, int64_t D, int64_t inner, bool log) {
  for (const int64_t t : grid_stride(outer * inner)) {
    const int64_t o = t / inner, i = t - o * inner;
    const float* x = in + o * D * inner + i;
    float* y = out + o * D * inner + i;
    float m = -INFINITY;
    for (int64_t d = 0; d < D; ++d) m = fmaxf(m, __ldg(x + d * inner));
    m = finite_or_zero(m);
    float s = 0.f;
    for (int64_t d = 0; d < D; ++d) s += expf(__ldg(x + d * inner) - m);
    if (log) {
      const float lse = m + logf(s);
      for (int64_t d = 0; d < D; ++d) y[d * inner] = __ldg(x + d * inner) - lse;
    } else {
      const float inv = 1.f / s;
      for (int64_t d = 0; d < D; ++d) y[d * inner] = expf(__ldg(x + d * inner) - m) * inv;
    }
  }
}

__global__ void softmax_bwd_strided_kernel(float* __restrict__ gin,
                                           const float* __restrict__ gout,
                                           const float* __restrict__ out, int64_t outer,
                                           int64_t D, int64_t inner, bool log) {
  for (const int64_t t : grid_stride(outer * inner)) {
    const int64_t o = t / inner, i = t - o * inner;
    const int64_t base = o * D * inner + i;
    float s = 0.f;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t k = base + d * inner;
      s += log ? __ldg(gout + k) : __ldg(gout + k) * __ldg(out + k);
    }
    for (int64_t d = 0; d < D; ++d) {
      const int64_t k = base + d * inner;
      const float gc = __ldg(gout + k), yc = __ldg(out + k);
      gin[k] = log ? gc - expf(yc) * s : yc * (gc - s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

constexpr int kWarpThreads = 256;  // 8 rows per block on the warp path

// Calls f(std::integral_constant<int, VPT>) for the smallest VPT with 32*VPT >= D (D <= 1024).
template <typename F>
void with_vpt(int64_t D, F&& f) {
  if (D <= 32) f(std::integral_constant<int, 1>{});
  else if (D <= 64) f(std::integral_constant<int, 2>{});
  else if (D <= 128) f(std::integral_constant<int, 4>{});
  else if (D <= 256) f(std::integral_constant<int, 8>{});
  else if (D <= 512) f(std::integral_constant<int, 16>{});
  else f(std::integral_constant<int, 32>{});
}

}  // namespace

void softmax_fwd(const Tensor& out, const Tensor& in, ReduceShape s, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  if (s.outer * s.reduce * s.inner == 0) return;
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  float* y = out.data<float>();
  const float* x = in.data<float>();
  if (s.inner == 1 && s.reduce <= 1024) {
    const int D = static_cast<int>(s.reduce);
    with_vpt(D, [&](auto vpt) {  // a warp per row
      launch_grid_stride(IDEM_SITE(op), s.outer * 32, kWarpThreads,
                         softmax_fwd_warp_kernel<decltype(vpt)::value>, y, x, s.outer, D, log);
    });
  } else if (s.inner == 1) {
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(s.outer, 65535 * 8));
    softmax_fwd_row_kernel<<<grid, kRowThreads, 0, st>>>(y, x, s.outer, s.reduce, log);
    IDEM_LAUNCH_CHECK(op);
  } else {
    launch_grid_stride(IDEM_SITE(op), s.outer * s.inner, 256, softmax_fwd_strided_kernel, y, x,
                       s.outer, s.reduce, s.inner, log);
  }
}

void softmax_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& out, ReduceShape s,
                 bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  if (s.outer * s.reduce * s.inner == 0) return;
  set_device(grad_in.device().index);
  const cudaStream_t st = current_stream();
  float* gi = grad_in.data<float>();
  const float* g = grad_out.data<float>();
  const float* y = out.data<float>();
  if (s.inner == 1 && s.reduce <= 1024) {
    const int D = static_cast<int>(s.reduce);
    with_vpt(D, [&](auto vpt) {  // a warp per row
      launch_grid_stride(IDEM_SITE(op), s.outer * 32, kWarpThreads,
                         softmax_bwd_warp_kernel<decltype(vpt)::value>, gi, g, y, s.outer, D, log);
    });
  } else if (s.inner == 1) {
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(s.outer, 65535 * 8));
    softmax_bwd_row_kernel<<<grid, kRowThreads, 0, st>>>(gi, g, y, s.outer, s.reduce, log);
    IDEM_LAUNCH_CHECK(op);
  } else {
    launch_grid_stride(IDEM_SITE(op), s.outer * s.inner, 256, softmax_bwd_strided_kernel, gi, g,
                       y, s.outer, s.reduce, s.inner, log);
  }
}

}  // namespace idem::cuda
