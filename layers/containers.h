// Level L3: Dropout, pooling, Flatten, and the containers Sequential and Residual.
#pragma once
#include <optional>
#include <vector>

#include "autograd/nn_functions.h"
#include "layers/module.h"

namespace idem {

// Inverted dropout. Each module owns a Philox seed; every training-mode forward uses the next
// offset, so successive masks differ but a run is reproducible (and the same on CPU and GPU).
// Evaluation mode, or p = 0, returns the input unchanged.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, std::optional<uint64_t> seed = std::nullopt);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  double p() const { return p_; }
  uint64_t seed() const { return seed_; }
  // The offset the next training forward will use; set it to replay a mask.
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  double p_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// stride 0 means stride = kernel_size (PyTorch's default).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_, stride_, padding_); }
  std::string extra_repr() const override;

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

// Flattens dims [start_dim, end_dim] into one (shares storage). Default keeps the batch dim.
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Module("Flatten"), start_(start_dim), end_(end_dim) {}
  Tensor forward(const Tensor& x) override { return flatten(x, start_, end_); }
  std::string extra_repr() const override;

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<Flatten>(start_, end_);
  }

 private:
  int64_t start_, end_;
};

// Applies its children in order; children are named "0", "1", ... unless named explicitly.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);

  Sequential& push_back(std::shared_ptr<Module> m);
  Sequential& push_back(const std::string& name, std::shared_ptr<Module> m);
  // Constructs a module in place and returns it: auto fc = seq.emplace<Linear>(3, 4);
  template <typename M, typename... Args>
  std::shared_ptr<M> emplace(Args&&... args) {
    auto m = std::make_shared<M>(std::forward<Args>(args)...);
    push_back(m);
    return m;
  }

  size_t size() const { return children().size(); }
  bool empty() const { return children().empty(); }
  // requires: i < size() (checked).
  std::shared_ptr<Module> operator[](size_t i) const;
  // The i-th child as M; throws when it is another type.
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    if (!m) fail("Sequential", "child ", i, " is a ", (*this)[i]->type_name());
    return m;
  }

  Tensor forward(const Tensor& x) override;

 protected:
  std::shared_ptr<Module> clone_impl() const override;
};

// y = body(x) + shortcut(x), shortcut = identity unless given (e.g. a 1x1 projection).
class Residual : public Module {
 public:
  explicit Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> shortcut = nullptr);
  Tensor forward(const Tensor& x) override;
  const std::shared_ptr<Module>& body() const { return body_; }
  const std::shared_ptr<Module>& shortcut() const { return shortcut_; }  // null: identity

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::shared_ptr<Module> body_, shortcut_;
};

}  // namespace idem
