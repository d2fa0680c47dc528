// L1 normalization and dropout: validate, map each normalization onto the canonical NormShape
// of core/kernels/norm.h, allocate, dispatch.
#include "core/ops/norm.h"

#include <cmath>
#include <limits>

#include "core/ops/checks.h"
#include "core/ops/elementwise.h"

namespace idem::ops {

namespace {

// An optional per-channel tensor (weight, bias, running stats): when defined it must match x's
// device and dtype and hold exactly `shape`.
void check_param(const Tensor& t, const Tensor& x, const Shape& shape, const char* op,
                 const char* what) {
  if (!t.defined()) return;
  check_same_device({&x, &t}, op);
  IDEM_CHECK(t.dtype() == x.dtype(), op, what, " dtype ", dtype_name(t.dtype()), " ",
             shape_str(t.shape()), " does not match x dtype ", dtype_name(x.dtype()), " ",
             shape_str(x.shape()));
  IDEM_CHECK(t.shape() == shape, op, what, " ", shape_str(t.shape()), " does not match x ",
             shape_str(x.shape()), ": expected ", shape_str(shape));
}

void check_input(const Tensor& x, const char* op) {
  check_defined(x, op, "x");
  check_floating(x, op);
}

void check_eps(double eps, const char* op) {
  IDEM_CHECK(eps >= 0.0 && std::isfinite(eps), op, "eps must be finite and >= 0, got ", eps);
}

// (N, C, S) with S the product of the dims after C.
void channel_split(const Tensor& x, int64_t& n, int64_t& c, int64_t& s, const char* op) {
  IDEM_CHECK(x.dim() >= 2, op, "expected x of shape (N,C) or (N,C,*), got ", shape_str(x.shape()));
  split_around(x.shape(), 1, n, c, s);
}

// Allocates y/mean/rstd; a group without elements gets NaN statistics (as torch's mean of an
// empty set), so nothing uninitialized escapes.
NormOutputs allocate(const Tensor& x, const NormShape& s) {
  NormOutputs out;
  out.shape = s;
  out.y = empty(x.shape(), x.options());
  out.mean = empty({s.groups}, x.options());
  out.rstd = empty({s.groups}, x.options());
  if (s.numel() == 0 && s.groups > 0) {
    fill_(out.mean, std::numeric_limits<double>::quiet_NaN());
    fill_(out.rstd, std::numeric_limits<double>::quiet_NaN());
  }
  return out;
}

void run_batch_stats(NormOutputs& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                     const Tensor& running_mean, const Tensor& running_var, NormParams p) {
  if (out.shape.numel() == 0) return;
  const NormShape& s = out.shape;
  dispatch(
      x,
      [&] {
        cpu::norm_fwd(out.y, out.mean, out.rstd, x, weight, bias, running_mean, running_var, s, p);
      },
      [&] {
        cuda::norm_fwd(out.y, out.mean, out.rstd, x, weight, bias, running_mean, running_var, s, p);
      });
}

}  // namespace

NormOutputs batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight, const Tensor& bias, bool training, double momentum,
                       double eps) {
  const char* op = "batch_norm";
  check_input(x, op);
  check_eps(eps, op);
  int64_t n, c, sp;
  channel_split(x, n, c, sp, op);
  check_param(weight, x, {c}, op, "weight");
  check_param(bias, x, {c}, op, "bias");
  check_param(running_mean, x, {c}, op, "running_mean");
  check_param(running_var, x, {c}, op, "running_var");
  IDEM_CHECK(running_mean.defined() == running_var.defined(), op,
             "running_mean and running_var must both be defined or both undefined");
  NormShape s{n, c, sp, n, c, sp};
  NormParams p{eps, momentum};
  NormOutputs out = allocate(x, s);
  if (training) {
    // The unbiased running variance divides by R - 1; torch refuses R = 1 the same way.
    IDEM_CHECK(n * sp > 1, op, "expected more than 1 value per channel when training, got x ",
               shape_str(x.shape()));
    IDEM_CHECK(std::isfinite(momentum), op, "momentum must be finite, got ", momentum);
    run_batch_stats(out, x, weight, bias, running_mean, running_var, p);
    return out;
  }
  IDEM_CHECK(running_mean.defined(), op,
             "running_mean and running_var must be defined in evaluation mode (training=false); x ",
             shape_str(x.shape()));
  if (s.numel() == 0) return out;
  dispatch(
      x,
      [&] {
        cpu::norm_fwd_stats(out.y, out.mean, out.rstd, x, running_mean, running_var, weight, bias,
                            s, p);
      },
      [&] {
        cuda::norm_fwd_stats(out.y, out.mean, out.rstd, x, running_mean, running_var, weight, bias,
                             s, p);
      });
  return out;
}

NormOutputs layer_norm(const Tensor& x, int64_t normalized_dims, const Tensor& weight,
                       const Tensor& bias, double eps) {
  const char* op = "layer_norm";
  check_input(x, op);
  check_eps(eps, op);
  IDEM_CHECK(normalized_dims >= 1 && normalized_dims <= x.dim(), op, "normalized_dims ",
             normalized_dims, " out of range [1, ", x.dim(), "] for x ", shape_str(x.shape()));
  const int64_t lead = x.dim() - normalized_dims;
  Shape norm_shape(x.shape().begin() + lead, x.shape().end());
  check_param(weight, x, norm_shape, op, "weight");
  check_param(bias, x, norm_shape, op, "bias");
  int64_t m = 1;
  for (int64_t k = 0; k < lead; ++k) m *= x.size(k);
  const int64_t d = numel_of(norm_shape);
  NormShape s{1, m, d, m, d, 1};
  NormOutputs out = allocate(x, s);
  run_batch_stats(out, x, weight, bias, Tensor(), Tensor(), NormParams{eps, 0.0});
  return out;
}

NormOutputs group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                       double eps) {
  const char* op = "group_norm";
  check_input(x, op);
  check_eps(eps, op);
  int64_t n, c, sp;
  channel_split(x, n, c, sp, op);
  IDEM_CHECK(groups >= 1 && c % groups == 0, op, groups, " groups do not divide the ", c,
             " channels (dim 1) of x ", shape_str(x.shape()));
  check_param(weight, x, {c}, op, "weight");
  check_param(bias, x, {c}, op, "bias");
  NormShape s{1, n * groups, (c / groups) * sp, n, c, sp};
  NormOutputs out = allocate(x, s);
  run_batch_stats(out, x, weight, bias, Tensor(), Tensor(), NormParams{eps, 0.0});
  return out;
}

NormGrads norm_backward(const Tensor& g, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                        const Tensor& weight, const NormShape& s, bool batch_stats, bool need_dx,
                        bool need_dweight, bool need_dbias) {
  const char* op = "norm_backward";
  check_defined(g, op, "grad");
  check_input(x, op);
  check_same_device({&g, &x, &mean, &rstd}, op);
  check_same_dtype(g, x, op);
  IDEM_CHECK(g.shape() == x.shape(), op, "grad ", shape_str(g.shape()), " and x ",
             shape_str(x.shape()), " must have the same shape");
  IDEM_CHECK(x.numel() == s.numel() && mean.numel() == s.groups && rstd.numel() == s.groups, op,
             "x ", shape_str(x.shape()), ", mean ", shape_str(mean.shape()), " and rstd ",
             shape_str(rstd.shape()), " do not match the normalization shape");
  if (weight.defined())
    IDEM_CHECK(weight.numel() == s.channels && weight.dtype() == x.dtype(), op, "weight ",
               shape_str(weight.shape()), " does not match ", s.channels, " channels");
  NormGrads out;
  if (need_dx) out.dx = empty(x.shape(), x.options());
  // Zeros, not empty: with no elements the sums are 0 and the kernel does not run.
  auto alloc_c = [&] {
    return s.numel() == 0 ? zeros({s.channels}, x.options()) : empty({s.channels}, x.options());
  };
  if (need_dweight) out.dweight = alloc_c();
  if (need_dbias) out.dbias = alloc_c();
  if (s.numel() == 0 || (!need_dx && !need_dweight && !need_dbias)) return out;
  dispatch(
      x,
      [&] {
        cpu::norm_bwd(out.dx, out.dweight, out.dbias, g, x, mean, rstd, weight, s, batch_stats);
      },
      [&] {
        cuda::norm_bwd(out.dx, out.dweight, out.dbias, g, x, mean, rstd, weight, s, batch_stats);
      });
  return out;
}

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  const char* op = "dropout";
  check_input(x, op);
  IDEM_CHECK(p >= 0.0 && p < 1.0, op, "p must be in [0, 1), got ", p, " (x ", shape_str(x.shape()),
             ")");
  Tensor y = empty(x.shape(), x.options());
  if (y.numel() == 0) return y;
  const DropoutParams dp{p, seed, offset};
  dispatch(
      x, [&] { cpu::dropout_apply(y, x, dp); }, [&] { cuda::dropout_apply(y, x, dp); });
  return y;
}

}  // namespace idem::ops
