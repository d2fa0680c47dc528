// Losses. Most are compositions of L2 functions (their gradients come from the pieces); three
// have their own node because the composition would be wrong or unstable somewhere:
//  - bce_with_logits: max(x,0) − x·t + log(1 + e^−|x|) is stable, but composed through relu/abs
//    its gradient at x = 0 would be −t instead of ½ − t; the node uses σ(x) − t directly.
//  - kl_div / js_div: 0·log 0 must be 0 (softmax outputs underflow to 0), and a composed
//    p·log(p/q) gives NaN there in the forward and in the backward; the nodes mask both.
// cross_entropy goes through log_softmax (max-subtracted), never log(softmax(x)).
// Reductions: mean/sum over every element (mse, l1, smooth_l1, bce) or over rows
// (cross_entropy, nll, kl, js: the per-row losses are averaged, i.e. torch's 'batchmean' for
// kl_div); none keeps the per-element or per-row losses.
#include <cmath>

#include "autograd/nn_functions.h"
#include "core/ops/checks.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace idem {

namespace {

Tensor reduce_loss(const Tensor& l, Reduction r) {
  switch (r) {
    case Reduction::mean:
      return mean(l);
    case Reduction::sum:
      return sum(l);
    case Reduction::none:
      return l;
  }
  return l;
}

// pred/target (or p/q) of one floating dtype, one device, one shape.
void check_pair(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  ops::check_defined(a, op, an);
  ops::check_defined(b, op, bn);
  ops::check_same_device({&a, &b}, op);
  ops::check_floating(a, op);
  IDEM_CHECK(a.dtype() == b.dtype(), op, an, " ", dtype_name(a.dtype()), " ", shape_str(a.shape()),
             " and ", bn, " ", dtype_name(b.dtype()), " ", shape_str(b.shape()),
             " must have the same dtype");
  IDEM_CHECK(a.shape() == b.shape(), op, an, " ", shape_str(a.shape()), " and ", bn, " ",
             shape_str(b.shape()), " must have the same shape");
}

// x (N,C) floating and target (N) i64 class indices in [0, C). Index values are checked on the
// CPU only: on CUDA it would cost a device->host copy and a synchronization (see
// core/ops/index.cpp).
void check_class_target(const Tensor& x, const Tensor& target, const char* op, const char* xn) {
  ops::check_defined(x, op, xn);
  ops::check_defined(target, op, "target");
  ops::check_floating(x, op);
  ops::check_same_device({&x, &target}, op);
  IDEM_CHECK(x.dim() == 2, op, "expected ", xn, " of shape (N,C), got ", shape_str(x.shape()));
  IDEM_CHECK(target.dtype() == DType::i64, op, "target must be i64 class indices, got ",
             dtype_name(target.dtype()), " ", shape_str(target.shape()), " (", xn, " ",
             shape_str(x.shape()), ")");
  IDEM_CHECK(target.dim() == 1 && target.size(0) == x.size(0), op, "target ",
             shape_str(target.shape()), " does not match ", xn, " ", shape_str(x.shape()),
             ": expected (", x.size(0), ")");
  if (target.device().is_cpu()) {
    const int64_t* t = target.data<int64_t>();
    const int64_t c = x.size(1);
    for (int64_t n = 0; n < target.numel(); ++n)
      IDEM_CHECK(t[n] >= 0 && t[n] < c, op, "target ", t[n], " at row ", n, " is out of range for ",
                 c, " classes (", xn, " ", shape_str(x.shape()), ")");
  }
}

// −log_probs[n, target[n]] for each row: (N,C), (N) -> (N)
Tensor pick_nll(const Tensor& log_probs, const Tensor& target) {
  const int64_t n = log_probs.size(0);
  Tensor picked = gather(log_probs, 1, target.view_as_shape({n, 1}));
  return neg(picked.reshape({n}));
}

// ---- bce_with_logits ----

class BceWithLogitsNode : public Node {
 public:
  BceWithLogitsNode(Tensor x, Tensor t) : x_(std::move(x)), t_(std::move(t)) {}
  const char* name() const override { return "bce_with_logits"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx = g·(σ(x) − t) : x.shape -> x.shape
    // dt = −g·x         : x.shape -> x.shape
    Tensor dx, dt;
    if (needs_grad(0)) {
      Tensor s = ops::unary(x_, UnaryOp::sigmoid);
      dx = ops::binary(g, ops::binary(s, t_, BinaryOp::sub), BinaryOp::mul);
    }
    if (needs_grad(1)) dt = ops::binary(g, ops::unary(x_, UnaryOp::neg), BinaryOp::mul);
    return {dx, dt};
  }

 private:
  Tensor x_, t_;
};

// ---- kl_div / js_div (per row along the last dim) ----

// The shape of g with a trailing 1, so a per-row gradient broadcasts over the last dim.
Tensor row_grad(const Tensor& g, const Shape& full) {
  Shape k = full;
  k.back() = 1;
  return g.view_as_shape(k);
}

// where(p > 0, v, 0): the terms and derivatives of 0·log 0 are taken as 0 (torch's xlogy).
Tensor mask_positive(const Tensor& p, const Tensor& v) {
  Tensor zero = zeros({}, p.options());
  return ops::where(ops::binary(p, zero, BinaryOp::gt), v, zero);
}

// log(a / b), the ratio first: the difference log a − log b loses more digits when a ≈ b,
// which is exactly where IT³ evaluates its divergences.
Tensor log_ratio(const Tensor& a, const Tensor& b) {
  return ops::unary(ops::binary(a, b, BinaryOp::div), UnaryOp::log);
}

Tensor row_sum(const Tensor& t) {
  return ops::sum(t, {t.dim() - 1});
}

class KlDivNode : public Node {
 public:
  KlDivNode(Tensor p, Tensor q) : p_(std::move(p)), q_(std::move(q)) {}
  const char* name() const override { return "kl_div"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dp = g·(log(p/q) + 1), dq = −g·p/q (both 0 where p = 0) : (…,C) -> (…,C)
    Tensor gr = row_grad(g, p_.shape());
    Tensor dp, dq;
    if (needs_grad(0)) {
      Tensor d = ops::unary(log_ratio(p_, q_), UnaryOp::add_scalar, {1.0});
      dp = ops::binary(gr, mask_positive(p_, d), BinaryOp::mul);
    }
    if (needs_grad(1)) {
      Tensor d = ops::unary(ops::binary(p_, q_, BinaryOp::div), UnaryOp::neg);
      dq = ops::binary(gr, mask_positive(p_, d), BinaryOp::mul);
    }
    return {dp, dq};
  }

 private:
  Tensor p_, q_;
};

class JsDivNode : public Node {
 public:
  JsDivNode(Tensor p, Tensor q, Tensor m) : p_(std::move(p)), q_(std::move(q)), m_(std::move(m)) {}
  const char* name() const override { return "js_div"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // JS = ½Σ p log p + ½Σ q log q − Σ m log m, m = (p+q)/2, so
    // dp = ½g·log(p/m), dq = ½g·log(q/m) (0 where p = 0, resp. q = 0) : (…,C) -> (…,C)
    Tensor gr = ops::unary(row_grad(g, p_.shape()), UnaryOp::mul_scalar, {0.5});
    Tensor dp, dq;
    if (needs_grad(0)) dp = ops::binary(gr, mask_positive(p_, log_ratio(p_, m_)), BinaryOp::mul);
    if (needs_grad(1)) dq = ops::binary(gr, mask_positive(q_, log_ratio(q_, m_)), BinaryOp::mul);
    return {dp, dq};
  }

 private:
  Tensor p_, q_, m_;
};

void check_distributions(const Tensor& p, const Tensor& q, const char* op) {
  check_pair(p, q, op, "p", "q");
  IDEM_CHECK(p.dim() >= 1, op, "expected distributions along the last dim, got 0-dim p and q");
}

}  // namespace

Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction r) {
  check_pair(pred, target, "mse_loss", "pred", "target");
  return reduce_loss(square(sub(pred, target)), r);
}

Tensor l1_loss(const Tensor& pred, const Tensor& target, Reduction r) {
  check_pair(pred, target, "l1_loss", "pred", "target");
  return reduce_loss(abs(sub(pred, target)), r);
}

Tensor smooth_l1_loss(const Tensor& pred, const Tensor& target, double beta, Reduction r) {
  const char* op = "smooth_l1_loss";
  check_pair(pred, target, op, "pred", "target");
  IDEM_CHECK(beta >= 0.0 && std::isfinite(beta), op, "beta must be finite and >= 0, got ", beta);
  if (beta == 0.0) return l1_loss(pred, target, r);  // torch does the same
  // With a = |d| and m = min(a, β): ½m²/β + (a − m) is ½d²/β below β and a − ½β above it,
  // with no branch whose unused side could produce inf/NaN, and a continuous gradient.
  Tensor a = abs(sub(pred, target));
  Tensor m = minimum(a, full({}, beta, a.options()));
  return reduce_loss(add(mul(square(m), 0.5 / beta), sub(a, m)), r);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing,
                     Reduction r) {
  const char* op = "cross_entropy";
  check_class_target(logits, target, op, "logits");
  IDEM_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, op,
             "label_smoothing must be in [0, 1], got ", label_smoothing);
  Tensor lp = log_softmax(logits, 1);
  Tensor loss = pick_nll(lp, target);
  if (label_smoothing > 0.0) {
    // torch: (1−ε)·nll + ε·(−Σ_c log p_c)/C, the cross-entropy against (1−ε)·onehot + ε/C.
    Tensor uniform_part = neg(mean(lp, {1}));
    loss = add(mul(loss, 1.0 - label_smoothing), mul(uniform_part, label_smoothing));
  }
  return reduce_loss(loss, r);
}

Tensor cross_entropy_soft(const Tensor& logits, const Tensor& target_probs, Reduction r) {
  const char* op = "cross_entropy_soft";
  check_pair(logits, target_probs, op, "logits", "target");
  IDEM_CHECK(logits.dim() == 2, op, "expected logits of shape (N,C), got ",
             shape_str(logits.shape()));
  // loss_n = −Σ_c t_nc · log_softmax(x)_nc
  return reduce_loss(neg(sum(mul(target_probs, log_softmax(logits, 1)), {1})), r);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction r) {
  check_class_target(log_probs, target, "nll_loss", "log_probs");
  return reduce_loss(pick_nll(log_probs, target), r);
}

Tensor bce_with_logits(const Tensor& logits, const Tensor& target, Reduction r) {
  check_pair(logits, target, "bce_with_logits", "logits", "target");
  // loss = max(x,0) − x·t + log(1 + e^−|x|), with log(1 + e^−|x|) = −log σ(|x|): σ(|x|) lies in
  // [½, 1), so nothing overflows for any x.
  const Tensor& x = logits;
  Tensor log_sig =
      ops::unary(ops::unary(ops::unary(x, UnaryOp::abs), UnaryOp::sigmoid), UnaryOp::log);
  Tensor l = ops::binary(ops::unary(x, UnaryOp::relu), ops::binary(x, target, BinaryOp::mul),
                         BinaryOp::sub);
  l = ops::binary(l, log_sig, BinaryOp::sub);
  if (needs_history({x, target}))
    record(std::make_shared<BceWithLogitsNode>(saved(x), saved(target)), {x, target}, l);
  return reduce_loss(l, r);
}

Tensor kl_div(const Tensor& p, const Tensor& q, Reduction r) {
  check_distributions(p, q, "kl_div");
  // KL(p‖q) per row = Σ_c p·log(p/q), with 0·log 0 = 0.
  Tensor row = row_sum(mask_positive(p, ops::binary(p, log_ratio(p, q), BinaryOp::mul)));
  if (needs_history({p, q})) record(std::make_shared<KlDivNode>(saved(p), saved(q)), {p, q}, row);
  return reduce_loss(row, r);
}

Tensor js_div(const Tensor& p, const Tensor& q, Reduction r) {
  check_distributions(p, q, "js_div");
  // JS(p,q) per row = ½Σ p·log(p/m) + ½Σ q·log(q/m), m = (p+q)/2, with 0·log 0 = 0.
  Tensor m = ops::unary(ops::binary(p, q, BinaryOp::add), UnaryOp::mul_scalar, {0.5});
  Tensor tp = mask_positive(p, ops::binary(p, log_ratio(p, m), BinaryOp::mul));
  Tensor tq = mask_positive(q, ops::binary(q, log_ratio(q, m), BinaryOp::mul));
  Tensor row = ops::unary(row_sum(ops::binary(tp, tq, BinaryOp::add)), UnaryOp::mul_scalar, {0.5});
  if (needs_history({p, q}))
    record(std::make_shared<JsDivNode>(saved(p), saved(q), m), {p, q}, row);
  return reduce_loss(row, r);
}

}  // namespace idem
