// Level L4: test-time adaptation — IT³ offline and online, and the baselines (none, bn, tent,
// actmad, and the entropy family eata, deyo, memo: it3/methods/entropy.h) — behind one
// interface, with cost counters (docs/it3.md).
//
//   it3::Adapter adapter(trained_model, it3::AdaptOptions::for_method(it3::Method::it3));
//   it3::AdaptResult r = adapter.predict(batch);   // adapts per the policy, then predicts
//   r.prediction, r.cost.forwards, r.cost.wall_us, ...
//
// The Adapter never modifies the trained model: at construction it clones it once into the
// working model f_θ (the one that adapts) and, where the method needs one, a frozen anchor F and
// a pristine copy Θ. Every reset afterwards copies values into the existing buffers (parameters,
// BatchNorm buffers and optimizer moments): no allocation, no deep copy per batch.
//
// IT³ offline, per test batch x (reset policy per_batch, anchor frozen):
//   θ ← Θ; optimizer moments ← 0
//   K times: y0 = f_θ(x, ∅);  y1 = F(x, signal(y0));  L = d(out(y1), out(y0));  θ ← step(∇θ L)
//   predict f_θ(x, ∅)   (or F(x, signal(f_θ(x, ∅))) with Prediction::anchor)
// where signal/out are the identity for regression and softmax for classification (the
// distance compares probabilities). F's parameters never require grad: the engine builds no
// weight-gradient work for F (only the path to its input), which tests count.
//
// Knobs of the authors' recipes (docs/it3.md, "Recipes"; it3/recipe.h sets them as presets):
//   neutral random_one_hot   ∅ is a fresh random one-hot per sample at every pass that takes ∅,
//                            the prediction included (Philox, seeded per batch)
//   distance js_authors      0.5·(KL(m‖p) + KL(m‖q)), m = (p + q)/2, summed over classes, mean
//                            over the batch (the notebooks' form; js is the textbook JS)
//   anchor head              y1 = F.head(body_θ(x) + F.embed(s)): the frozen embed + head of Θ on
//                            the adapted features (feature-injection models only)
//   persistent_moments       the per-batch reset restores θ but keeps the optimizer's moments
//                            and step count (one optimizer for the whole test set)
//   readout_before_update    the prediction is the last step's pass computed before its update:
//                            y0 = f_θ(x, ∅) (prediction adapted) or y1 (prediction anchor)
//
// random-step (a control): per batch θ ← Θ, then K times: the IT³ step δ the optimizer would
// take, replaced by a step of the same L2 norm per parameter tensor in a random direction:
//   θ_p ← θ_p + ‖δ_p‖₂ · r_p / ‖r_p‖₂,  r_p ~ N(0, I) (Philox; seed derived from (seed, batch, p))
// then predict f_θ(x, ∅). It shows whether the IT³ gradient helps more than a step of its size.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "it3/aux_head.h"
#include "it3/cost.h"
#include "it3/fused_adapt.h"
#include "it3/fused_head.h"
#include "it3/recursive_model.h"
#include "core/ops/multi_copy.h"
#include "layers/optim.h"

namespace idem::it3 {

enum class Method : uint8_t { none, bn, tent, actmad, it3, it3_online, random_step, eata, deyo, memo, ttt, ttt_pp, masked_ttt };
enum class Anchor : uint8_t { frozen, ema, shared, head };
enum class Distance : uint8_t { l1, mse, js, js_authors };
enum class BnMode : uint8_t { running, batch };
enum class ResetPolicy : uint8_t { per_batch, never };
enum class Prediction : uint8_t { adapted, anchor };
enum class OptimizerKind : uint8_t { adam, sgd };
enum class NeutralSignal : uint8_t { fixed, random_one_hot };
// When the Adapter runs an IT³ adaptation as one fused call (it3/fused_adapt.h):
//   automatic  on a GPU, whenever the model and the options allow it and the batch fits one
//              block of the kernel (larger ones measured slower than a CUDA graph);
//   on         also on the CPU, where the fused path is the plain-loop reference
//              (core/cpu/fused_mlp_adapt.cpp): single-threaded, so slower than the op-by-op
//              CPU path except for the smallest models; tests and `idem bench --path fused`;
//   off        never: always op by op.
enum class FusedMode : uint8_t { automatic, on, off };

// Which parameters of f_θ adapt.
struct ParamSelection {
  enum class Kind : uint8_t { all, norm_affine, last_n, names };
  Kind kind = Kind::all;
  int last_n = 1;                  // last_n: the last n modules that own parameters
  std::vector<std::string> names;  // names: parameter names or dotted module prefixes
  static ParamSelection all() { return {}; }
  static ParamSelection norm_affine() { return {Kind::norm_affine, 1, {}}; }
  static ParamSelection last(int n) { return {Kind::last_n, n, {}}; }
  static ParamSelection named(std::vector<std::string> names) {
    return {Kind::names, 1, std::move(names)};
  }
  // "all", "norm", "last:N", or a comma-separated list of names/prefixes.
  static ParamSelection parse(const std::string& text);
  std::string str() const;
};

// The knobs of the entropy-family methods (it3/methods/entropy.h); thresholds on entropy are
// fractions of ln C (C classes), as the papers state them. Defaults: the published values.
struct EntropyKnobs {
  double eata_margin = 0.4;       // EATA keeps H < E0 = eata_margin·ln C, weight 1/exp(H − E0)
  double eata_redundancy = 0.05;  // EATA keeps |cos(p, m)| < ε (m: moving average); < 0: off
  double fisher_beta = 2000.0;    // EATA's anti-forgetting weight β (0: no Fisher term)
  double deyo_margin = 0.5;       // DeYO keeps H < deyo_margin·ln C
  double deyo_ent_norm = 0.4;     // DeYO's weight exp(−(H − deyo_ent_norm·ln C)) + exp(PLPD)
  double deyo_plpd = 0.2;         // DeYO keeps PLPD > deyo_plpd
  int deyo_grid = 4;              // DeYO's patch shuffle: a grid × grid grid of patches
  int memo_copies = 8;            // MEMO's augmentations per sample
};

// Every knob of docs/it3.md, explicit and recorded with each result (to_json()).
struct AdaptOptions {
  Method method = Method::it3;
  int steps = 1;  // K
  double lr = 1e-3;
  OptimizerKind optimizer = OptimizerKind::adam;
  double sgd_momentum = 0.0;
  Distance distance = Distance::l1;
  Anchor anchor = Anchor::frozen;
  double ema_alpha = 0.99;  // online anchor: F ← α·F + (1 − α)·θ after every step
  ParamSelection params;
  BnMode bn_mode = BnMode::running;  // BatchNorm statistics during adaptation and prediction
  ResetPolicy reset = ResetPolicy::per_batch;
  Prediction prediction = Prediction::adapted;
  std::vector<std::string> actmad_taps;  // empty: every tap the model reports
  // Read each step's loss back and refuse to step on NaN/Inf (one device sync per step). The
  // benchmarks turn it off to measure the adaptation without host round trips.
  bool check_finite = true;
  // The recipes' knobs (see the top of this file).
  NeutralSignal neutral = NeutralSignal::fixed;
  bool persistent_moments = false;
  bool readout_before_update = false;
  uint64_t seed = 0;   // random one-hot ∅ and random-step directions
  std::string recipe;  // the preset these options came from ("" = none)
  // Whether the whole IT³ adaptation may run as one fused call (see FusedMode; the command
  // line's `--path auto|fused|graph|eager` sets it through it3::PathAdapter). With check_finite,
  // the fused path reads the K losses back after the call and throws on a NaN/Inf one (the
  // steps have then been taken). Automatic by default: on a GPU, batches that run as one block
  // (FusedMlpAdapt::batch_reason).
  FusedMode fused = FusedMode::automatic;
  // Whether the IT³ loss of a feature-injection model runs its head (θ's and the anchor's,
  // the softmaxes and the distance, forward and backward) as one op, and the prediction's head
  // as one more (it3/fused_head.h): automatic (the default) on a GPU for batches up to
  // kFusedHeadAutoMaxBatch, and not in an adaptation captured in a CUDA graph unless
  // kFusedHeadAutoInGraphs (fused_head_in_graph); on also on the CPU (the reference) and in
  // graphs; off never. The body runs op by op either way. `--fused-head auto|on|off`.
  FusedMode fused_head = FusedMode::automatic;
  EntropyKnobs entropy;  // eata, deyo, memo

  // The method's reference configuration:
  //   none       K = 0, no adaptation
  //   bn         K = 0, batch statistics
  //   tent       norm affine parameters, batch statistics, Adam, reset per batch
  //   actmad     all parameters, running statistics, L1 on mean and variance
  //   it3        frozen anchor, reset per batch, L1 (classification: L1 on probabilities)
  //   it3_online EMA anchor (α = 0.99), never reset
  //   random_step as it3 (its step sizes come from IT³'s step), random directions
  //   eata       norm affine parameters, batch statistics, never reset (online, as published)
  //   deyo       norm affine parameters, batch statistics, never reset (online, as published)
  //   memo       all parameters, running statistics, reset per batch (episodic, as published)
  //   ttt        the encoder (body.*), running statistics, the rotation loss (it3/methods/ttt.h)
  //   ttt_pp     as ttt, plus the alignment of the encoder features to training statistics
//   masked_ttt as ttt, with the masked reconstruction loss of a masked head (it3/methods/ttt.h)
  static AdaptOptions for_method(Method m);
  // Throws idem::Error naming the bad knob (negative steps, lr, α outside [0, 1], ...).
  void validate() const;
  // One JSON object with every knob, for run directories and result tables.
  std::string to_json() const;
};

// "none", "bn", "tent", "actmad", "it3", "it3-online", "random-step", "eata", "deyo", "memo", "ttt",
// "ttt++", "masked-ttt"
const char* method_name(Method m);
Method parse_method(const std::string& name);
const std::vector<Method>& all_methods();
const char* distance_name(Distance d);
Distance parse_distance(const std::string& name);
const char* anchor_name(Anchor a);
Anchor parse_anchor(const std::string& name);
const char* bn_mode_name(BnMode b);
BnMode parse_bn_mode(const std::string& name);
Prediction parse_prediction(const std::string& name);  // "adapted" or "anchor"
const char* neutral_signal_name(NeutralSignal n);          // "fixed" or "random-onehot"
NeutralSignal parse_neutral_signal(const std::string& name);
// Whether the method runs the IT³ loss (it3, it3-online, random-step).
bool uses_it3_loss(Method m);
// Whether the method minimizes an entropy of class probabilities (tent, eata, deyo, memo): it
// needs a classification model, and `--method all` leaves it out of regression tasks.
bool uses_entropy_loss(Method m);
// Whether the method runs a training-time auxiliary head's loss (ttt, ttt++: rotation;
// masked-ttt: masked), and which head.
bool uses_aux_head(Method m);
AuxKind aux_head_needed(Method m);  // AuxKind::none for the other methods
// Whether the model has a normalization layer (BatchNorm, LayerNorm, GroupNorm): what bn and
// tent adapt. `--method all` leaves those two out for a model without one.
bool has_normalization(RecursiveModel& m);
const char* fused_mode_name(FusedMode f);  // "auto", "on", "off"
FusedMode parse_fused_mode(const std::string& name);

// The distance d(a, b), mean over elements, as a 0-dim tensor; a and b are predictions of the
// same shape (probabilities for js and js_authors, which sum over classes and average rows).
Tensor distance(const Tensor& a, const Tensor& b, Distance d);

// ActMAD's reference statistics: per-channel mean and variance of each tapped activation on
// training data. Channels are dim 1; statistics reduce over every other dim.
// They also carry EATA's anti-forgetting statistics (add_eata_fisher), which come from the
// same training batches: the diagonal Fisher F and the trained value θ0 of each parameter.
struct ActmadStats {
  std::map<std::string, Tensor> mean, var;  // (C) each
  std::map<std::string, Tensor> fisher, fisher_theta0;  // by parameter name, its shape each
  FeatureStats features;  // ttt++: the encoder features' mean and covariance (collect_feature_stats)
  bool empty() const { return mean.empty(); }
};
// Runs f(x, ∅) in evaluation mode over the batches and averages the per-batch statistics
// (weighted by batch size).
ActmadStats collect_actmad_stats(RecursiveModel& model, const std::vector<Input>& batches,
                                 const std::vector<std::string>& taps = {});

// EATA's diagonal Fisher on training batches (it3/methods/eata.cpp): per parameter, the mean
// over batches of the squared gradient of the cross-entropy against the model's own argmax
// (pseudo-labels, as published), with BatchNorm on batch statistics; batches of one are skipped.
// Fills into.fisher and into.fisher_theta0 (the trained values) for every parameter.
void add_eata_fisher(RecursiveModel& model, const std::vector<Input>& batches, ActmadStats& into);

namespace entropy {
struct EataState;
}

struct AdaptResult {
  Tensor prediction;  // (B, dim): logits for classification
  Cost cost;          // this batch only
  double loss_before = 0.0;  // adaptation loss at the first step (NaN when K = 0)
  double loss_after = 0.0;   // adaptation loss at the last step
};

class Adapter {
 public:
  // The trained model is cloned (never modified). actmad requires stats; eata requires
  // stats.fisher unless entropy.fisher_beta is 0.
  Adapter(const std::shared_ptr<RecursiveModel>& trained, AdaptOptions options,
          ActmadStats stats = {});
  ~Adapter();
  Adapter(const Adapter&) = delete;
  Adapter& operator=(const Adapter&) = delete;

  // Adapts on x per the policy and predicts. requires: x on the model's device; batch size
  // ≥ 2 when batch statistics are used (bn, tent, BnMode::batch) or actmad's statistics need a
  // batch.
  AdaptResult predict(const Input& x);
  // The adaptation of predict() without the measuring around it: no device synchronization,
  // no host read-back, so it can run inside a CUDA graph capture (core/kernels/cuda_graph.h)
  // and be replayed per batch. requires: options().check_finite == false (checked). Counts
  // into `cost` when given (forwards, backwards, steps, reset bytes), and keeps the loss of the
  // first and the last step (detached, on the device) where asked.
  Tensor adapt_and_predict(const Input& x, Cost* cost = nullptr, Tensor* first_loss = nullptr,
                           Tensor* last_loss = nullptr);
  // Restores θ ← Θ and zeroes the optimizer state (what per_batch does before every batch):
  // one fused copy (MultiTensorCopy: one kernel on a GPU) into the existing buffers. With
  // persistent_moments the optimizer state and step counts are kept.
  void reset();
  // Bytes one reset() writes (parameters, buffers, optimizer state).
  int64_t reset_bytes() const { return reset_copy_.bytes_copied() + reset_copy_.bytes_zeroed(); }

  const AdaptOptions& options() const { return opt_; }
  // Whether predict() needs at least two samples per batch (batch statistics).
  bool needs_batch_of_two() const;
  // Totals over every predict() since construction.
  const Cost& total() const { return total_; }
  RecursiveModel& model() { return *model_; }            // f_θ
  RecursiveModel& anchor();                               // F (f_θ itself when shared)
  const std::vector<std::string>& adapted_names() const { return adapted_names_; }
  const std::vector<Tensor>& adapted_params() const { return adapted_; }
  Optimizer* optimizer() { return optim_.get(); }
  // ∅ for the next pass of this batch: the model's fixed ∅, or a fresh random one-hot (B, C).
  Tensor neutral_signal(const Input& x);
  // Why the fused one-call path is not used ("" when it is, for batches it fits; see
  // it3/fused_adapt.h), and whether it runs for this input.
  const std::string& fused_reason() const { return fused_reason_; }
  bool uses_fused(const Input& x) const { return fused_ && fused_->batch_reason(x).empty(); }
  // The fused plan (null when not eligible).
  const FusedMlpAdapt* fused_plan() const { return fused_.get(); }
  // Why the IT³ loss does not run through the fused head ("" when it does, for batches it
  // takes; see it3/fused_head.h), and whether it does for this input.
  const std::string& fused_head_reason() const { return fused_head_reason_; }
  bool uses_fused_head(const Input& x) const { return head_ && head_->batch_reason(x).empty(); }

 private:
  struct LossPasses {
    Tensor loss;
    Tensor first, second;  // the passes it compared (it3 family): y0 = f_θ(x, ∅), y1 = F(x, s)
    // s = to_signal(y0), fed to F and compared with y1 (classification: softmax(y0)); one node,
    // so its softmax runs once each way. Undefined when the fused head computed the loss.
    Tensor signal;
  };
  LossPasses adaptation_loss(const Input& x, Cost& cost);
  // y0 and y1; the loss too when the fused head computed them (else undefined)
  LossPasses it3_passes(const Input& x, Cost& cost);
  void random_step_update(const std::vector<Tensor>& before, int k);
  Tensor run(const Input& x, Cost& cost, Tensor* first_loss, Tensor* last_loss);
  // The whole adaptation as one fused call; counts as the op-by-op path would.
  Tensor run_fused(const Input& x, Cost& cost);
  void apply_bn_mode(RecursiveModel& m, bool batch_stats);
  void check_input(const Input& x) const;
  void update_ema_anchor();
  void select_params();
  Tensor entropy_method_loss(const Input& x, Cost& cost);  // eata, deyo, memo

  AdaptOptions opt_;
  std::shared_ptr<RecursiveModel> model_;     // f_θ
  std::shared_ptr<RecursiveModel> anchor_;    // F (null when shared)
  std::shared_ptr<RecursiveModel> pristine_;  // Θ for resets (may alias anchor_)
  std::vector<std::string> adapted_names_;
  std::vector<Tensor> adapted_;
  std::unique_ptr<Optimizer> optim_;
  MultiTensorCopy reset_copy_;  // Θ → θ (parameters and buffers) + optimizer state ← 0
  ActmadStats stats_;
  std::map<std::string, Tensor> tapped_;  // activations of the current forward (actmad)
  Cost total_;
  int64_t steps_since_reset_ = 0;
  // IT³ with a frozen anchor that is also Θ, on a FeatureModel whose body is a pure function
  // (no normalization, or normalization on its running statistics): at the first step after a
  // reset θ = Θ bit for bit, so F's features on x are f's and the body runs once (it3_passes).
  bool share_first_features_ = false;
  bool theta_is_pristine_ = false;  // in run(), between its reset() and its first update
  int64_t batch_index_ = 0;   // batches run so far (seeds the per-batch draws)
  uint64_t draw_offset_ = 0;  // Philox offset of the next random ∅ within this batch
  std::unique_ptr<entropy::EataState> eata_;  // EATA's redundancy filter's moving average
  int64_t step_in_batch_ = 0;                 // seeds DeYO's shuffle and MEMO's augmentations
  std::unique_ptr<class TttLoss> ttt_;  // ttt, ttt++, masked-ttt (it3/methods/ttt.h)
  std::unique_ptr<FusedMlpAdapt> fused_;
  std::string fused_reason_;
  std::unique_ptr<FusedHead> head_;  // null when fused_head_reason_ is not empty
  std::string fused_head_reason_;
};

}  // namespace idem::it3
