#include "layers/dropout.h"

#include <sstream>

#include "autograd/nn_functions.h"
#include "layers/init.h"

namespace idem {

Dropout::Dropout(double p, std::optional<uint64_t> seed)
    : Module("Dropout"), p_(p), seed_(init::resolve_seed(seed)) {
  IDEM_CHECK(p >= 0.0 && p < 1.0, "Dropout", "probability must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  // One offset per draw: the Philox counter's element index runs inside the draw.
  return dropout(x, p_, true, seed_, offset_++);
}

std::string Dropout::extra_repr() const {
  std::ostringstream os;
  os << "p=" << p_;
  return os.str();
}

std::shared_ptr<Module> Dropout::clone_impl() const {
  auto d = std::make_shared<Dropout>(p_, seed_);
  d->offset_ = offset_;
  return d;
}

}  // namespace idem
