// Kernel contract: reductions. The L1 op reduces any set of dims by merging adjacent dims and
// running one (outer, R, inner) pass per run of reduced dims, so kernels see only that form:
//   in  viewed as (outer, R, inner) -> out (outer, inner)
// Deterministic: a fixed summation order (CPU: sequential per output; CUDA: fixed tree).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem {

enum class ReduceOp : uint8_t {
  sum,
  max,
  min,
  argmax,  // writes i64 indices into out (first maximum wins on ties)
};
const char* reduce_name(ReduceOp op);

struct ReduceShape {
  int64_t outer = 1, reduce = 1, inner = 1;
};

namespace cpu {
void reduce_fwd(const Tensor& out, const Tensor& in, ReduceShape s, ReduceOp op);
}
namespace cuda {
void reduce_fwd(const Tensor& out, const Tensor& in, ReduceShape s, ReduceOp op);
}

}  // namespace idem
