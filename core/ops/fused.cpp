// L1 fused ops: validate shapes/dtypes/devices, allocate, dispatch to the kernels of
// core/kernels/fused.h.
#include "core/ops/fused.h"

#include "core/kernels/matmul.h"
#include "core/ops/checks.h"
#include "core/ops/elementwise.h"

namespace idem {

const char* fused_act_name(FusedAct a) {
#define IDEM_FUSED_ACT_NAME(name) #name,
  static constexpr const char* names[] = {IDEM_FUSED_ACTS(IDEM_FUSED_ACT_NAME)};
#undef IDEM_FUSED_ACT_NAME
  static_assert(sizeof(names) / sizeof(names[0]) == kFusedActCount, "one name per FusedAct");
  const int i = static_cast<int>(a);
  return i < kFusedActCount ? names[i] : "?";
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
  check_fused_act(act, slope, op);
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

LinearActParams sage_linear_params(const Tensor& a, const Tensor& wl, const Tensor& b,
                                   const Tensor& x, const Tensor& wr, FusedAct act, double slope,
                                   const char* op) {
  const LinearActParams p = linear_params(a, wl, b, act, slope, op);
  const LinearActParams pr = linear_params(x, wr, Tensor(), act, slope, op);
  check_same_device({&a, &x}, op);
  check_same_dtype(a, x, op);
  if (a.device().is_cuda()) check_cuda_dtype(a, op);
  IDEM_CHECK(pr.N == p.N && pr.out == p.out, op, "the neighbour input ", shape_str(a.shape()),
             " with weight_l ", shape_str(wl.shape()), " and the root input ", shape_str(x.shape()),
             " with weight_r ", shape_str(wr.shape()), " must give outputs of one shape (N, out)");
  return p;
}

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

Tensor sage_linear(const Tensor& a, const Tensor& weight_l, const Tensor& bias, const Tensor& x,
                   const Tensor& weight_r, FusedAct act, double slope) {
  const char* op = "sage_linear";
  const LinearActParams p = sage_linear_params(a, weight_l, bias, x, weight_r, act, slope, op);
  const int64_t in_r = x.size(1);
  Tensor y = empty({p.N, p.out}, a.options());
  if (p.N == 0) return y;
  dispatch(
      y,
      [&] {
        // The reference order: y = x·Wrᵀ, y = a·Wlᵀ + y, y = act(y + b) (the CUDA hand GEMM
        // does the last step in the second GEMM's store, with the same rounding order).
        MatmulParams neigh = single_gemm(p.N, p.out, p.in, false, true);
        neigh.beta = 1.0;
        cpu::matmul_fwd(y, x, weight_r, single_gemm(p.N, p.out, in_r, false, true));
        cpu::matmul_fwd(y, a, weight_l, neigh);
        cpu::bias_act(y, bias, p);
      },
      [&] { cuda::sage_linear_fwd(y, a, weight_l, bias, x, weight_r, p); });
  return y;
}

SageLinearGrads sage_linear_backward(const Tensor& g, const Tensor& y, const Tensor& a,
                                     const Tensor& weight_l, bool has_bias, const Tensor& x,
                                     const Tensor& weight_r, FusedAct act, double slope,
                                     bool need_da, bool need_dweight_l, bool need_dbias,
                                     bool need_dx, bool need_dweight_r) {
  const char* op = "sage_linear_backward";
  LinearActParams p = sage_linear_params(a, weight_l, Tensor(), x, weight_r, act, slope, op);
  p.bias = has_bias;
  const int64_t in_r = x.size(1);
  check_defined(g, op, "grad_output");
  check_defined(y, op, "y");
  check_same_device({&g, &y, &a}, op);
  check_same_dtype(g, a, op);
  IDEM_CHECK(g.shape() == y.shape() && g.shape() == (Shape{p.N, p.out}), op, "grad_output ",
             shape_str(g.shape()), " and y ", shape_str(y.shape()), " must both be (", p.N, ", ",
             p.out, ")");
  SageLinearGrads r;
  if (need_da) r.da = empty(a.shape(), a.options());
  if (need_dweight_l) r.dweight_l = empty(weight_l.shape(), weight_l.options());
  if (need_dbias && has_bias) r.dbias = empty({p.out}, weight_l.options());
  if (need_dx) r.dx = empty(x.shape(), x.options());
  if (need_dweight_r) r.dweight_r = empty(weight_r.shape(), weight_r.options());
  if (p.N == 0) {
    // Nothing flows back from an empty batch: zero weight and bias gradients, empty da, dx.
    for (Tensor* t : {&r.dweight_l, &r.dbias, &r.dweight_r})
      if (t->defined()) fill_(*t, 0.0);
    return r;
  }
  const bool need_gemm = need_da || need_dweight_l || need_dx || need_dweight_r;
  // gz = g ⊙ act'(y): its own tensor when an activation changes it and a GEMM reads it.
  const bool own_gz = act != FusedAct::none && need_gemm;
  const Tensor gz = own_gz ? empty(g.shape(), g.options()) : g;
  const Tensor gz_out = own_gz ? gz : Tensor();
  const MatmulParams back_l = single_gemm(p.N, p.in, p.out, false, false);  // da = gz·Wl
  const MatmulParams grad_l = single_gemm(p.out, p.in, p.N, true, false);   // dWl = gzᵀ·a
  const MatmulParams back_r = single_gemm(p.N, in_r, p.out, false, false);  // dx = gz·Wr
  const MatmulParams grad_r = single_gemm(p.out, in_r, p.N, true, false);   // dWr = gzᵀ·x
  auto run = [&](auto&& act_bias_grad, auto&& matmul) {
    if (gz_out.defined() || r.dbias.defined()) act_bias_grad(gz_out, r.dbias, g, y, p);
    if (r.da.defined()) matmul(r.da, gz, weight_l, back_l);
    if (r.dweight_l.defined()) matmul(r.dweight_l, gz, a, grad_l);
    if (r.dx.defined()) matmul(r.dx, gz, weight_r, back_r);
    if (r.dweight_r.defined()) matmul(r.dweight_r, gz, x, grad_r);
  };
  dispatch(
      g,
      [&] {
        run([](auto&&... v) { cpu::act_bias_grad(v...); },
            [](auto&&... v) { cpu::matmul_fwd(v...); });
      },
      [&] {
        run([](auto&&... v) { cuda::act_bias_grad(v...); },
            [](auto&&... v) { cuda::matmul_fwd(v...); });
      });
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
