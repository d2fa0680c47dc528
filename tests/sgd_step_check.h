// Test helper: one plain SGD step against central differences of the loss, the check that the
// test-time methods with an auxiliary head (ttt, ttt++, masked-ttt) share.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "layers/module.h"

namespace idem::testing {

// `before` are the parameters of `probe`, an f64 copy of the model as it was before the step;
// `after` the same parameters after one SGD step of rate `lr`. Every parameter whose name starts
// with `adapted_prefix` must have moved by −lr · ∂L/∂θ, with ∂L/∂θ from central differences of
// `loss` (evaluated on `probe`, whose values this perturbs one at a time and restores); every
// other parameter must not have moved. Returns the number of elements checked by differences.
inline int64_t expect_sgd_step_matches_differences(const NamedTensors& before, const NamedTensors& after,
                                                   const std::function<double()>& loss, double lr,
                                                   const std::string& adapted_prefix, double eps = 1e-6,
                                                   double tol = 1e-8) {
  int64_t checked = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const std::vector<double> p0 = before[i].second.to_vector<double>();
    const std::vector<double> p1 = after[i].second.to_vector<double>();
    const bool adapted = before[i].first.rfind(adapted_prefix, 0) == 0;
    for (size_t j = 0; j < p0.size(); ++j) {
      if (!adapted) {
        EXPECT_EQ(p1[j], p0[j]) << before[i].first;
        continue;
      }
      double* v = before[i].second.data<double>() + j;
      const double keep = *v;
      *v = keep + eps;
      const double lp = loss();
      *v = keep - eps;
      const double lm = loss();
      *v = keep;
      const double g = (lp - lm) / (2 * eps);
      EXPECT_NEAR(p1[j], p0[j] - lr * g, tol) << before[i].first << "[" << j << "]";
      ++checked;
    }
  }
  return checked;
}

}  // namespace idem::testing
