// Level L3: the MLP builder — Linear layers of the given sizes with an activation (and
// optionally a normalization and dropout) between them; the last layer is plain linear.
//
//   MLP({14, 30, 20, 10, 1})             // the IT³ tabular reference network, ReLU
//   MLP({3, 256, 256, 256, 1}, {Activation::gelu, MlpNorm::layer, 0.1})
//
// Each hidden block is Linear → norm → activation → dropout (PyG's MLP order). Children live in
// a Sequential named "layers", so parameters are "layers.0.weight", "layers.0.bias", ... as a
// PyTorch nn.Sequential stored under self.layers.
#pragma once
#include <functional>
#include <optional>
#include <vector>

#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/linear.h"

namespace idem {

enum class MlpNorm : uint8_t { none, batch, layer };

struct MlpOptions {
  Activation activation = Activation::relu;
  MlpNorm norm = MlpNorm::none;
  double dropout = 0.0;  // 0: no Dropout modules at all
  bool bias = true;
  double leaky_slope = 0.01;
};

class MLP : public Module {
 public:
  // requires: sizes.size() >= 2, all positive. Layer i is seeded with derive_seed(seed, i).
  explicit MLP(std::vector<int64_t> sizes, MlpOptions opt = {}, Options options = {},
               std::optional<uint64_t> seed = std::nullopt);
  // layers()->forward(x), except that each Linear directly followed by ReLU or LeakyReLU
  // (slope >= 0), and each other Linear alone, runs as one fused linear_act (one launch
  // forward, one backward for small layers on a GPU). Same outputs as the module-by-module
  // run to the last bit in the forward; modules, names and state_dict are unchanged.
  Tensor forward(const Tensor& x) override;

  const std::vector<int64_t>& sizes() const { return sizes_; }
  const MlpOptions& mlp_options() const { return opt_; }
  const std::shared_ptr<Sequential>& layers() const { return layers_; }
  // The Linear modules in order (sizes().size() − 1 of them).
  std::vector<std::shared_ptr<Linear>> linears() const;

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::vector<int64_t> sizes_;
  MlpOptions opt_;
  uint64_t seed_ = 0;
  std::shared_ptr<Sequential> layers_;
};

// y = act(linear(x)) with the bias and activation fused into the layer's kernel where the
// activation allows (identity, relu, leaky_relu with slope >= 0: autograd/fused_functions.h);
// other activations run as their own op after the fused bias. For Sequential users who pair a
// Linear with the activation that follows it. x (*, in_features) -> (*, out_features).
Tensor apply_linear_act(const Linear& linear, const Tensor& x, Activation act,
                        double slope = 0.01);

// Runs a Sequential's children in order, each Linear fused with the ReLU/LeakyReLU (slope >= 0)
// right after it (apply_linear_act); MLP::forward and the it3 models use it. `after(i, h)`, when
// set, sees the output of child i (for a fused pair: the activation's index and output).
Tensor forward_fused(const Sequential& seq, const Tensor& x,
                     const std::function<void(size_t, const Tensor&)>& after = nullptr);

}  // namespace idem
