// softmax / log_softmax: hand-computed values, stability with large inputs, normalisation
// along each dim, the cross-entropy gradient, empty and 0-dim tensors, bad input.
#include "core/ops/softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "autograd/functions.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;

// softmax([1,2,3]) = e^k / (e + e² + e³).
const std::vector<double> kSm = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
const std::vector<double> kLsm = {-2.4076059644443806, -1.4076059644443806, -0.4076059644443806};

TEST(Softmax, HandComputedValues) {
  Tensor x = from_vector<double>({1, 2, 3}, {3});
  const auto y = softmax(x).to_vector<double>();
  const auto ly = log_softmax(x).to_vector<double>();
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(y[i], kSm[i], 1e-15);
    EXPECT_NEAR(ly[i], kLsm[i], 1e-15);
  }
}

TEST(Softmax, StableForLargeInputs) {
  // exp(1000) overflows; the max-subtracted form does not.
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_vector<double>({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}).to(dt);
    const auto y = softmax(x, 1).to_vector<double>();
    const auto ly = log_softmax(x, 1).to_vector<double>();
    const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(y[i], kSm[i], tol);
      EXPECT_NEAR(y[3 + i], kSm[2 - i], tol);
      EXPECT_NEAR(ly[i], kLsm[i], 1e3 * tol);
      EXPECT_NEAR(ly[3 + i], kLsm[2 - i], 1e3 * tol);
    }
  }
}

TEST(Softmax, NegativeInfinityGivesZeroProbability) {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x = from_vector<double>({0.0, -inf, 0.0}, {3});
  EXPECT_EQ(softmax(x).to_vector<double>(), (std::vector<double>{0.5, 0.0, 0.5}));
}

TEST(Softmax, NormalisesAlongEveryDim) {
  const uint64_t seed = 3;
  Tensor x = randn({3, 4, 5}, seed, {DType::f64});
  for (int64_t d = 0; d < 3; ++d) {
    Tensor y = softmax(x, d);
    Tensor s = sum(y, {d});
    for (double v : s.to_vector<double>()) EXPECT_NEAR(v, 1.0, 1e-12) << "dim " << d;
    // log_softmax is the log of softmax.
    const auto ly = log_softmax(x, d - 3).to_vector<double>();  // negative dim form
    const auto yv = y.to_vector<double>();
    for (size_t i = 0; i < yv.size(); ++i) EXPECT_NEAR(ly[i], std::log(yv[i]), 1e-12);
  }
  // Dim 0 of a 2x3 matrix normalises each column: [[0,0,0],[ln3, 0, -ln3]].
  Tensor m = from_vector<double>({0, 0, 0, std::log(3.0), 0, -std::log(3.0)}, {2, 3});
  const auto y0 = softmax(m, 0).to_vector<double>();
  const std::vector<double> want = {0.25, 0.5, 0.75, 0.75, 0.5, 0.25};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(y0[i], want[i], 1e-15);
}

TEST(Softmax, CrossEntropyGradientIsSoftmaxMinusOneHot) {
  // L = -log_softmax(x)[target]  =>  dL/dx = softmax(x) - onehot(target).
  Tensor x = from_vector<double>({1, 2, 3}, {1, 3}).requires_grad_();
  Tensor w = from_vector<double>({0, -1, 0}, {1, 3});  // picks -ly[1]
  sum(mul(log_softmax(x, 1), w)).backward();
  const auto g = x.grad().to_vector<double>();
  EXPECT_NEAR(g[0], kSm[0], 1e-15);
  EXPECT_NEAR(g[1], kSm[1] - 1.0, 1e-15);
  EXPECT_NEAR(g[2], kSm[2], 1e-15);
  // Shifting all logits does not change softmax: the gradient of sum(softmax) is zero.
  Tensor z = from_vector<double>({0.3, -1.2, 2.0, 0.5}, {4}).requires_grad_();
  sum(softmax(z)).backward();
  for (double v : z.grad().to_vector<double>()) EXPECT_NEAR(v, 0.0, 1e-15);
}

TEST(Softmax, EmptyAndZeroDim) {
  EXPECT_EQ(softmax(zeros({0, 5}), 1).shape(), (Shape{0, 5}));
  EXPECT_EQ(log_softmax(zeros({3, 0}), 1).shape(), (Shape{3, 0}));
  EXPECT_EQ(softmax(scalar_tensor(4.0), -1).item(), 1.0);
  EXPECT_EQ(log_softmax(scalar_tensor(4.0), 0).item(), 0.0);
}

TEST(Softmax, BadInput) {
  expect_error([] { softmax(zeros({2, 3}), 2); }, "softmax", "dim 2");
  expect_error([] { log_softmax(zeros({2, 3}), -3); }, "log_softmax", "dim -3");
  expect_error([] { softmax(zeros({2, 3}, {DType::i64})); }, "softmax", "floating");
  expect_error([] { softmax(Tensor()); }, "softmax", "undefined");
  expect_error([] { softmax(scalar_tensor(1.0), 1); }, "softmax", "out of range");
  expect_error(
      [] {
        ops::softmax_backward(zeros({2, 3}), zeros({3, 2}), 1);
      },
      "softmax_backward", "same shape");
  expect_error(
      [] {
        ops::softmax_backward(zeros({2, 3}, {DType::f64}), zeros({2, 3}), 1, true);
      },
      "log_softmax_backward", "dtype mismatch");
}

}  // namespace
}  // namespace idem
