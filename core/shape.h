// Shapes are plain vectors of extents; helpers for sizes, strides and broadcasting.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace idem {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& s);
// Row-major (contiguous) strides in elements.
std::vector<int64_t> contiguous_strides(const Shape& s);
// "(2x3x4)"; "()" for a scalar.
std::string shape_str(const Shape& s);
// NumPy broadcasting of two shapes; throws idem::Error naming `op` when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace idem
