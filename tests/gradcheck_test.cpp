// Gradient checks over the whole op-case table: one named test per row, f64 on the CPU.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "tests/op_cases/op_cases.h"

namespace idem::testing {
namespace {

class Gradcheck : public ::testing::TestWithParam<OpCase> {};

TEST_P(Gradcheck, AnalyticMatchesNumeric) {
  const OpCase& c = GetParam();
  for (uint64_t seed : {11ull, 12ull}) {
    std::vector<Tensor> in = make_inputs(c, seed, DType::f64, Device::cpu());
    for (size_t i = 0; i < in.size(); ++i)
      if (c.inputs[i].differentiable && is_floating(in[i].dtype())) in[i].requires_grad_();
    GradcheckOptions opt;
    opt.seed = seed;
    GradcheckResult r = gradcheck(c.fn, in, opt);
    EXPECT_TRUE(r.ok) << c.name << " (seed " << seed << "): " << r.message;
    EXPECT_GT(r.checked, 0) << c.name << ": no differentiable input was checked";
  }
}

// Rows without a gradient (argmax, comparisons, one_hot) are covered by parity only.
std::vector<OpCase> differentiable_cases() {
  std::vector<OpCase> out;
  for (const auto& c : all_op_cases())
    if (c.gradcheck) out.push_back(c);
  return out;
}

INSTANTIATE_TEST_SUITE_P(OpCases, Gradcheck, ::testing::ValuesIn(differentiable_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace idem::testing
