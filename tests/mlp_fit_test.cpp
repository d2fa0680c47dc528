// End to end: a 2-layer MLP fitted by plain gradient descent drives its loss below a threshold
// on a synthetic regression (y = sin(x0) + 0.5 x1²).
#include <gtest/gtest.h>

#include "autograd/functions.h"

namespace idem {
namespace {

TEST(MlpFit, GradientDescentReducesLoss) {
  const int64_t n = 256, d = 2, h = 32;
  Tensor x = uniform({n, d}, -1.5, 1.5, 1);
  Tensor x0 = narrow(x, 1, 0, 1), x1 = narrow(x, 1, 1, 1);
  Tensor y;
  {
    NoGradGuard ng;
    y = (exp(x0) - exp(neg(x0))) * 0.5 + square(x1) * 0.5;  // sinh(x0) + x1²/2
  }
  Tensor w1 = randn({d, h}, 2) * 0.7, b1 = zeros({h});
  Tensor w2 = randn({h, 1}, 3) * 0.2, b2 = zeros({1});
  std::vector<Tensor> params{w1, b1, w2, b2};
  for (auto& p : params) p = p.detach(), p.requires_grad_();
  auto forward = [&] { return matmul(tanh(matmul(x, params[0]) + params[1]), params[2]) + params[3]; };
  auto loss_of = [&] { return mean(square(forward() - y)); };
  const double initial = loss_of().item();
  double loss = initial;
  for (int step = 0; step < 1500; ++step) {
    Tensor l = loss_of();
    for (auto& p : params) p.zero_grad();
    l.backward();
    loss = l.item();
    NoGradGuard ng;
    for (auto& p : params) p.copy_(p - p.grad() * 0.1);
  }
  EXPECT_LT(loss, 0.02) << "initial loss " << initial;
  EXPECT_LT(loss, initial * 0.05);
}

}  // namespace
}  // namespace idem
