// L1 softmax / log_softmax: validate, view x as (outer, D, inner) around `dim`, dispatch.
#include "core/ops/softmax.h"

#include "core/ops/checks.h"

namespace idem::ops {

namespace {

// A 0-dim tensor is treated as one line of length 1 (as torch does); dims -1 and 0 name it.
ReduceShape softmax_shape(const Tensor& x, int64_t dim, const char* op) {
  ReduceShape s;
  if (x.dim() == 0) {
    IDEM_CHECK(dim == 0 || dim == -1, op, "dim ", dim, " out of range for a 0-dim tensor");
    return s;
  }
  const int64_t d = wrap_dim(dim, x.dim(), op);
  split_around(x.shape(), d, s.outer, s.reduce, s.inner);
  return s;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_defined(x, op, "x");
  check_floating(x, op);
  const ReduceShape s = softmax_shape(x, dim, op);
  Tensor y = empty(x.shape(), x.options());
  if (y.numel() == 0) return y;
  dispatch(
      y, [&] { cpu::softmax_fwd(y, x, s, log); }, [&] { cuda::softmax_fwd(y, x, s, log); });
  return y;
}

Tensor softmax_backward(const Tensor& grad_out, const Tensor& y, int64_t dim, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  check_defined(grad_out, op, "grad_out");
  check_defined(y, op, "y");
  check_same_device({&grad_out, &y}, op);
  check_same_dtype(grad_out, y, op);
  check_floating(y, op);
  IDEM_CHECK(grad_out.shape() == y.shape(), op, "grad_out ", shape_str(grad_out.shape()),
             " and output ", shape_str(y.shape()), " must have the same shape");
  const ReduceShape s = softmax_shape(y, dim, op);
  Tensor gx = empty(y.shape(), y.options());
  if (gx.numel() == 0) return gx;
  dispatch(
      gx, [&] { cpu::softmax_bwd(gx, grad_out, y, s, log); },
      [&] { cuda::softmax_bwd(gx, grad_out, y, s, log); });
  return gx;
}

}  // namespace idem::ops
