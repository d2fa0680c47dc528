// L1 fused ops: validate shapes/dtypes/devices, allocate, dispatch to the kernels of
// core/kernels/fused.h.
#include "core/ops/fused.h"

#include <cmath>

#include "core/ops/checks.h"
#include "core/ops/elementwise.h"

namespace idem {

const char* fused_act_name(FusedAct a) {
  switch (a) {
    case FusedAct::none:
      return "none";
    case FusedAct::relu:
      return "relu";
    case FusedAct::leaky_relu:
      return "leaky_relu";
  }
  return "?";
}

const char* distance_name(DistanceKind k) {
  return k == DistanceKind::mse ? "mse_distance" : "l1_distance";
}

namespace ops {

namespace {

// Validates the operands of linear_act and returns its parameters.
LinearActParams linear_params(const Tensor& x, const Tensor& w, const Tensor& b, FusedAct act,
                              double slope, const char* op) {
  check_defined(x, op, "x");
  check_defined(w, op, "weight");
  if (b.defined())
    check_same_device({&x, &w, &b}, op);
  else
    check_same_device({&x, &w}, op);
  check_floating(x, op);
  check_same_dtype(x, w, op);
  IDEM_CHECK(x.dim() == 2, op, "expected x of shape (N, in_features), got ", shape_str(x.shape()));
  IDEM_CHECK(w.dim() == 2, op, "expected weight of shape (out_features, in_features), got ",
             shape_str(w.shape()));
  IDEM_CHECK(x.size(1) == w.size(1), op, "x ", shape_str(x.shape()), " and weight ",
             shape_str(w.shape()), " cannot be multiplied: x has ", x.size(1),
             " features, weight expects ", w.size(1));
  IDEM_CHECK(w.size(1) > 0 && w.size(0) > 0, op, "weight ", shape_str(w.shape()),
             " must have at least one input and one output feature");
  if (b.defined()) {
    check_same_dtype(x, b, op);
    IDEM_CHECK(b.dim() == 1 && b.size(0) == w.size(0), op, "expected bias of shape (", w.size(0),
               ") for weight ", shape_str(w.shape()), ", got ", shape_str(b.shape()));
  }
  IDEM_CHECK(act == FusedAct::none || act == FusedAct::relu || act == FusedAct::leaky_relu, op,
             "unknown activation ", static_cast<int>(act));
  IDEM_CHECK(act != FusedAct::leaky_relu || (std::isfinite(slope) && slope >= 0.0), op,
             "leaky_relu slope must be finite and >= 0 (the backward reads the activation's "
             "derivative from its output), got ",
             slope);
  LinearActParams p;
  p.N = x.size(0);
  p.in = x.size(1);
  p.out = w.size(0);
  p.act = act;
  p.slope = slope;
  p.bias = b.defined();
  return p;
}

void check_pair(const Tensor& a, const Tensor& b, const char* op) {
  check_defined(a, op, "a");
  check_defined(b, op, "b");
  check_same_device({&a, &b}, op);
  check_floating(a, op);
  check_same_dtype(a, b, op);
  IDEM_CHECK(a.shape() == b.shape(), op, "a ", shape_str(a.shape()), " and b ",
             shape_str(b.shape()), " must have the same shape");
  IDEM_CHECK(a.numel() > 0, op, "expected non-empty inputs, got ", shape_str(a.shape()));
}

}  // namespace

Tensor linear_act(const Tensor& x, const Tensor& weight, const Tensor& bias, FusedAct act,
                  double slope) {
  const char* op = "linear_act";
  const LinearActParams p = linear_params(x, weight, bias, act, slope, op);
  Tensor y = empty({p.N, p.out}, x.options());
  if (p.N == 0) return y;
  dispatch(
      y, [&] { cpu::linear_act_fwd(y, x, weight, bias, p); },
      [&] { cuda::linear_act_fwd(y, x, weight, bias, p); });
  return y;
}

LinearActGrads linear_act_backward(const Tensor& g, const Tensor& y, const Tensor& x,
                                   const Tensor& weight, bool has_bias, FusedAct act, double slope,
                                   bool need_dx, bool need_dweight, bool need_dbias) {
  const char* op = "linear_act_backward";
  const LinearActParams p = linear_params(x, weight, Tensor(), act, slope, op);
  check_defined(g, op, "grad_output");
  check_defined(y, op, "y");
  check_same_device({&g, &y, &x}, op);
  check_same_dtype(g, x, op);
  IDEM_CHECK(g.shape() == y.shape() && g.shape() == (Shape{p.N, p.out}), op, "grad_output ",
             shape_str(g.shape()), " and y ", shape_str(y.shape()), " must both be (", p.N, ", ",
             p.out, ")");
  LinearActParams pb = p;
  pb.bias = has_bias;
  LinearActGrads r;
  if (need_dx) r.dx = empty(x.shape(), x.options());
  if (need_dweight) r.dweight = empty(weight.shape(), weight.options());
  if (need_dbias && has_bias) r.dbias = empty({p.out}, weight.options());
  if (p.N == 0) {
    // Nothing flows back from an empty batch: zero weight and bias gradients, an empty dx.
    if (r.dweight.defined()) fill_(r.dweight, 0.0);
    if (r.dbias.defined()) fill_(r.dbias, 0.0);
    return r;
  }
  if (!r.dx.defined() && !r.dweight.defined() && !r.dbias.defined()) return r;
  dispatch(
      g, [&] { cpu::linear_act_bwd(r.dx, r.dweight, r.dbias, g, y, x, weight, pb); },
      [&] { cuda::linear_act_bwd(r.dx, r.dweight, r.dbias, g, y, x, weight, pb); });
  return r;
}

Tensor distance(const Tensor& a, const Tensor& b, DistanceKind k) {
  const char* op = distance_name(k);
  check_pair(a, b, op);
  Tensor out = empty({}, a.options());
  dispatch(
      out, [&] { cpu::distance_fwd(out, a, b, k); }, [&] { cuda::distance_fwd(out, a, b, k); });
  return out;
}

DistanceGrads distance_backward(const Tensor& g, const Tensor& a, const Tensor& b, DistanceKind k,
                                bool need_da, bool need_db) {
  const char* op = distance_name(k);
  check_pair(a, b, op);
  check_defined(g, op, "grad_output");
  check_same_device({&g, &a}, op);
  check_same_dtype(g, a, op);
  IDEM_CHECK(g.numel() == 1, op, "grad_output must hold one element, got ", shape_str(g.shape()));
  DistanceGrads r;
  if (need_da) r.da = empty(a.shape(), a.options());
  if (need_db) r.db = empty(b.shape(), b.options());
  if (!need_da && !need_db) return r;
  dispatch(
      a, [&] { cpu::distance_bwd(r.da, r.db, g, a, b, k); },
      [&] { cuda::distance_bwd(r.da, r.db, g, a, b, k); });
  return r;
}

}  // namespace ops
}  // namespace idem
