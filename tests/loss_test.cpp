// Losses: values against hand-computed numbers (what torch.nn.functional returns for the same
// inputs), every Reduction, stability at extreme logits, gradients at the special points
// (bce at logit 0, kl/js with zero probabilities, smooth_l1 at 0), and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "autograd/nn_functions.h"
#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;
using testing::expect_near_all;

Tensor vec(const std::vector<double>& v, Shape s) {
  return from_vector<double>(v, std::move(s));
}
Tensor labels(const std::vector<int64_t>& v) {
  return from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
}

// log_softmax([1, 2, 3])
const double kL0 = -2.4076059644443806, kL1 = -1.4076059644443804, kL2 = -0.4076059644443804;

// ---- regression losses ----

TEST(Loss, MseL1SmoothL1HandComputed) {
  // d = pred - target = [-0.5, 0, -2]
  Tensor pred = vec({1, 2, 3}, {3}), target = vec({1.5, 2, 5}, {3});
  EXPECT_NEAR(mse_loss(pred, target).item(), 4.25 / 3, 1e-15);
  EXPECT_NEAR(mse_loss(pred, target, Reduction::sum).item(), 4.25, 1e-15);
  expect_near_all(mse_loss(pred, target, Reduction::none), {0.25, 0, 4}, 1e-15, "mse none");
  EXPECT_NEAR(l1_loss(pred, target).item(), 2.5 / 3, 1e-15);
  EXPECT_NEAR(l1_loss(pred, target, Reduction::sum).item(), 2.5, 1e-15);
  expect_near_all(l1_loss(pred, target, Reduction::none), {0.5, 0, 2}, 1e-15, "l1 none");
  // beta 1: ½·0.25 = 0.125, 0, 2 − ½ = 1.5.
  expect_near_all(smooth_l1_loss(pred, target, 1.0, Reduction::none), {0.125, 0, 1.5}, 1e-15,
                  "smooth_l1 none");
  EXPECT_NEAR(smooth_l1_loss(pred, target).item(), 1.625 / 3, 1e-15);
  // beta 0.5: |d| = 0.5 is on the linear side: 0.5 − 0.25; 2 − 0.25.
  EXPECT_NEAR(smooth_l1_loss(pred, target, 0.5, Reduction::sum).item(), 2.0, 1e-15);
  // beta 0 is l1.
  EXPECT_NEAR(smooth_l1_loss(pred, target, 0.0, Reduction::sum).item(), 2.5, 1e-15);
  // Shapes are kept by none.
  EXPECT_EQ(mse_loss(zeros({2, 3}), ones({2, 3}), Reduction::none).shape(), (Shape{2, 3}));
}

TEST(Loss, RegressionGradients) {
  Tensor pred = vec({1, 2, 3, 0.2}, {4}).requires_grad_();
  Tensor target = vec({1.5, 2, 5, 0}, {4}).requires_grad_();
  smooth_l1_loss(pred, target, 1.0, Reduction::sum).backward();
  // d/dpred: d/β inside (−0.5, 0, 0.2), sign outside (−1).
  expect_near_all(pred.grad(), {-0.5, 0, -1, 0.2}, 1e-15, "smooth_l1 dpred");
  expect_near_all(target.grad(), {0.5, 0, 1, -0.2}, 1e-15, "smooth_l1 dtarget");
  pred.zero_grad();
  mse_loss(pred, target).backward();  // 2·d/N
  expect_near_all(pred.grad(), {-0.25, 0, -1, 0.1}, 1e-15, "mse dpred");
  pred.zero_grad();
  l1_loss(pred, target, Reduction::sum).backward();  // sign(d), 0 at d = 0 as torch
  expect_near_all(pred.grad(), {-1, 0, -1, 1}, 1e-15, "l1 dpred");
}

// ---- classification losses ----

TEST(Loss, CrossEntropyHandComputed) {
  Tensor logits = vec({1, 2, 3, 1, 2, 3}, {2, 3});
  Tensor t = labels({2, 0});
  expect_near_all(cross_entropy(logits, t, 0.0, Reduction::none), {-kL2, -kL0}, 1e-14, "ce none");
  EXPECT_NEAR(cross_entropy(logits, t).item(), -(kL2 + kL0) / 2, 1e-14);
  EXPECT_NEAR(cross_entropy(logits, t, 0.0, Reduction::sum).item(), -(kL2 + kL0), 1e-14);
  // Label smoothing 0.1 (torch): 0.9·nll + 0.1·mean_c(−log p_c) = 0.50760596444438.
  expect_near_all(cross_entropy(logits.slice0(0, 1), labels({2}), 0.1, Reduction::none),
                  {0.5076059644443804}, 1e-14, "ce smoothing");
  // nll_loss on log-probabilities picks −log_probs[n, t[n]].
  Tensor lp = vec({-1, -2, -3, -0.5, -0.1, -4}, {2, 3});
  expect_near_all(nll_loss(lp, labels({1, 0}), Reduction::none), {2, 0.5}, 0, "nll none");
  EXPECT_NEAR(nll_loss(lp, labels({1, 0})).item(), 1.25, 1e-15);
  EXPECT_NEAR(nll_loss(lp, labels({1, 0}), Reduction::sum).item(), 2.5, 1e-15);
}

TEST(Loss, CrossEntropyStableAndGradientIsSoftmaxMinusOneHot) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor big = vec({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}).to(dt);
    expect_near_all(cross_entropy(big, labels({2, 2}), 0.0, Reduction::none), {-kL2, -kL0},
                    dt == DType::f32 ? 1e-4 : 1e-12, "ce large logits");
  }
  Tensor x = vec({1, 2, 3, 1, 2, 3}, {2, 3}).requires_grad_();
  cross_entropy(x, labels({2, 0})).backward();  // mean over 2 rows
  const double p0 = std::exp(kL0), p1 = std::exp(kL1), p2 = std::exp(kL2);
  expect_near_all(x.grad(), {p0 / 2, p1 / 2, (p2 - 1) / 2, (p0 - 1) / 2, p1 / 2, p2 / 2}, 1e-15,
                  "ce grad");
}

TEST(Loss, CrossEntropySoft) {
  Tensor logits = vec({1, 2, 3}, {1, 3});
  // One-hot targets give cross_entropy.
  EXPECT_NEAR(cross_entropy_soft(logits, vec({0, 0, 1}, {1, 3})).item(), -kL2, 1e-14);
  // −(0.2·log p0 + 0.3·log p1 + 0.5·log p2) = 1.1076059644443805
  EXPECT_NEAR(cross_entropy_soft(logits, vec({0.2, 0.3, 0.5}, {1, 3})).item(), 1.1076059644443805,
              1e-14);
  EXPECT_EQ(cross_entropy_soft(zeros({4, 3}), ones({4, 3}), Reduction::none).shape(), (Shape{4}));
}

TEST(Loss, BceWithLogitsHandComputedAndStable) {
  // torch: F.binary_cross_entropy_with_logits([0, 2, −3], [1, 0, 1]) per element
  // = [log 2, log(1+e²), log(1+e³)], mean 1.9562208477255532.
  Tensor x = vec({0, 2, -3}, {3}), t = vec({1, 0, 1}, {3});
  expect_near_all(bce_with_logits(x, t, Reduction::none),
                  {0.6931471805599453, 2.1269280110429727, 3.048587351573742}, 1e-14, "bce none");
  EXPECT_NEAR(bce_with_logits(x, t).item(), 1.9562208477255532, 1e-14);
  // Extreme logits: no overflow, no log(0).
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor xe = vec({100, -100, 100, -100}, {4}).to(dt), te = vec({1, 1, 0, 0}, {4}).to(dt);
    const auto v = bce_with_logits(xe, te, Reduction::none).to_vector<double>();
    EXPECT_NEAR(v[0], 0.0, 1e-30);
    EXPECT_NEAR(v[1], 100.0, 1e-4);
    EXPECT_NEAR(v[2], 100.0, 1e-4);
    EXPECT_NEAR(v[3], 0.0, 1e-30);
  }
}

TEST(Loss, BceWithLogitsGradientAtZero) {
  // dL/dx = σ(x) − t (½ − 1 at x = 0, where relu/abs compositions would give −1);
  // dL/dt = −x.
  Tensor x = vec({0, 2, -3}, {3}).requires_grad_();
  Tensor t = vec({1, 0.25, 1}, {3}).requires_grad_();
  bce_with_logits(x, t, Reduction::sum).backward();
  const double s2 = 1 / (1 + std::exp(-2.0)), s3 = 1 / (1 + std::exp(3.0));
  expect_near_all(x.grad(), {-0.5, s2 - 0.25, s3 - 1}, 1e-15, "bce dx");
  expect_near_all(t.grad(), {0, -2, 3}, 1e-15, "bce dt");
}

// ---- divergences ----

TEST(Loss, KlAndJsHandComputed) {
  Tensor p = vec({0.5, 0.5, 1, 0}, {2, 2}), q = vec({0.25, 0.75, 0.5, 0.5}, {2, 2});
  // KL([.5,.5] ‖ [.25,.75]) = 0.14384103622589042; KL([1,0] ‖ [.5,.5]) = ln 2.
  expect_near_all(kl_div(p, q, Reduction::none), {0.14384103622589042, std::log(2.0)}, 1e-15,
                  "kl none");
  EXPECT_NEAR(kl_div(p, q).item(), (0.14384103622589042 + std::log(2.0)) / 2, 1e-15);
  EXPECT_NEAR(kl_div(p, q, Reduction::sum).item(), 0.14384103622589042 + std::log(2.0), 1e-15);
  // JS([.5,.5], [.25,.75]) = 0.033822075568605205; disjoint supports give ln 2; p = q gives 0.
  Tensor p2 = vec({0.5, 0.5, 1, 0, 0.3, 0.7}, {3, 2});
  Tensor q2 = vec({0.25, 0.75, 0, 1, 0.3, 0.7}, {3, 2});
  expect_near_all(js_div(p2, q2, Reduction::none), {0.033822075568605205, std::log(2.0), 0.0},
                  1e-15, "js none");
  EXPECT_NEAR(js_div(p2, q2, Reduction::sum).item(), 0.033822075568605205 + std::log(2.0), 1e-15);
  // JS is symmetric, KL is not.
  EXPECT_NEAR(js_div(q2, p2, Reduction::sum).item(), js_div(p2, q2, Reduction::sum).item(), 1e-15);
  // Per-row shape for 3-D input; a 1-D pair gives a 0-dim per-row loss.
  EXPECT_EQ(kl_div(ones({2, 3, 4}), ones({2, 3, 4}), Reduction::none).shape(), (Shape{2, 3}));
  EXPECT_EQ(js_div(vec({0.5, 0.5}, {2}), vec({0.5, 0.5}, {2}), Reduction::none).dim(), 0);
}

TEST(Loss, DivergenceGradientsWithZeroProbabilities) {
  // Zero probabilities (softmax underflow) must give finite values and gradients.
  Tensor p = vec({1, 0, 0.5, 0.5}, {2, 2}).requires_grad_();
  Tensor q = vec({0.5, 0.5, 0.25, 0.75}, {2, 2}).requires_grad_();
  kl_div(p, q, Reduction::sum).backward();
  // dp = log(p/q) + 1 (0 where p = 0), dq = −p/q.
  expect_near_all(p.grad(), {std::log(2.0) + 1, 0, std::log(2.0) + 1, std::log(2.0 / 3) + 1}, 1e-15,
                  "kl dp");
  expect_near_all(q.grad(), {-2, 0, -2, -2.0 / 3}, 1e-15, "kl dq");
  Tensor a = vec({1, 0}, {1, 2}).requires_grad_(), b = vec({0, 1}, {1, 2}).requires_grad_();
  js_div(a, b).backward();
  // dp = ½ log(p/m): ½ log 2 where p = 1, 0 where p = 0.
  expect_near_all(a.grad(), {0.5 * std::log(2.0), 0}, 1e-15, "js dp");
  expect_near_all(b.grad(), {0, 0.5 * std::log(2.0)}, 1e-15, "js dq");
}

// ---- bad input ----

TEST(LossBadInput, Errors) {
  Tensor logits = zeros({4, 5});
  expect_error([&] { cross_entropy(logits, zeros({4})); }, "cross_entropy", "i64");
  expect_error([&] { cross_entropy(logits, zeros({4}, {DType::i32})); }, "cross_entropy", "i64");
  expect_error([&] { cross_entropy(logits, labels({1, 2, 3})); }, "cross_entropy", "target (3)");
  expect_error(
      [&] {
        cross_entropy(logits, labels({0, 1, 5, 2}));
      },
      "cross_entropy", "target 5 at row 2");
  expect_error([&] { cross_entropy(logits, labels({0, -1, 0, 2})); }, "cross_entropy", "target -1");
  expect_error([&] { cross_entropy(zeros({5}), labels({0})); }, "cross_entropy", "(N,C)");
  expect_error(
      [&] {
        cross_entropy(logits, labels({0, 1, 2, 3}), 1.5);
      },
      "cross_entropy", "label_smoothing");
  expect_error([&] { nll_loss(logits, zeros({4, 1}, {DType::i64})); }, "nll_loss", "target (4x1)");
  expect_error(
      [&] {
        cross_entropy_soft(logits, zeros({4, 4}));
      },
      "cross_entropy_soft", "same shape");
  expect_error([&] { mse_loss(zeros({3}), zeros({3, 1})); }, "mse_loss", "same shape");
  expect_error([&] { l1_loss(zeros({3}), zeros({3}, {DType::f64})); }, "l1_loss", "dtype");
  expect_error([&] { smooth_l1_loss(zeros({3}), zeros({3}), -1.0); }, "smooth_l1_loss", "beta");
  expect_error([&] { bce_with_logits(zeros({3}), zeros({2})); }, "bce_with_logits", "same shape");
  expect_error([&] { kl_div(zeros({2, 3}), zeros({3, 2})); }, "kl_div", "same shape");
  expect_error([&] { js_div(scalar_tensor(1.0), scalar_tensor(1.0)); }, "js_div", "0-dim");
  expect_error([&] { mse_loss(zeros({3}, {DType::i64}), zeros({3}, {DType::i64})); }, "mse_loss",
               "floating");
  expect_error([&] { mse_loss(Tensor(), zeros({3})); }, "mse_loss", "undefined");
}

// ---- CUDA (the op-case parity rows cover small shapes; this one is larger) ----

TEST(LossCuda, MatchesCpu) {
  IDEM_REQUIRE_GPU();
  const uint64_t seed = 41;
  Tensor x = randn({64, 10}, seed), y = randn({64, 10}, seed + 1);
  Tensor t = from_vector<int64_t>(std::vector<int64_t>(64, 3), {64});
  const Device g = Device::cuda(0);
  auto close = [&](const Tensor& a, const Tensor& b, const char* what) {
    EXPECT_NEAR(a.to(Device::cpu()).item(), b.item(), 1e-4 * (1 + std::fabs(b.item())))
        << what << " seed " << seed;
  };
  close(cross_entropy(x.to(g), t.to(g), 0.1), cross_entropy(x, t, 0.1), "cross_entropy");
  close(js_div(softmax(x.to(g)), softmax(y.to(g))), js_div(softmax(x), softmax(y)), "js_div");
  close(kl_div(softmax(x.to(g)), softmax(y.to(g))), kl_div(softmax(x), softmax(y)), "kl_div");
  close(bce_with_logits(x.to(g), sigmoid(y.to(g))), bce_with_logits(x, sigmoid(y)), "bce");
  close(smooth_l1_loss(x.to(g), y.to(g)), smooth_l1_loss(x, y), "smooth_l1");
}

}  // namespace
}  // namespace idem
