// CPU normalization (batch/layer/group norm through one canonical shape) and dropout.
// Contract: core/kernels/norm.h. Statistics and backward sums run in double, sequentially in a
// fixed order, so results are deterministic and the f64 path is accurate enough for gradcheck.
// Threads (core/parallel.h) split groups, channels or elements, never one sum: every sum is
// added by one thread in the serial order, so the bits do not depend on the thread count.
#include "core/kernels/norm.h"

#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "core/philox.h"

namespace idem::cpu {

namespace {

// Pointer of an optional tensor (nullptr when undefined).
template <typename T>
T* opt(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Index of element (o, g, i) of the statistics view.
inline int64_t stat_index(const NormShape& s, int64_t o, int64_t g, int64_t i) {
  return (o * s.groups + g) * s.stat_inner + i;
}

// Channel of flat element k in the affine view.
inline int64_t channel_of(const NormShape& s, int64_t k) {
  return (k / s.aff_inner) % s.channels;
}

// Group of flat element k in the statistics view.
inline int64_t group_of(const NormShape& s, int64_t k) {
  return (k / s.stat_inner) % s.groups;
}

template <typename T>
void norm_fwd_typed(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                    const Tensor& running_var, const NormShape& s, const NormParams& p) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  T* pm = mean.data<T>();
  T* pr = rstd.data<T>();
  const T* pw = opt<T>(weight);
  const T* pb = opt<T>(bias);
  T* rm = opt<T>(running_mean);
  T* rv = opt<T>(running_var);
  const int64_t R = s.group_size();
  const bool bn = s.affine_is_stats();  // channel = group: no division per element
  parallel_for(s.groups, grain_for(3 * R), [&](int64_t g_lo, int64_t g_hi) {
  for (int64_t g = g_lo; g < g_hi; ++g) {
    // Two passes (mean, then the centred sum of squares): no cancellation, unlike E[x²]-E[x]².
    double sum = 0.0;
    for (int64_t o = 0; o < s.stat_outer; ++o)
      for (int64_t i = 0; i < s.stat_inner; ++i)
        sum += static_cast<double>(px[stat_index(s, o, g, i)]);
    const double mu = sum / static_cast<double>(R);
    double ss = 0.0;
    for (int64_t o = 0; o < s.stat_outer; ++o)
      for (int64_t i = 0; i < s.stat_inner; ++i) {
        const double d = static_cast<double>(px[stat_index(s, o, g, i)]) - mu;
        ss += d * d;
      }
    const double var = ss / static_cast<double>(R);
    const double r = 1.0 / std::sqrt(var + p.eps);
    pm[g] = static_cast<T>(mu);
    pr[g] = static_cast<T>(r);
    if (rm)
      rm[g] = static_cast<T>((1.0 - p.momentum) * static_cast<double>(rm[g]) + p.momentum * mu);
    if (rv) {
      // PyTorch keeps the unbiased variance; R > 1 is checked by the L1 op.
      const double unbiased = ss / static_cast<double>(R - 1);
      rv[g] =
          static_cast<T>((1.0 - p.momentum) * static_cast<double>(rv[g]) + p.momentum * unbiased);
    }
    for (int64_t o = 0; o < s.stat_outer; ++o)
      for (int64_t i = 0; i < s.stat_inner; ++i) {
        const int64_t k = stat_index(s, o, g, i);
        const int64_t c = bn ? g : channel_of(s, k);
        double v = (static_cast<double>(px[k]) - mu) * r;
        if (pw) v *= static_cast<double>(pw[c]);
        if (pb) v += static_cast<double>(pb[c]);
        py[k] = static_cast<T>(v);
      }
  }
  });
}

template <typename T>
void norm_fwd_stats_typed(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                          const Tensor& mean_in, const Tensor& var_in, const Tensor& weight,
                          const Tensor& bias, const NormShape& s, const NormParams& p) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  T* pm = mean.data<T>();
  T* pr = rstd.data<T>();
  const T* mi = mean_in.data<T>();
  const T* vi = var_in.data<T>();
  const T* pw = opt<T>(weight);
  const T* pb = opt<T>(bias);
  for (int64_t g = 0; g < s.groups; ++g) {
    pm[g] = mi[g];
    pr[g] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(vi[g]) + p.eps));
  }
  // Rows (o, g) of the statistics view in parallel; within a row k = (o·G + g)·I + i.
  const bool bn = s.affine_is_stats();
  parallel_for(s.stat_outer * s.groups, grain_for(s.stat_inner), [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t g = row % s.groups;
      const double m = static_cast<double>(pm[g]), r = static_cast<double>(pr[g]);
      for (int64_t i = 0, k = row * s.stat_inner; i < s.stat_inner; ++i, ++k) {
        const int64_t c = bn ? g : channel_of(s, k);
        double v = (static_cast<double>(px[k]) - m) * r;
        if (pw) v *= static_cast<double>(pw[c]);
        if (pb) v += static_cast<double>(pb[c]);
        py[k] = static_cast<T>(v);
      }
    }
  });
}

template <typename T>
void norm_bwd_typed(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
                    const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight,
                    const NormShape& s, bool batch_stats) {
  const T* pg = g.data<T>();
  const T* px = x.data<T>();
  const T* pm = mean.data<T>();
  const T* pr = rstd.data<T>();
  const T* pw = opt<T>(weight);
  T* pdx = opt<T>(dx);
  auto xhat = [&](int64_t k, int64_t grp) {
    return (static_cast<double>(px[k]) - static_cast<double>(pm[grp])) *
           static_cast<double>(pr[grp]);
  };
  const bool bn = s.affine_is_stats();  // channel = group: no division per element
  auto w_of = [&](int64_t k, int64_t grp) {
    return pw ? static_cast<double>(pw[bn ? grp : channel_of(s, k)]) : 1.0;
  };

  if (pdx && batch_stats) {
    const int64_t R = s.group_size();
    const double inv_r = 1.0 / static_cast<double>(R);
    parallel_for(s.groups, grain_for(2 * R), [&](int64_t g_lo, int64_t g_hi) {
    for (int64_t grp = g_lo; grp < g_hi; ++grp) {
      // Σ g·w and Σ g·w·x̂ over the group, then
      // dx = rstd/R · (R·g·w − Σ g·w − x̂·Σ g·w·x̂) : (O,G,I) -> (O,G,I)
      double sgw = 0.0, sgwx = 0.0;
      for (int64_t o = 0; o < s.stat_outer; ++o)
        for (int64_t i = 0; i < s.stat_inner; ++i) {
          const int64_t k = stat_index(s, o, grp, i);
          const double gw = static_cast<double>(pg[k]) * w_of(k, grp);
          sgw += gw;
          sgwx += gw * xhat(k, grp);
        }
      const double r = static_cast<double>(pr[grp]);
      for (int64_t o = 0; o < s.stat_outer; ++o)
        for (int64_t i = 0; i < s.stat_inner; ++i) {
          const int64_t k = stat_index(s, o, grp, i);
          const double gw = static_cast<double>(pg[k]) * w_of(k, grp);
          pdx[k] = static_cast<T>(r * (gw - inv_r * sgw - xhat(k, grp) * inv_r * sgwx));
        }
    }
    });
  } else if (pdx) {
    // Fixed statistics: y is affine in x. dx = g·w·rstd : (O,G,I) -> (O,G,I)
    parallel_for(s.stat_outer * s.groups, grain_for(s.stat_inner), [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t grp = row % s.groups;
        const double r = static_cast<double>(pr[grp]);
        for (int64_t i = 0, k = row * s.stat_inner; i < s.stat_inner; ++i, ++k)
          pdx[k] = static_cast<T>(static_cast<double>(pg[k]) * w_of(k, grp) * r);
      }
    });
  }

  if (dweight.defined() || dbias.defined()) {
    // dweight[c] = Σ g·x̂, dbias[c] = Σ g over the elements of channel c : (A,C,B) -> (C).
    // Channel c's elements are k = (a·C + c)·B + b; visiting them in increasing k (a outer,
    // b inner) adds in the same order as one pass over all k, so one thread per channel block
    // gives the serial bits.
    T* pdw = opt<T>(dweight);
    T* pdb = opt<T>(dbias);
    const int64_t C = s.channels, B = s.aff_inner, A = s.aff_outer;
    parallel_for(C, grain_for(A * B), [&](int64_t c_lo, int64_t c_hi) {
      for (int64_t c = c_lo; c < c_hi; ++c) {
        double dw = 0.0, db = 0.0;
        for (int64_t a = 0; a < A; ++a)
          for (int64_t b = 0; b < B; ++b) {
            const int64_t k = (a * C + c) * B + b;
            const double gk = static_cast<double>(pg[k]);
            dw += gk * xhat(k, bn ? c : group_of(s, k));
            db += gk;
          }
        if (pdw) pdw[c] = static_cast<T>(dw);
        if (pdb) pdb[c] = static_cast<T>(db);
      }
    });
  }
}

template <typename T>
void dropout_typed(const Tensor& out, const Tensor& in, const DropoutParams& p) {
  const T* pi = in.data<T>();
  T* po = out.data<T>();
  const uint32_t thr = p.keep_threshold();
  const T scale = static_cast<T>(p.scale());
  const int64_t n = in.numel();
  parallel_for(n, int64_t(1) << 15, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      uint32_t r[4];
      philox_block(p.seed, static_cast<uint64_t>(k), p.offset, r);
      po[k] = (r[0] >> 8) >= thr ? pi[k] * scale : T(0);
    }
  });
}

}  // namespace

void norm_fwd(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
              const Tensor& running_var, const NormShape& s, const NormParams& p) {
  IDEM_DISPATCH_FLOAT(x.dtype(), "norm", [&] {
    norm_fwd_typed<scalar_t>(y, mean, rstd, x, weight, bias, running_mean, running_var, s, p);
  });
}

void norm_fwd_stats(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor& mean_in, const Tensor& var_in, const Tensor& weight,
                    const Tensor& bias, const NormShape& s, const NormParams& p) {
  IDEM_DISPATCH_FLOAT(x.dtype(), "norm", [&] {
    norm_fwd_stats_typed<scalar_t>(y, mean, rstd, x, mean_in, var_in, weight, bias, s, p);
  });
}

void norm_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
              const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight,
              const NormShape& s, bool batch_stats) {
  IDEM_DISPATCH_FLOAT(x.dtype(), "norm_backward", [&] {
    norm_bwd_typed<scalar_t>(dx, dweight, dbias, g, x, mean, rstd, weight, s, batch_stats);
  });
}

void dropout_apply(const Tensor& out, const Tensor& in, const DropoutParams& p) {
  IDEM_DISPATCH_FLOAT(in.dtype(), "dropout", [&] { dropout_typed<scalar_t>(out, in, p); });
}

}  // namespace idem::cpu
