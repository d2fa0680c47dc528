// Level L3: normalization layers — BatchNorm1d/2d (running statistics), LayerNorm, GroupNorm.
#pragma once
#include <vector>

#include "autograd/nn_functions.h"
#include "layers/module.h"

namespace idem {

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;            // running = (1−m)·running + m·batch (PyTorch's convention)
  bool affine = true;               // learnable weight (ones) and bias (zeros)
  bool track_running_stats = true;  // buffers running_mean, running_var, num_batches_tracked
};

// Training mode normalizes with the batch statistics and updates the running ones in place
// (unbiased variance, as PyTorch) and counts num_batches_tracked (an i64 scalar buffer);
// evaluation mode uses the running statistics. Without running statistics both modes use the
// batch. Buffers: running_mean (C) zeros, running_var (C) ones, num_batches_tracked () 0.
class BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  int64_t num_features() const { return c_; }
  const BatchNormOptions& options() const { return opt_; }
  const Tensor& weight() const { return weight_; }  // undefined unless affine
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }  // undefined unless tracking
  const Tensor& running_var() const { return running_var_; }
  const Tensor& num_batches_tracked() const { return num_batches_; }
  // running_mean ← 0, running_var ← 1, num_batches_tracked ← 0.
  void reset_running_stats();
  // Run-time switch (TENT, IT³'s "batch statistics" knob): false makes every forward, in
  // training and evaluation mode alike, normalize with the batch statistics and leave the
  // running buffers and the counter untouched; the buffers stay registered (checkpoints and
  // copy_from are unchanged). true requires the module to have been built with running stats.
  void set_track_running_stats(bool on);
  bool tracks_running_stats() const { return track_; }

 protected:
  // dims: the input ranks this variant accepts (1d: 2 or 3; 2d: 4).
  BatchNorm(const char* type_name, std::vector<int64_t> dims, int64_t num_features,
            BatchNormOptions opt, Options options);
  std::vector<int64_t> dims_;
  int64_t c_;
  BatchNormOptions opt_;
  bool track_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_, one_;
};

// x (N, C) or (N, C, L).
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormOptions opt = {}, Options options = {});

 protected:
  std::shared_ptr<Module> clone_impl() const override;
};

// x (N, C, H, W).
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions opt = {}, Options options = {});

 protected:
  std::shared_ptr<Module> clone_impl() const override;
};

// Normalizes over the trailing dims `normalized_shape`; weight (ones) and bias (zeros) of that
// shape when elementwise_affine.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true,
                     Options options = {});
  LayerNorm(int64_t features, double eps = 1e-5, bool elementwise_affine = true,
            Options options = {})
      : LayerNorm(Shape{features}, eps, elementwise_affine, options) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  Shape shape_;
  double eps_;
  Tensor weight_, bias_;
};

// x (N, C, *): C in `num_groups` groups, each normalized over (C/groups, *); per-channel
// weight (ones) and bias (zeros) when affine.
class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true,
            Options options = {});
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  int64_t groups_, c_;
  double eps_;
  Tensor weight_, bias_;
};

}  // namespace idem
