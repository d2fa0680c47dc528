// L1 elementwise ops: validate, allocate, dispatch. Not differentiable (autograd/ wraps them).
#pragma once
#include "core/kernels/elementwise.h"

namespace idem::ops {

Tensor unary(const Tensor& x, UnaryOp op, UnaryParams p = {});
Tensor unary_backward(const Tensor& grad_out, const Tensor& x, const Tensor& y, UnaryOp op,
                      UnaryParams p = {});
Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor expand(const Tensor& x, const Shape& shape);
// Sums x down to `shape` (the adjoint of broadcasting to x's shape).
Tensor sum_to(const Tensor& x, const Shape& shape);
Tensor cast(const Tensor& x, DType dtype);
void fill_(const Tensor& t, double value);

}  // namespace idem::ops
