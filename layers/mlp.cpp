#include "layers/mlp.h"

#include <functional>

#include <typeinfo>

#include "autograd/fused_functions.h"
#include "layers/dropout.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace idem {

MLP::MLP(std::vector<int64_t> sizes, MlpOptions opt, Options options, std::optional<uint64_t> seed)
    : Module("MLP"), sizes_(std::move(sizes)), opt_(opt) {
  IDEM_CHECK(sizes_.size() >= 2, "MLP", "need at least input and output sizes, got ", sizes_.size(),
             " size(s)");
  for (int64_t s : sizes_) IDEM_CHECK(s > 0, "MLP", "sizes must be positive, got ", s);
  const uint64_t base = seed_ = init::resolve_seed(seed);
  layers_ = register_module("layers", std::make_shared<Sequential>());
  const size_t n = sizes_.size() - 1;
  for (size_t i = 0; i < n; ++i) {
    layers_->push_back(std::make_shared<Linear>(sizes_[i], sizes_[i + 1], opt.bias, options,
                                                init::derive_seed(base, i)));
    if (i + 1 == n) break;  // the last layer stays linear
    if (opt.norm == MlpNorm::batch)
      layers_->push_back(std::make_shared<BatchNorm1d>(sizes_[i + 1], BatchNormOptions{}, options));
    else if (opt.norm == MlpNorm::layer)
      layers_->push_back(std::make_shared<LayerNorm>(sizes_[i + 1], 1e-5, true, options));
    if (opt.activation != Activation::identity)
      layers_->push_back(make_activation(opt.activation, opt.leaky_slope));
    if (opt.dropout > 0)
      layers_->push_back(std::make_shared<Dropout>(opt.dropout, init::derive_seed(base, n + i)));
  }
}

Tensor MLP::forward(const Tensor& x) { return forward_fused(*layers_, x); }

Tensor forward_fused(const Sequential& seq, const Tensor& x,
                     const std::function<void(size_t, const Tensor&)>& after) {
  // The children in order; a Linear absorbs the ReLU/LeakyReLU right after it (the activation
  // module then does not run; it stays in the tree for repr and state_dict). Exact types only:
  // a subclass may have its own forward.
  const auto& kids = seq.children();
  Tensor h = x;
  for (size_t i = 0; i < kids.size(); ++i) {
    Module& m = *kids[i].second;
    if (typeid(m) != typeid(Linear)) {
      h = m.forward(h);
      if (after) after(i, h);
      continue;
    }
    Activation act = Activation::identity;
    double slope = 0.0;
    if (i + 1 < kids.size()) {
      Module& next = *kids[i + 1].second;
      if (typeid(next) == typeid(ReLU)) {
        act = Activation::relu;
      } else if (typeid(next) == typeid(LeakyReLU) &&
                 static_cast<LeakyReLU&>(next).negative_slope() >= 0.0) {
        act = Activation::leaky_relu;
        slope = static_cast<LeakyReLU&>(next).negative_slope();
      }
    }
    h = apply_linear_act(static_cast<Linear&>(m), h, act, slope);
    if (act != Activation::identity) ++i;  // the activation ran inside linear_act
    if (after) after(i, h);
  }
  return h;
}

Tensor apply_linear_act(const Linear& linear, const Tensor& x, Activation act, double slope) {
  IDEM_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == linear.in_features(), "Linear",
             "expected input (*, ", linear.in_features(), "), got ",
             x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  switch (act) {
    case Activation::identity:
      return linear_act(x, linear.weight(), linear.bias(), FusedAct::none);
    case Activation::relu:
      return linear_act(x, linear.weight(), linear.bias(), FusedAct::relu);
    case Activation::leaky_relu:
      if (slope >= 0.0)
        return linear_act(x, linear.weight(), linear.bias(), FusedAct::leaky_relu, slope);
      return leaky_relu(linear_act(x, linear.weight(), linear.bias(), FusedAct::none), slope);
    case Activation::sigmoid:
      return sigmoid(linear_act(x, linear.weight(), linear.bias(), FusedAct::none));
    case Activation::tanh:
      return tanh(linear_act(x, linear.weight(), linear.bias(), FusedAct::none));
    case Activation::gelu:
      return gelu(linear_act(x, linear.weight(), linear.bias(), FusedAct::none));
  }
  fail("apply_linear_act", "unknown activation ", static_cast<int>(act));
}

std::vector<std::shared_ptr<Linear>> MLP::linears() const {
  std::vector<std::shared_ptr<Linear>> out;
  for (const auto& [name, m] : layers_->children())
    if (auto l = std::dynamic_pointer_cast<Linear>(m)) out.push_back(l);
  return out;
}

std::shared_ptr<Module> MLP::clone_impl() const {
  // The same base seed gives the same Dropout seeds; offsets are copied so masks continue.
  auto copy = std::make_shared<MLP>(sizes_, opt_, Options{}, seed_);
  for (size_t i = 0; i < layers_->size(); ++i)
    if (auto d = std::dynamic_pointer_cast<Dropout>((*layers_)[i]))
      copy->layers_->at<Dropout>(i)->set_offset(d->offset());
  return copy;
}

}  // namespace idem
