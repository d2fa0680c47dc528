// Level L3: the MLP builder — Linear layers of the given sizes with an activation (and
// optionally a normalization and dropout) between them; the last layer is plain linear — and
// FusedSequential, the container it builds, which runs a Linear and its activation as one op.
//
//   MLP({14, 30, 20, 10, 1})             // the IT³ tabular reference network, ReLU
//   MLP({3, 256, 256, 256, 1}, {Activation::gelu, MlpNorm::layer, 0.1})
//
// Each hidden block is Linear → norm → activation → dropout (PyG's MLP order). Children live in
// a Sequential named "layers", so parameters are "layers.0.weight", "layers.0.bias", ... as a
// PyTorch nn.Sequential stored under self.layers. With MlpOptions::fuse (the default) that
// Sequential is a FusedSequential: each Linear runs as one linear_act with the activation
// right after it. (A FusedSequential also fuses MaxPool2d + activation, for the it3 CNNs.)
#pragma once
#include <functional>
#include <optional>
#include <vector>

#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/linear.h"
#include "layers/pool.h"

namespace idem {

// y = act(linear(x)) with the bias and activation fused into the layer's kernel where the
// activation has a fused code (fused_act_code, layers/activation.h: identity, relu, leaky_relu
// with slope >= 0; autograd/fused_functions.h); other activations run as their own op after
// the fused bias. x (*, in_features) -> (*, out_features).
Tensor apply_linear_act(const Linear& linear, const Tensor& x, Activation act, double slope = 0.01);

// y = act(pool(x)) with the activation fused into the max-pool kernel (max_pool2d_act,
// autograd/nn_functions.h) where it has a fused code (as apply_linear_act); other activations
// run as their own op after the pool, and identity is the pool alone.
Tensor apply_max_pool_act(const MaxPool2d& pool, const Tensor& x, Activation act,
                          double slope = 0.01);

// A Sequential in which declared Linear layers run as fused linear_acts (apply_linear_act), and
// declared MaxPool2d layers as fused max_pool2d_acts (apply_max_pool_act), each together with the
// activation pushed right after it. The fusion is declared where the network is built
// (push_linear, push_pool), not found by looking at the children: a module added with
// push_back always runs its own forward. The activation stays a child after its Linear or
// MaxPool2d, so names ("0.weight", "2.weight", ...), repr, state_dict and the it3 taps are those
// of the plain Sequential; its own forward is just not called. The forward gives the bits of
// the module-by-module run (forward_unfused); the backward's gradients agree to rounding (a
// fused pool + activation's to the bit).
class FusedSequential : public Sequential {
 public:
  FusedSequential() = default;
  // Appends `linear` and, unless act is identity, make_activation(act, slope) right after it.
  FusedSequential& push_linear(std::shared_ptr<Linear> linear,
                               Activation act = Activation::identity, double slope = 0.01);
  // Appends `pool` and, unless act is identity, make_activation(act, slope) right after it.
  FusedSequential& push_pool(std::shared_ptr<MaxPool2d> pool, Activation act = Activation::identity,
                             double slope = 0.01);
  Tensor forward(const Tensor& x) override { return forward_with(x, nullptr); }
  // forward(x), calling after(i, h) (when set) with the output h of child i; for a Linear or
  // MaxPool2d with its activation, once, with the activation's index.
  Tensor forward_with(const Tensor& x, const std::function<void(size_t, const Tensor&)>& after);
  // Every child's own forward, one by one.
  Tensor forward_unfused(const Tensor& x) { return Sequential::forward(x); }

  // The container as a chain of push_linear steps, in order (each Linear with the activation
  // after it; identity when none), or empty when any child is not part of one (a pool, a child
  // appended by push_back, an empty container). For ops that fuse a whole chain
  // (it3/fused_head.h).
  struct LinearStep {
    std::shared_ptr<Linear> linear;
    Activation act = Activation::identity;
    double slope = 0.01;
  };
  std::vector<LinearStep> linear_steps() const;

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  // A declared fusion at its first child's index: linear or pool set (not both); neither
  // set: the child runs its own forward.
  struct Step {
    std::shared_ptr<Linear> linear;
    std::shared_ptr<MaxPool2d> pool;
    Activation act = Activation::identity;
    double slope = 0.01;
  };
  // Appends the first child of `step` and its activation (unless identity).
  void push_step(Step step, std::shared_ptr<Module> first);
  std::vector<Step> steps_;  // by child index; children past its end run their own forward
};

enum class MlpNorm : uint8_t { none, batch, layer };

struct MlpOptions {
  Activation activation = Activation::relu;
  MlpNorm norm = MlpNorm::none;
  double dropout = 0.0;  // 0: no Dropout modules at all
  bool bias = true;
  double leaky_slope = 0.01;
  // Build the Linear layers with FusedSequential::push_linear: each Linear, with the activation
  // right after it when no norm sits between them, runs as one fused linear_act. Small layers
  // (the IT³ networks) are launch-bound on a GPU, and this is one launch each way instead of
  // two or three. The same forward bits and the same modules and names; false builds a plain
  // module-by-module run (the reference the fused one is tested against).
  bool fuse = true;
};

class MLP : public Module {
 public:
  // requires: sizes.size() >= 2, all positive. Layer i is seeded with derive_seed(seed, i).
  explicit MLP(std::vector<int64_t> sizes, MlpOptions opt = {}, Options options = {},
               std::optional<uint64_t> seed = std::nullopt);
  // layers()->forward(x).
  Tensor forward(const Tensor& x) override;

  const std::vector<int64_t>& sizes() const { return sizes_; }
  const MlpOptions& mlp_options() const { return opt_; }
  // Without mlp_options().fuse, a FusedSequential with no fused step (a plain Sequential).
  const std::shared_ptr<FusedSequential>& layers() const { return layers_; }
  // The Linear modules in order (sizes().size() − 1 of them).
  std::vector<std::shared_ptr<Linear>> linears() const;

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::vector<int64_t> sizes_;
  MlpOptions opt_;
  uint64_t seed_ = 0;
  std::shared_ptr<FusedSequential> layers_;
};

}  // namespace idem
