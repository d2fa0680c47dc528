#include "it3/fused_head.h"

#include <optional>
#include <sstream>

#include "core/error.h"
#include "it3/adapt.h"
#include "layers/activation.h"
#include "layers/mlp.h"

namespace idem::it3 {

namespace {

// A FeatureModel's embed then head as one chain of Linear steps (empty with `why` set when
// they are not: any other child, a Linear without bias, an activation with no FusedAct).
struct Chain {
  std::vector<std::shared_ptr<Linear>> linears;  // embed, then the head's layers
  It3HeadSpec spec;
};

std::optional<Chain> chain_of(const FeatureModel& m, std::string& why) {
  const auto* embed = dynamic_cast<const FusedSequential*>(m.embed().get());
  const auto* head = dynamic_cast<const FusedSequential*>(m.head().get());
  if (!embed || !head) {
    why = "the embed and the head must be FusedSequential chains of push_linear steps";
    return std::nullopt;
  }
  const std::vector<FusedSequential::LinearStep> e = embed->linear_steps(), h = head->linear_steps();
  if (e.size() != 1) {
    why = "the embed must be one Linear (+ activation)";
    return std::nullopt;
  }
  if (h.empty() || h.size() > size_t(kIt3HeadMaxLayers)) {
    std::ostringstream os;
    os << "the head must be 1 to " << kIt3HeadMaxLayers << " Linear steps and nothing else";
    why = os.str();
    return std::nullopt;
  }
  Chain c;
  std::optional<double> slope;
  const auto take = [&](const FusedSequential::LinearStep& s, FusedAct& act) {
    const std::optional<FusedAct> code = fused_act_code(s.act, s.slope);
    if (!code) {
      why = std::string("activation ") + activation_name(s.act) + " does not fuse";
      return false;
    }
    if (*code == FusedAct::leaky_relu) {
      if (slope && *slope != s.slope) {
        why = "the leaky_relu slopes differ";
        return false;
      }
      slope = s.slope;
    }
    if (!s.linear->bias().defined()) {
      why = "a Linear without bias";
      return false;
    }
    if (s.linear->in_features() > kIt3HeadMaxWidth || s.linear->out_features() > kIt3HeadMaxWidth) {
      std::ostringstream os;
      os << "a Linear of " << s.linear->in_features() << " -> " << s.linear->out_features()
         << " (widths at most " << kIt3HeadMaxWidth << ")";
      why = os.str();
      return false;
    }
    act = *code;
    c.linears.push_back(s.linear);
    return true;
  };
  if (!take(e[0], c.spec.embed_act)) return std::nullopt;
  c.spec.acts.resize(h.size());
  for (size_t l = 0; l < h.size(); ++l)
    if (!take(h[l], c.spec.acts[l])) return std::nullopt;
  if (slope) c.spec.slope = *slope;
  return c;
}

std::vector<Tensor> tensors_of(const std::vector<std::shared_ptr<Linear>>& linears) {
  std::vector<Tensor> t;
  for (const auto& l : linears) t.push_back(l->weight()), t.push_back(l->bias());
  return t;
}

}  // namespace

FusedMode fused_head_in_graph(FusedMode mode) {
  return mode == FusedMode::automatic && !kFusedHeadAutoInGraphs ? FusedMode::off : mode;
}

std::string fused_head_ineligible_reason(RecursiveModel& model, RecursiveModel* anchor,
                                         const AdaptOptions& o) {
  if (o.fused_head == FusedMode::off) return "the fused head is off (AdaptOptions::fused_head)";
  if (!uses_it3_loss(o.method))
    return std::string("method ") + method_name(o.method) + " (the fused head computes the IT³ loss)";
  if (!anchor || anchor == &model || o.anchor == Anchor::shared)
    return "the anchor is the adapted model (--anchor shared): F would need weight gradients";
  if (o.distance != Distance::l1 && o.distance != Distance::mse)
    return std::string("distance ") + distance_name(o.distance) + " (needs l1 or mse)";
  if (model.task() != TaskKind::classification) return "a regression model (the fused head is for softmax signals)";
  auto* f = dynamic_cast<FeatureModel*>(&model);
  auto* F = dynamic_cast<FeatureModel*>(anchor);
  if (!f || !F) return model.type_name() + " is not a FeatureModel";
  std::string why;
  const std::optional<Chain> c = chain_of(*f, why);
  if (!c) return why;
  const Tensor& w = c->linears[0]->weight();
  if (w.device().is_cuda() && w.dtype() != DType::f32)
    return std::string("parameters are ") + dtype_name(w.dtype()) + " on a GPU (needs f32)";
  if (o.fused_head == FusedMode::automatic && w.device().is_cpu())
    return "on the CPU the composed ops are as fast (FusedMode::on forces the fused CPU reference)";
  return "";
}

FusedHead::FusedHead(RecursiveModel& model, RecursiveModel& anchor, const AdaptOptions& o) {
  const std::string why = fused_head_ineligible_reason(model, &anchor, o);
  IDEM_CHECK(why.empty(), "it3 fused head", "not eligible: ", why);
  std::string unused;
  Chain f = *chain_of(static_cast<FeatureModel&>(model), unused);
  const std::optional<Chain> F = chain_of(static_cast<FeatureModel&>(anchor), unused);
  IDEM_CHECK(F && F->linears.size() == f.linears.size() && F->spec.acts == f.spec.acts &&
                 F->spec.embed_act == f.spec.embed_act && F->spec.slope == f.spec.slope,
             "it3 fused head", "the anchor's head is not the model's");
  f_ = std::move(f.linears);
  F_ = F->linears;
  spec_ = f.spec;
  spec_.distance = o.distance == Distance::mse ? DistanceKind::mse : DistanceKind::l1;
  automatic_ = o.fused_head == FusedMode::automatic;
}

std::string FusedHead::batch_reason(const Input& x) const {
  const int64_t b = x.batch_size();
  const int64_t most = automatic_ ? kFusedHeadAutoMaxBatch : int64_t(kIt3HeadMaxBatch);
  if (b >= 1 && b <= most) return "";
  std::ostringstream os;
  os << "batch " << b << " (the fused head takes 1 to " << most << " rows"
     << (automatic_ ? " automatically" : "") << ")";
  return os.str();
}

It3HeadLoss FusedHead::loss(const Tensor& h_f, const Tensor& h_F, const Tensor& s0) const {
  return it3_head_loss(h_f, h_F, s0, tensors_of(f_), tensors_of(F_), spec_);
}

Tensor FusedHead::predict(const Tensor& h, const Tensor& s) const {
  return feature_head(h, s, tensors_of(f_), spec_);
}

}  // namespace idem::it3
