// CUDA pooling and upsampling (contract: core/kernels/pool.h; reference: core/cpu/pool.cpp).
// Forward: one thread per output element. Backward: one thread per input element, which walks
// the outputs whose window (or source pixel) covers it in increasing (p, q) order and sums their
// gradients — deterministic, no atomics, the same order as the CPU scatter loops. max_pool's
// backward reads the argmax indices saved by the forward; with an activation (a FusedAct template
// parameter, none for plain max_pool2d) the forward applies it to the maximum and the backward
// multiplies by its derivative. The index arithmetic is shared with the CPU (idem::pool_math in
// core/kernels/pool.h).
#include <cstdint>
#include <type_traits>

#include "core/kernels/pool.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

using namespace idem::pool_math;

constexpr int kThreads = 256;
constexpr int kNoAct = static_cast<int>(FusedAct::none);

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) {
  return a > b ? a : b;
}

// ACT: a FusedAct as int, as in the linear_act kernels (profiles name them kernel<1>). none is
// plain max_pool2d (math::fused_act returns its argument, so the kernel is the one without an
// activation); relu / leaky_relu apply the activation to the maximum before the store
// (max_pool2d then the activation, in one launch).
template <int ACT>
__global__ void max_pool2d_fwd_kernel(float* __restrict__ y, int64_t* __restrict__ idx,
                                      const float* __restrict__ x, PoolShape s, float slope) {
  const int64_t total = s.NC * s.P * s.Q;
  for (const int64_t t : grid_stride(total)) {
    const int64_t q = t % s.Q, p = (t / s.Q) % s.P, nc = t / (s.P * s.Q);
    const float* plane = x + nc * s.H * s.W;
    const int64_t hs = p * s.stride_h - s.pad_h, ws = q * s.stride_w - s.pad_w;
    const int64_t h0 = imax(hs, 0), h1 = imin(hs + s.kernel_h, s.H);
    const int64_t w0 = imax(ws, 0), w1 = imin(ws + s.kernel_w, s.W);
    float best = -INFINITY;
    int64_t best_at = h0 * s.W + w0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) {
        const float v = plane[h * s.W + w];
        if (v > best || isnan(v)) {  // first maximum wins; NaN propagates (as the CPU)
          best = v;
          best_at = h * s.W + w;
        }
      }
    y[t] = math::fused_act(static_cast<FusedAct>(ACT), best, slope);
    idx[t] = best_at;
  }
}

// ACT as the forward's; y (the forward's output) is read only when ACT != none. Each matching
// output contributes g·act'(y), rounded on its own before the sum (__fadd_rn is never contracted
// into an FMA with leaky_relu's slope·g), as the activation's backward stores it before
// max_pool2d's backward adds it up.
template <int ACT>
__global__ void max_pool2d_bwd_kernel(float* __restrict__ gx, const float* __restrict__ gy,
                                      const int64_t* __restrict__ idx, PoolShape s,
                                      const float* __restrict__ y, float slope) {
  const int64_t total = s.NC * s.H * s.W;
  for (const int64_t t : grid_stride(total)) {
    const int64_t w = t % s.W, h = (t / s.W) % s.H, nc = t / (s.H * s.W);
    int64_t p0, p1, q0, q1;
    covering_range(h, s.kernel_h, s.stride_h, s.pad_h, s.P, p0, p1);
    covering_range(w, s.kernel_w, s.stride_w, s.pad_w, s.Q, q0, q1);
    const int64_t me = h * s.W + w;
    const int64_t base = nc * s.P * s.Q;
    float acc = 0.f;
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t o = base + p * s.Q + q;
        if (idx[o] == me)
          acc = __fadd_rn(acc, math::fused_act_grad(static_cast<FusedAct>(ACT), gy[o],
                                                    ACT == kNoAct ? 0.f : y[o], slope));
      }
    gx[t] = acc;
  }
}

__device__ __forceinline__ int64_t avg_divisor(int64_t p, int64_t q, const PoolShape& s) {
  const int64_t h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;
  const int64_t h1 = imin(h0 + s.kernel_h, s.H + s.pad_h);
  const int64_t w1 = imin(w0 + s.kernel_w, s.W + s.pad_w);
  return (h1 - h0) * (w1 - w0);
}

__global__ void avg_pool2d_fwd_kernel(float* __restrict__ y, const float* __restrict__ x,
                                      PoolShape s) {
  const int64_t total = s.NC * s.P * s.Q;
  for (const int64_t t : grid_stride(total)) {
    const int64_t q = t % s.Q, p = (t / s.Q) % s.P, nc = t / (s.P * s.Q);
    const float* plane = x + nc * s.H * s.W;
    const int64_t hs = p * s.stride_h - s.pad_h, ws = q * s.stride_w - s.pad_w;
    const int64_t h0 = imax(hs, 0), h1 = imin(hs + s.kernel_h, s.H);
    const int64_t w0 = imax(ws, 0), w1 = imin(ws + s.kernel_w, s.W);
    float sum = 0.f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += plane[h * s.W + w];
    y[t] = sum / static_cast<float>(avg_divisor(p, q, s));
  }
}

__global__ void avg_pool2d_bwd_kernel(float* __restrict__ gx, const float* __restrict__ gy,
                                      PoolShape s) {
  const int64_t total = s.NC * s.H * s.W;
  for (const int64_t t : grid_stride(total)) {
    const int64_t w = t % s.W, h = (t / s.W) % s.H, nc = t / (s.H * s.W);
    int64_t p0, p1, q0, q1;
    covering_range(h, s.kernel_h, s.stride_h, s.pad_h, s.P, p0, p1);
    covering_range(w, s.kernel_w, s.stride_w, s.pad_w, s.Q, q0, q1);
    const float* g = gy + nc * s.P * s.Q;
    float acc = 0.f;
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t q = q0; q < q1; ++q)
        acc += g[p * s.Q + q] / static_cast<float>(avg_divisor(p, q, s));
    gx[t] = acc;
  }
}

__global__ void adaptive_avg_pool2d_fwd_kernel(float* __restrict__ y, const float* __restrict__ x,
                                               PoolShape s) {
  const int64_t total = s.NC * s.P * s.Q;
  for (const int64_t t : grid_stride(total)) {
    const int64_t q = t % s.Q, p = (t / s.Q) % s.P, nc = t / (s.P * s.Q);
    const float* plane = x + nc * s.H * s.W;
    const int64_t h0 = adaptive_start(p, s.P, s.H), h1 = adaptive_end(p, s.P, s.H);
    const int64_t w0 = adaptive_start(q, s.Q, s.W), w1 = adaptive_end(q, s.Q, s.W);
    float sum = 0.f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += plane[h * s.W + w];
    y[t] = sum / static_cast<float>((h1 - h0) * (w1 - w0));
  }
}

__global__ void adaptive_avg_pool2d_bwd_kernel(float* __restrict__ gx, const float* __restrict__ gy,
                                               PoolShape s) {
  const int64_t total = s.NC * s.H * s.W;
  for (const int64_t t : grid_stride(total)) {
    const int64_t w = t % s.W, h = (t / s.W) % s.H, nc = t / (s.H * s.W);
    // Windows p with start(p) <= h < end(p): p in [⌊hP/H⌋, ⌈(h+1)P/H⌉); the test inside the
    // loop keeps it exact whatever the rounding.
    const int64_t p0 = (h * s.P) / s.H, p1 = imin(((h + 1) * s.P + s.H - 1) / s.H, s.P);
    const int64_t q0 = (w * s.Q) / s.W, q1 = imin(((w + 1) * s.Q + s.W - 1) / s.W, s.Q);
    const float* g = gy + nc * s.P * s.Q;
    float acc = 0.f;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t hs = adaptive_start(p, s.P, s.H), he = adaptive_end(p, s.P, s.H);
      if (h < hs || h >= he) continue;
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t ws = adaptive_start(q, s.Q, s.W), we = adaptive_end(q, s.Q, s.W);
        if (w < ws || w >= we) continue;
        acc += g[p * s.Q + q] / static_cast<float>((he - hs) * (we - ws));
      }
    }
    gx[t] = acc;
  }
}

__global__ void upsample2d_fwd_kernel(float* __restrict__ y, const float* __restrict__ x,
                                      PoolShape s, bool bilinear, bool align_corners) {
  const int64_t total = s.NC * s.P * s.Q;
  const float sh = linear_scale<float>(s.H, s.P, align_corners);
  const float sw = linear_scale<float>(s.W, s.Q, align_corners);
  for (const int64_t t : grid_stride(total)) {
    const int64_t q = t % s.Q, p = (t / s.Q) % s.P, nc = t / (s.P * s.Q);
    const float* plane = x + nc * s.H * s.W;
    if (!bilinear) {
      y[t] = plane[nearest_src(p, s.H, s.P) * s.W + nearest_src(q, s.W, s.Q)];
      continue;
    }
    int64_t h0, h1, w0, w1;
    float lh0, lh1, lw0, lw1;
    linear_src<float>(p, s.H, sh, align_corners, h0, h1, lh0, lh1);
    linear_src<float>(q, s.W, sw, align_corners, w0, w1, lw0, lw1);
    y[t] = lh0 * (lw0 * plane[h0 * s.W + w0] + lw1 * plane[h0 * s.W + w1]) +
           lh1 * (lw0 * plane[h1 * s.W + w0] + lw1 * plane[h1 * s.W + w1]);
  }
}

// Weight of output row `p` on input row `h` along one dim; false once p's source lies past h
// (the walk can stop: sources are nondecreasing in p).
__device__ __forceinline__ bool upsample_weight(int64_t p, int64_t h, int64_t in, int64_t out,
                                                bool bilinear, float scale, bool align_corners,
                                                float& weight) {
  if (!bilinear) {
    const int64_t src = nearest_src(p, in, out);
    weight = src == h ? 1.f : 0.f;
    return src <= h;
  }
  int64_t i0, i1;
  float l0, l1;
  linear_src<float>(p, in, scale, align_corners, i0, i1, l0, l1);
  weight = (i0 == h ? l0 : 0.f) + (i1 == h ? l1 : 0.f);
  return i0 <= h;
}

__global__ void upsample2d_bwd_kernel(float* __restrict__ gx, const float* __restrict__ gy,
                                      PoolShape s, bool bilinear, bool align_corners) {
  const int64_t total = s.NC * s.H * s.W;
  const float sh = linear_scale<float>(s.H, s.P, align_corners);
  const float sw = linear_scale<float>(s.W, s.Q, align_corners);
  for (const int64_t t : grid_stride(total)) {
    const int64_t w = t % s.W, h = (t / s.W) % s.H, nc = t / (s.H * s.W);
    // A bilinear output reaches rows i0 and i0 + 1, so the walk starts at the first output
    // whose i0 >= h − 1; a nearest output reaches only its source row.
    const int64_t hr = bilinear && h > 0 ? h - 1 : h;
    const int64_t wr = bilinear && w > 0 ? w - 1 : w;
    const int64_t p_first = first_dst_reaching<float>(hr, s.H, s.P, bilinear, sh, align_corners);
    const int64_t q_first = first_dst_reaching<float>(wr, s.W, s.Q, bilinear, sw, align_corners);
    const float* g = gy + nc * s.P * s.Q;
    float acc = 0.f;
    float wh, ww;
    for (int64_t p = p_first;
         p < s.P && upsample_weight(p, h, s.H, s.P, bilinear, sh, align_corners, wh); ++p) {
      if (wh == 0.f) continue;
      for (int64_t q = q_first;
           q < s.Q && upsample_weight(q, w, s.W, s.Q, bilinear, sw, align_corners, ww); ++q) {
        if (ww != 0.f) acc += g[p * s.Q + q] * (wh * ww);
      }
    }
    gx[t] = acc;
  }
}

// Nothing to do when n == 0; else makes like's device current for the launch.
bool ready(int64_t n, const Tensor& like) {
  if (n == 0) return false;
  set_device(like.device().index);
  return true;
}

}  // namespace

void max_pool2d_fwd(const Tensor& out, const Tensor& indices, const Tensor& in, const PoolShape& s,
                    FusedAct act, double slope) {
  if (!ready(out.numel(), out)) return;
  const char* op = act == FusedAct::none ? "max_pool2d" : "max_pool2d_act";
  with_fused_act(act, op, [&](auto a) {
    constexpr int A = static_cast<int>(decltype(a)::value);
    launch_grid_stride(IDEM_SITE(op), out.numel(), kThreads, max_pool2d_fwd_kernel<A>,
                       out.data<float>(), indices.data<int64_t>(), in.data<float>(), s,
                       static_cast<float>(slope));
  });
}

void max_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& indices,
                    const PoolShape& s, const Tensor& out, FusedAct act, double slope) {
  if (!ready(grad_in.numel(), grad_in)) return;
  const float* y = act == FusedAct::none ? nullptr : out.data<float>();
  const char* op = act == FusedAct::none ? "max_pool2d_backward" : "max_pool2d_act_backward";
  with_fused_act(act, op, [&](auto a) {
    constexpr int A = static_cast<int>(decltype(a)::value);
    launch_grid_stride(IDEM_SITE(op), grad_in.numel(), kThreads, max_pool2d_bwd_kernel<A>,
                       grad_in.data<float>(), grad_out.data<float>(), indices.data<int64_t>(), s, y,
                       static_cast<float>(slope));
  });
}

void avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s) {
  if (!ready(out.numel(), out)) return;
  launch_grid_stride(IDEM_SITE("avg_pool2d"), out.numel(), kThreads, avg_pool2d_fwd_kernel,
                     out.data<float>(), in.data<float>(), s);
}

void avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s) {
  if (!ready(grad_in.numel(), grad_in)) return;
  launch_grid_stride(IDEM_SITE("avg_pool2d_backward"), grad_in.numel(), kThreads,
                     avg_pool2d_bwd_kernel, grad_in.data<float>(), grad_out.data<float>(), s);
}

void adaptive_avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s) {
  if (!ready(out.numel(), out)) return;
  launch_grid_stride(IDEM_SITE("adaptive_avg_pool2d"), out.numel(), kThreads,
                     adaptive_avg_pool2d_fwd_kernel, out.data<float>(), in.data<float>(), s);
}

void adaptive_avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s) {
  if (!ready(grad_in.numel(), grad_in)) return;
  launch_grid_stride(IDEM_SITE("adaptive_avg_pool2d_backward"), grad_in.numel(), kThreads,
                     adaptive_avg_pool2d_bwd_kernel, grad_in.data<float>(), grad_out.data<float>(),
                     s);
}

void upsample2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s, UpsampleMode mode,
                    bool align_corners) {
  if (!ready(out.numel(), out)) return;
  launch_grid_stride(IDEM_SITE("upsample2d"), out.numel(), kThreads, upsample2d_fwd_kernel,
                     out.data<float>(), in.data<float>(), s, mode == UpsampleMode::bilinear,
                     align_corners);
}

void upsample2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s,
                    UpsampleMode mode, bool align_corners) {
  if (!ready(grad_in.numel(), grad_in)) return;
  launch_grid_stride(IDEM_SITE("upsample2d_backward"), grad_in.numel(), kThreads,
                     upsample2d_bwd_kernel, grad_in.data<float>(), grad_out.data<float>(), s,
                     mode == UpsampleMode::bilinear, align_corners);
}

}  // namespace idem::cuda
