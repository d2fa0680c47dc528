// Level L3: activation modules (stateless wrappers of the L2 functions), and an enum so
// builders can name them.
#pragma once
#include <string>

#include "layers/module.h"

namespace idem {

class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<ReLU>(); }
};

class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Module("LeakyReLU"), slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, slope_); }
  std::string extra_repr() const override;
  double negative_slope() const { return slope_; }

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<LeakyReLU>(slope_);
  }

 private:
  double slope_;
};

class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override { return sigmoid(x); }

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<Sigmoid>(); }
};

class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override { return tanh(x); }

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<Tanh>(); }
};

// The exact (erf) GELU, as torch.nn.GELU() by default.
class GELU : public Module {
 public:
  GELU() : Module("GELU") {}
  Tensor forward(const Tensor& x) override { return gelu(x); }

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<GELU>(); }
};

class Softmax : public Module {
 public:
  explicit Softmax(int64_t dim = -1) : Module("Softmax"), dim_(dim) {}
  Tensor forward(const Tensor& x) override { return softmax(x, dim_); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<Softmax>(dim_); }

 private:
  int64_t dim_;
};

// Names for builders (MLP, CNNs of the it3 module, command-line options).
enum class Activation : uint8_t { identity, relu, leaky_relu, sigmoid, tanh, gelu };
// "identity"/"none", "relu", "leaky_relu", "sigmoid", "tanh", "gelu"; throws on anything else.
Activation parse_activation(const std::string& name);
const char* activation_name(Activation a);
// A new module for `a` (Identity for Activation::identity). `slope` is LeakyReLU's.
std::shared_ptr<Module> make_activation(Activation a, double slope = 0.01);

}  // namespace idem
