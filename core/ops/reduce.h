// L1 reductions over any set of dims, with keepdim. Empty `dims` means all dims.
#pragma once
#include <vector>

#include "core/kernels/reduce.h"

namespace idem::ops {

Tensor reduce(const Tensor& x, std::vector<int64_t> dims, bool keepdim, ReduceOp op);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Index (i64) of the first maximum along dim.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// Number of elements each output of a reduction over `dims` combines.
int64_t reduced_count(const Shape& shape, const std::vector<int64_t>& dims);
// The shape of x with the reduced dims kept as size 1 (for broadcasting a result back).
Shape keepdim_shape(const Shape& shape, std::vector<int64_t> dims);

}  // namespace idem::ops
