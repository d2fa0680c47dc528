// Level L3: Flatten.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "layers/module.h"

namespace idem {

// Flattens dims [start_dim, end_dim] into one (shares storage). Default keeps the batch dim.
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Module("Flatten"), start_(start_dim), end_(end_dim) {}
  Tensor forward(const Tensor& x) override { return flatten(x, start_, end_); }
  std::string extra_repr() const override {
    return "start_dim=" + std::to_string(start_) + ", end_dim=" + std::to_string(end_);
  }

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<Flatten>(start_, end_);
  }

 private:
  int64_t start_, end_;
};

}  // namespace idem
