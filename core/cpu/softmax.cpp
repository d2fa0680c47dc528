// CPU softmax / log_softmax over the middle dim of (outer, D, inner). Each (o, i) line is
// handled independently; sums run in double in a fixed order, so results are deterministic.
// Threads (core/parallel.h) split the outer index only, so the bits do not depend on them.
#include "core/kernels/softmax.h"

#include "core/parallel.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace idem::cpu {

namespace {

template <typename T>
void softmax_fwd_typed(const Tensor& out, const Tensor& in, ReduceShape s, bool log) {
  const T* x = in.data<T>();
  T* y = out.data<T>();
  const int64_t D = s.reduce, inner = s.inner;
  parallel_for(s.outer, grain_for(4 * D * inner), [&](int64_t o_lo, int64_t o_hi) {
  for (int64_t o = o_lo; o < o_hi; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const T* xl = x + o * D * inner + i;
      T* yl = y + o * D * inner + i;
      // Subtracting the max keeps exp() from overflowing; it cancels in the ratio.
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t d = 0; d < D; ++d) m = std::max(m, static_cast<double>(xl[d * inner]));
      // A line of all -inf (or a +inf max) has no finite shift; use 0 so the result is the
      // IEEE answer (NaN for +inf, NaN for all -inf) rather than a silent wrong number.
      if (!std::isfinite(m)) m = 0.0;
      double sum = 0.0;
      for (int64_t d = 0; d < D; ++d) sum += std::exp(static_cast<double>(xl[d * inner]) - m);
      if (log) {
        const double lse = m + std::log(sum);
        for (int64_t d = 0; d < D; ++d)
          yl[d * inner] = static_cast<T>(static_cast<double>(xl[d * inner]) - lse);
      } else {
        const double inv = 1.0 / sum;
        for (int64_t d = 0; d < D; ++d)
          yl[d * inner] = static_cast<T>(std::exp(static_cast<double>(xl[d * inner]) - m) * inv);
      }
    }
  }
  });
}

template <typename T>
void softmax_bwd_typed(const Tensor& grad_in, const Tensor& grad_out, const Tensor& out,
                       ReduceShape s, bool log) {
  const T* g = grad_out.data<T>();
  const T* y = out.data<T>();
  T* gi = grad_in.data<T>();
  const int64_t D = s.reduce, inner = s.inner;
  parallel_for(s.outer, grain_for(4 * D * inner), [&](int64_t o_lo, int64_t o_hi) {
  for (int64_t o = o_lo; o < o_hi; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * D * inner + i;
      if (log) {
        // dx = g - softmax·Σ_D g, with softmax = exp(y) for y = log_softmax(x).
        double gsum = 0.0;
        for (int64_t d = 0; d < D; ++d) gsum += static_cast<double>(g[base + d * inner]);
        for (int64_t d = 0; d < D; ++d) {
          const int64_t k = base + d * inner;
          gi[k] = static_cast<T>(static_cast<double>(g[k]) -
                                 std::exp(static_cast<double>(y[k])) * gsum);
        }
      } else {
        // dx = y·(g - Σ_D g·y): the Jacobian diag(y) - y·yᵀ applied to g.
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) {
          const int64_t k = base + d * inner;
          dot += static_cast<double>(g[k]) * static_cast<double>(y[k]);
        }
        for (int64_t d = 0; d < D; ++d) {
          const int64_t k = base + d * inner;
          gi[k] = static_cast<T>(static_cast<double>(y[k]) * (static_cast<double>(g[k]) - dot));
        }
      }
    }
  }
  });
}

}  // namespace

void softmax_fwd(const Tensor& out, const Tensor& in, ReduceShape s, bool log) {
  IDEM_DISPATCH_FLOAT(in.dtype(), log ? "log_softmax" : "softmax",
                      [&] { softmax_fwd_typed<scalar_t>(out, in, s, log); });
}

void softmax_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& out, ReduceShape s,
                 bool log) {
  IDEM_DISPATCH_FLOAT(out.dtype(), log ? "log_softmax_backward" : "softmax_backward",
                      [&] { softmax_bwd_typed<scalar_t>(grad_in, grad_out, out, s, log); });
}

}  // namespace idem::cpu
