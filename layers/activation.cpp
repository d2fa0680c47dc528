#include "layers/activation.h"

#include <sstream>

#include "layers/linear.h"

namespace idem {

std::string LeakyReLU::extra_repr() const {
  std::ostringstream os;
  os << "negative_slope=" << slope_;
  return os.str();
}

Activation parse_activation(const std::string& name) {
  if (name == "identity" || name == "none" || name == "linear") return Activation::identity;
  if (name == "relu") return Activation::relu;
  if (name == "leaky_relu") return Activation::leaky_relu;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "gelu") return Activation::gelu;
  fail("activation", "unknown activation \"", name,
       "\" (identity, relu, leaky_relu, sigmoid, tanh, gelu)");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::identity:
      return "identity";
    case Activation::relu:
      return "relu";
    case Activation::leaky_relu:
      return "leaky_relu";
    case Activation::sigmoid:
      return "sigmoid";
    case Activation::tanh:
      return "tanh";
    case Activation::gelu:
      return "gelu";
  }
  return "?";
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
  fail("activation", "unknown activation");
}

}  // namespace idem
