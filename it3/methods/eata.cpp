// EATA: entropy minimization on the normalization layers' affine parameters (as TENT), on the
// confident, non-redundant samples only, each weighted by 1/exp(H − E0), plus a Fisher-weighted
// pull toward the trained weights (the anti-forgetting term). See it3/methods/entropy.h.
#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/error.h"
#include "it3/methods/entropy.h"
#include "layers/module.h"
#include "layers/norm.h"

namespace idem::it3 {

namespace entropy {

namespace {
Tensor scalar_like(double v, const Tensor& t) {
  return scalar_tensor(v, {t.dtype(), t.device()});
}
}  // namespace

EataTerms eata_entropy_loss(const Tensor& logits, double e_margin, double d_margin,
                            EataState& state) {
  IDEM_CHECK(logits.dim() == 2, "eata", "expected logits (B, C), got ", shape_str(logits.shape()));
  EataTerms t;
  Tensor h = sample_entropy(logits);
  Tensor denom;
  {
    NoGradGuard ng;  // the filters and weights are constants of the loss
    const Tensor one = scalar_like(1.0, h), zero = scalar_like(0.0, h);
    const Tensor hd = h.detach();
    Tensor kept = where(lt(hd, scalar_like(e_margin, hd)), one, zero);
    const Tensor p = softmax(logits.detach(), 1);
    const int64_t c = logits.size(1);
    if (!state.avg.defined()) {
      state.avg = zeros({c}, {p.dtype(), p.device()});
      state.defined = scalar_like(0.0, p);
    }
    if (d_margin >= 0) {
      // |cos(p_i, m)| < ε keeps samples unlike the recent average; with m unset (zeros) cos is 0,
      // so every sample passes, as published where m is still None.
      Tensor dot = sum(p * unsqueeze(state.avg, 0), {1});
      Tensor norms = sqrt(sum(p * p, {1})) * sqrt(sum(state.avg * state.avg)) + 1e-12;
      kept = kept * where(lt(abs(dot / norms), scalar_like(d_margin, p)), one, zero);
    }
    const Tensor count = sum(kept);
    denom = maximum(count, one);
    t.kept = kept;
    t.weight = kept * exp(-(hd - e_margin));
    // m ← 0.9·m + 0.1·mean(kept p) (or the mean itself the first time), only when a sample was
    // kept.
    const Tensor mean_kept = sum(p * unsqueeze(kept, 1), {0}) / denom;
    const Tensor have = minimum(count, one);
    const Tensor target =
        state.defined * (state.avg * 0.9 + mean_kept * 0.1) + (1.0 - state.defined) * mean_kept;
    state.avg = have * target + (1.0 - have) * state.avg;
    state.defined = maximum(state.defined, have);
  }
  t.loss = sum(h * t.weight) / denom;
  return t;
}

Tensor fisher_penalty(const std::vector<std::string>& names, const std::vector<Tensor>& params,
                      const ActmadStats& stats, double beta) {
  Tensor total;
  for (size_t i = 0; i < names.size(); ++i) {
    auto f = stats.fisher.find(names[i]);
    if (f == stats.fisher.end()) continue;
    Tensor term = sum(f->second * square(params[i] - stats.fisher_theta0.at(names[i])));
    total = total.defined() ? total + term : term;
  }
  if (!total.defined()) return Tensor();
  return total * beta;
}

}  // namespace entropy

void add_eata_fisher(RecursiveModel& model, const std::vector<Input>& batches, ActmadStats& into) {
  IDEM_CHECK(!batches.empty(), "eata", "the Fisher needs at least one batch of training data");
  IDEM_CHECK(model.task() == TaskKind::classification, "eata",
             "eata needs a classification model (its Fisher uses pseudo-labels); ",
             model.type_name(), " is a regression model");
  auto f = std::dynamic_pointer_cast<RecursiveModel>(model.clone());
  IDEM_CHECK(f != nullptr, "eata", "clone of ", model.type_name(), " is not a RecursiveModel");
  // As EATA configures the model for adaptation: evaluation mode, BatchNorm on batch statistics.
  f->eval();
  for (auto& [name, mod] : f->named_modules())
    if (auto* bn = dynamic_cast<BatchNorm*>(mod)) bn->set_track_running_stats(false);
  f->set_requires_grad(true);
  const NamedTensors params = f->named_parameters();
  std::vector<Tensor> acc(params.size());
  int64_t used = 0;
  for (const Input& x : batches) {
    if (x.batch_size() < 2) continue;  // batch statistics need two samples
    f->zero_grad();
    Tensor y = f->forward_neutral(x);
    // The squared gradient of the cross-entropy against the model's own argmax (EATA's
    // pseudo-labels: no training labels needed), averaged over batches.
    cross_entropy(y, argmax(y.detach(), 1)).backward();
    NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor g = params[i].second.grad();
      if (!g.defined()) continue;
      acc[i] = acc[i].defined() ? acc[i] + g * g : g * g;
    }
    ++used;
  }
  IDEM_CHECK(used > 0, "eata", "the Fisher needs a training batch of at least 2 samples");
  const NamedTensors theta0 = model.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!acc[i].defined()) continue;
    into.fisher[params[i].first] = acc[i] / double(used);
    into.fisher_theta0[params[i].first] = theta0[i].second.detach().clone_data();
  }
}

}  // namespace idem::it3
