// Level L3: Conv2d and ConvTranspose2d (NCHW), PyTorch's layout, options and initialization.
#pragma once
#include <optional>

#include "autograd/nn_functions.h"
#include "layers/module.h"

namespace idem {

// A (height, width) pair that converts from one integer: Conv2d(1, 8, 3) or Conv2d(1, 8, {3, 5}).
struct Hw {
  int64_t h = 0, w = 0;
  Hw(int64_t v) : h(v), w(v) {}  // NOLINT: implicit on purpose
  Hw(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  std::string str() const;  // "(3, 5)", as PyTorch prints size tuples
};

struct Conv2dOptions {
  Hw stride = 1;
  Hw padding = 0;
  Hw dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// weight (out_channels, in_channels/groups, kh, kw), bias (out_channels); PyTorch's default
// init: kaiming_uniform(a=√5) → U(−1/√fan_in, 1/√fan_in), fan_in = in/groups·kh·kw.
// forward: (N, in_channels, H, W) -> (N, out_channels, H', W').
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Hw kernel_size, Conv2dOptions opt = {},
         Options options = {}, std::optional<uint64_t> seed = std::nullopt);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  Conv2dParams params() const;

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  int64_t in_, out_;
  Hw kernel_;
  Conv2dOptions opt_;
  Tensor weight_, bias_;
};

struct ConvTranspose2dOptions {
  Hw stride = 1;
  Hw padding = 0;
  Hw output_padding = 0;
  Hw dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// weight (in_channels, out_channels/groups, kh, kw) as PyTorch; PyTorch's init computes fan_in
// from weight dim 1: fan_in = out/groups·kh·kw.
class ConvTranspose2d : public Module {
 public:
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, Hw kernel_size,
                  ConvTranspose2dOptions opt = {}, Options options = {},
                  std::optional<uint64_t> seed = std::nullopt);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  ConvTranspose2dParams params() const;

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  int64_t in_, out_;
  Hw kernel_;
  ConvTranspose2dOptions opt_;
  Tensor weight_, bias_;
};

}  // namespace idem
