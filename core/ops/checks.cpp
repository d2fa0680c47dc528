#include "core/ops/checks.h"

#include <cmath>

#include "core/kernels/fused.h"

namespace idem::ops {

void check_defined(const Tensor& t, const char* op, const char* what) {
  IDEM_CHECK(t.defined(), op, what, " is an undefined tensor");
}

void check_same_device(std::initializer_list<const Tensor*> ts, const char* op) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    check_defined(*t, op);
    if (!first) {
      first = t;
      continue;
    }
    IDEM_CHECK(t->device() == first->device(), op, "expected all tensors on one device, got ",
               first->device().str(), " ", shape_str(first->shape()), " and ", t->device().str(),
               " ", shape_str(t->shape()));
  }
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  IDEM_CHECK(a.dtype() == b.dtype(), op, "dtype mismatch: ", dtype_name(a.dtype()), " ",
             shape_str(a.shape()), " and ", dtype_name(b.dtype()), " ", shape_str(b.shape()));
}

void check_fused_act(FusedAct act, double slope, const char* op) {
  IDEM_CHECK(static_cast<int>(act) < kFusedActCount, op, "unknown activation ",
             static_cast<int>(act), " (expected one of ", kFusedActList, ")");
  IDEM_CHECK(act != FusedAct::leaky_relu || (std::isfinite(slope) && slope >= 0.0), op,
             "leaky_relu slope must be finite and >= 0 (the backward reads the activation's "
             "derivative from its output), got ",
             slope);
}

void check_floating(const Tensor& t, const char* op) {
  IDEM_CHECK(is_floating(t.dtype()), op, "expected a floating tensor (f32/f64), got ",
             dtype_name(t.dtype()), " ", shape_str(t.shape()));
  check_cuda_dtype(t, op);
}

void check_dtype(const Tensor& t, DType want, const char* op, const char* what) {
  IDEM_CHECK(t.dtype() == want, op, what, " must be ", dtype_name(want), ", got ",
             dtype_name(t.dtype()), " ", shape_str(t.shape()));
}

void check_cuda_dtype(const Tensor& t, const char* op) {
  IDEM_CHECK(!(t.device().is_cuda() && t.dtype() == DType::f64), op,
             "f64 tensors are CPU-only (CUDA kernels are f32); got f64 ", shape_str(t.shape()),
             " on ", t.device().str());
}

void split_around(const Shape& shape, int64_t dim, int64_t& outer, int64_t& mid, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= shape[i];
  mid = shape.empty() ? 1 : shape[dim];
  for (size_t i = dim + 1; i < shape.size(); ++i) inner *= shape[i];
}

int64_t row_features(const Shape& s) {
  int64_t f = 1;
  for (size_t d = 1; d < s.size(); ++d) f *= s[d];
  return f;
}

Shape with_rows(Shape s, int64_t rows) {
  s[0] = rows;
  return s;
}

void check_rows_tensor(const Tensor& t, const char* op, const char* what) {
  check_defined(t, op, what);
  check_floating(t, op);
  IDEM_CHECK(t.dim() >= 1, op, what, " must have a row dim (rows, ...), got a 0-dim tensor");
}

}  // namespace idem::ops
