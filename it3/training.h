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
#pragma once
#include <cstdint>
#include <string>

#include "it3/recursive_model.h"
#include "layers/optim.h"

namespace idem::it3 {

enum class TrainLoss : uint8_t { mse, l1, cross_entropy };
enum class SignalSource : uint8_t { target, self, self_detached };

struct TrainOptions {
  TrainLoss loss = TrainLoss::mse;  // cross_entropy for classification
  double p_feed = 1.0;              // probability per batch of the second (signal) pass
  SignalSource source = SignalSource::target;
  double signal_noise = 0.0;        // std of Gaussian noise added to the fed signal
  uint64_t seed = 0;                // draws of p_feed and the noise: (seed, step)

  // Regression: mse, target, p 1. Classification: cross-entropy, target, p 0.5.
  static TrainOptions for_task(TaskKind task);
  void validate(TaskKind task) const;
  std::string to_json() const;
};

const char* train_loss_name(TrainLoss l);
TrainLoss parse_train_loss(const std::string& name);
const char* signal_source_name(SignalSource s);
SignalSource parse_signal_source(const std::string& name);

// ℓ(prediction, y): y is (B) i64 labels for cross-entropy, (B, dim) values otherwise.
Tensor task_loss(const Tensor& prediction, const Tensor& y, TrainLoss loss);

struct TrainStep {
  Tensor loss;           // 0-dim, differentiable
  Tensor prediction;     // f(x, ∅) of this batch (for accuracy / error logging)
  bool fed = false;      // whether the second pass ran
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
