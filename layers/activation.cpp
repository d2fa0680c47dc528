#include "layers/activation.h"

#include <cmath>
#include <sstream>

#include "layers/linear.h"

namespace idem {

namespace {
#define IDEM_ACTIVATION_NAME(name) #name,
constexpr const char* kNames[] = {IDEM_ACTIVATIONS(IDEM_ACTIVATION_NAME)};
#undef IDEM_ACTIVATION_NAME
#define IDEM_ACTIVATION_COUNT(name) +1
constexpr int kCount = 0 IDEM_ACTIVATIONS(IDEM_ACTIVATION_COUNT);
#undef IDEM_ACTIVATION_COUNT
static_assert(sizeof(kNames) / sizeof(kNames[0]) == kCount, "one name per Activation");
}  // namespace

std::string LeakyReLU::extra_repr() const {
  std::ostringstream os;
  os << "negative_slope=" << slope();
  return os.str();
}

Activation parse_activation(const std::string& name) {
  if (name == "none" || name == "linear") return Activation::identity;
  std::string known;
  for (int i = 0; i < kCount; ++i) {
    if (name == kNames[i]) return static_cast<Activation>(i);
    known += (i ? ", " : "") + std::string(kNames[i]);
  }
  fail("activation", "unknown activation \"", name, "\" (", known, ")");
}

const char* activation_name(Activation a) {
  const int i = static_cast<int>(a);
  return i < kCount ? kNames[i] : "?";
}

Tensor activate(const Tensor& x, Activation a, double slope) {
  switch (a) {
    case Activation::identity:
      return x;
    case Activation::relu:
      return relu(x);
    case Activation::leaky_relu:
      return leaky_relu(x, slope);
    case Activation::sigmoid:
      return sigmoid(x);
    case Activation::tanh:
      return tanh(x);
    case Activation::gelu:
      return gelu(x);
  }
  fail("activation", "unknown activation ", static_cast<int>(a));
}

std::optional<FusedAct> fused_act_code(Activation a, double slope) {
  switch (a) {
    case Activation::identity:
      return FusedAct::none;
    case Activation::relu:
      return FusedAct::relu;
    case Activation::leaky_relu:
      if (std::isfinite(slope) && slope >= 0.0) return FusedAct::leaky_relu;
      return std::nullopt;
    case Activation::sigmoid:
    case Activation::tanh:
    case Activation::gelu:
      return std::nullopt;
  }
  fail("activation", "unknown activation ", static_cast<int>(a));
}

std::shared_ptr<Module> make_activation(Activation a, double slope) {
  switch (a) {
    case Activation::identity:
      return std::make_shared<Identity>();
    case Activation::relu:
      return std::make_shared<ReLU>();
    case Activation::leaky_relu:
      return std::make_shared<LeakyReLU>(slope);
    case Activation::sigmoid:
      return std::make_shared<Sigmoid>();
    case Activation::tanh:
      return std::make_shared<Tanh>();
    case Activation::gelu:
      return std::make_shared<GELU>();
  }
  fail("activation", "unknown activation ", static_cast<int>(a));
}

}  // namespace idem
