// Kernel contract: 2-D pooling and upsampling over NCHW planes, as PyTorch.
//
// Every op maps an input plane (H,W) to an output plane (P,Q), for NC = N·C independent planes:
//   in (NC, H, W), out (NC, P, Q), contiguous.
//   max_pool2d:  out = max over the window (padding never wins); indices (i64, NC·P·Q) hold the
//                flat position h·W + w of the FIRST maximal element in row-major window order
//                (a NaN wins and propagates, as PyTorch).
//                With an activation act (FusedAct of core/kernels/fused.h, `slope` leaky_relu's
//                negative slope >= 0): out = act(max over the window), the SAME indices —
//                max_pool2d followed by the activation in one pass (ops::max_pool2d_act). The
//                backward then reads act' from `out` (math::fused_act_grad) and scatters
//                grad_out·act'(out) to the argmax: the bits of the activation's backward
//                followed by max_pool2d's. act = none is plain max_pool2d (out unread).
//   avg_pool2d:  out = window sum / window area, the area counting padding but clipped to the
//                padded input (PyTorch's count_include_pad=True; = kh·kw without ceil_mode).
//   adaptive_avg_pool2d: window p covers rows [⌊pH/P⌋, ⌈(p+1)H/P⌉), likewise for columns.
//   upsample nearest:  src = min(⌊dst · (in/out)⌋, in − 1), the scale computed in float.
//   upsample bilinear: PyTorch's area_pixel_compute_source_index with align_corners.
// Backward kernels overwrite grad_in entirely and are deterministic: each input element sums
// its contributions in increasing (p, q) order (no atomics).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/kernels/fused.h"  // FusedAct, math::fused_act / fused_act_grad
#include "core/tensor.h"

#ifndef IDEM_HOST_DEVICE
#if defined(__CUDACC__)
#define IDEM_HOST_DEVICE __host__ __device__
#else
#define IDEM_HOST_DEVICE
#endif
#endif

namespace idem {

struct PoolShape {
  int64_t NC = 0;        // number of planes (N·C)
  int64_t H = 0, W = 0;  // input plane
  int64_t P = 0, Q = 0;  // output plane
  // Window of max/avg pooling (unused by adaptive pooling and upsampling).
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

enum class UpsampleMode : uint8_t { nearest, bilinear };

namespace cpu {
void max_pool2d_fwd(const Tensor& out, const Tensor& indices, const Tensor& in, const PoolShape& s,
                    FusedAct act = FusedAct::none, double slope = 0.0);
// `out`: the forward's output, read only when act != none (may be undefined then).
void max_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& indices,
                    const PoolShape& s, const Tensor& out = Tensor(), FusedAct act = FusedAct::none,
                    double slope = 0.0);
void avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s);
void avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s);
void adaptive_avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s);
void adaptive_avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s);
void upsample2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s, UpsampleMode mode,
                    bool align_corners);
void upsample2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s,
                    UpsampleMode mode, bool align_corners);
}  // namespace cpu

namespace cuda {
void max_pool2d_fwd(const Tensor& out, const Tensor& indices, const Tensor& in, const PoolShape& s,
                    FusedAct act = FusedAct::none, double slope = 0.0);
// `out`: the forward's output, read only when act != none (may be undefined then).
void max_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& indices,
                    const PoolShape& s, const Tensor& out = Tensor(), FusedAct act = FusedAct::none,
                    double slope = 0.0);
void avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s);
void avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s);
void adaptive_avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s);
void adaptive_avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s);
void upsample2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s, UpsampleMode mode,
                    bool align_corners);
void upsample2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s,
                    UpsampleMode mode, bool align_corners);
}  // namespace cuda

// The index arithmetic, written once for the CPU and CUDA kernels so both pick the same windows
// and source pixels (PyTorch's formulas from ATen/native/Pool.h, AdaptivePooling.h, UpSample.h).
namespace pool_math {

// Output rows [first, last) whose max/avg window (kernel k, stride st, padding pad) covers input
// row h: p·st − pad <= h < p·st − pad + k.
IDEM_HOST_DEVICE inline void covering_range(int64_t h, int64_t k, int64_t st, int64_t pad,
                                            int64_t P, int64_t& first, int64_t& last) {
  first = (h + pad < k) ? 0 : (h + pad - k) / st + 1;
  last = (h + pad) / st + 1;
  if (last > P) last = P;
}

// adaptive pooling: window p of P over an extent H is [start, end).
IDEM_HOST_DEVICE inline int64_t adaptive_start(int64_t p, int64_t P, int64_t H) {
  return (p / P) * H + ((p % P) * H) / P;  // ⌊pH/P⌋ without overflow
}
IDEM_HOST_DEVICE inline int64_t adaptive_end(int64_t p, int64_t P, int64_t H) {
  return 1 + ((p + 1) * H - 1) / P;  // ⌈(p+1)H/P⌉
}

// upsample nearest (PyTorch's legacy "nearest"): the scale is a float whatever the dtype.
IDEM_HOST_DEVICE inline int64_t nearest_src(int64_t dst, int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const int64_t src = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return src < in - 1 ? src : in - 1;
}

// upsample bilinear along one dim: output index dst reads i0 with weight l0 and i1 with l1
// (i1 == i0 at the last input row, where both weights land on the same element).
template <typename T>
IDEM_HOST_DEVICE inline T linear_scale(int64_t in, int64_t out, bool align_corners) {
  if (align_corners) return out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0);
  return static_cast<T>(in) / static_cast<T>(out);
}
template <typename T>
IDEM_HOST_DEVICE inline void linear_src(int64_t dst, int64_t in, T scale, bool align_corners,
                                        int64_t& i0, int64_t& i1, T& l0, T& l1) {
  T real;
  if (align_corners) {
    real = scale * static_cast<T>(dst);
  } else {
    real = scale * (static_cast<T>(dst) + T(0.5)) - T(0.5);
    if (real < T(0)) real = T(0);
  }
  i0 = static_cast<int64_t>(std::floor(real));
  if (i0 > in - 1) i0 = in - 1;
  T lambda = real - static_cast<T>(i0);
  lambda = lambda < T(0) ? T(0) : (lambda > T(1) ? T(1) : lambda);
  i1 = i0 + (i0 < in - 1 ? 1 : 0);
  l1 = lambda;
  l0 = T(1) - lambda;
}

// The first output index in [0, out) whose source row (i0 for bilinear, src for nearest) is
// >= h; the source row is nondecreasing in the output index, so a binary search finds it.
// Backward kernels then walk forward from there while the source row stays <= h.
template <typename T>
IDEM_HOST_DEVICE inline int64_t first_dst_reaching(int64_t h, int64_t in, int64_t out,
                                                   bool bilinear, T scale, bool align_corners) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    int64_t src;
    if (bilinear) {
      int64_t i1;
      T l0, l1;
      linear_src<T>(mid, in, scale, align_corners, src, i1, l0, l1);
    } else {
      src = nearest_src(mid, in, out);
    }
    if (src < h)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

}  // namespace pool_math

}  // namespace idem
