// gradcheck: compares analytic gradients (the engine) with central finite differences, in f64
// on the CPU. Tolerances as docs/design.md#tests: eps 1e-6, |a - n| <= atol + rtol·|n|.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace idem {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;  // for the random projection of the output to a scalar
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatch: input, element, analytic, numeric
  int64_t checked = 0;  // number of elements compared
};

// fn maps inputs to one output. Inputs must be f64 CPU tensors; those with requires_grad()
// are checked. The output is reduced to L = sum(out · w) with a fixed random w, so every output
// element contributes with its own weight.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, GradcheckOptions opt = {});

}  // namespace idem
