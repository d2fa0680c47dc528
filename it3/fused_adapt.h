// Level L4: the planner of the fused IT³ adaptation — the whole offline adaptation of a small
// concat-injection MLP (reset, K steps, prediction) as ONE kernel call (one launch on a GPU).
// Contract and algorithm: core/kernels/fused_mlp_adapt.h; docs/it3.md and docs/performance.md.
//
// The Adapter builds a FusedMlpAdapt when fused_ineligible_reason() is empty and runs it
// instead of its op-by-op path for every batch that fits (batch_reason() empty). The kernel
// works in place on the Adapter's own tensors — θ (the working model's parameters), Θ (the
// frozen anchor, which IS the pristine copy) and the optimizer's state — so after a fused call
// the Adapter is in the state the unfused path leaves it in (up to rounding). Scratch (layer
// activations, gradients, losses) is allocated once and grows only for a larger batch: no
// allocation per batch except the (B, S) prediction, a fresh tensor as every op's output.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/kernels/fused_mlp_adapt.h"
#include "it3/recursive_model.h"
#include "layers/optim.h"

namespace idem::it3 {

struct AdaptOptions;

// Why the adaptation of `model` with `options` cannot run fused ("" when it can, batch aside):
// it needs IT³ offline (frozen anchor, reset per batch, adapted prediction, all parameters), a
// regression ConcatModel over an MLP with bias, ReLU or LeakyReLU (slope >= 0), no norm, at
// most kFusedMlpMaxLayers layers of width <= kFusedMlpMaxWidth, f32 on the CPU or a GPU, the
// l1 or mse distance, Adam or SGD, and options.fused not off (automatic: on a GPU only).
std::string fused_ineligible_reason(const RecursiveModel& model, const AdaptOptions& options);

class FusedMlpAdapt {
 public:
  // model: f_θ; anchor: F = Θ (frozen); optim: the optimizer over every parameter of model in
  // named_parameters() order (null when steps = 0). requires: fused_ineligible_reason() empty.
  FusedMlpAdapt(RecursiveModel& model, RecursiveModel& anchor, Optimizer* optim,
                const AdaptOptions& options);

  // "" when the batch fits the kernel: x (B, d) f32 on the model's device, 1 <= B <= 256; with
  // FusedMode::automatic also one block on a GPU (the only size at which the kernels beat a
  // CUDA graph when measured): the row kernel (every width under 64, B <= kFusedMlpRowMaxBatch)
  // or a largest phase of at most kFusedMlpSingleBlockMacs multiply-adds.
  std::string batch_reason(const Input& x) const;
  // One whole adaptation and the prediction f_θ(x, ∅), (B, S). requires: batch_reason(x) empty.
  Tensor run(const Input& x);
  // The adaptation loss of each step of the last run() (K floats on the model's device).
  const Tensor& losses() const { return losses_; }
  // Blocks of the last GPU launch (1: a single block; 0 on the CPU), and its kernel (none on
  // the CPU).
  int last_grid() const { return last_.blocks; }
  FusedMlpKernel last_kernel() const { return last_.kernel; }
  int steps() const { return params_.steps; }
  // Allocates the scratch for batches of up to `batch` rows (run() does it too). The Adapter
  // calls it before its cost meter starts: the allocation happens once per batch size, so it
  // is setup, not part of a batch's adaptation.
  void ensure_scratch(int64_t batch);

 private:

  Device device_;
  int d_ = 0;  // input features (without the signal)
  FusedMlpAdaptParams params_;
  Tensor grads_;    // every parameter's gradient, one flat buffer
  Tensor losses_;   // (max(K, 1))
  Tensor scratch_;  // activations and gradient buffers for scratch_batch_ rows
  int64_t scratch_batch_ = 0;
  FusedMlpLaunch last_;
  bool automatic_ = false;  // FusedMode::automatic: only batches that fit one block
};

}  // namespace idem::it3
