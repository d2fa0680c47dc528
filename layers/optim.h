// Optimizers (SGD, Adam, AdamW) with PyTorch torch.optim semantics and defaults, and gradient
// clipping (clip_grad_norm_, clip_grad_value_).
//
// An optimizer takes a list of parameter tensors (leaves; their .grad() is read at step()). All
// parameters share one dtype and one device (CUDA: f32). At construction it allocates its state
// once (one flat buffer: momentum, or exp_avg followed by exp_avg_sq) and builds the table that
// the fused update kernel reads (uploaded once to the GPU). After that, step() on a GPU:
//   - issues one kernel launch per 256 parameter tensors (one launch for every model here),
//   - allocates nothing and never waits for the GPU (step counts live on the host; bias
//     corrections are kernel arguments),
// so a training or test-time-adaptation step can be captured in a CUDA graph.
//
// Step counts are per parameter, as in torch.optim: a parameter without a gradient at step()
// is skipped and its count does not advance. reset_state() zeroes every moment and step count
// in place (IT³ resets the optimizer for every test batch) without reallocating anything.
#pragma once
#include <cstdint>
#include <vector>

#include "core/kernels/optim.h"
#include "core/tensor.h"

namespace idem {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  // requires: each present gradient has its parameter's shape, dtype and device; the parameter
  // storage has not been replaced since construction (build the optimizer after moving a model).
  void step();
  // Drops every parameter's gradient (PyTorch's default set_to_none=True).
  void zero_grad();
  // Zeroes moments/momentum buffers and step counts by writing into the existing state
  // buffer: the next step() behaves exactly like the first step of a fresh optimizer.
  // reset_state() == zeroing state_buffer() + reset_step_counts().
  void reset_state();
  // Sets every step count to 0 (host counters only: no kernel, no GPU access). Pairs with
  // zeroing state_buffer() elsewhere — e.g. in the one launch of a MultiTensorCopy
  // (core/ops/multi_copy.h) that also resets the model — to make reset_state() without a
  // launch of its own.
  void reset_step_counts();

  double lr() const { return lr_; }
  // requires: lr finite and >= 0.
  void set_lr(double lr);

  const char* name() const { return optim_name(kind_); }
  OptimKind kind() const { return kind_; }
  const std::vector<Tensor>& params() const { return params_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  // Steps taken by parameter i since construction or the last reset_state().
  int64_t step_count(size_t i) const;
  // Kernel calls issued so far (update launches and state resets), for cost accounting.
  uint64_t kernel_calls() const { return kernel_calls_; }
  // The flat state buffer (undefined for SGD without momentum); its storage never changes.
  const Tensor& state_buffer() const { return state_; }

 protected:
  // `state_slots`: buffers per parameter (0: plain SGD, 1: SGD momentum, 2: Adam/AdamW).
  // `hyper` holds the hyperparameters; step() fills in the per-step fields.
  Optimizer(std::vector<Tensor> params, OptimKind kind, double lr, const OptimStepParams& hyper,
            int state_slots);
  // Slot `slot` of parameter i as a tensor of the parameter's shape (a view into state_).
  Tensor state_view(int slot, size_t i) const;
  OptimStepParams step_params(int64_t step) const;

  OptimKind kind_;
  double lr_;
  OptimStepParams hyper_;

 private:
  std::vector<Tensor> params_;
  Device device_;
  DType dtype_ = DType::f32;
  int state_slots_ = 0;
  int64_t total_numel_ = 0;
  std::vector<int64_t> offsets_;  // element offset of each parameter in a state slot
  Tensor state_;                  // state_slots_ * total_numel_ elements
  std::vector<OptimTensorDesc> table_;
  Tensor device_table_;  // the table as bytes on the GPU (CUDA only)
  std::vector<int64_t> step_counts_;
  std::vector<const void*> grads_, group_grads_;  // reused every step
  uint64_t kernel_calls_ = 0;
};

// torch.optim.SGD defaults.
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // requires momentum > 0 and dampening == 0
  bool maximize = false;
};

class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, const SGDOptions& o = {});
  // The momentum buffer of parameter i (requires momentum > 0).
  Tensor momentum_buffer(size_t i) const;
  const SGDOptions& options() const { return opt_; }

 private:
  SGDOptions opt_;
};

// torch.optim.Adam defaults (amsgrad is not implemented).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  bool maximize = false;
};

// torch.optim.AdamW defaults: decoupled weight decay 1e-2.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // p *= 1 - lr·wd before the Adam update
  bool maximize = false;
};

class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, const AdamOptions& o = {});
  Tensor exp_avg(size_t i) const { return state_view(0, i); }
  Tensor exp_avg_sq(size_t i) const { return state_view(1, i); }

 protected:
  Adam(std::vector<Tensor> params, OptimKind kind, const AdamOptions& o);
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, const AdamWOptions& o = {});
};

// ---- gradient clipping (torch.nn.utils) ----

// Scales the gradients of `params` (those that have one) so that their joint norm is at most
// max_norm: g *= min(1, max_norm / (total + 1e-6)). norm_type is p > 0 or INFINITY.
// Returns the total norm before clipping as a 0-dim tensor on the gradients' device (reading
// it with .item() synchronizes; nothing else does). With error_if_nonfinite, a NaN/Inf total
// norm throws (this one check synchronizes). Gradients are replaced by scaled tensors.
// requires: all gradients on one device with one dtype.
Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
// Clamps every gradient element into [-clip_value, clip_value]. requires: clip_value >= 0.
void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);

}  // namespace idem
