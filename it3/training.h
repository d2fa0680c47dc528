// Level L4: IT³ training — the recursive-input objective (docs/it3.md).
//
//   L = ℓ(f(x, ∅), y) + ℓ(f(x, s), y)
//
// ℓ is MSE or L1 for regression and cross-entropy for classification. The second pass's signal
// s is chosen per batch: with probability p_feed it is fed (the target y as one-hot/values, or
// the model's own first prediction — "self" — with or without a stop-gradient, plus optional
// Gaussian noise), otherwise the batch trains the first term only. Why the options: a network
// can satisfy f(x, y) = y by copying its signal input, and then every prediction is a fixed
// point and test-time adaptation has nothing to pull on; feeding y only sometimes, or feeding the
// model's own (wrong) prediction, teaches it to use the signal to correct itself instead.
//
// The first pass's signal is ∅ by default. The authors' notebooks (docs/it3.md, "Recipes") feed
// it something else instead (FirstSignal):
//   target_or_wrong    per batch, y (one-hot) with probability p_first_target, otherwise a
//                      random *wrong* label per sample (one-hot): ∅ is then never trained;
//   target_or_neutral  per batch, y with probability p_first_target, otherwise ∅.
//   L = ℓ(f(x, s0), y) + ℓ(f(x, s), y)
#pragma once
#include <cstdint>
#include <string>

#include "it3/recursive_model.h"
#include "layers/optim.h"

namespace idem::it3 {

enum class TrainLoss : uint8_t { mse, l1, cross_entropy };
enum class SignalSource : uint8_t { target, self, self_detached };
enum class FirstSignal : uint8_t { neutral, target_or_wrong, target_or_neutral };

struct TrainOptions {
  TrainLoss loss = TrainLoss::mse;  // cross_entropy for classification
  double p_feed = 1.0;              // probability per batch of the second (signal) pass
  SignalSource source = SignalSource::target;
  double signal_noise = 0.0;        // std of Gaussian noise added to the fed signal
  uint64_t seed = 0;                // draws of p_feed and the noise: (seed, step)
  FirstSignal first = FirstSignal::neutral;  // what the first pass gets (see above)
  double p_first_target = 0.75;     // target_or_*: probability per batch that s0 = y
  std::string recipe;               // the preset these options came from ("" = none; it3/recipe.h)

  // Whether some first pass sees ∅ (false: the uniform ∅ is never trained).
  bool trains_neutral() const { return first != FirstSignal::target_or_wrong; }

  // Regression: mse, target, p 1. Classification: cross-entropy, target, p 0.5.
  static TrainOptions for_task(TaskKind task);
  void validate(TaskKind task) const;
  std::string to_json() const;
};

const char* train_loss_name(TrainLoss l);
TrainLoss parse_train_loss(const std::string& name);
const char* signal_source_name(SignalSource s);
SignalSource parse_signal_source(const std::string& name);
const char* first_signal_name(FirstSignal f);  // "neutral", "target-or-wrong", "target-or-neutral"
FirstSignal parse_first_signal(const std::string& name);

// ℓ(prediction, y): y is (B) i64 labels for cross-entropy, (B, dim) values otherwise.
Tensor task_loss(const Tensor& prediction, const Tensor& y, TrainLoss loss);

struct TrainStep {
  enum class First : uint8_t { neutral, target, wrong };
  Tensor loss;           // 0-dim, differentiable
  Tensor prediction;     // the first pass f(x, s0) of this batch (for accuracy / error logging)
  bool fed = false;      // whether the second pass ran
  First first = First::neutral;  // which s0 the first pass got
  Tensor first_signal;   // s0 (B, dim)
};
// The objective on one batch (forward only; call loss.backward()). `step` seeds the draws.
TrainStep it3_objective(RecursiveModel& model, const Input& x, const Tensor& y,
                        const TrainOptions& opt, int64_t step);

// One optimizer step on the objective: zero_grad, forward, backward, step. Refuses to update
// on a non-finite loss (throws idem::Error with the step number; the weights are untouched).
// Returns the loss value (this reads it back: one device sync).
double train_step(RecursiveModel& model, Optimizer& optim, const Input& x, const Tensor& y,
                  const TrainOptions& opt, int64_t step);

}  // namespace idem::it3
