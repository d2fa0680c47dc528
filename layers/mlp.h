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
#include <optional>
#include <vector>

#include "layers/activation.h"
#include "layers/linear.h"
#include "layers/misc.h"

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
  Tensor forward(const Tensor& x) override { return layers_->forward(x); }

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

}  // namespace idem
