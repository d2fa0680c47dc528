// Level L3: the activations, in one place: their names (for builders and the command line),
// applying one as a function, its module, and the fused linear_act epilogue that computes it.
// Then the activation modules themselves.
#pragma once
#include <optional>
#include <string>

#include "core/kernels/fused.h"  // FusedAct
#include "layers/module.h"

namespace idem {

// Names for builders (MLP, CNNs of the it3 module, command-line options), one row each: the
// list generates the enum and activation_name. Each switch over Activation in
// layers/activation.cpp has no default, so -Wswitch names the places a new row needs.
#define IDEM_ACTIVATIONS(X) X(identity) X(relu) X(leaky_relu) X(sigmoid) X(tanh) X(gelu)

#define IDEM_ACTIVATION_ENUM(name) name,
enum class Activation : uint8_t { IDEM_ACTIVATIONS(IDEM_ACTIVATION_ENUM) };
#undef IDEM_ACTIVATION_ENUM

// A row's name, or "identity"/"none"/"linear" for identity; throws on anything else.
Activation parse_activation(const std::string& name);
const char* activation_name(Activation a);
// a(x) through the L2 functions (relu, leaky_relu, ...); `slope` is leaky_relu's negative
// slope, ignored by the others. What every activation module's forward runs.
Tensor activate(const Tensor& x, Activation a, double slope = 0.01);
// The epilogue code of the fused linear_act / sage_linear ops (core/kernels/fused.h) that
// computes `a`: none for identity, relu, and leaky_relu when slope is finite and >= 0 (the
// fused backward reads act' from the output y, so a negative slope cannot fuse). nullopt for
// the others, which run as their own op after linear_act(none).
std::optional<FusedAct> fused_act_code(Activation a, double slope = 0.01);
// A new module for `a` (Identity for Activation::identity). `slope` is LeakyReLU's.
std::shared_ptr<Module> make_activation(Activation a, double slope = 0.01);

// The base of the modules below: forward(x) = activate(x, activation(), slope()). The it3 taps
// (it3/recursive_model.h) report the outputs of these modules.
class ActivationModule : public Module {
 public:
  Tensor forward(const Tensor& x) override { return activate(x, act_, slope_); }
  Activation activation() const { return act_; }
  double slope() const { return slope_; }

 protected:
  ActivationModule(std::string type_name, Activation act, double slope = 0.0)
      : Module(std::move(type_name)), act_(act), slope_(slope) {}

 private:
  Activation act_;
  double slope_;
};

class ReLU : public ActivationModule {
 public:
  ReLU() : ActivationModule("ReLU", Activation::relu) {}

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<ReLU>(); }
};

class LeakyReLU : public ActivationModule {
 public:
  explicit LeakyReLU(double negative_slope = 0.01)
      : ActivationModule("LeakyReLU", Activation::leaky_relu, negative_slope) {}
  std::string extra_repr() const override;
  double negative_slope() const { return slope(); }

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<LeakyReLU>(slope());
  }
};

class Sigmoid : public ActivationModule {
 public:
  Sigmoid() : ActivationModule("Sigmoid", Activation::sigmoid) {}

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<Sigmoid>(); }
};

class Tanh : public ActivationModule {
 public:
  Tanh() : ActivationModule("Tanh", Activation::tanh) {}

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<Tanh>(); }
};

// The exact (erf) GELU, as torch.nn.GELU() by default.
class GELU : public ActivationModule {
 public:
  GELU() : ActivationModule("GELU", Activation::gelu) {}

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<GELU>(); }
};

// Not an Activation: it normalizes along a dim.
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

}  // namespace idem
