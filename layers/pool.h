// Level L3: pooling modules (NCHW): MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "autograd/nn_functions.h"
#include "layers/module.h"

namespace idem {

// stride 0 means stride = kernel_size (PyTorch's default).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_, stride_, padding_); }
  std::string extra_repr() const override;
  int64_t kernel_size() const { return kernel_; }
  int64_t stride() const { return stride_; }  // as given: 0 means kernel_size
  int64_t padding() const { return padding_; }

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<MaxPool2d>(kernel_, stride_, padding_);
  }

 private:
  int64_t kernel_, stride_, padding_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, kernel_, stride_, padding_); }
  std::string extra_repr() const override;

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<AvgPool2d>(kernel_, stride_, padding_);
  }

 private:
  int64_t kernel_, stride_, padding_;
};

// (N,C,H,W) -> (N,C,out_h,out_w); (1,1) is global average pooling.
class AdaptiveAvgPool2d : public Module {
 public:
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w);
  explicit AdaptiveAvgPool2d(int64_t out_size) : AdaptiveAvgPool2d(out_size, out_size) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<AdaptiveAvgPool2d>(out_h_, out_w_);
  }

 private:
  int64_t out_h_, out_w_;
};

}  // namespace idem
