#include "it3/adapt.h"

#include "it3/methods/ttt.h"

#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "autograd/anomaly.h"
#include "autograd/fused_functions.h"
#include "autograd/nn_functions.h"
#include "core/error.h"
#include "core/profiler.h"
#include "data/augment.h"
#include "layers/init.h"
#include "layers/norm.h"
#include "it3/methods/entropy.h"

namespace idem::it3 {

// ---- names ----

const char* method_name(Method m) {
  switch (m) {
    case Method::none: return "none";
    case Method::bn: return "bn";
    case Method::tent: return "tent";
    case Method::actmad: return "actmad";
    case Method::it3: return "it3";
    case Method::it3_online: return "it3-online";
    case Method::random_step: return "random-step";
    case Method::eata: return "eata";
    case Method::deyo: return "deyo";
    case Method::memo: return "memo";
    case Method::ttt: return "ttt";
    case Method::ttt_pp: return "ttt++";
    case Method::masked_ttt: return "masked-ttt";
  }
  return "?";
}
Method parse_method(const std::string& n) {
  for (Method m : all_methods())
    if (n == method_name(m)) return m;
  if (n == "it3_online") return Method::it3_online;
  if (n == "random_step") return Method::random_step;
  if (n == "ttt_pp" || n == "tttpp") return Method::ttt_pp;
  if (n == "masked_ttt") return Method::masked_ttt;
  fail("it3::Adapter", "unknown method '", n,
       "' (expected none, bn, tent, actmad, it3, it3-online, random-step, eata, deyo, memo, ttt, ttt++, "
       "masked-ttt)");
}
const std::vector<Method>& all_methods() {
  static const std::vector<Method> m{Method::none, Method::bn,  Method::tent,
                                     Method::actmad, Method::it3, Method::it3_online,
                                     Method::random_step, Method::eata, Method::deyo,
                                     Method::memo, Method::ttt, Method::ttt_pp,
                                     Method::masked_ttt};
  return m;
}
const char* distance_name(Distance d) {
  switch (d) {
    case Distance::l1: return "l1";
    case Distance::mse: return "mse";
    case Distance::js: return "js";
    case Distance::js_authors: return "js-authors";
  }
  return "?";
}
Distance parse_distance(const std::string& n) {
  if (n == "l1") return Distance::l1;
  if (n == "mse") return Distance::mse;
  if (n == "js") return Distance::js;
  if (n == "js-authors" || n == "js_authors") return Distance::js_authors;
  fail("it3::Adapter", "unknown distance '", n, "' (expected l1, mse, js or js-authors)");
}
const char* anchor_name(Anchor a) {
  switch (a) {
    case Anchor::frozen: return "frozen";
    case Anchor::ema: return "ema";
    case Anchor::shared: return "shared";
    case Anchor::head: return "head";
  }
  return "?";
}
Anchor parse_anchor(const std::string& n) {
  if (n == "frozen") return Anchor::frozen;
  if (n == "ema") return Anchor::ema;
  if (n == "shared") return Anchor::shared;
  if (n == "head") return Anchor::head;
  fail("it3::Adapter", "unknown anchor '", n, "' (expected frozen, ema, shared or head)");
}
const char* bn_mode_name(BnMode b) { return b == BnMode::running ? "running" : "batch"; }
BnMode parse_bn_mode(const std::string& n) {
  if (n == "running") return BnMode::running;
  if (n == "batch") return BnMode::batch;
  fail("it3::Adapter", "unknown BatchNorm mode '", n, "' (expected running or batch)");
}

Prediction parse_prediction(const std::string& n) {
  if (n == "adapted") return Prediction::adapted;
  if (n == "anchor") return Prediction::anchor;
  fail("it3::Adapter", "unknown prediction '", n, "' (expected adapted or anchor)");
}

const char* neutral_signal_name(NeutralSignal n) {
  return n == NeutralSignal::fixed ? "fixed" : "random-onehot";
}
NeutralSignal parse_neutral_signal(const std::string& n) {
  if (n == "fixed") return NeutralSignal::fixed;
  if (n == "random-onehot" || n == "random_onehot" || n == "random-one-hot") return NeutralSignal::random_one_hot;
  fail("it3::Adapter", "unknown neutral signal '", n, "' (expected fixed or random-onehot)");
}

bool uses_it3_loss(Method m) {
  return m == Method::it3 || m == Method::it3_online || m == Method::random_step;
}

bool uses_entropy_loss(Method m) {
  return m == Method::tent || m == Method::eata || m == Method::deyo || m == Method::memo;
}

bool uses_aux_head(Method m) { return aux_head_needed(m) != AuxKind::none; }
AuxKind aux_head_needed(Method m) {
  if (m == Method::ttt || m == Method::ttt_pp) return AuxKind::rotation;
  return m == Method::masked_ttt ? AuxKind::masked : AuxKind::none;
}

const char* fused_mode_name(FusedMode f) {
  switch (f) {
    case FusedMode::automatic: return "auto";
    case FusedMode::on: return "on";
    case FusedMode::off: return "off";
  }
  return "?";
}
FusedMode parse_fused_mode(const std::string& n) {
  if (n == "auto") return FusedMode::automatic;
  if (n == "on") return FusedMode::on;
  if (n == "off") return FusedMode::off;
  fail("it3::Adapter", "unknown fused mode '", n, "' (expected auto, on or off)");
}

ParamSelection ParamSelection::parse(const std::string& t) {
  if (t == "all") return all();
  if (t == "norm") return norm_affine();
  if (t.rfind("last:", 0) == 0) {
    int n = 0;
    try {
      n = std::stoi(t.substr(5));
    } catch (...) {
      fail("it3::Adapter", "bad parameter selection '", t, "' (expected last:N with N >= 1)");
    }
    IDEM_CHECK(n >= 1, "it3::Adapter", "last:N needs N >= 1, got ", n);
    return last(n);
  }
  std::vector<std::string> names;
  std::stringstream ss(t);
  for (std::string part; std::getline(ss, part, ',');)
    if (!part.empty()) names.push_back(part);
  IDEM_CHECK(!names.empty(), "it3::Adapter", "empty parameter selection");
  return named(names);
}

std::string ParamSelection::str() const {
  switch (kind) {
    case Kind::all: return "all";
    case Kind::norm_affine: return "norm";
    case Kind::last_n: return "last:" + std::to_string(last_n);
    case Kind::names: {
      std::string s;
      for (const auto& n : names) s += (s.empty() ? "" : ",") + n;
      return s;
    }
  }
  return "?";
}

// ---- options ----

AdaptOptions AdaptOptions::for_method(Method m) {
  AdaptOptions o;
  o.method = m;
  switch (m) {
    case Method::none: o.steps = 0; break;
    case Method::bn: o.steps = 0, o.bn_mode = BnMode::batch; break;
    case Method::tent:
      o.params = ParamSelection::norm_affine(), o.bn_mode = BnMode::batch;
      break;
    case Method::actmad: break;
    case Method::it3: o.anchor = Anchor::frozen; break;
    case Method::it3_online:
      o.anchor = Anchor::ema, o.reset = ResetPolicy::never;
      break;
    case Method::random_step: o.anchor = Anchor::frozen; break;
    case Method::eata:
    case Method::deyo:
      o.params = ParamSelection::norm_affine(), o.bn_mode = BnMode::batch;
      o.reset = ResetPolicy::never;
      break;
    case Method::memo: break;
    case Method::ttt:
    case Method::ttt_pp:
    case Method::masked_ttt:
      // The shared encoder adapts; the task's embed and head and the auxiliary head stay fixed.
      o.params = ParamSelection::named({"body"});
      break;
  }
  return o;
}

void AdaptOptions::validate() const {
  IDEM_CHECK(steps >= 0, "it3::Adapter", "steps K must be >= 0, got ", steps);
  IDEM_CHECK(std::isfinite(lr) && lr >= 0, "it3::Adapter", "lr must be finite and >= 0, got ", lr);
  IDEM_CHECK(ema_alpha >= 0 && ema_alpha <= 1, "it3::Adapter", "ema_alpha must be in [0, 1], got ",
             ema_alpha);
  IDEM_CHECK(sgd_momentum >= 0 && sgd_momentum < 1, "it3::Adapter",
             "sgd_momentum must be in [0, 1), got ", sgd_momentum);
  if ((method == Method::none || method == Method::bn) && steps != 0)
    fail("it3::Adapter", "method ", method_name(method), " does not adapt weights: steps must be 0, got ",
         steps);
  IDEM_CHECK(params.kind != ParamSelection::Kind::last_n || params.last_n >= 1, "it3::Adapter",
             "last:N needs N >= 1");
  // A per-batch reset restores θ but would leave an EMA anchor drifting across batches, so the
  // batches would not be independent: the EMA anchor belongs to online adaptation.
  if (anchor == Anchor::ema && reset == ResetPolicy::per_batch && steps > 0 && uses_it3_loss(method))
    fail("it3::Adapter", "anchor ema with reset per_batch: the EMA anchor would carry over between "
         "batches; use reset never (it3-online) or anchor frozen");
  if (readout_before_update && (!uses_it3_loss(method) || method == Method::random_step || steps < 1))
    fail("it3::Adapter", "readout_before_update reads the prediction from the last IT³ step's passes: "
         "it needs method it3 or it3-online with steps >= 1 (got ", method_name(method), ", K = ", steps, ")");
  const EntropyKnobs& e = entropy;
  IDEM_CHECK(e.eata_margin > 0 && e.deyo_margin > 0 && e.deyo_ent_norm > 0 && e.fisher_beta >= 0 &&
                 std::isfinite(e.fisher_beta),
             "it3::Adapter", "entropy margins must be > 0 and fisher_beta finite and >= 0 (got eata_margin ",
             e.eata_margin, ", deyo_margin ", e.deyo_margin, ", deyo_ent_norm ", e.deyo_ent_norm,
             ", fisher_beta ", e.fisher_beta, ")");
  IDEM_CHECK(e.deyo_grid >= 1 && e.memo_copies >= 1, "it3::Adapter",
             "deyo_grid and memo_copies must be >= 1, got ", e.deyo_grid, " and ", e.memo_copies);
  if (method == Method::random_step && anchor == Anchor::ema)
    fail("it3::Adapter", "random-step takes IT³'s per-batch step: use anchor frozen, head or shared");
}

std::string AdaptOptions::to_json() const {
  std::ostringstream os;
  os << "{\"method\":\"" << method_name(method) << "\",\"steps\":" << steps << ",\"lr\":" << lr
     << ",\"optimizer\":\"" << (optimizer == OptimizerKind::adam ? "adam" : "sgd") << "\""
     << ",\"sgd_momentum\":" << sgd_momentum << ",\"distance\":\"" << distance_name(distance)
     << "\",\"anchor\":\"" << anchor_name(anchor) << "\",\"ema_alpha\":" << ema_alpha
     << ",\"params\":\"" << params.str() << "\",\"bn_mode\":\"" << bn_mode_name(bn_mode)
     << "\",\"reset\":\"" << (reset == ResetPolicy::per_batch ? "per_batch" : "never")
     << "\",\"prediction\":\"" << (prediction == Prediction::adapted ? "adapted" : "anchor")
     << "\",\"check_finite\":" << (check_finite ? "true" : "false")
     << ",\"neutral\":\"" << neutral_signal_name(neutral) << "\",\"persistent_moments\":"
     << (persistent_moments ? "true" : "false")
     << ",\"readout_before_update\":" << (readout_before_update ? "true" : "false")
     << ",\"seed\":" << seed << ",\"recipe\":\"" << recipe << "\",\"fused\":\"" << fused_mode_name(fused)
     << "\",\"fused_head\":\"" << fused_mode_name(fused_head) << "\",\"entropy\":{\"eata_margin\":" << entropy.eata_margin
     << ",\"eata_redundancy\":" << entropy.eata_redundancy << ",\"fisher_beta\":" << entropy.fisher_beta
     << ",\"deyo_margin\":" << entropy.deyo_margin << ",\"deyo_ent_norm\":" << entropy.deyo_ent_norm
     << ",\"deyo_plpd\":" << entropy.deyo_plpd << ",\"deyo_grid\":" << entropy.deyo_grid
     << ",\"memo_copies\":" << entropy.memo_copies << "},\"actmad_taps\":[";
  for (size_t i = 0; i < actmad_taps.size(); ++i) os << (i ? "," : "") << '"' << actmad_taps[i] << '"';
  os << "]}";
  return os.str();
}

Tensor distance(const Tensor& a, const Tensor& b, Distance d) {
  switch (d) {
    case Distance::l1: return l1_distance(a, b);   // one fused launch each way on a GPU
    case Distance::mse: return mse_distance(a, b);
    case Distance::js: return js_div(a, b);
    case Distance::js_authors: {
      // The notebooks' form: F.kl_div(log p, m) is KL(m‖p), so this is ½(KL(m‖a) + KL(m‖b)),
      // not the textbook ½(KL(a‖m) + KL(b‖m)). kl_div sums over classes, averages rows.
      Tensor m = (a + b) * 0.5;
      return (kl_div(m, a) + kl_div(m, b)) * 0.5;
    }
  }
  fail("it3 distance", "unknown distance");
}

// ---- ActMAD statistics ----

namespace {
// Per-channel (dim 1) mean and biased variance over every other dim.
std::pair<Tensor, Tensor> channel_stats(const Tensor& a) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < a.dim(); ++d) dims.push_back(d);
  Tensor m = mean(a, dims);
  Tensor v = var(a, dims, 0);
  return {m, v};
}

bool adapts(Method m) {
  return m == Method::tent || m == Method::actmad || uses_it3_loss(m) || m == Method::eata ||
         m == Method::deyo || m == Method::memo || uses_aux_head(m);
}

bool is_norm(const Module& m) {
  const std::string& t = m.type_name();
  return t == "BatchNorm1d" || t == "BatchNorm2d" || t == "LayerNorm" || t == "GroupNorm";
}

}  // namespace

bool has_normalization(RecursiveModel& m) {
  for (auto& [prefix, mod] : m.named_modules())
    if (is_norm(*mod)) return true;
  return false;
}

namespace {

std::shared_ptr<RecursiveModel> clone_model(const RecursiveModel& m) {
  auto c = std::dynamic_pointer_cast<RecursiveModel>(m.clone());
  IDEM_CHECK(c != nullptr, "it3::Adapter", "clone of ", m.type_name(), " is not a RecursiveModel");
  return c;
}

}  // namespace

ActmadStats collect_actmad_stats(RecursiveModel& model, const std::vector<Input>& batches,
                                 const std::vector<std::string>& taps) {
  IDEM_CHECK(!batches.empty(), "actmad", "needs at least one batch of training data");
  const bool was_training = model.is_training();
  model.eval();
  std::set<std::string> wanted(taps.begin(), taps.end());
  std::map<std::string, Tensor> sum_m, sum_v;
  double total = 0;
  {
    NoGradGuard ng;
    for (const Input& x : batches) {
      const double w = double(x.batch_size());
      model.set_tap_sink([&](const std::string& name, const Tensor& a) {
        if (!wanted.empty() && !wanted.count(name)) return;
        auto [m, v] = channel_stats(a);
        m = m * w, v = v * w;
        auto it = sum_m.find(name);
        if (it == sum_m.end()) {
          sum_m[name] = m, sum_v[name] = v;
        } else {
          it->second = it->second + m;
          sum_v[name] = sum_v[name] + v;
        }
      });
      model.forward_neutral(x);
      total += w;
    }
  }
  model.set_tap_sink(nullptr);
  model.train(was_training);
  for (const auto& t : wanted)
    if (!sum_m.count(t)) {
      std::string known;
      for (const auto& n : model.tap_names()) known += (known.empty() ? "" : ", ") + n;
      fail("actmad", "no activation named '", t, "' in ", model.type_name(), " (taps: ", known, ")");
    }
  IDEM_CHECK(!sum_m.empty(), "actmad", model.type_name(), " reported no activations to align");
  ActmadStats s;
  for (auto& [name, m] : sum_m) {
    s.mean[name] = m / total;
    s.var[name] = sum_v[name] / total;
  }
  return s;
}

// ---- Adapter ----

Adapter::Adapter(const std::shared_ptr<RecursiveModel>& trained, AdaptOptions options,
                 ActmadStats stats)
    : opt_(std::move(options)), stats_(std::move(stats)) {
  IDEM_CHECK(trained != nullptr, "it3::Adapter", "the trained model is null");
  opt_.validate();
  const bool cls = trained->task() == TaskKind::classification;
  if (uses_entropy_loss(opt_.method) && !cls)
    fail("it3::Adapter", method_name(opt_.method), " needs a classification model (it minimizes the "
         "entropy of class probabilities); ", trained->type_name(),
         " is a regression model (use it3, actmad or bn)");
  if ((opt_.distance == Distance::js || opt_.distance == Distance::js_authors) && !cls)
    fail("it3::Adapter", "the js distance compares class probabilities; this is a regression model "
         "(use l1 or mse)");
  if (opt_.neutral == NeutralSignal::random_one_hot && !cls)
    fail("it3::Adapter", "a random one-hot ∅ needs a classification model; ", trained->type_name(),
         " is a regression model (use neutral fixed)");
  if (opt_.anchor == Anchor::head && uses_it3_loss(opt_.method) &&
      dynamic_cast<const FeatureModel*>(trained.get()) == nullptr)
    fail("it3::Adapter", "the head-only anchor runs the frozen embed + head on the adapted features: it "
         "needs a feature-injection model (FeatureModel with body/embed/head), got ",
         trained->type_name(), " with ", injection_name(trained->injection()), " injection");
  if (opt_.method == Method::actmad && stats_.empty())
    fail("it3::Adapter", "actmad needs training statistics (collect_actmad_stats)");
  if (opt_.method == Method::eata && opt_.steps > 0 && opt_.entropy.fisher_beta > 0 && stats_.fisher.empty())
    fail("it3::Adapter", "eata needs Fisher statistics from training batches for its anti-forgetting "
         "term (add_eata_fisher), or entropy.fisher_beta = 0 to leave the term out");
  if (opt_.method == Method::eata) eata_ = std::make_unique<entropy::EataState>();
  if (uses_aux_head(opt_.method)) {
    if (!cls)
      fail("it3::Adapter", method_name(opt_.method),
           opt_.method == Method::masked_ttt ? " reconstructs masked image patches" : " predicts image rotations",
           " with a training-time head: it needs an image classification model; ", trained->type_name(),
           " is a regression model");
    require_aux_head(*trained, aux_head_needed(opt_.method), method_name(opt_.method));
    if (opt_.method == Method::ttt_pp && stats_.features.empty())
      fail("it3::Adapter", "ttt++ needs training feature statistics (collect_feature_stats)");
  }

  model_ = clone_model(*trained);
  model_->eval();
  const bool it3 = uses_it3_loss(opt_.method);
  const bool adapting = adapts(opt_.method) && opt_.steps > 0;
  if (it3 && opt_.anchor != Anchor::shared) {
    anchor_ = clone_model(*trained);
    anchor_->eval();
    anchor_->set_requires_grad(false);  // F passes gradients to its input only
  }
  if (adapting && opt_.reset == ResetPolicy::per_batch) {
    if (anchor_ && (opt_.anchor == Anchor::frozen || opt_.anchor == Anchor::head)) {
      pristine_ = anchor_;  // the frozen anchor IS Θ: reset from it
    } else {
      pristine_ = clone_model(*trained);
      pristine_->eval();
      pristine_->set_requires_grad(false);
    }
  }
  apply_bn_mode(*model_, opt_.bn_mode == BnMode::batch);
  if (anchor_) apply_bn_mode(*anchor_, opt_.bn_mode == BnMode::batch);
  share_first_features_ = it3 && opt_.anchor == Anchor::frozen && pristine_ &&
                          pristine_ == anchor_ &&
                          dynamic_cast<FeatureModel*>(model_.get()) != nullptr &&
                          (opt_.bn_mode == BnMode::running || !has_normalization(*model_));
  select_params();
  if (adapting && !adapted_.empty()) {
    if (opt_.optimizer == OptimizerKind::adam) {
      AdamOptions a;
      a.lr = opt_.lr;
      optim_ = std::make_unique<Adam>(adapted_, a);
    } else {
      SGDOptions s;
      s.lr = opt_.lr;
      s.momentum = opt_.sgd_momentum;
      optim_ = std::make_unique<SGD>(adapted_, s);
    }
  }
  if (pristine_) {
    // One fused reset: every parameter and buffer of Θ into θ, and the optimizer state to zero.
    std::vector<MultiTensorCopy::CopyPair> copies;
    const NamedTensors dp = model_->named_parameters(), sp = pristine_->named_parameters();
    const NamedTensors db = model_->named_buffers(), sb = pristine_->named_buffers();
    for (size_t i = 0; i < dp.size(); ++i) copies.emplace_back(dp[i].second, sp[i].second);
    for (size_t i = 0; i < db.size(); ++i) copies.emplace_back(db[i].second, sb[i].second);
    std::vector<Tensor> zero;
    if (optim_ && optim_->state_buffer().defined() && !opt_.persistent_moments)
      zero.push_back(optim_->state_buffer());
    reset_copy_ = MultiTensorCopy(std::move(copies), std::move(zero));
  }
  fused_reason_ = fused_ineligible_reason(*model_, opt_);
  if (fused_reason_.empty())
    fused_ = std::make_unique<FusedMlpAdapt>(*model_, anchor(), optim_.get(), opt_);
  fused_head_reason_ = fused_head_ineligible_reason(*model_, anchor_.get(), opt_);
  if (fused_head_reason_.empty()) head_ = std::make_unique<FusedHead>(*model_, *anchor_, opt_);
  if (uses_aux_head(opt_.method))
    ttt_ = std::make_unique<TttLoss>(static_cast<FeatureModel&>(*model_), aux_head_needed(opt_.method),
                                     opt_.method == Method::ttt_pp, stats_.features, opt_.seed);
  if (opt_.method == Method::actmad) {
    model_->set_tap_sink([this](const std::string& name, const Tensor& a) {
      if (stats_.mean.count(name)) tapped_[name] = a;
    });
  }
}

Adapter::~Adapter() = default;

RecursiveModel& Adapter::anchor() { return anchor_ ? *anchor_ : *model_; }

void Adapter::apply_bn_mode(RecursiveModel& m, bool batch_stats) {
  for (auto& [name, mod] : m.named_modules()) {
    auto* bn = dynamic_cast<BatchNorm*>(mod);
    if (!bn) continue;
    if (batch_stats) {
      bn->set_track_running_stats(false);
    } else if (!bn->running_mean().defined()) {
      // A BatchNorm built without running statistics always normalizes with the batch.
      continue;
    } else {
      bn->set_track_running_stats(true);
    }
  }
}

void Adapter::select_params() {
  const NamedTensors all = model_->named_parameters();
  // A training-time auxiliary head (child "aux", it3/aux_head.h) is not part of the task's
  // network: all, norm and last:N never select it (only a selection that names it does).
  auto is_aux = [](const std::string& n) { return n == "aux" || n.rfind("aux.", 0) == 0; };
  std::set<std::string> chosen;
  switch (opt_.params.kind) {
    case ParamSelection::Kind::all:
      for (const auto& [n, t] : all)
        if (!is_aux(n)) chosen.insert(n);
      break;
    case ParamSelection::Kind::norm_affine:
      for (auto& [prefix, m] : model_->named_modules())
        if (is_norm(*m) && !is_aux(prefix))
          for (const auto& [n, t] : m->own_parameters()) chosen.insert(prefix + "." + n);
      break;
    case ParamSelection::Kind::last_n: {
      std::vector<std::string> owners;
      for (auto& [prefix, m] : model_->named_modules())
        if (!m->own_parameters().empty() && !is_aux(prefix)) owners.push_back(prefix);
      const size_t n = std::min(owners.size(), size_t(opt_.params.last_n));
      for (size_t i = owners.size() - n; i < owners.size(); ++i) {
        Module* m = nullptr;
        for (auto& [p, mod] : model_->named_modules())
          if (p == owners[i]) m = mod;
        for (const auto& [pn, t] : m->own_parameters())
          chosen.insert(owners[i].empty() ? pn : owners[i] + "." + pn);
      }
      break;
    }
    case ParamSelection::Kind::names:
      for (const auto& want : opt_.params.names) {
        bool hit = false;
        for (const auto& [n, t] : all)
          if (n == want || n.rfind(want + ".", 0) == 0) chosen.insert(n), hit = true;
        if (!hit) {
          std::string known;
          for (size_t i = 0; i < all.size() && i < 12; ++i) known += (i ? ", " : "") + all[i].first;
          fail("it3::Adapter", "no parameter or module named '", want, "' in ",
               model_->type_name(), " (parameters: ", known, all.size() > 12 ? ", ..." : "", ")");
        }
      }
      break;
  }
  if (adapts(opt_.method) && opt_.steps > 0 && chosen.empty())
    fail("it3::Adapter", "parameter selection '", opt_.params.str(), "' selects nothing in ",
         model_->type_name(),
         opt_.params.kind == ParamSelection::Kind::norm_affine
             ? " (it has no normalization layers with affine parameters)"
             : "");
  for (const auto& [n, t] : all) {
    const bool on = chosen.count(n) > 0 && adapts(opt_.method) && opt_.steps > 0;
    t.requires_grad_(on);  // frozen parameters get no weight-gradient work at all
    if (on) adapted_names_.push_back(n), adapted_.push_back(t);
  }
}

void Adapter::reset() {
  if (!pristine_) return;
  reset_copy_.run();
  if (optim_ && !opt_.persistent_moments) optim_->reset_step_counts();
  if (eata_) eata_->clear();  // the batches are independent: so is the redundancy filter
  steps_since_reset_ = 0;
  theta_is_pristine_ = true;
}

Tensor Adapter::neutral_signal(const Input& x) {
  const int64_t b = x.batch_size();
  if (opt_.neutral == NeutralSignal::fixed) return model_->neutral(b, x.device(), x.x.dtype());
  // A uniform class per sample: the argmax of B×C Philox uniforms, one-hot. Each draw of a batch
  // takes its own offsets; the seed is derived from (seed, batch index).
  const int64_t c = model_->signal_dim();
  Tensor u = rand({b, c}, init::derive_seed(opt_.seed ^ 0x0E7A1ull, uint64_t(batch_index_)),
                  Options{DType::f32, x.device()}, draw_offset_);
  draw_offset_ += uint64_t(b * c + 4);
  return one_hot(argmax(u, 1), c, x.x.dtype());
}

Adapter::LossPasses Adapter::it3_passes(const Input& x, Cost& cost) {
  LossPasses p;
  Tensor s0 = neutral_signal(x);
  const bool head_anchor = opt_.anchor == Anchor::head;
  // One body for both passes. The notebook's anchor (head): the frozen embed + head of Θ on the
  // adapted features. The frozen anchor right after a reset: θ = Θ bit for bit and F is Θ, so
  // F's body would compute on x exactly the features f's body does (same weights, same input,
  // deterministic kernels) — the cnn's convolutions are most of a forward —; F gets them
  // detached (it passes gradients to its input s only, as when it runs its own body).
  const bool one_body = head_anchor || (share_first_features_ && theta_is_pristine_);
  Tensor h;
  if (uses_fused_head(x)) {
    // The same passes from the features on as one op (it3/fused_head.h): F's features are
    // f's (detached unless F is the head anchor) or its own body's. Features the op does not
    // take (FusedHead::takes) go on through the composed path below.
    h = static_cast<FeatureModel&>(*model_).features(x);
    if (FusedHead::takes(h)) {
      Tensor h_F = one_body ? (head_anchor ? h : h.detach())
                            : static_cast<FeatureModel&>(*anchor_).features(x);
      It3HeadLoss r = head_->loss(h, h_F, s0);
      p.first = r.y0, p.second = r.y1, p.loss = r.loss;
      cost.forwards += 2;
      return p;
    }
  }
  if (one_body) {
    auto& f = static_cast<FeatureModel&>(*model_);
    if (!h.defined()) h = f.features(x);
    p.first = f.from_features(h, s0);
  } else if (h.defined()) {  // the fused head's attempt ran f's body already
    p.first = static_cast<FeatureModel&>(*model_).from_features(h, s0);
  } else {
    p.first = model_->forward(x, s0);
  }
  p.signal = model_->to_signal(p.first);  // one node: F's input and the distance's target
  if (one_body)
    p.second = static_cast<FeatureModel&>(*anchor_).from_features(head_anchor ? h : h.detach(),
                                                                   p.signal);
  else
    p.second = anchor().forward(x, p.signal);
  cost.forwards += 2;
  return p;
}

Adapter::LossPasses Adapter::adaptation_loss(const Input& x, Cost& cost) {
  LossPasses out;
  switch (opt_.method) {
    case Method::it3:
    case Method::it3_online:
    case Method::random_step: {
      out = it3_passes(x, cost);
      if (out.loss.defined()) return out;  // the fused head computed it
      if (model_->task() == TaskKind::classification)
        out.loss = distance(softmax(out.second, 1), out.signal, opt_.distance);
      else
        out.loss = distance(out.second, out.first, opt_.distance);
      return out;
    }
    case Method::tent: {
      Tensor y = model_->forward(x, neutral_signal(x));
      cost.forwards += 1;
      // Entropy of the predicted distribution, mean over the batch.
      out.loss = mean(entropy::sample_entropy(y));
      return out;
    }
    case Method::actmad: {
      tapped_.clear();
      model_->forward(x, neutral_signal(x));
      cost.forwards += 1;
      Tensor loss;
      for (const auto& [name, a] : tapped_) {
        auto [m, v] = channel_stats(a);
        Tensor term = l1_loss(m, stats_.mean.at(name)) + l1_loss(v, stats_.var.at(name));
        loss = loss.defined() ? loss + term : term;
      }
      IDEM_CHECK(loss.defined(), "actmad", "the forward reported none of the tapped activations");
      out.loss = loss;
      return out;
    }
    case Method::eata:
    case Method::deyo:
    case Method::memo: out.loss = entropy_method_loss(x, cost); return out;
    case Method::ttt:
    case Method::ttt_pp:
    case Method::masked_ttt: out.loss = ttt_->loss(x, cost); return out;
    default: fail("it3::Adapter", method_name(opt_.method), " has no adaptation loss");
  }
}

Tensor Adapter::entropy_method_loss(const Input& x, Cost& cost) {
  const EntropyKnobs& e = opt_.entropy;
  const auto images_only = [&] {
    if (x.graph || x.x.dim() < 3)
      fail("it3::Adapter", method_name(opt_.method), " transforms images: it needs an input of shape "
           "(B,C,H,W) or (B,H,W), got ", shape_str(x.x.shape()), x.graph ? " with a graph" : "");
  };
  // The draws of step k of batch n: one seed per (method seed, batch), image i of step k reads
  // stream k·B + i (data/augment.h), so every step and batch draws afresh, reproducibly.
  const int64_t b = x.batch_size();
  const int64_t offset = int64_t(step_in_batch_) * b;
  switch (opt_.method) {
    case Method::eata: {
      Tensor y = model_->forward(x, neutral_signal(x));
      cost.forwards += 1;
      const double lnc = std::log(double(y.size(1)));
      Tensor loss = entropy::eata_entropy_loss(y, e.eata_margin * lnc, e.eata_redundancy, *eata_).loss;
      if (e.fisher_beta > 0) {
        Tensor pen = entropy::fisher_penalty(adapted_names_, adapted_, stats_, e.fisher_beta);
        if (pen.defined()) loss = loss + pen;
      }
      return loss;
    }
    case Method::deyo: {
      images_only();
      Tensor y = model_->forward(x, neutral_signal(x));
      Tensor ys;
      {
        NoGradGuard ng;  // the shuffled pass only measures PLPD
        const uint64_t seed = init::derive_seed(opt_.seed ^ 0xDE70ull, uint64_t(batch_index_));
        const Input shuffled(data::patch_shuffle(x.x, e.deyo_grid, seed, offset));
        ys = model_->forward(shuffled, neutral_signal(shuffled));
      }
      cost.forwards += 2;
      const double lnc = std::log(double(y.size(1)));
      return entropy::deyo_loss(y, ys, e.deyo_margin * lnc, e.deyo_plpd, e.deyo_ent_norm * lnc).loss;
    }
    case Method::memo: {
      images_only();
      const uint64_t seed = init::derive_seed(opt_.seed ^ 0x3E30ull, uint64_t(batch_index_));
      const Input views(data::memo_augment(x.x, e.memo_copies, seed, offset));
      Tensor y = model_->forward(views, neutral_signal(views));
      cost.forwards += uint64_t(e.memo_copies);  // one pass over copies·B samples
      return entropy::marginal_entropy(y, e.memo_copies);
    }
    default: fail("it3::Adapter", method_name(opt_.method), " is not an entropy-family method");
  }
}

void Adapter::update_ema_anchor() {
  NoGradGuard ng;
  const double a = opt_.ema_alpha;
  const NamedTensors fp = anchor_->named_parameters();
  const NamedTensors tp = model_->named_parameters();
  for (size_t i = 0; i < fp.size(); ++i) fp[i].second.copy_(fp[i].second * a + tp[i].second.detach() * (1.0 - a));
}

void Adapter::random_step_update(const std::vector<Tensor>& before, int k) {
  // θ_p ← θ_p(before) + ‖δ_p‖₂ · r_p / ‖r_p‖₂ with δ_p the step the optimizer just took: the
  // same size per parameter tensor, a random direction. Device-side norms: no read-back.
  NoGradGuard ng;
  const uint64_t bseed = init::derive_seed(opt_.seed ^ 0x7A4D5ull, uint64_t(batch_index_));
  for (size_t i = 0; i < adapted_.size(); ++i) {
    const Tensor& p = adapted_[i];
    Tensor delta = p - before[i];
    Tensor r = randn(p.shape(), init::derive_seed(bseed, uint64_t(k) * adapted_.size() + i),
                     Options{p.dtype(), p.device()});
    Tensor scale = sqrt(sum(delta * delta)) / sqrt(sum(r * r));
    p.copy_(before[i] + r * scale);
  }
}

Tensor Adapter::run_fused(const Input& x, Cost& cost) {
  const bool adapting = optim_ != nullptr && opt_.steps > 0;
  Tensor y = fused_->run(x);
  if (adapting) {
    // The kernel restored θ ← Θ and zeroed the optimizer state itself, then took K steps.
    cost.reset_bytes += uint64_t(reset_bytes());
    optim_->reset_step_counts();
    const uint64_t k = uint64_t(opt_.steps);
    cost.forwards += 2 * k;
    cost.backwards += k;
    cost.optimizer_steps += k;
    steps_since_reset_ = opt_.steps;
  }
  cost.forwards += 1;
  profiler::mark("fused IT³ adaptation (reset, K steps, prediction)", "fused", double(y.nbytes()));
  return y;
}

Tensor Adapter::run(const Input& x, Cost& cost, Tensor* first_loss, Tensor* last_loss) {
  const bool adapting = optim_ != nullptr && opt_.steps > 0;
  draw_offset_ = 0;
  theta_is_pristine_ = false;  // set by this call's reset (if any), cleared by its first update
  if (ttt_) ttt_->begin_batch(batch_index_);
  if (adapting && opt_.reset == ResetPolicy::per_batch) {
    reset();
    cost.reset_bytes += uint64_t(reset_bytes());
    profiler::mark("reset θ ← Θ, moments ← 0", "reset", double(reset_bytes()));
  }
  Tensor readout;  // readout_before_update: the last step's pass, before its update
  if (adapting) {
    std::vector<Tensor> before;
    for (int k = 0; k < opt_.steps; ++k) {
      optim_->zero_grad();
      step_in_batch_ = k;
      LossPasses lp = adaptation_loss(x, cost);
      Tensor loss = lp.loss;
      if (opt_.check_finite)
        check_finite_loss(loss, k + 1, std::string("it3::Adapter ") + method_name(opt_.method) +
                                           " adaptation (step of " + std::to_string(opt_.steps) + ")");
      loss.backward();
      cost.backwards += 1;
      if (opt_.readout_before_update && k == opt_.steps - 1)
        readout = (opt_.prediction == Prediction::anchor ? lp.second : lp.first).detach();
      if (opt_.method == Method::random_step) {
        before.clear();
        for (const Tensor& p : adapted_) before.push_back(p.detach().clone_data());
      }
      optim_->step();
      theta_is_pristine_ = false;
      if (opt_.method == Method::random_step) random_step_update(before, k);
      cost.optimizer_steps += 1;
      profiler::mark(optim_->name(), "update");
      if (opt_.anchor == Anchor::ema && anchor_) update_ema_anchor();
      if (first_loss && k == 0) *first_loss = loss.detach();
      if (last_loss) *last_loss = loss.detach();
      ++steps_since_reset_;
    }
  }
  ++batch_index_;
  if (readout.defined()) return readout;
  NoGradGuard ng;
  Tensor y;
  if (opt_.prediction == Prediction::anchor && uses_it3_loss(opt_.method)) {
    y = it3_passes(x, cost).second;
  } else {
    if (uses_fused_head(x)) {
      auto& f = static_cast<FeatureModel&>(*model_);
      const Tensor h = f.features(x);
      y = FusedHead::takes(h) ? head_->predict(h, neutral_signal(x))
                              : f.from_features(h, neutral_signal(x));
    } else {
      y = model_->forward(x, neutral_signal(x));
    }
    cost.forwards += 1;
    if (opt_.prediction == Prediction::anchor) {
      y = anchor().forward(x, model_->to_signal(y));
      cost.forwards += 1;
    }
  }
  profiler::mark("prediction f(x, ∅) (no grad)", "forward", double(y.nbytes()));
  return y;
}

bool Adapter::needs_batch_of_two() const {
  return opt_.bn_mode == BnMode::batch ||
         ((opt_.method == Method::actmad || opt_.method == Method::ttt_pp) && opt_.steps > 0);
}

void Adapter::check_input(const Input& x) const {
  IDEM_CHECK(x.x.defined(), "it3::Adapter", "the input is undefined");
  const Device dev = model_->device();
  if (x.device() != dev)
    fail("it3::Adapter", "input on ", x.device().str(), " but the model is on ", dev.str());
  const int64_t b = x.batch_size();
  const bool batch_stats = opt_.bn_mode == BnMode::batch;
  if (b < 2 && needs_batch_of_two())
    fail("it3::Adapter", method_name(opt_.method), " with ",
         batch_stats                          ? "BatchNorm batch statistics"
         : opt_.method == Method::ttt_pp      ? "a feature covariance"
                                              : "activation statistics",
         " needs a batch of at least 2 samples, got ", b);
}

Tensor Adapter::adapt_and_predict(const Input& x, Cost* cost, Tensor* first_loss, Tensor* last_loss) {
  IDEM_CHECK(!opt_.check_finite, "it3::Adapter",
             "adapt_and_predict never reads the loss back: set check_finite = false");
  check_input(x);
  Cost local;
  if (uses_fused(x)) {
    Tensor y = run_fused(x, cost ? *cost : local);
    // The step losses as 0-dim views of the plan's buffer: a graph replay rewrites them.
    const int k = fused_->steps();
    if (first_loss && k > 0) *first_loss = fused_->losses().slice0(0, 1).view_as_shape(Shape{});
    if (last_loss && k > 0) *last_loss = fused_->losses().slice0(k - 1, k).view_as_shape(Shape{});
    return y;
  }
  Tensor y = run(x, cost ? *cost : local, first_loss, last_loss);
  return y;
}

AdaptResult Adapter::predict(const Input& x) {
  check_input(x);
  AdaptResult r;
  r.cost.batches = 1;
  r.cost.samples = uint64_t(x.batch_size());
  const bool fused = uses_fused(x);
  if (fused) fused_->ensure_scratch(x.batch_size());  // setup: outside the meter
  CostMeter meter(model_->device());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (fused) {
    r.prediction = run_fused(x, r.cost);
    meter.stop(r.cost);
    r.loss_before = r.loss_after = nan;
    if (fused_->steps() > 0) {
      const Tensor l = fused_->losses().to(Device::cpu());
      const float* lp = l.data<float>();
      for (int k = 0; k < fused_->steps(); ++k)
        if (opt_.check_finite)
          check_finite_loss(scalar_tensor(lp[k]), k + 1,
                            std::string("it3::Adapter ") + method_name(opt_.method) +
                                " fused adaptation (step of " + std::to_string(opt_.steps) + ")");
      r.loss_before = lp[0];
      r.loss_after = lp[fused_->steps() - 1];
    }
    total_ += r.cost;
    return r;
  }
  Tensor first_loss, last_loss;
  r.prediction = run(x, r.cost, &first_loss, &last_loss);
  meter.stop(r.cost);
  r.loss_before = first_loss.defined() ? first_loss.item() : nan;
  r.loss_after = last_loss.defined() ? last_loss.item() : nan;
  total_ += r.cost;
  return r;
}

}  // namespace idem::it3
