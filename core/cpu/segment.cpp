// CPU segment kernels: a stable counting sort into CSR, and segment reductions over it.
// This is the reference the CUDA kernels are compared against: each row is reduced in
// increasing sorted position (= increasing edge id), sums accumulate in double and round once.
// Threads (core/parallel.h) split the rows; a row is reduced by one thread in that order, and
// every edge belongs to one row, so writes never overlap and the bits do not depend on the
// thread count.
#include "core/kernels/segment.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"

namespace idem {

const char* segment_op_name(SegmentOp op) {
  switch (op) {
    case SegmentOp::sum:
      return "segment_sum";
    case SegmentOp::mean:
      return "segment_mean";
    case SegmentOp::max:
      return "segment_max";
  }
  return "segment_reduce";
}

namespace cpu {

namespace {

template <typename T>
void segment_reduce_typed(const Tensor& out, const Tensor& argmax, const Tensor& src,
                          const Tensor& row_ptr, const Tensor& perm, SegmentShape s, SegmentOp op) {
  const T* x = src.data<T>();
  const int64_t* rp = row_ptr.data<int64_t>();
  const int64_t* pm = perm.defined() ? perm.data<int64_t>() : nullptr;
  T* y = out.data<T>();
  int64_t* am = op == SegmentOp::max ? argmax.data<int64_t>() : nullptr;
  const int64_t F = s.features;
  const int64_t grain = grain_for(F * (1 + s.edges / std::max<int64_t>(s.rows, 1)));
  parallel_for(s.rows, grain, [&](int64_t v_lo, int64_t v_hi) {
  std::vector<double> acc(static_cast<size_t>(F));
  std::vector<int64_t> arg(static_cast<size_t>(F));
  for (int64_t v = v_lo; v < v_hi; ++v) {
    const int64_t lo = rp[v], hi = rp[v + 1];
    T* yv = y + v * F;
    if (op == SegmentOp::max) {
      int64_t* av = am + v * F;
      if (lo == hi) {  // empty row: 0, and no edge receives a gradient
        for (int64_t f = 0; f < F; ++f) {
          yv[f] = T(0);
          av[f] = -1;
        }
        continue;
      }
      // First edge always taken; later ones replace a non-NaN best when larger or NaN, so the
      // first maximum wins and a NaN propagates (as the reduce family's argmax).
      for (int64_t k = lo; k < hi; ++k) {
        const int64_t e = pm ? pm[k] : k;
        const T* xe = x + e * F;
        for (int64_t f = 0; f < F; ++f) {
          const double val = static_cast<double>(xe[f]);
          if (k == lo || (acc[f] == acc[f] && (val > acc[f] || val != val))) {
            acc[f] = val;
            arg[f] = e;
          }
        }
      }
      for (int64_t f = 0; f < F; ++f) {
        yv[f] = static_cast<T>(acc[f]);
        av[f] = arg[f];
      }
      continue;
    }
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t k = lo; k < hi; ++k) {
      const T* xe = x + (pm ? pm[k] : k) * F;
      for (int64_t f = 0; f < F; ++f) acc[f] += static_cast<double>(xe[f]);
    }
    const double count = static_cast<double>(hi - lo);
    for (int64_t f = 0; f < F; ++f)
      yv[f] = static_cast<T>(op == SegmentOp::mean && hi > lo ? acc[f] / count : acc[f]);
  }
  });
}

template <typename T>
void segment_expand_typed(const Tensor& out, const Tensor& g, const Tensor& row_ptr,
                          const Tensor& perm, SegmentShape s, bool mean) {
  const T* gv = g.data<T>();
  const int64_t* rp = row_ptr.data<int64_t>();
  const int64_t* pm = perm.defined() ? perm.data<int64_t>() : nullptr;
  T* y = out.data<T>();
  const int64_t F = s.features;
  const int64_t grain = grain_for(F * (1 + s.edges / std::max<int64_t>(s.rows, 1)));
  parallel_for(s.rows, grain, [&](int64_t v_lo, int64_t v_hi) {
  for (int64_t v = v_lo; v < v_hi; ++v) {
    const int64_t lo = rp[v], hi = rp[v + 1];
    if (lo == hi) continue;
    const T* gr = gv + v * F;
    const double count = static_cast<double>(hi - lo);
    for (int64_t k = lo; k < hi; ++k) {
      T* ye = y + (pm ? pm[k] : k) * F;
      for (int64_t f = 0; f < F; ++f)
        ye[f] = mean ? static_cast<T>(static_cast<double>(gr[f]) / count) : gr[f];
    }
  }
  });
}

template <typename T>
void segment_max_bwd_typed(const Tensor& out, const Tensor& g, const Tensor& argmax,
                           SegmentShape s) {
  const T* gv = g.data<T>();
  const int64_t* am = argmax.data<int64_t>();
  T* y = out.data<T>();
  const int64_t F = s.features;
  parallel_for(s.rows, grain_for(F), [&](int64_t v_lo, int64_t v_hi) {
    for (int64_t v = v_lo; v < v_hi; ++v)
      for (int64_t f = 0; f < F; ++f) {
        const int64_t e = am[v * F + f];
        if (e >= 0) y[e * F + f] = gv[v * F + f];
      }
  });
}

}  // namespace

void build_csr(const Tensor& row_ptr, const Tensor& perm, const Tensor& index, SegmentShape s) {
  const int64_t* idx = index.data<int64_t>();
  int64_t* rp = row_ptr.data<int64_t>();
  int64_t* pm = perm.data<int64_t>();
  // Counting sort: histogram, exclusive scan, then placement in increasing edge id (stable).
  std::fill(rp, rp + s.rows + 1, int64_t{0});
  for (int64_t e = 0; e < s.edges; ++e) ++rp[idx[e] + 1];
  for (int64_t v = 0; v < s.rows; ++v) rp[v + 1] += rp[v];
  std::vector<int64_t> cursor(rp, rp + s.rows);
  for (int64_t e = 0; e < s.edges; ++e) pm[cursor[idx[e]]++] = e;
}

void segment_reduce_fwd(const Tensor& out, const Tensor& argmax, const Tensor& src,
                        const Tensor& row_ptr, const Tensor& perm, SegmentShape s, SegmentOp op) {
  IDEM_DISPATCH_FLOAT(src.dtype(), segment_op_name(op), [&] {
    segment_reduce_typed<scalar_t>(out, argmax, src, row_ptr, perm, s, op);
  });
}

void segment_expand(const Tensor& out, const Tensor& g, const Tensor& row_ptr, const Tensor& perm,
                    SegmentShape s, bool mean) {
  IDEM_DISPATCH_FLOAT(g.dtype(), "segment_expand",
                      [&] { segment_expand_typed<scalar_t>(out, g, row_ptr, perm, s, mean); });
}

void segment_max_bwd(const Tensor& out, const Tensor& g, const Tensor& argmax, SegmentShape s) {
  IDEM_DISPATCH_FLOAT(g.dtype(), "segment_max_backward",
                      [&] { segment_max_bwd_typed<scalar_t>(out, g, argmax, s); });
}

}  // namespace cpu
}  // namespace idem
