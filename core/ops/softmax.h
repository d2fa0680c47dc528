// L1 softmax / log_softmax along a dim and their backward.
#pragma once
#include "core/kernels/softmax.h"

namespace idem::ops {

Tensor softmax(const Tensor& x, int64_t dim, bool log = false);
// grad_out and y (the forward output) have x's shape.
Tensor softmax_backward(const Tensor& grad_out, const Tensor& y, int64_t dim, bool log = false);

}  // namespace idem::ops
