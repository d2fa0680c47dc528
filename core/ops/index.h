// L1 data-movement ops: concat/narrow (and their adjoints), index_select/index_add,
// gather/scatter_add, one_hot, permute.
#pragma once
#include <vector>

#include "core/kernels/index.h"

namespace idem::ops {

Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
// Elements [start, start+length) along dim (a copy; dim 0 callers may use Tensor::slice0).
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
// Adjoint of narrow: zeros of `full_shape` with g placed at [start, start+g.size(dim)).
Tensor narrow_backward(const Tensor& g, const Shape& full_shape, int64_t dim, int64_t start);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// Zeros of `full_shape` with src rows added at index (adjoint of index_select).
Tensor index_add(const Shape& full_shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// Zeros of `full_shape` with src scattered-added at index (adjoint of gather).
Tensor scatter_add(const Shape& full_shape, int64_t dim, const Tensor& index, const Tensor& src);
// (N,) i64 -> (N, C) of `dtype`.
Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype = DType::f32);
Tensor permute(const Tensor& x, const std::vector<int64_t>& perm);

}  // namespace idem::ops
