#include "layers/mlp.h"

#include <functional>

#include "autograd/fused_functions.h"
#include "layers/dropout.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/pool.h"

namespace idem {

// ---- FusedSequential ----

void FusedSequential::push_step(Step step, std::shared_ptr<Module> first) {
  steps_.resize(size() + 1);
  const Activation act = step.act;
  const double slope = step.slope;
  steps_.back() = std::move(step);
  push_back(std::move(first));
  if (act != Activation::identity) push_back(make_activation(act, slope));
}

FusedSequential& FusedSequential::push_linear(std::shared_ptr<Linear> linear, Activation act,
                                              double slope) {
  IDEM_CHECK(linear != nullptr, "FusedSequential", "push_linear got a null Linear");
  push_step({linear, nullptr, act, slope}, linear);
  return *this;
}

FusedSequential& FusedSequential::push_pool(std::shared_ptr<MaxPool2d> pool, Activation act,
                                            double slope) {
  IDEM_CHECK(pool != nullptr, "FusedSequential", "push_pool got a null MaxPool2d");
  push_step({nullptr, pool, act, slope}, pool);
  return *this;
}

Tensor FusedSequential::forward_with(const Tensor& x,
                                     const std::function<void(size_t, const Tensor&)>& after) {
  const auto& kids = children();
  Tensor h = x;
  for (size_t i = 0; i < kids.size(); ++i) {
    const Step* step =
        i < steps_.size() && (steps_[i].linear || steps_[i].pool) ? &steps_[i] : nullptr;
    if (!step) {
      h = kids[i].second->forward(h);
    } else {
      h = step->linear ? apply_linear_act(*step->linear, h, step->act, step->slope)
                       : apply_max_pool_act(*step->pool, h, step->act, step->slope);
      if (step->act != Activation::identity) ++i;  // the activation child ran inside
    }
    if (after) after(i, h);
  }
  return h;
}

std::vector<FusedSequential::LinearStep> FusedSequential::linear_steps() const {
  const auto& kids = children();
  std::vector<LinearStep> chain;
  for (size_t i = 0; i < kids.size(); ++i) {
    if (i >= steps_.size() || !steps_[i].linear) return {};
    chain.push_back({steps_[i].linear, steps_[i].act, steps_[i].slope});
    if (steps_[i].act != Activation::identity) ++i;  // its activation child
  }
  return chain;
}

std::shared_ptr<Module> FusedSequential::clone_impl() const {
  auto s = std::make_shared<FusedSequential>();
  s->steps_.resize(steps_.size());
  const auto& kids = children();
  for (size_t i = 0; i < kids.size(); ++i) {
    std::shared_ptr<Module> copy = kids[i].second->clone();
    if (i < steps_.size() && steps_[i].linear) {
      auto linear = std::dynamic_pointer_cast<Linear>(copy);
      IDEM_CHECK(linear != nullptr, "FusedSequential", "clone of child ", i, " (",
                 kids[i].second->type_name(), ") is not a Linear");
      s->steps_[i] = {linear, nullptr, steps_[i].act, steps_[i].slope};
    } else if (i < steps_.size() && steps_[i].pool) {
      auto pool = std::dynamic_pointer_cast<MaxPool2d>(copy);
      IDEM_CHECK(pool != nullptr, "FusedSequential", "clone of child ", i, " (",
                 kids[i].second->type_name(), ") is not a MaxPool2d");
      s->steps_[i] = {nullptr, pool, steps_[i].act, steps_[i].slope};
    }
    s->push_back(kids[i].first, std::move(copy));
  }
  return s;
}

Tensor apply_linear_act(const Linear& linear, const Tensor& x, Activation act, double slope) {
  IDEM_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == linear.in_features(), "Linear",
             "expected input (*, ", linear.in_features(), "), got ",
             x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  if (const std::optional<FusedAct> code = fused_act_code(act, slope))
    return linear_act(x, linear.weight(), linear.bias(), *code, slope);
  return activate(linear_act(x, linear.weight(), linear.bias(), FusedAct::none), act, slope);
}

Tensor apply_max_pool_act(const MaxPool2d& pool, const Tensor& x, Activation act, double slope) {
  if (act == Activation::identity)
    return max_pool2d(x, pool.kernel_size(), pool.stride(), pool.padding());
  if (const std::optional<FusedAct> code = fused_act_code(act, slope))
    return max_pool2d_act(x, pool.kernel_size(), pool.stride(), pool.padding(), *code, slope);
  return activate(max_pool2d(x, pool.kernel_size(), pool.stride(), pool.padding()), act, slope);
}

// ---- MLP ----

MLP::MLP(std::vector<int64_t> sizes, MlpOptions opt, Options options, std::optional<uint64_t> seed)
    : Module("MLP"), sizes_(std::move(sizes)), opt_(opt) {
  IDEM_CHECK(sizes_.size() >= 2, "MLP", "need at least input and output sizes, got ", sizes_.size(),
             " size(s)");
  for (int64_t s : sizes_) IDEM_CHECK(s > 0, "MLP", "sizes must be positive, got ", s);
  const uint64_t base = seed_ = init::resolve_seed(seed);
  layers_ = register_module("layers", std::make_shared<FusedSequential>());
  // A Linear and the activation module that follows it (identity: none follows). With
  // opt.fuse they run as one linear_act; the children are the same either way.
  auto push_linear = [&](std::shared_ptr<Linear> linear, Activation act) {
    if (opt.fuse) {
      layers_->push_linear(std::move(linear), act, opt.leaky_slope);
      return;
    }
    layers_->push_back(std::move(linear));
    if (act != Activation::identity) layers_->push_back(make_activation(act, opt.leaky_slope));
  };
  const size_t n = sizes_.size() - 1;
  for (size_t i = 0; i < n; ++i) {
    auto linear = std::make_shared<Linear>(sizes_[i], sizes_[i + 1], opt.bias, options,
                                           init::derive_seed(base, i));
    if (i + 1 == n) {  // the last layer stays linear
      push_linear(std::move(linear), Activation::identity);
      break;
    }
    if (opt.norm == MlpNorm::none) {
      push_linear(std::move(linear), opt.activation);
    } else {
      push_linear(std::move(linear), Activation::identity);
      if (opt.norm == MlpNorm::batch)
        layers_->push_back(
            std::make_shared<BatchNorm1d>(sizes_[i + 1], BatchNormOptions{}, options));
      else
        layers_->push_back(std::make_shared<LayerNorm>(sizes_[i + 1], 1e-5, true, options));
      if (opt.activation != Activation::identity)
        layers_->push_back(make_activation(opt.activation, opt.leaky_slope));
    }
    if (opt.dropout > 0)
      layers_->push_back(std::make_shared<Dropout>(opt.dropout, init::derive_seed(base, n + i)));
  }
}

Tensor MLP::forward(const Tensor& x) {
  return layers_->forward(x);
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
