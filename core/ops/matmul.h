// L1 matmul: 2-D (M,K)x(K,N) with transpose flags, and batched 3-D (B,M,K)x(B,K,N); a 2-D
// operand against a 3-D one is shared across the batch.
#pragma once
#include "core/kernels/matmul.h"

namespace idem::ops {

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

}  // namespace idem::ops
