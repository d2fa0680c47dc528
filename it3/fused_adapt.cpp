#include "it3/fused_adapt.h"

#include <sstream>

#include "core/error.h"
#include "it3/adapt.h"
#include "layers/mlp.h"

namespace idem::it3 {

namespace {

const MLP* mlp_of(const RecursiveModel& model) {
  const auto* concat = dynamic_cast<const ConcatModel*>(&model);
  return concat ? dynamic_cast<const MLP*>(concat->net().get()) : nullptr;
}

// The raw pointer of the optimizer's parameter that is `t` (the optimizer keeps its own order).
size_t optim_index(const Optimizer& o, const Tensor& t) {
  for (size_t i = 0; i < o.params().size(); ++i)
    if (o.params()[i].raw_data() == t.raw_data()) return i;
  fail("it3 fused adaptation", "parameter ", shape_str(t.shape()), " is not in the optimizer");
}

}  // namespace

std::string fused_ineligible_reason(const RecursiveModel& model, const AdaptOptions& o) {
  std::ostringstream why;
  if (o.fused == FusedMode::off) return "the fused path is off (AdaptOptions::fused off: --path graph or eager)";
  if (o.method != Method::it3)
    return std::string("method ") + method_name(o.method) + " (only it3 offline is fused)";
  if (o.anchor != Anchor::frozen) return std::string("anchor ") + anchor_name(o.anchor) + " (needs frozen)";
  if (o.reset != ResetPolicy::per_batch) return "reset never (needs per_batch)";
  if (o.prediction != Prediction::adapted) return "prediction anchor (needs adapted)";
  if (o.params.kind != ParamSelection::Kind::all)
    return "parameter selection '" + o.params.str() + "' (needs all)";
  if (o.distance != Distance::l1 && o.distance != Distance::mse)
    return std::string("distance ") + distance_name(o.distance) + " (needs l1 or mse)";
  if (o.neutral != NeutralSignal::fixed) return "a random one-hot ∅ (needs the fixed ∅)";
  if (o.persistent_moments) return "persistent optimizer moments (the kernel zeroes them per batch)";
  if (o.readout_before_update) return "read-out before the update (the kernel predicts after the K steps)";
  if (model.task() != TaskKind::regression) return "a classification model (softmax signal is not fused)";
  const MLP* mlp = mlp_of(model);
  if (!mlp) return model.type_name() + " is not a ConcatModel over an MLP";
  const MlpOptions& mo = mlp->mlp_options();
  if (mo.norm != MlpNorm::none) return "the MLP has a normalization layer";
  if (!mo.bias) return "the MLP has no biases";
  if (mo.activation != Activation::relu && mo.activation != Activation::leaky_relu)
    return "the MLP's activation is not relu or leaky_relu";
  if (mo.activation == Activation::leaky_relu && !(mo.leaky_slope >= 0))
    return "leaky_relu with a negative slope";
  const std::vector<int64_t>& sizes = mlp->sizes();
  if (int64_t(sizes.size()) - 1 > kFusedMlpMaxLayers) {
    why << sizes.size() - 1 << " layers (at most " << kFusedMlpMaxLayers << ")";
    return why.str();
  }
  for (int64_t s : sizes)
    if (s > kFusedMlpMaxWidth) {
      why << "width " << s << " (at most " << kFusedMlpMaxWidth << ")";
      return why.str();
    }
  for (const auto& l : mlp->linears())
    if (l->weight().dtype() != DType::f32)
      return std::string("parameters are ") + dtype_name(l->weight().dtype()) + " (needs f32)";
  if (o.fused == FusedMode::automatic && mlp->linears()[0]->weight().device().is_cpu())
    return "on the CPU the op-by-op path is faster (FusedMode::on, --path fused, forces the fused CPU reference)";
  return "";
}

FusedMlpAdapt::FusedMlpAdapt(RecursiveModel& model, RecursiveModel& anchor, Optimizer* optim,
                             const AdaptOptions& o) {
  const std::string why = fused_ineligible_reason(model, o);
  IDEM_CHECK(why.empty(), "it3 fused adaptation", "not eligible: ", why);
  const MLP* f = mlp_of(model);
  const MLP* F = mlp_of(anchor);
  IDEM_CHECK(F && F->sizes() == f->sizes(), "it3 fused adaptation", "the anchor is not the model's MLP");
  const auto lf = f->linears(), lF = F->linears();
  device_ = lf[0]->weight().device();
  automatic_ = o.fused == FusedMode::automatic;
  FusedMlpAdaptParams& p = params_;
  p.layers = int(lf.size());
  for (size_t i = 0; i < f->sizes().size(); ++i) p.widths[i] = int(f->sizes()[i]);
  p.signal = int(model.signal_dim());
  d_ = p.widths[0] - p.signal;
  p.steps = optim ? o.steps : 0;
  p.act = f->mlp_options().activation == Activation::relu ? FusedAct::relu : FusedAct::leaky_relu;
  p.slope = float(f->mlp_options().leaky_slope);
  p.distance = o.distance == Distance::mse ? DistanceKind::mse : DistanceKind::l1;
  p.neutral = float(model.spec().neutral_fill());
  p.optim = o.optimizer == OptimizerKind::adam ? OptimKind::adam : OptimKind::sgd;
  p.lr = o.lr;
  p.momentum = o.sgd_momentum;
  if (optim) {
    IDEM_CHECK(optim->kind() == p.optim, "it3 fused adaptation", "optimizer ", optim->name(),
               " does not match the options");
    if (p.optim == OptimKind::adam) {
      // The Adapter builds Adam with the torch.optim defaults; the kernel uses the same.
      p.beta1 = 0.9, p.beta2 = 0.999, p.eps = 1e-8;
    }
  }
  int64_t nparams = 0;
  for (const auto& l : lf) nparams += l->weight().numel() + l->bias().numel();
  grads_ = zeros({std::max<int64_t>(nparams, 1)}, {DType::f32, device_});
  losses_ = zeros({std::max(p.steps, 1)}, {DType::f32, device_});
  p.losses = static_cast<float*>(losses_.raw_data());
  float* g = static_cast<float*>(grads_.raw_data());
  auto* adam = dynamic_cast<Adam*>(optim);
  auto* sgd = dynamic_cast<SGD*>(optim);
  for (int l = 0; l < p.layers; ++l) {
    FusedMlpLayer& ly = p.layer[l];
    const Linear& a = *lf[size_t(l)];
    const Linear& b = *lF[size_t(l)];
    ly.w = static_cast<float*>(a.weight().raw_data());
    ly.b = static_cast<float*>(a.bias().raw_data());
    ly.w0 = static_cast<const float*>(b.weight().raw_data());
    ly.b0 = static_cast<const float*>(b.bias().raw_data());
    ly.gw = g, g += a.weight().numel();
    ly.gb = g, g += a.bias().numel();
    if (adam) {
      const size_t iw = optim_index(*optim, a.weight()), ib = optim_index(*optim, a.bias());
      ly.mw = static_cast<float*>(adam->exp_avg(iw).raw_data());
      ly.mb = static_cast<float*>(adam->exp_avg(ib).raw_data());
      ly.vw = static_cast<float*>(adam->exp_avg_sq(iw).raw_data());
      ly.vb = static_cast<float*>(adam->exp_avg_sq(ib).raw_data());
    } else if (sgd && o.sgd_momentum > 0) {
      ly.mw = static_cast<float*>(sgd->momentum_buffer(optim_index(*optim, a.weight())).raw_data());
      ly.mb = static_cast<float*>(sgd->momentum_buffer(optim_index(*optim, a.bias())).raw_data());
    }
  }
}

std::string FusedMlpAdapt::batch_reason(const Input& x) const {
  // Asked twice per adapted batch (Adapter::uses_fused, then run): no stream is built unless
  // there is a reason to spell (an ostringstream costs about a microsecond of host time, which
  // the one-launch path pays in full).
  if (x.graph || !x.x.defined() || x.x.dim() != 2 || x.x.size(1) != d_) {
    std::ostringstream why;
    why << "input " << (x.x.defined() ? shape_str(x.x.shape()) : std::string("undefined"))
        << " is not (B, " << d_ << ")";
    return why.str();
  }
  if (x.x.dtype() != DType::f32) return std::string("input is ") + dtype_name(x.x.dtype());
  if (x.x.device() != device_) return "input on " + x.x.device().str() + ", model on " + device_.str();
  const int64_t b = x.x.size(0);
  if (b < 1 || b > kFusedMlpMaxBatch) {
    std::ostringstream why;
    why << "batch " << b << " (needs 1 to " << kFusedMlpMaxBatch << ")";
    return why.str();
  }
  // Measured on an H100 (docs/performance.md): the row kernel (every width under 64, batch up
  // to 64) and the one-block phase kernel beat a CUDA graph replay of the op-by-op path, and so
  // does the phase kernel's grid for a wide net at a small batch; a wider grid's barriers and
  // longer per-thread sums lose to the graph. automatic takes what fused_mlp_auto_takes says;
  // on forces every batch.
  if (automatic_ && !fused_mlp_auto_takes(params_, b)) {
    std::ostringstream why;
    why << "batch " << b << ": the largest phase has " << fused_mlp_largest_phase_macs(params_, b)
        << " multiply-adds, over one block's " << kFusedMlpSingleBlockMacs
        << ", and the batch is over " << fused_mlp_auto_max_batch(params_)
        << " rows (the multi-block kernel measured slower than a CUDA graph there; --path fused forces it)";
    return why.str();
  }
  return "";
}

void FusedMlpAdapt::ensure_scratch(int64_t batch) {
  if (batch <= scratch_batch_) return;
  // Sized for the batch seen, so a run at a constant batch size allocates this once.
  scratch_ = empty({fused_mlp_scratch_floats(params_, batch)}, {DType::f32, device_});
  scratch_batch_ = batch;
  fused_mlp_carve_scratch(params_, static_cast<float*>(scratch_.raw_data()), batch);
}

Tensor FusedMlpAdapt::run(const Input& x) {
  const std::string why = batch_reason(x);
  IDEM_CHECK(why.empty(), "it3 fused adaptation", why);
  const int64_t b = x.x.size(0);
  ensure_scratch(b);
  Tensor y = empty({b, params_.signal}, {DType::f32, device_});
  FusedMlpAdaptParams p = params_;
  p.batch = int(b);
  p.x = static_cast<const float*>(x.x.raw_data());
  p.y = static_cast<float*>(y.raw_data());
  if (device_.is_cpu()) {
    cpu::fused_mlp_adapt(p);
    last_ = {};
  } else {
    last_ = cuda::fused_mlp_adapt(p, device_.index);
  }
  return y;
}

}  // namespace idem::it3
