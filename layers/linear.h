// Level L3: Linear (y = x·Wᵀ + b) and Identity.
#pragma once
#include <optional>

#include "layers/module.h"

namespace idem {

// weight (out_features, in_features) and bias (out_features), as PyTorch, initialized as
// PyTorch does (kaiming_uniform(a=√5): U(−1/√in, 1/√in), bias the same bound).
// forward: x (*, in_features) -> (*, out_features); leading dims are flattened into rows.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Options options = {},
         std::optional<uint64_t> seed = std::nullopt);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  int64_t in_, out_;
  Tensor weight_, bias_;
};

// Returns its input unchanged (a placeholder, e.g. "no normalization" in a builder).
class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<Identity>(); }
};

}  // namespace idem
