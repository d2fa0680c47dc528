// CPU reductions over (outer, R, inner). Sums accumulate in double (the reference the GPU is
// compared against); the order is fixed, so results are deterministic.
#include <limits>
#include <vector>

#include "core/kernels/reduce.h"

namespace idem::cpu {

void reduce_fwd(const Tensor& out, const Tensor& in, ReduceShape s, ReduceOp op) {
  IDEM_DISPATCH_ALL(in.dtype(), reduce_name(op), [&] {
    const scalar_t* x = in.data<scalar_t>();
    std::vector<double> acc(static_cast<size_t>(s.inner));
    std::vector<int64_t> arg(static_cast<size_t>(s.inner));
    for (int64_t o = 0; o < s.outer; ++o) {
      const scalar_t* xo = x + o * s.reduce * s.inner;
      double init = 0.0;
      if (op == ReduceOp::max || op == ReduceOp::argmax) init = -std::numeric_limits<double>::infinity();
      if (op == ReduceOp::min) init = std::numeric_limits<double>::infinity();
      std::fill(acc.begin(), acc.end(), init);
      std::fill(arg.begin(), arg.end(), 0);
      for (int64_t r = 0; r < s.reduce; ++r) {
        const scalar_t* row = xo + r * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) {
          const double v = static_cast<double>(row[i]);
          switch (op) {
            case ReduceOp::sum: acc[i] += v; break;
            case ReduceOp::max:  // NaN propagates, as in torch.amax
              if (v > acc[i] || v != v) acc[i] = (acc[i] != acc[i]) ? acc[i] : v;
              break;
            case ReduceOp::min:
              if (v < acc[i] || v != v) acc[i] = (acc[i] != acc[i]) ? acc[i] : v;
              break;
            case ReduceOp::argmax:  // first maximum wins; a NaN counts as the maximum
              if (r == 0 || (acc[i] == acc[i] && (v > acc[i] || v != v))) {
                acc[i] = v;
                arg[i] = r;
              }
              break;
          }
        }
      }
      if (op == ReduceOp::argmax) {
        int64_t* y = out.data<int64_t>() + o * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) y[i] = arg[i];
      } else {
        scalar_t* y = out.data<scalar_t>() + o * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) y[i] = static_cast<scalar_t>(acc[i]);
      }
    }
  });
}

}  // namespace idem::cpu
