// Level L3: Dropout.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

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

}  // namespace idem
