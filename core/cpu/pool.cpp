// CPU pooling and upsampling: direct loops over NCHW planes (contract: core/kernels/pool.h).
// Forward kernels loop over outputs; backward kernels zero grad_in and scatter each output's
// gradient in increasing (p, q) order, which is the same order in which the CUDA kernels (one
// thread per input element) gather it. max_pool2d with an activation applies it to each plane's
// outputs right after they are written (act(max) = the activation op on max_pool2d's output).
#include "core/kernels/pool.h"
#include "core/parallel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace idem::cpu {

namespace {

// Runs f(nc) for every (n, c) plane, planes split over the thread pool. Each plane is computed
// by one thread in the serial order, so the bits do not depend on the thread count.
template <typename F>
void for_each_plane(const PoolShape& s, F&& f) {
  const int64_t plane_work = std::max<int64_t>(1, s.H * s.W + s.P * s.Q);
  // An even count of equal chunks (core/parallel.h, even_grain): at batch 64 the cnn's first
  // pooling (640 planes of 24 × 24) had 15 chunks of 45 planes, now 16 of 40; its second
  // (1 280 planes of 8 × 8) had 3 chunks of 409 planes and one of 53, now 4 of 320.
  const int64_t grain = even_grain(s.NC, grain_for(plane_work, int64_t(1) << 15));
  parallel_for(s.NC, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) f(nc);
  });
}

using namespace idem::pool_math;

// y[k] = act(y[k]) over one plane's n outputs, just written and still in cache; nothing for
// none, so plain max_pool2d keeps its loop and its speed.
template <typename T>
void act_in_place(T* y, int64_t n, FusedAct act, T slope) {
  if (act == FusedAct::none) return;
  with_fused_act(act, "max_pool2d_act", [&](auto a) {
    for (int64_t k = 0; k < n; ++k) y[k] = math::fused_act(decltype(a)::value, y[k], slope);
  });
}

// Tap `v` at plane offset `at` into the running maximum of one window: strict '>' keeps the
// first maximum; a NaN always wins (PyTorch propagates it). Selects, not a branch: random data
// would mispredict it every other window.
template <typename T>
inline void take_max(T v, int64_t at, T& best, int64_t& best_at) {
  const bool take = (v > best) | (v != v);
  best = take ? v : best;
  best_at = take ? at : best_at;
}

// Output row p of a 2×2 / stride 2 max-pool of one (H, W) plane: y[q], idx[q] for q < Q, taps
// in the order (2p, 2q), (2p, 2q+1), (2p+1, 2q), (2p+1, 2q+1). Starting from the first tap
// instead of −∞ picks the same value and index (a first tap of −∞ or NaN is kept either way).
template <typename T>
void pool_2x2_row(const T* plane, int64_t W, int64_t p, int64_t Q, T* y, int64_t* idx) {
  const T* r0 = plane + 2 * p * W;
  const T* r1 = r0 + W;
  const int64_t at0 = 2 * p * W, at1 = at0 + W;
  int64_t q = 0;
#if defined(__SSE2__)
  // Four windows at a time in SSE2 (every x86-64 CPU has it): even and odd columns split by
  // shuffles, the rule above as compare masks, the index in 32 bits (guarded) and widened on
  // the store. GCC turned the scalar selects into branches here, which cost ~13 ns a window,
  // a sixth of a cnn training step.
  if constexpr (std::is_same_v<T, float>) {
    if (at1 + 2 * Q < (int64_t(1) << 31)) {
      const __m128i step = _mm_set_epi32(6, 4, 2, 0);
      const __m128i one = _mm_set1_epi32(1), below = _mm_set1_epi32(int32_t(W));
      auto take = [](__m128 v, __m128i at, __m128& best, __m128i& best_at) {
        const __m128 m = _mm_or_ps(_mm_cmpgt_ps(v, best), _mm_cmpunord_ps(v, v));
        const __m128i mi = _mm_castps_si128(m);
        best = _mm_or_ps(_mm_and_ps(m, v), _mm_andnot_ps(m, best));
        best_at = _mm_or_si128(_mm_and_si128(mi, at), _mm_andnot_si128(mi, best_at));
      };
      for (; q + 4 <= Q; q += 4) {
        const __m128 a0 = _mm_loadu_ps(r0 + 2 * q), a1 = _mm_loadu_ps(r0 + 2 * q + 4);
        const __m128 b0 = _mm_loadu_ps(r1 + 2 * q), b1 = _mm_loadu_ps(r1 + 2 * q + 4);
        const __m128i at = _mm_add_epi32(_mm_set1_epi32(int32_t(at0 + 2 * q)), step);
        __m128 best = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
        __m128i best_at = at;
        take(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)), _mm_add_epi32(at, one), best,
             best_at);
        const __m128i at_b = _mm_add_epi32(at, below);
        take(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)), at_b, best, best_at);
        take(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)), _mm_add_epi32(at_b, one), best,
             best_at);
        _mm_storeu_ps(y + q, best);
        const __m128i zero = _mm_setzero_si128();  // indices are >= 0: widen with zeros
        _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + q), _mm_unpacklo_epi32(best_at, zero));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + q + 2), _mm_unpackhi_epi32(best_at, zero));
      }
    }
  }
#endif
  for (; q < Q; ++q) {
    T best = r0[2 * q];
    int64_t best_at = at0 + 2 * q;
    take_max(r0[2 * q + 1], at0 + 2 * q + 1, best, best_at);
    take_max(r1[2 * q], at1 + 2 * q, best, best_at);
    take_max(r1[2 * q + 1], at1 + 2 * q + 1, best, best_at);
    y[q] = best;
    idx[q] = best_at;
  }
}

template <typename T>
void max_pool_fwd_typed(const Tensor& out, const Tensor& indices, const Tensor& in,
                        const PoolShape& s, FusedAct act, T slope) {
  const T* x = in.data<T>();
  T* y = out.data<T>();
  int64_t* idx = indices.data<int64_t>();
  const int64_t PQ = s.P * s.Q;
  if (s.kernel_h == 2 && s.kernel_w == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 &&
      s.pad_w == 0 && 2 * s.P <= s.H && 2 * s.Q <= s.W) {
    // The common 2×2 window, stride 2, no padding: every window lies inside the plane, so no
    // bounds (pool_2x2_row); the same four taps in the same order and the same rule as the
    // general loop.
    for_each_plane(s, [&](int64_t nc) {
      const T* plane = x + nc * s.H * s.W;
      for (int64_t p = 0; p < s.P; ++p)
        pool_2x2_row(plane, s.W, p, s.Q, y + (nc * s.P + p) * s.Q, idx + (nc * s.P + p) * s.Q);
      act_in_place(y + nc * PQ, PQ, act, slope);
    });
    return;
  }
  for_each_plane(s, [&](int64_t nc) {
    const T* plane = x + nc * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t h0 = std::max<int64_t>(p * s.stride_h - s.pad_h, 0);
      const int64_t h1 = std::min(p * s.stride_h - s.pad_h + s.kernel_h, s.H);
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t w0 = std::max<int64_t>(q * s.stride_w - s.pad_w, 0);
        const int64_t w1 = std::min(q * s.stride_w - s.pad_w + s.kernel_w, s.W);
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_at = h0 * s.W + w0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) {
            const T v = plane[h * s.W + w];
            // Strict '>' keeps the first maximum; a NaN always wins (PyTorch propagates it).
            // Selects, not a branch: random data would mispredict it every other window.
            const bool take = v > best || v != v;
            best = take ? v : best;
            best_at = take ? h * s.W + w : best_at;
          }
        const int64_t o = (nc * s.P + p) * s.Q + q;
        y[o] = best;
        idx[o] = best_at;
      }
    }
    act_in_place(y + nc * PQ, PQ, act, slope);
  });
}

// With an activation, each output's gradient is first multiplied by act'(out) — the value the
// activation's own backward would have stored (math::fused_act_grad equals UnaryOp::relu /
// leaky_relu's gradient, read from the output instead of the input) — and then scattered in
// the same order, so the bits are those of the two backward ops.
template <typename T>
void max_pool_bwd_typed(const Tensor& grad_in, const Tensor& grad_out, const Tensor& indices,
                        const PoolShape& s, const Tensor& out, FusedAct act, T slope) {
  T* gx = grad_in.data<T>();
  const T* gy = grad_out.data<T>();
  const T* y = act == FusedAct::none ? nullptr : out.data<T>();
  const int64_t* idx = indices.data<int64_t>();
  // Each plane is zeroed by the thread that scatters into it, while it is in that core's cache.
  for_each_plane(s, [&](int64_t nc) {
    T* plane = gx + nc * s.H * s.W;
    std::fill(plane, plane + s.H * s.W, T(0));
    const int64_t PQ = s.P * s.Q;
    const T* g = gy + nc * PQ;
    const int64_t* at = idx + nc * PQ;
    if (act == FusedAct::none) {
      for (int64_t k = 0; k < PQ; ++k) plane[at[k]] += g[k];
      return;
    }
    const T* yp = y + nc * PQ;
    with_fused_act(act, "max_pool2d_act_backward", [&](auto a) {
      for (int64_t k = 0; k < PQ; ++k) {
        const T gz = math::fused_act_grad(decltype(a)::value, g[k], yp[k], slope);
        plane[at[k]] += gz;
      }
    });
  });
}

// PyTorch's avg_pool2d divisor with count_include_pad=True: the window clipped to the padded
// input, padding included.
inline int64_t avg_divisor(int64_t p, int64_t q, const PoolShape& s) {
  const int64_t h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;
  const int64_t h1 = std::min(h0 + s.kernel_h, s.H + s.pad_h);
  const int64_t w1 = std::min(w0 + s.kernel_w, s.W + s.pad_w);
  return (h1 - h0) * (w1 - w0);
}

template <typename T>
void avg_pool_fwd_typed(const Tensor& out, const Tensor& in, const PoolShape& s) {
  const T* x = in.data<T>();
  T* y = out.data<T>();
  for_each_plane(s, [&](int64_t nc) {
    const T* plane = x + nc * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t h0 = std::max<int64_t>(p * s.stride_h - s.pad_h, 0);
        const int64_t h1 = std::min(p * s.stride_h - s.pad_h + s.kernel_h, s.H);
        const int64_t w0 = std::max<int64_t>(q * s.stride_w - s.pad_w, 0);
        const int64_t w1 = std::min(q * s.stride_w - s.pad_w + s.kernel_w, s.W);
        T sum = T(0);
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) sum += plane[h * s.W + w];
        y[(nc * s.P + p) * s.Q + q] = sum / static_cast<T>(avg_divisor(p, q, s));
      }
  });
}

template <typename T>
void avg_pool_bwd_typed(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s) {
  T* gx = grad_in.data<T>();
  const T* gy = grad_out.data<T>();
  std::fill(gx, gx + s.NC * s.H * s.W, T(0));
  for_each_plane(s, [&](int64_t nc) {
    T* plane = gx + nc * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t h0 = std::max<int64_t>(p * s.stride_h - s.pad_h, 0);
        const int64_t h1 = std::min(p * s.stride_h - s.pad_h + s.kernel_h, s.H);
        const int64_t w0 = std::max<int64_t>(q * s.stride_w - s.pad_w, 0);
        const int64_t w1 = std::min(q * s.stride_w - s.pad_w + s.kernel_w, s.W);
        const T g = gy[(nc * s.P + p) * s.Q + q] / static_cast<T>(avg_divisor(p, q, s));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) plane[h * s.W + w] += g;
      }
  });
}

template <typename T>
void adaptive_fwd_typed(const Tensor& out, const Tensor& in, const PoolShape& s) {
  const T* x = in.data<T>();
  T* y = out.data<T>();
  for_each_plane(s, [&](int64_t nc) {
    const T* plane = x + nc * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t h0 = adaptive_start(p, s.P, s.H), h1 = adaptive_end(p, s.P, s.H);
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t w0 = adaptive_start(q, s.Q, s.W), w1 = adaptive_end(q, s.Q, s.W);
        T sum = T(0);
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) sum += plane[h * s.W + w];
        y[(nc * s.P + p) * s.Q + q] = sum / static_cast<T>((h1 - h0) * (w1 - w0));
      }
    }
  });
}

template <typename T>
void adaptive_bwd_typed(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s) {
  T* gx = grad_in.data<T>();
  const T* gy = grad_out.data<T>();
  std::fill(gx, gx + s.NC * s.H * s.W, T(0));
  for_each_plane(s, [&](int64_t nc) {
    T* plane = gx + nc * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t h0 = adaptive_start(p, s.P, s.H), h1 = adaptive_end(p, s.P, s.H);
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t w0 = adaptive_start(q, s.Q, s.W), w1 = adaptive_end(q, s.Q, s.W);
        const T g = gy[(nc * s.P + p) * s.Q + q] / static_cast<T>((h1 - h0) * (w1 - w0));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) plane[h * s.W + w] += g;
      }
    }
  });
}

template <typename T>
void upsample_fwd_typed(const Tensor& out, const Tensor& in, const PoolShape& s, UpsampleMode mode,
                        bool align_corners) {
  const T* x = in.data<T>();
  T* y = out.data<T>();
  if (mode == UpsampleMode::nearest) {
    for_each_plane(s, [&](int64_t nc) {
      for (int64_t p = 0; p < s.P; ++p) {
        const int64_t h = nearest_src(p, s.H, s.P);
        for (int64_t q = 0; q < s.Q; ++q)
          y[(nc * s.P + p) * s.Q + q] = x[(nc * s.H + h) * s.W + nearest_src(q, s.W, s.Q)];
      }});
    return;
  }
  const T sh = linear_scale<T>(s.H, s.P, align_corners);
  const T sw = linear_scale<T>(s.W, s.Q, align_corners);
  for_each_plane(s, [&](int64_t nc) {
    const T* plane = x + nc * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      int64_t h0, h1;
      T lh0, lh1;
      linear_src<T>(p, s.H, sh, align_corners, h0, h1, lh0, lh1);
      for (int64_t q = 0; q < s.Q; ++q) {
        int64_t w0, w1;
        T lw0, lw1;
        linear_src<T>(q, s.W, sw, align_corners, w0, w1, lw0, lw1);
        // The same association as PyTorch's kernel.
        y[(nc * s.P + p) * s.Q + q] =
            lh0 * (lw0 * plane[h0 * s.W + w0] + lw1 * plane[h0 * s.W + w1]) +
            lh1 * (lw0 * plane[h1 * s.W + w0] + lw1 * plane[h1 * s.W + w1]);
      }
    }
  });
}

template <typename T>
void upsample_bwd_typed(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s,
                        UpsampleMode mode, bool align_corners) {
  T* gx = grad_in.data<T>();
  const T* gy = grad_out.data<T>();
  std::fill(gx, gx + s.NC * s.H * s.W, T(0));
  if (mode == UpsampleMode::nearest) {
    for_each_plane(s, [&](int64_t nc) {
      for (int64_t p = 0; p < s.P; ++p) {
        const int64_t h = nearest_src(p, s.H, s.P);
        for (int64_t q = 0; q < s.Q; ++q)
          gx[(nc * s.H + h) * s.W + nearest_src(q, s.W, s.Q)] += gy[(nc * s.P + p) * s.Q + q];
      }});
    return;
  }
  const T sh = linear_scale<T>(s.H, s.P, align_corners);
  const T sw = linear_scale<T>(s.W, s.Q, align_corners);
  for_each_plane(s, [&](int64_t nc) {
    T* plane = gx + nc * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      int64_t h0, h1;
      T lh0, lh1;
      linear_src<T>(p, s.H, sh, align_corners, h0, h1, lh0, lh1);
      for (int64_t q = 0; q < s.Q; ++q) {
        int64_t w0, w1;
        T lw0, lw1;
        linear_src<T>(q, s.W, sw, align_corners, w0, w1, lw0, lw1);
        const T g = gy[(nc * s.P + p) * s.Q + q];
        plane[h0 * s.W + w0] += lh0 * lw0 * g;
        plane[h0 * s.W + w1] += lh0 * lw1 * g;
        plane[h1 * s.W + w0] += lh1 * lw0 * g;
        plane[h1 * s.W + w1] += lh1 * lw1 * g;
      }
    }
  });
}

}  // namespace

void max_pool2d_fwd(const Tensor& out, const Tensor& indices, const Tensor& in, const PoolShape& s,
                    FusedAct act, double slope) {
  IDEM_DISPATCH_FLOAT(in.dtype(), "max_pool2d", [&] {
    max_pool_fwd_typed<scalar_t>(out, indices, in, s, act, static_cast<scalar_t>(slope));
  });
}
void max_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& indices,
                    const PoolShape& s, const Tensor& out, FusedAct act, double slope) {
  IDEM_DISPATCH_FLOAT(grad_in.dtype(), "max_pool2d_backward", [&] {
    max_pool_bwd_typed<scalar_t>(grad_in, grad_out, indices, s, out, act,
                                 static_cast<scalar_t>(slope));
  });
}
void avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s) {
  IDEM_DISPATCH_FLOAT(in.dtype(), "avg_pool2d", [&] { avg_pool_fwd_typed<scalar_t>(out, in, s); });
}
void avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s) {
  IDEM_DISPATCH_FLOAT(grad_in.dtype(), "avg_pool2d_backward",
                      [&] { avg_pool_bwd_typed<scalar_t>(grad_in, grad_out, s); });
}
void adaptive_avg_pool2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s) {
  IDEM_DISPATCH_FLOAT(in.dtype(), "adaptive_avg_pool2d",
                      [&] { adaptive_fwd_typed<scalar_t>(out, in, s); });
}
void adaptive_avg_pool2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s) {
  IDEM_DISPATCH_FLOAT(grad_in.dtype(), "adaptive_avg_pool2d_backward",
                      [&] { adaptive_bwd_typed<scalar_t>(grad_in, grad_out, s); });
}
void upsample2d_fwd(const Tensor& out, const Tensor& in, const PoolShape& s, UpsampleMode mode,
                    bool align_corners) {
  IDEM_DISPATCH_FLOAT(in.dtype(), "upsample2d",
                      [&] { upsample_fwd_typed<scalar_t>(out, in, s, mode, align_corners); });
}
void upsample2d_bwd(const Tensor& grad_in, const Tensor& grad_out, const PoolShape& s,
                    UpsampleMode mode, bool align_corners) {
  IDEM_DISPATCH_FLOAT(grad_in.dtype(), "upsample2d_backward", [&] {
    upsample_bwd_typed<scalar_t>(grad_in, grad_out, s, mode, align_corners);
  });
}

}  // namespace idem::cpu
