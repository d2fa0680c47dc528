// CPU reductions over (outer, R, inner). Sums accumulate in double (the reference the GPU is
// compared against); the order is fixed, so results are deterministic.
// Threads split the outputs, never the reduced dimension: work item (o, column block) owns
// outputs [o, i0..i1) and adds its R rows in increasing r, as a serial loop would, so the bits
// do not depend on the thread count (core/parallel.h).
#include <algorithm>
#include <limits>
#include <vector>

#include "core/kernels/reduce.h"
#include "core/parallel.h"

namespace idem::cpu {

namespace {
constexpr int64_t kColumnBlock = 256;  // outputs of one work item along `inner`
}  // namespace

namespace {

// One work item: acc[0..width) (and arg for argmax) over the R rows of xo, rows `inner` apart,
// in increasing r. The op is a template argument so that the loop carries no switch: with
// inner = 1 (a conv's bias gradient sums each (n, o) plane this way) the switch and the
// accumulator array cost ~5 ns an element, 14 % of a cnn training step. Same adds in the
// same order as before: the same bits.
template <ReduceOp op, typename T>
void reduce_rows(const T* xo, int64_t R, int64_t inner, int64_t width, double* acc,
                 int64_t* arg) {
  for (int64_t r = 0; r < R; ++r) {
    const T* row = xo + r * inner;
    for (int64_t i = 0; i < width; ++i) {
      const double v = static_cast<double>(row[i]);
      if constexpr (op == ReduceOp::sum) {
        acc[i] += v;
      } else if constexpr (op == ReduceOp::max) {  // NaN propagates, as in torch.amax
        if (v > acc[i] || v != v) acc[i] = (acc[i] != acc[i]) ? acc[i] : v;
      } else if constexpr (op == ReduceOp::min) {
        if (v < acc[i] || v != v) acc[i] = (acc[i] != acc[i]) ? acc[i] : v;
      } else {  // argmax: first maximum wins; a NaN counts as the maximum
        if (r == 0 || (acc[i] == acc[i] && (v > acc[i] || v != v))) {
          acc[i] = v;
          arg[i] = r;
        }
      }
    }
  }
}

// Sums over contiguous rows (inner = 1): y[o] = Σ_r x[o·R + r] for o in [lo, hi), each in one
// double accumulator, r increasing. One chain of dependent adds is bound by the add's latency
// (~4 cycles an element), so eight rows run side by side: eight independent chains, each row
// still added in its own order (the same bits as one row at a time).
template <typename T>
void sum_rows(const T* x, int64_t R, int64_t lo, int64_t hi, T* y) {
  constexpr int kRows = 8;
  int64_t o = lo;
  for (; o + kRows <= hi; o += kRows) {
    double acc[kRows] = {};
    const T* base = x + o * R;
    for (int64_t r = 0; r < R; ++r)
      for (int i = 0; i < kRows; ++i) acc[i] += static_cast<double>(base[i * R + r]);
    for (int i = 0; i < kRows; ++i) y[o + i] = static_cast<T>(acc[i]);
  }
  for (; o < hi; ++o) {
    double acc = 0.0;
    for (int64_t r = 0; r < R; ++r) acc += static_cast<double>(x[o * R + r]);
    y[o] = static_cast<T>(acc);
  }
}

template <ReduceOp op, typename T>
void reduce_typed(const Tensor& out, const Tensor& in, ReduceShape s) {
  const T* x = in.data<T>();
  const int64_t blocks = (s.inner + kColumnBlock - 1) / kColumnBlock;
  const int64_t items = s.outer * blocks;
  // Each output is computed alone, so the chunks may be evened out (core/parallel.h).
  const int64_t grain = grain_for(s.reduce * std::min(s.inner, kColumnBlock));
  if constexpr (op == ReduceOp::sum) {
    if (s.inner == 1) {
      T* y = out.data<T>();
      parallel_for(s.outer, even_grain(s.outer, grain),
                   [&](int64_t lo, int64_t hi) { sum_rows(x, s.reduce, lo, hi, y); });
      return;
    }
  }
  parallel_for(items, even_grain(items, grain), [&](int64_t lo, int64_t hi) {
    std::vector<double> acc(static_cast<size_t>(std::min(s.inner, kColumnBlock)));
    std::vector<int64_t> arg(acc.size());
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t o = item / blocks, i0 = (item % blocks) * kColumnBlock;
      const int64_t width = std::min(s.inner, i0 + kColumnBlock) - i0;
      const T* xo = x + o * s.reduce * s.inner + i0;
      double init = 0.0;
      if (op == ReduceOp::max || op == ReduceOp::argmax) init = -std::numeric_limits<double>::infinity();
      if (op == ReduceOp::min) init = std::numeric_limits<double>::infinity();
      std::fill(acc.begin(), acc.begin() + width, init);
      std::fill(arg.begin(), arg.begin() + width, 0);
      reduce_rows<op>(xo, s.reduce, s.inner, width, acc.data(), arg.data());
      if (op == ReduceOp::argmax) {
        int64_t* y = out.data<int64_t>() + o * s.inner + i0;
        for (int64_t i = 0; i < width; ++i) y[i] = arg[i];
      } else {
        T* y = out.data<T>() + o * s.inner + i0;
        for (int64_t i = 0; i < width; ++i) y[i] = static_cast<T>(acc[i]);
      }
    }
  });
}

}  // namespace

void reduce_fwd(const Tensor& out, const Tensor& in, ReduceShape s, ReduceOp op) {
  IDEM_DISPATCH_ALL(in.dtype(), reduce_name(op), [&] {
    switch (op) {
      case ReduceOp::sum: reduce_typed<ReduceOp::sum, scalar_t>(out, in, s); break;
      case ReduceOp::max: reduce_typed<ReduceOp::max, scalar_t>(out, in, s); break;
      case ReduceOp::min: reduce_typed<ReduceOp::min, scalar_t>(out, in, s); break;
      case ReduceOp::argmax: reduce_typed<ReduceOp::argmax, scalar_t>(out, in, s); break;
    }
  });
}

}  // namespace idem::cpu
