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

void reduce_fwd(const Tensor& out, const Tensor& in, ReduceShape s, ReduceOp op) {
  IDEM_DISPATCH_ALL(in.dtype(), reduce_name(op), [&] {
    const scalar_t* x = in.data<scalar_t>();
    const int64_t blocks = (s.inner + kColumnBlock - 1) / kColumnBlock;
    const int64_t items = s.outer * blocks;
    const int64_t grain = grain_for(s.reduce * std::min(s.inner, kColumnBlock));
    parallel_for(items, grain, [&](int64_t lo, int64_t hi) {
      std::vector<double> acc(static_cast<size_t>(std::min(s.inner, kColumnBlock)));
      std::vector<int64_t> arg(acc.size());
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t o = item / blocks, i0 = (item % blocks) * kColumnBlock;
        const int64_t width = std::min(s.inner, i0 + kColumnBlock) - i0;
        const scalar_t* xo = x + o * s.reduce * s.inner + i0;
        double init = 0.0;
        if (op == ReduceOp::max || op == ReduceOp::argmax) init = -std::numeric_limits<double>::infinity();
        if (op == ReduceOp::min) init = std::numeric_limits<double>::infinity();
        std::fill(acc.begin(), acc.begin() + width, init);
        std::fill(arg.begin(), arg.begin() + width, 0);
        for (int64_t r = 0; r < s.reduce; ++r) {
          const scalar_t* row = xo + r * s.inner;
          for (int64_t i = 0; i < width; ++i) {
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
          int64_t* y = out.data<int64_t>() + o * s.inner + i0;
          for (int64_t i = 0; i < width; ++i) y[i] = arg[i];
        } else {
          scalar_t* y = out.data<scalar_t>() + o * s.inner + i0;
          for (int64_t i = 0; i < width; ++i) y[i] = static_cast<scalar_t>(acc[i]);
        }
      }
    });
  });
}

}  // namespace idem::cpu
