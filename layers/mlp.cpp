#include "layers/mlp.h"

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
