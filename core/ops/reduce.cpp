#include "core/ops/reduce.h"

#include <algorithm>
#include <limits>

#include "core/ops/checks.h"
#include "core/ops/elementwise.h"

namespace idem {

const char* reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
    case ReduceOp::argmax: return "argmax";
  }
  return "reduce";
}

namespace ops {

namespace {

// Wraps, sorts and de-duplicates dims; empty means all dims.
std::vector<int64_t> normalize_dims(std::vector<int64_t> dims, int64_t ndim, const char* op) {
  if (dims.empty()) {
    for (int64_t i = 0; i < ndim; ++i) dims.push_back(i);
    return dims;
  }
  for (auto& d : dims) d = wrap_dim(d, ndim, op);
  std::sort(dims.begin(), dims.end());
  IDEM_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), op,
             "a dim appears more than once in the reduction dims");
  if (ndim == 0) dims.clear();  // dim 0 / -1 of a scalar reduces nothing
  return dims;
}

Tensor run_pass(const Tensor& x, ReduceShape s, ReduceOp op) {
  DType out_dtype = op == ReduceOp::argmax ? DType::i64 : x.dtype();
  Tensor out = empty({s.outer * s.inner}, {out_dtype, x.device()});
  if (out.numel() == 0) return out;
  if (s.reduce == 0) {
    IDEM_CHECK(op == ReduceOp::sum, reduce_name(op), "cannot take ", reduce_name(op),
               " over an empty dimension");
    fill_(out, 0.0);
    return out;
  }
  dispatch(
      x, [&] { cpu::reduce_fwd(out, x, s, op); }, [&] { cuda::reduce_fwd(out, x, s, op); });
  return out;
}

}  // namespace

Shape keepdim_shape(const Shape& shape, std::vector<int64_t> dims) {
  dims = normalize_dims(dims, static_cast<int64_t>(shape.size()), "reduce");
  Shape k = shape;
  for (int64_t d : dims) k[d] = 1;
  return k;
}

int64_t reduced_count(const Shape& shape, const std::vector<int64_t>& dims) {
  auto ds = normalize_dims(dims, static_cast<int64_t>(shape.size()), "reduce");
  int64_t n = 1;
  for (int64_t d : ds) n *= shape[d];
  return n;
}

Tensor reduce(const Tensor& x, std::vector<int64_t> dims, bool keepdim, ReduceOp op) {
  const char* name = reduce_name(op);
  check_defined(x, name);
  check_cuda_dtype(x, name);
  const int64_t nd = x.dim();
  dims = normalize_dims(dims, nd, name);
  Shape kept = x.shape();
  for (int64_t d : dims) kept[d] = 1;
  Shape final_shape;
  for (int64_t i = 0; i < nd; ++i)
    if (keepdim || !std::binary_search(dims.begin(), dims.end(), i)) final_shape.push_back(kept[i]);

  // Group adjacent dims into runs of (reduced | kept) and reduce the innermost reduced run
  // first; each pass is one (outer, R, inner) kernel call.
  std::vector<int64_t> ext = x.shape();
  std::vector<bool> red(nd, false);
  for (int64_t d : dims) red[d] = true;
  Tensor cur = x;
  if (dims.empty()) {
    ReduceShape s{x.numel(), 1, 1};
    return run_pass(cur, s, op).view_as_shape(final_shape);
  }
  IDEM_CHECK(op != ReduceOp::argmax || dims.size() == 1, name, "reduces exactly one dim");
  while (true) {
    int64_t hi = static_cast<int64_t>(ext.size()) - 1;
    while (hi >= 0 && !red[hi]) --hi;
    if (hi < 0) break;
    int64_t lo = hi;
    while (lo - 1 >= 0 && red[lo - 1]) --lo;
    ReduceShape s;
    for (int64_t i = 0; i < lo; ++i) s.outer *= ext[i];
    s.reduce = 1;
    for (int64_t i = lo; i <= hi; ++i) s.reduce *= ext[i];
    for (size_t i = hi + 1; i < ext.size(); ++i) s.inner *= ext[i];
    cur = run_pass(cur, s, op);
    ext.erase(ext.begin() + lo, ext.begin() + hi + 1);
    red.erase(red.begin() + lo, red.begin() + hi + 1);
  }
  return cur.view_as_shape(final_shape);
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(x, dims, keepdim, ReduceOp::sum);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined(x, "mean");
  check_floating(x, "mean");
  Tensor s = reduce(x, dims, keepdim, ReduceOp::sum);
  const int64_t n = reduced_count(x.shape(), dims);
  UnaryParams p{n == 0 ? std::numeric_limits<double>::quiet_NaN() : 1.0 / static_cast<double>(n)};
  return unary(s, UnaryOp::mul_scalar, p);
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(x, dims, keepdim, ReduceOp::max);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce(x, {dim}, keepdim, ReduceOp::argmax);
}

}  // namespace ops
}  // namespace idem
