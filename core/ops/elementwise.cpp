#include "core/ops/elementwise.h"

#include "core/ops/checks.h"
#include "core/ops/reduce.h"

namespace idem {

// Indexed by the enum value; both come from the same list (core/kernels/elementwise.h).
const char* unary_name(UnaryOp op) {
#define IDEM_EW_NAME(name, reads, domain) #name,
  static constexpr const char* names[] = {IDEM_UNARY_OPS(IDEM_EW_NAME)};
#undef IDEM_EW_NAME
  static_assert(sizeof(names) / sizeof(names[0]) == kUnaryOpCount, "one name per UnaryOp");
  const int i = static_cast<int>(op);
  return i < kUnaryOpCount ? names[i] : "unary";
}

const char* binary_name(BinaryOp op) {
#define IDEM_EW_ARITH_NAME(name, dtypes, a_domain, b_domain) #name,
#define IDEM_EW_CMP_NAME(name) #name,
  static constexpr const char* names[] = {IDEM_BINARY_ARITH_OPS(IDEM_EW_ARITH_NAME)
                                              IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP_NAME)};
#undef IDEM_EW_ARITH_NAME
#undef IDEM_EW_CMP_NAME
  static_assert(sizeof(names) / sizeof(names[0]) == kBinaryOpCount, "one name per BinaryOp");
  const int i = static_cast<int>(op);
  return i < kBinaryOpCount ? names[i] : "binary";
}

namespace ops {

Tensor unary(const Tensor& x, UnaryOp op, UnaryParams p) {
  const char* name = unary_name(op);
  check_defined(x, name);
  check_floating(x, name);
  Tensor y = empty(x.shape(), x.options());
  if (x.numel() == 0) return y;
  dispatch(
      x, [&] { cpu::unary_fwd(y, x, op, p); }, [&] { cuda::unary_fwd(y, x, op, p); });
  return y;
}

Tensor unary_backward(const Tensor& grad_out, const Tensor& x, const Tensor& y, UnaryOp op,
                      UnaryParams p) {
  const char* name = unary_name(op);
  check_same_device({&grad_out, &x, &y}, name);
  IDEM_CHECK(grad_out.shape() == x.shape() && y.shape() == x.shape(), name,
             "backward: gradient ", shape_str(grad_out.shape()), " does not match input ",
             shape_str(x.shape()));
  check_same_dtype(grad_out, x, name);
  Tensor gi = empty(x.shape(), x.options());
  if (x.numel() == 0) return gi;
  dispatch(
      x, [&] { cpu::unary_bwd(gi, grad_out, x, y, op, p); },
      [&] { cuda::unary_bwd(gi, grad_out, x, y, op, p); });
  return gi;
}

Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op) {
  const char* name = binary_name(op);
  check_same_device({&a, &b}, name);
  IDEM_CHECK(a.dtype() == b.dtype(), name, "dtype mismatch: ", dtype_name(a.dtype()), " ",
             shape_str(a.shape()), " and ", dtype_name(b.dtype()), " ", shape_str(b.shape()),
             " (convert one with .to(dtype))");
  check_cuda_dtype(a, name);
  if (!binary_takes_integers(op) && !is_floating(a.dtype()))
    fail(name, "integer ", name, " is not supported (got ", dtype_name(a.dtype()),
         "); convert to a floating dtype first");
  Tensor out = empty(broadcast_shapes(a.shape(), b.shape(), name),
                     {is_comparison(op) ? DType::u8 : a.dtype(), a.device()});
  if (out.numel() == 0) return out;
  dispatch(
      a, [&] { cpu::binary_fwd(out, a, b, op); }, [&] { cuda::binary_fwd(out, a, b, op); });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device({&cond, &a, &b}, "where");
  check_dtype(cond, DType::u8, "where", "condition");
  check_same_dtype(a, b, "where");
  check_cuda_dtype(a, "where");
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(),
                                 "where");
  Tensor out = empty(shape, a.options());
  if (out.numel() == 0) return out;
  dispatch(
      a, [&] { cpu::where_fwd(out, cond, a, b); }, [&] { cuda::where_fwd(out, cond, a, b); });
  return out;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  check_defined(x, "expand");
  Shape b = broadcast_shapes(x.shape(), shape, "expand");
  IDEM_CHECK(b == shape, "expand", "cannot expand ", shape_str(x.shape()), " to ",
             shape_str(shape));
  if (x.shape() == shape) return x;
  check_cuda_dtype(x, "expand");
  Tensor out = empty(shape, x.options());
  if (out.numel() == 0) return out;
  dispatch(
      x, [&] { cpu::expand_fwd(out, x); }, [&] { cuda::expand_fwd(out, x); });
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  check_defined(x, "sum_to");
  if (x.shape() == shape) return x;
  IDEM_CHECK(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(), "sum_to", "cannot sum ",
             shape_str(x.shape()), " down to ", shape_str(shape));
  // Sum the leading dims that `shape` lacks, and the dims where shape has extent 1.
  std::vector<int64_t> dims;
  const size_t lead = x.shape().size() - shape.size();
  for (size_t i = 0; i < x.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1))
      dims.push_back(static_cast<int64_t>(i));
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return s.view_as_shape(shape);
}

Tensor cast(const Tensor& x, DType dtype) {
  check_defined(x, "cast");
  Tensor out = empty(x.shape(), {dtype, x.device()});
  check_cuda_dtype(out, "cast");
  if (x.dtype() == dtype) {
    out.copy_(x);
    return out;
  }
  if (x.numel() == 0) return out;
  dispatch(
      x, [&] { cpu::cast(out, x); }, [&] { cuda::cast(out, x); });
  return out;
}

void fill_(const Tensor& t, double value) {
  check_defined(t, "fill");
  check_cuda_dtype(t, "fill");
  if (t.numel() == 0) return;
  dispatch(
      t, [&] { cpu::fill(t, value); }, [&] { cuda::fill(t, value); });
}

}  // namespace ops
}  // namespace idem
