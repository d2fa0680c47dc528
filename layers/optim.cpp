// Optimizers and gradient clipping. The arithmetic lives in the fused kernels
// (core/cpu/optim.cpp, cuda/kernels/optim.cu); this file validates, owns the state, keeps the
// per-parameter step counts on the host and turns them into per-step scalars.
#include "layers/optim.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "autograd/node.h"
#include "core/kernels/optim_math.h"  // adam_corrections
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace idem {

namespace {

void check_finite_nonneg(double v, const char* op, const char* what) {
  IDEM_CHECK(std::isfinite(v) && v >= 0.0, op, "invalid ", what, ": ", v,
             " (expected a finite value >= 0)");
}

void check_beta(double b, const char* op, const char* what) {
  IDEM_CHECK(b >= 0.0 && b < 1.0, op, "invalid ", what, ": ", b, " (expected 0 <= beta < 1)");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Optimizer

Optimizer::Optimizer(std::vector<Tensor> params, OptimKind kind, double lr,
                     const OptimStepParams& hyper, int state_slots)
    : kind_(kind), lr_(lr), hyper_(hyper), params_(std::move(params)), state_slots_(state_slots) {
  const char* op = optim_name(kind);
  check_finite_nonneg(lr, op, "learning rate");
  IDEM_CHECK(!params_.empty(), op, "got an empty parameter list");
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    IDEM_CHECK(p.defined(), op, "parameter ", i, " is undefined");
    IDEM_CHECK(is_floating(p.dtype()), op, "parameter ", i, " is ", dtype_name(p.dtype()), " ",
               shape_str(p.shape()), "; only floating tensors can be optimized");
    const Tensor& p0 = params_[0];
    IDEM_CHECK(p.dtype() == p0.dtype() && p.device() == p0.device(), op, "parameter ", i, " is ",
               dtype_name(p.dtype()), " ", shape_str(p.shape()), " on ", p.device().str(),
               " but parameter 0 is ", dtype_name(p0.dtype()), " ", shape_str(p0.shape()), " on ",
               p0.device().str(), "; one optimizer needs one dtype and one device");
    for (size_t j = 0; j < i; ++j)
      IDEM_CHECK(p.numel() == 0 || p.raw_data() != params_[j].raw_data(), op, "parameter ", i, " ",
                 shape_str(p.shape()), " is the same tensor as parameter ", j,
                 " (each parameter may appear once)");
  }
  device_ = params_[0].device();
  dtype_ = params_[0].dtype();
  IDEM_CHECK(device_.is_cpu() || dtype_ == DType::f32, op,
             "CUDA optimizers are f32; parameters are ", dtype_name(dtype_), " on ", device_.str());

  const size_t n = params_.size();
  offsets_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    offsets_[i] = total_numel_;
    total_numel_ += params_[i].numel();
  }
  if (state_slots_ > 0) state_ = zeros({state_slots_ * total_numel_}, {dtype_, device_});

  const size_t es = dtype_size(dtype_);
  char* base =
      state_.defined() && total_numel_ > 0 ? static_cast<char*>(state_.raw_data()) : nullptr;
  table_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    OptimTensorDesc& d = table_[i];
    d.numel = params_[i].numel();
    d.param = d.numel > 0 ? params_[i].raw_data() : nullptr;
    if (base && d.numel > 0) {
      d.m = base + offsets_[i] * es;
      if (state_slots_ > 1) d.v = base + (total_numel_ + offsets_[i]) * es;
    }
  }
  if (device_.is_cuda()) {
    // Uploaded once; the kernels only ever read it.
    Tensor host = empty({static_cast<int64_t>(n * sizeof(OptimTensorDesc))}, {DType::u8});
    std::memcpy(host.raw_data(), table_.data(), n * sizeof(OptimTensorDesc));
    device_table_ = host.to(device_);
  }
  step_counts_.assign(n, 0);
  grads_.assign(n, nullptr);
  group_grads_.assign(n, nullptr);
}

void Optimizer::set_lr(double lr) {
  check_finite_nonneg(lr, name(), "learning rate");
  lr_ = lr;
}

int64_t Optimizer::step_count(size_t i) const {
  IDEM_CHECK(i < params_.size(), name(), "parameter index ", i, " out of range for ",
             params_.size(), " parameters");
  return step_counts_[i];
}

Tensor Optimizer::state_view(int slot, size_t i) const {
  IDEM_CHECK(slot < state_slots_, name(), "this optimizer keeps no such state");
  IDEM_CHECK(i < params_.size(), name(), "parameter index ", i, " out of range for ",
             params_.size(), " parameters");
  const int64_t begin = slot * total_numel_ + offsets_[i];
  return state_.slice0(begin, begin + params_[i].numel()).view_as_shape(params_[i].shape());
}

OptimStepParams Optimizer::step_params(int64_t step) const {
  OptimStepParams p = hyper_;
  p.kind = kind_;
  p.step = step;
  p.lr = lr_;
  p.first_step = step == 1;
  const math::AdamCorrections c =
      math::adam_corrections(lr_, hyper_.beta1, hyper_.beta2, static_cast<double>(step));
  p.step_size = c.step_size;
  p.bias_correction2_sqrt = c.bc2_sqrt;
  return p;
}

void Optimizer::step() {
  const char* op = name();
  const size_t n = params_.size();
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    grads_[i] = nullptr;
    if (!g.defined()) continue;
    IDEM_CHECK(p.numel() == 0 || p.raw_data() == table_[i].param, op, "parameter ", i, " ",
               shape_str(p.shape()),
               " no longer lives where it did when the optimizer was built (was it moved or "
               "reassigned?); create the optimizer after moving the model");
    IDEM_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), op,
               "gradient of parameter ", i, " is ", dtype_name(g.dtype()), " ",
               shape_str(g.shape()), " on ", g.device().str(), " but the parameter is ",
               dtype_name(p.dtype()), " ", shape_str(p.shape()), " on ", p.device().str());
    if (p.numel() == 0) continue;
    grads_[i] = g.raw_data();
    any = true;
  }
  // Counts change only after every gradient passed the checks above: a failed step leaves
  // the optimizer exactly as it was.
  for (size_t i = 0; i < n; ++i)
    if (params_[i].grad().defined()) ++step_counts_[i];
  if (!any) return;

  // Parameters that skipped steps have smaller counts and so other bias corrections: one
  // kernel call per distinct count (in practice always exactly one).
  int64_t done_below = 0;  // counts <= done_below have been handled
  while (true) {
    int64_t s = 0;
    for (size_t i = 0; i < n; ++i)
      if (grads_[i] && step_counts_[i] > done_below && (s == 0 || step_counts_[i] < s))
        s = step_counts_[i];
    if (s == 0) break;
    for (size_t i = 0; i < n; ++i)
      group_grads_[i] = grads_[i] && step_counts_[i] == s ? grads_[i] : nullptr;
    const OptimStepParams sp = step_params(s);
    if (device_.is_cpu())
      cpu::optim_step(table_, group_grads_, dtype_, sp);
    else
      cuda::optim_step(table_, device_table_.raw_data(), group_grads_, sp, device_.index);
    ++kernel_calls_;
    done_below = s;
  }
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

void Optimizer::reset_state() {
  if (state_.defined() && state_.numel() > 0) {
    ops::fill_(state_, 0.0);
    ++kernel_calls_;
  }
  reset_step_counts();
}

void Optimizer::reset_step_counts() {
  std::fill(step_counts_.begin(), step_counts_.end(), 0);
}

// ---------------------------------------------------------------------------------------------
// SGD, Adam, AdamW

namespace {

OptimStepParams sgd_hyper(const SGDOptions& o) {
  const char* op = "SGD";
  check_finite_nonneg(o.momentum, op, "momentum");
  check_finite_nonneg(o.weight_decay, op, "weight_decay");
  IDEM_CHECK(std::isfinite(o.dampening), op, "invalid dampening: ", o.dampening);
  IDEM_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0), op,
             "Nesterov momentum requires a momentum > 0 and zero dampening (got momentum ",
             o.momentum, ", dampening ", o.dampening, ")");
  OptimStepParams p;
  p.kind = OptimKind::sgd;
  p.momentum = o.momentum;
  p.dampening = o.dampening;
  p.weight_decay = o.weight_decay;
  p.nesterov = o.nesterov;
  p.maximize = o.maximize;
  p.beta1 = 0.0;  // unused by SGD; keeps the bias corrections at 1
  p.beta2 = 0.0;
  return p;
}

OptimStepParams adam_hyper(const AdamOptions& o, OptimKind kind) {
  const char* op = optim_name(kind);
  check_finite_nonneg(o.eps, op, "epsilon");
  check_finite_nonneg(o.weight_decay, op, "weight_decay");
  check_beta(o.beta1, op, "beta1");
  check_beta(o.beta2, op, "beta2");
  OptimStepParams p;
  p.kind = kind;
  p.beta1 = o.beta1;
  p.beta2 = o.beta2;
  p.eps = o.eps;
  p.weight_decay = o.weight_decay;
  p.maximize = o.maximize;
  return p;
}

AdamOptions from_adamw(const AdamWOptions& o) {
  AdamOptions a;
  a.lr = o.lr;
  a.beta1 = o.beta1;
  a.beta2 = o.beta2;
  a.eps = o.eps;
  a.weight_decay = o.weight_decay;
  a.maximize = o.maximize;
  return a;
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, const SGDOptions& o)
    : Optimizer(std::move(params), OptimKind::sgd, o.lr, sgd_hyper(o), o.momentum != 0.0 ? 1 : 0),
      opt_(o) {}

Tensor SGD::momentum_buffer(size_t i) const {
  IDEM_CHECK(opt_.momentum != 0.0, "SGD", "no momentum buffer: momentum is 0");
  return state_view(0, i);
}

Adam::Adam(std::vector<Tensor> params, const AdamOptions& o)
    : Adam(std::move(params), OptimKind::adam, o) {}

Adam::Adam(std::vector<Tensor> params, OptimKind kind, const AdamOptions& o)
    : Optimizer(std::move(params), kind, o.lr, adam_hyper(o, kind), 2) {}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& o)
    : Adam(std::move(params), OptimKind::adamw, from_adamw(o)) {}

// ---------------------------------------------------------------------------------------------
// Gradient clipping

namespace {

// The defined gradients of `params`, checked to share one device and dtype.
std::vector<Tensor> collect_grads(const std::vector<Tensor>& params, const char* op) {
  std::vector<Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    IDEM_CHECK(params[i].defined(), op, "parameter ", i, " is undefined");
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    if (!grads.empty()) {
      const Tensor& g0 = grads.front();
      IDEM_CHECK(g.device() == g0.device() && g.dtype() == g0.dtype(), op, "gradient of parameter ",
                 i, " is ", dtype_name(g.dtype()), " ", shape_str(g.shape()), " on ",
                 g.device().str(), " but an earlier one is ", dtype_name(g0.dtype()), " ",
                 shape_str(g0.shape()), " on ", g0.device().str());
    }
    IDEM_CHECK(is_floating(g.dtype()), op, "gradient of parameter ", i, " is ",
               dtype_name(g.dtype()));
    grads.push_back(g);
  }
  return grads;
}

// Replaces the gradient of every parameter that has one with f(grad).
template <typename F>
void replace_grads(const std::vector<Tensor>& params, F&& f) {
  for (const Tensor& p : params) {
    auto& meta = p.impl().autograd;
    if (meta && meta->grad.defined()) meta->grad = f(meta->grad);
  }
}

}  // namespace

Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  const char* op = "clip_grad_norm_";
  IDEM_CHECK(!std::isnan(max_norm), op, "max_norm is NaN");
  const bool inf_norm = std::isinf(norm_type) && norm_type > 0;
  IDEM_CHECK(inf_norm || (std::isfinite(norm_type) && norm_type > 0.0), op,
             "norm_type must be > 0 or infinity, got ", norm_type);
  std::vector<Tensor> grads = collect_grads(params, op);
  if (grads.empty()) return scalar_tensor(0.0);
  const Options opts = grads.front().options();

  // total = (Σ |g|^p)^(1/p), or max |g| for p = ∞; one 0-dim tensor, never read on the host.
  Tensor total;
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    Tensor part;
    if (inf_norm) {
      part = ops::amax(ops::unary(g, UnaryOp::abs));
    } else if (norm_type == 2.0) {
      part = ops::sum(ops::unary(g, UnaryOp::square));
    } else if (norm_type == 1.0) {
      part = ops::sum(ops::unary(g, UnaryOp::abs));
    } else {
      part = ops::sum(ops::unary(ops::unary(g, UnaryOp::abs), UnaryOp::pow_scalar, {norm_type}));
    }
    if (!total.defined())
      total = part;
    else
      total = ops::binary(total, part, inf_norm ? BinaryOp::maximum : BinaryOp::add);
  }
  if (!total.defined()) return scalar_tensor(0.0, opts);
  if (!inf_norm) {
    if (norm_type == 2.0)
      total = ops::unary(total, UnaryOp::sqrt);
    else if (norm_type != 1.0)
      total = ops::unary(total, UnaryOp::pow_scalar, {1.0 / norm_type});
  }
  if (error_if_nonfinite) {
    const double t = total.item();
    IDEM_CHECK(std::isfinite(t), op, "the total norm of order ", norm_type,
               " of the gradients is non-finite (", t,
               "), so it cannot be clipped; pass error_if_nonfinite=false to scale anyway");
  }
  // coef = min(1, max_norm / (total + 1e-6)), as torch.nn.utils.clip_grad_norm_.
  Tensor coef =
      ops::unary(ops::unary(total, UnaryOp::add_scalar, {1e-6}), UnaryOp::rdiv_scalar, {max_norm});
  coef = ops::binary(coef, scalar_tensor(1.0, opts), BinaryOp::minimum);
  replace_grads(params, [&](const Tensor& g) { return ops::binary(g, coef, BinaryOp::mul); });
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  const char* op = "clip_grad_value_";
  IDEM_CHECK(clip_value >= 0.0, op, "clip_value must be >= 0, got ", clip_value);
  std::vector<Tensor> grads = collect_grads(params, op);
  if (grads.empty()) return;
  const Options opts = grads.front().options();
  const Tensor lo = scalar_tensor(-clip_value, opts), hi = scalar_tensor(clip_value, opts);
  replace_grads(params, [&](const Tensor& g) {
    return ops::binary(ops::binary(g, lo, BinaryOp::maximum), hi, BinaryOp::minimum);
  });
}

}  // namespace idem
