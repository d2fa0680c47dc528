// CPU reference of the CSR mean aggregation (contract: core/kernels/csr_aggregate.h). Each
// output row is summed in double in increasing position and rounded once, then multiplied in T
// by inv(v) — exactly the steps of gather + segment_sum_csr + · inv_in_degree, so the result
// is their bits (the CUDA kernels reproduce the same order). Threads (core/parallel.h) split
// the output rows; each row is summed by one thread in that order, so the bits do not depend on
// the thread count.
#include "core/kernels/csr_aggregate.h"

#include "core/parallel.h"

#include <algorithm>
#include <vector>

namespace idem::cpu {

namespace {

// 1 / max(deg, 1) in T, as Graph::inv_in_degree computes it: the degree converted to T, then
// one division in T.
template <typename T>
T inv_degree(const int64_t* rp, int64_t v) {
  const int64_t deg = rp[v + 1] - rp[v];
  return T(1) / static_cast<T>(std::max<int64_t>(deg, 1));
}

template <typename T>
void fwd_typed(const Tensor& out, const Tensor& x, const CsrAggregateIndex& idx,
               CsrAggregateShape s) {
  const T* xp = x.data<T>();
  const int64_t* rp = idx.row_ptr.data<int64_t>();
  const int64_t* col = s.edges > 0 ? idx.col.data<int64_t>() : nullptr;
  T* y = out.data<T>();
  const int64_t F = s.features;
  const int64_t grain = grain_for(F * (1 + s.edges / std::max<int64_t>(s.rows, 1)));
  parallel_for(s.rows, grain, [&](int64_t lo, int64_t hi) {
  std::vector<double> acc(static_cast<size_t>(F));
  for (int64_t v = lo; v < hi; ++v) {
    std::fill(acc.begin(), acc.end(), 0.0);
    // out[v] = T(Σ_k x[col[k]]) · inv(v) : (U,F) -> (V,F)
    for (int64_t k = rp[v]; k < rp[v + 1]; ++k) {
      const T* xr = xp + col[k] * F;
      for (int64_t f = 0; f < F; ++f) acc[f] += static_cast<double>(xr[f]);
    }
    const T inv = inv_degree<T>(rp, v);
    T* yv = y + v * F;
    for (int64_t f = 0; f < F; ++f) yv[f] = static_cast<T>(acc[f]) * inv;
  }
  });
}

template <typename T>
void bwd_typed(const Tensor& dx, const Tensor& g, const CsrAggregateIndex& idx,
               CsrAggregateShape s, const Tensor& add) {
  const T* gp = g.data<T>();
  const T* ap = add.defined() ? add.data<T>() : nullptr;
  const int64_t* rp = idx.row_ptr.data<int64_t>();
  const int64_t* sp = idx.src_ptr.data<int64_t>();
  const bool any = s.edges > 0;
  // The destination of group entry j: group_dst[j] when cached, else dst[perm[src_perm[j]]].
  const int64_t* gdst = any && idx.group_dst.defined() ? idx.group_dst.data<int64_t>() : nullptr;
  const int64_t* sperm = any && !gdst ? idx.src_perm.data<int64_t>() : nullptr;
  const int64_t* perm = sperm && idx.perm.defined() ? idx.perm.data<int64_t>() : nullptr;
  const int64_t* dst = sperm ? idx.dst.data<int64_t>() : nullptr;
  T* y = dx.data<T>();
  const int64_t F = s.features;
  const int64_t grain = grain_for(F * (1 + s.edges / std::max<int64_t>(s.sources, 1)));
  parallel_for(s.sources, grain, [&](int64_t lo, int64_t hi) {
  std::vector<double> acc(static_cast<size_t>(F));
  for (int64_t u = lo; u < hi; ++u) {
    std::fill(acc.begin(), acc.end(), 0.0);
    // dx[u] = Σ_{j in group u} T(g[v_j] · inv(v_j)), v_j = dst of sorted edge sperm[j]
    //   : (V,F) -> (U,F)
    for (int64_t j = sp[u]; j < sp[u + 1]; ++j) {
      const int64_t v = gdst ? gdst[j] : dst[perm ? perm[sperm[j]] : sperm[j]];
      const T inv = inv_degree<T>(rp, v);
      const T* gr = gp + v * F;
      for (int64_t f = 0; f < F; ++f) {
        const T h = gr[f] * inv;  // rounded to T first, as the unfused multiply's backward
        acc[f] += static_cast<double>(h);
      }
    }
    T* yu = y + u * F;
    // With `add`: its row + the rounded sum, the one add the engine would have made after.
    if (ap != nullptr)
      for (int64_t f = 0; f < F; ++f) yu[f] = ap[u * F + f] + static_cast<T>(acc[f]);
    else
      for (int64_t f = 0; f < F; ++f) yu[f] = static_cast<T>(acc[f]);
  }
  });
}

}  // namespace

void csr_mean_aggregate_fwd(const Tensor& out, const Tensor& x, const CsrAggregateIndex& idx,
                            CsrAggregateShape s) {
  IDEM_DISPATCH_FLOAT(out.dtype(), "csr_mean_aggregate",
                      [&] { fwd_typed<scalar_t>(out, x, idx, s); });
}

void csr_mean_aggregate_bwd(const Tensor& dx, const Tensor& g, const CsrAggregateIndex& idx,
                            CsrAggregateShape s, const Tensor& add) {
  IDEM_DISPATCH_FLOAT(dx.dtype(), "csr_mean_aggregate_backward",
                      [&] { bwd_typed<scalar_t>(dx, g, idx, s, add); });
}

}  // namespace idem::cpu
