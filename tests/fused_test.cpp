// Fused ops (autograd/fused_functions.h): linear_act against matmul + add + activation (bits in
// the forward, values in the backward), the MLP's fused forward against its module-by-module
// run, l1/mse distances against l1_loss/mse_loss, bad input, and on a GPU: bit-equality with the
// unfused hand-written path, launch counts, the general paths and the deterministic multi-block
// distance. The op-case rows (tests/op_cases/fused_cases.cpp) add gradcheck and CPU/CUDA parity.
#include "core/ops/fused.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

#include "autograd/fused_functions.h"
#include "autograd/nn_functions.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "layers/activation.h"
#include "layers/mlp.h"
#include "layers/pool.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using testing::expect_error;
using testing::expect_near_all;
using testing::launches;

constexpr uint64_t kSeed = 4242;

Tensor act_of(const Tensor& z, FusedAct act, double slope) {
  if (act == FusedAct::relu) return relu(z);
  if (act == FusedAct::leaky_relu) return leaky_relu(z, slope);
  return z;
}

// The unfused reference: matmul, add, activation (what Linear + activation module run).
Tensor unfused(const Tensor& x, const Tensor& w, const Tensor& b, FusedAct act, double slope) {
  Tensor z = matmul(x, w, false, true);
  if (b.defined()) z = z + b;
  return act_of(z, act, slope);
}

const FusedAct kActs[] = {FusedAct::none, FusedAct::relu, FusedAct::leaky_relu};

using testing::GemmGuard;

// ---- linear_act on the CPU ------------------------------------------------------------------

TEST(LinearAct, ForwardEqualsUnfusedBitForBit) {
  for (DType dt : {DType::f32, DType::f64})
    for (FusedAct act : kActs)
      for (bool bias : {true, false}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " " + fused_act_name(act) +
                     (bias ? " bias" : " no bias") + ", seed " + std::to_string(kSeed));
        Tensor x = randn({7, 5}, kSeed, {dt});
        Tensor w = randn({3, 5}, kSeed + 1, {dt});
        Tensor b = bias ? randn({3}, kSeed + 2, {dt}) : Tensor();
        Tensor y = linear_act(x, w, b, act, 0.1);
        EXPECT_EQ(y.shape(), (Shape{7, 3}));
        EXPECT_TRUE(bit_equal(y, unfused(x, w, b, act, 0.1)));
      }
}

TEST(LinearAct, GradientsEqualUnfused) {
  for (FusedAct act : kActs) {
    SCOPED_TRACE(std::string(fused_act_name(act)) + ", seed " + std::to_string(kSeed));
    Tensor x = randn({6, 4}, kSeed, {DType::f64}).requires_grad_();
    Tensor w = randn({5, 4}, kSeed + 1, {DType::f64}).requires_grad_();
    Tensor b = randn({5}, kSeed + 2, {DType::f64}).requires_grad_();
    Tensor up = randn({6, 5}, kSeed + 3, {DType::f64});
    sum(mul(linear_act(x, w, b, act, 0.2), up)).backward();
    Tensor gx = x.grad(), gw = w.grad(), gb = b.grad();
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    sum(mul(unfused(x, w, b, act, 0.2), up)).backward();
    expect_near_all(gx, x.grad(), 1e-12, "dx");
    expect_near_all(gw, w.grad(), 1e-12, "dW");
    expect_near_all(gb, b.grad(), 1e-12, "db");
  }
}

TEST(LinearAct, FrozenWeightsStillPassGradientToInput) {
  Tensor x = randn({3, 4}, kSeed, {DType::f64}).requires_grad_();
  Tensor w = randn({2, 4}, kSeed + 1, {DType::f64});
  Tensor b = randn({2}, kSeed + 2, {DType::f64});
  sum(linear_act(x, w, b, FusedAct::relu)).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // Only db requested: the L1 backward computes nothing else.
  ops::LinearActGrads r = ops::linear_act_backward(
      ones({3, 2}, {DType::f64}), linear_act(x.detach(), w, b, FusedAct::none), x.detach(), w, true,
      FusedAct::none, 0.0, false, false, true);
  EXPECT_FALSE(r.dx.defined());
  EXPECT_FALSE(r.dweight.defined());
  expect_near_all(r.dbias, {3, 3}, 0, "db of ones");
}

TEST(LinearAct, LeadingDimsOneDimAndEmptyBatch) {
  Tensor w = randn({4, 5}, kSeed, {DType::f64});
  Tensor b = randn({4}, kSeed + 1, {DType::f64});
  Tensor x3 = randn({2, 3, 5}, kSeed + 2, {DType::f64});
  Tensor y3 = linear_act(x3, w, b, FusedAct::relu);
  EXPECT_EQ(y3.shape(), (Shape{2, 3, 4}));
  EXPECT_TRUE(bit_equal(y3.reshape({6, 4}), linear_act(x3.reshape({6, 5}), w, b, FusedAct::relu)));
  Tensor x1 = randn({5}, kSeed + 3, {DType::f64});
  EXPECT_EQ(linear_act(x1, w, b, FusedAct::none).shape(), (Shape{4}));

  // An empty batch: an empty output, zero weight and bias gradients.
  Tensor wg = w.detach().clone_data().requires_grad_();
  Tensor bg = b.detach().clone_data().requires_grad_();
  Tensor e = linear_act(zeros({0, 5}, {DType::f64}), wg, bg, FusedAct::leaky_relu);
  EXPECT_EQ(e.shape(), (Shape{0, 4}));
  sum(e).backward();
  expect_near_all(wg.grad(), std::vector<double>(20, 0.0), 0, "dW of an empty batch");
  expect_near_all(bg.grad(), std::vector<double>(4, 0.0), 0, "db of an empty batch");
}

// with_fused_act hands f the activation it was given, as a compile-time constant, and names
// the caller's op for a value outside the enum (the kernels' dispatch; the L1 ops reject such a
// value before a kernel runs).
TEST(FusedActDispatch, EveryActivationAndTheCallersOpInTheError) {
  for (int i = 0; i < kFusedActCount; ++i) {
    const FusedAct a = static_cast<FusedAct>(i);
    int calls = 0;
    with_fused_act(a, "test_op", [&](auto tag) {
      static_assert(
          std::is_same_v<decltype(tag), std::integral_constant<FusedAct, decltype(tag)::value>>);
      EXPECT_EQ(static_cast<int>(decltype(tag)::value), i) << fused_act_name(a);
      ++calls;
    });
    EXPECT_EQ(calls, 1) << fused_act_name(a);
  }
  expect_error(
      [] { with_fused_act(static_cast<FusedAct>(9), "max_pool2d_act_backward", [](auto) {}); },
      "max_pool2d_act_backward", "unknown activation 9 (expected one of none, relu, leaky_relu)");
}

TEST(LinearAct, BadInput) {
  Tensor x = randn({3, 4}, kSeed), w = randn({2, 4}, kSeed + 1), b = randn({2}, kSeed + 2);
  expect_error([&] { linear_act(x, randn({2, 5}, 1), b); }, "linear_act", "cannot be multiplied");
  expect_error([&] { linear_act(x, w, randn({3}, 1)); }, "linear_act",
               "expected bias of shape (2)");
  expect_error([&] { linear_act(x, w, b, FusedAct::leaky_relu, -0.1); }, "linear_act",
               "slope must be finite and >= 0");
  expect_error([&] { linear_act(x, w, b, static_cast<FusedAct>(9)); }, "linear_act",
               "unknown activation 9 (expected one of none, relu, leaky_relu)");
  expect_error([&] { linear_act(x.to(DType::f64), w, b); }, "linear_act", "dtype mismatch");
  expect_error([&] { linear_act(x, randn({4}, 1), b); }, "linear_act", "expected weight");
  expect_error([&] { linear_act(x, Tensor(), b); }, "linear_act", "undefined");
  expect_error([&] { linear_act(zeros({3, 4}, {DType::i64}), w, b); }, "linear_act", "floating");
}

TEST(LinearAct, ApplyLinearActEveryActivation) {
  Linear lin(5, 4, true, {DType::f64}, 7);
  Tensor x = randn({3, 5}, kSeed, {DType::f64});
  for (Activation a : {Activation::identity, Activation::relu, Activation::leaky_relu,
                       Activation::sigmoid, Activation::tanh, Activation::gelu}) {
    SCOPED_TRACE(activation_name(a));
    auto module = make_activation(a, 0.05);
    Tensor want = module->forward(lin.forward(x));
    EXPECT_TRUE(bit_equal(apply_linear_act(lin, x, a, 0.05), want));
  }
  // A negative leaky slope is not fused (the backward could not read act' from y) but works.
  Tensor want = leaky_relu(lin.forward(x), -0.5);
  EXPECT_TRUE(bit_equal(apply_linear_act(lin, x, Activation::leaky_relu, -0.5), want));
  expect_error(
      [&] {
        apply_linear_act(lin, randn({3, 6}, 1, {DType::f64}), Activation::relu);
      },
      "Linear", "expected input (*, 5)");
}

// ---- the MLP's fused forward -----------------------------------------------------------------

// Forward bits and every parameter gradient of mlp.forward (fused) against the module-by-module
// run of its Sequential.
void expect_mlp_matches_modules(MLP& mlp, const Tensor& x, double grad_tol) {
  Tensor fused_out = mlp.forward(x);
  Tensor plain_out = mlp.layers()->forward_unfused(x);
  EXPECT_TRUE(bit_equal(fused_out, plain_out)) << "fused MLP forward differs from its modules";
  const Tensor up = randn(fused_out.shape(), kSeed + 9, fused_out.options());
  std::vector<Tensor> fused_grads;
  mlp.zero_grad();
  sum(mul(fused_out, up)).backward();
  for (const Tensor& p : mlp.parameters()) fused_grads.push_back(p.grad());
  mlp.zero_grad();
  sum(mul(plain_out, up)).backward();
  const auto named = mlp.named_parameters();
  for (size_t i = 0; i < named.size(); ++i)
    expect_near_all(fused_grads[i], named[i].second.grad(), grad_tol, named[i].first);
}

TEST(FusedMlp, ForwardMatchesModuleByModuleAndKeepsNames) {
  MLP mlp({14, 30, 20, 10, 1}, {}, {DType::f64}, 3);
  const std::string repr_before = mlp.repr();
  expect_mlp_matches_modules(mlp, randn({8, 14}, kSeed, {DType::f64}), 1e-12);
  EXPECT_EQ(mlp.repr(), repr_before);
  EXPECT_TRUE(mlp.has_parameter("layers.0.weight"));
  EXPECT_TRUE(mlp.has_parameter("layers.6.bias"));
  EXPECT_EQ(mlp.state_dict().size(), 8u);
}

// The fusion is declared where the MLP is built (MlpOptions::fuse): the fused MLP's output
// comes from linear_act, the unfused one's from the activation module, with the same bits, the
// same children and the same names.
TEST(FusedMlp, FuseOptionKeepsModulesAndBits) {
  MlpOptions plain;
  plain.fuse = false;
  MLP fused({5, 6, 3}, {}, {DType::f64}, 8);
  MLP unfused({5, 6, 3}, plain, {DType::f64}, 8);
  EXPECT_EQ(fused.repr(), unfused.repr());
  const StateDict a = fused.state_dict(), b = unfused.state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    EXPECT_EQ(ia->first, ib->first);
    EXPECT_TRUE(bit_equal(ia->second, ib->second)) << ia->first;
  }
  Tensor x = randn({4, 5}, kSeed, {DType::f64});
  EXPECT_TRUE(bit_equal(fused.forward(x), unfused.forward(x)));
  // The last layer runs alone: linear_act in the fused MLP, matmul + add in the plain one.
  EXPECT_STREQ(fused.forward(x).grad_fn()->name(), "linear_act");
  EXPECT_STREQ(unfused.forward(x).grad_fn()->name(), "add");
}

// push_linear declares a fused pair; a clone keeps it (its forward still records linear_act).
TEST(FusedMlp, FusedSequentialCloneKeepsTheFusion) {
  FusedSequential seq;
  seq.push_linear(std::make_shared<Linear>(4, 3, true, Options{DType::f64}, 1), Activation::relu);
  seq.push_back(std::make_shared<Tanh>());
  ASSERT_EQ(seq.size(), 3u);
  EXPECT_TRUE(seq.has_parameter("0.weight"));
  auto copy = clone_as(seq);
  Tensor x = randn({2, 4}, kSeed, {DType::f64});
  Tensor y = seq.forward(x), yc = copy->forward(x);
  EXPECT_TRUE(bit_equal(y, yc));
  EXPECT_TRUE(bit_equal(y, seq.forward_unfused(x)));
  std::vector<size_t> seen;
  copy->forward_with(x, [&](size_t i, const Tensor&) { seen.push_back(i); });
  EXPECT_EQ(seen, (std::vector<size_t>{1, 2}));  // the fused pair reports once, as child 1
}

TEST(FusedMlp, OtherConfigurations) {
  MlpOptions leaky;
  leaky.activation = Activation::leaky_relu;
  leaky.leaky_slope = 0.2;
  MLP a({6, 8, 3}, leaky, {DType::f64}, 4);
  expect_mlp_matches_modules(a, randn({5, 6}, kSeed, {DType::f64}), 1e-12);

  MlpOptions neg = leaky;  // not fused: the activation runs as its module
  neg.leaky_slope = -0.3;
  MLP b({6, 8, 3}, neg, {DType::f64}, 5);
  expect_mlp_matches_modules(b, randn({5, 6}, kSeed + 1, {DType::f64}), 1e-12);

  MlpOptions norm;  // Linear → LayerNorm → ReLU: the Linear runs alone (fused bias)
  norm.norm = MlpNorm::layer;
  MLP c({6, 8, 8, 2}, norm, {DType::f64}, 6);
  expect_mlp_matches_modules(c, randn({4, 6}, kSeed + 2, {DType::f64}), 1e-12);

  MlpOptions tanh_opt;
  tanh_opt.activation = Activation::tanh;
  tanh_opt.bias = false;
  MLP d({3, 5, 2}, tanh_opt, {DType::f64}, 7);
  expect_mlp_matches_modules(d, randn({2, 4, 3}, kSeed + 3, {DType::f64}), 1e-12);
}

// ---- FusedSequential: MaxPool2d + activation ---------------------------------------------------

// push_pool: each MaxPool2d runs with the activation after it as one max_pool2d_act where the
// activation fuses (relu, leaky_relu with slope >= 0), else as the pool then the activation
// module's op; identity pushes the pool alone. The children, names and repr are those of the
// plain Sequential; the forward and the input gradient have its bits; forward_with reports a
// fused pair once, under the activation's index; a clone keeps the fusion.
TEST(FusedPool, PushPoolMatchesModulesAndKeepsNames) {
  FusedSequential seq;
  seq.push_pool(std::make_shared<MaxPool2d>(2), Activation::leaky_relu, 0.2);   // 0, 1
  seq.push_pool(std::make_shared<MaxPool2d>(3, 1, 1), Activation::relu);        // 2, 3
  seq.push_pool(std::make_shared<MaxPool2d>(2, 1), Activation::tanh);           // 4, 5: not fused
  seq.push_pool(std::make_shared<MaxPool2d>(2, 1));                             // 6: alone
  seq.push_pool(std::make_shared<MaxPool2d>(2), Activation::leaky_relu, -0.5);  // 7, 8: not fused
  Sequential plain;
  plain.push_back(std::make_shared<MaxPool2d>(2));
  plain.push_back(std::make_shared<LeakyReLU>(0.2));
  plain.push_back(std::make_shared<MaxPool2d>(3, 1, 1));
  plain.push_back(std::make_shared<ReLU>());
  plain.push_back(std::make_shared<MaxPool2d>(2, 1));
  plain.push_back(std::make_shared<Tanh>());
  plain.push_back(std::make_shared<MaxPool2d>(2, 1));
  plain.push_back(std::make_shared<MaxPool2d>(2));
  plain.push_back(std::make_shared<LeakyReLU>(-0.5));
  EXPECT_EQ(seq.repr(), plain.repr());
  ASSERT_EQ(seq.size(), 9u);

  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor x1 = randn({2, 3, 22, 21}, kSeed, {dt}), x2 = x1.clone_data();
    x1.requires_grad_();
    x2.requires_grad_();
    Tensor y = seq.forward(x1), y_plain = plain.forward(x2);
    EXPECT_TRUE(bit_equal(y, y_plain));
    EXPECT_TRUE(bit_equal(y, seq.forward_unfused(x1)));
    const Tensor g = randn(y.shape(), kSeed + 1, {dt});
    y.backward(g);
    y_plain.backward(g);
    EXPECT_TRUE(bit_equal(x1.grad(), x2.grad()));
  }

  // Each pair alone (later pools would hide an earlier pair's gradient: a negative leaky
  // output rarely wins the next window): the module pair's forward and gradient bits.
  struct Pair {
    int64_t k, st, pad;
    Activation act;
    double slope;
  };
  const Pair pairs[] = {{2, 0, 0, Activation::leaky_relu, 0.2},
                        {3, 1, 1, Activation::relu, 0.0},
                        {2, 0, 0, Activation::leaky_relu, 0.01},
                        {2, 1, 0, Activation::tanh, 0.0},
                        {2, 0, 0, Activation::leaky_relu, -0.5}};
  for (const Pair& pr : pairs) {
    SCOPED_TRACE(std::string(activation_name(pr.act)) + " slope " + std::to_string(pr.slope) +
                 " kernel " + std::to_string(pr.k));
    FusedSequential f;
    f.push_pool(std::make_shared<MaxPool2d>(pr.k, pr.st, pr.pad), pr.act, pr.slope);
    Sequential m;
    m.push_back(std::make_shared<MaxPool2d>(pr.k, pr.st, pr.pad));
    m.push_back(make_activation(pr.act, pr.slope));
    Tensor x1 = randn({2, 3, 9, 8}, kSeed + 4, {DType::f32}), x2 = x1.clone_data();
    x1.requires_grad_();
    x2.requires_grad_();
    Tensor y1 = f.forward(x1), y2 = m.forward(x2);
    EXPECT_TRUE(bit_equal(y1, y2));
    const Tensor g = randn(y1.shape(), kSeed + 5, {DType::f32});
    y1.backward(g);
    y2.backward(g);
    EXPECT_TRUE(bit_equal(x1.grad(), x2.grad()));
  }

  // The fused pairs record max_pool2d_act; the unfusable ones the activation's own op.
  Tensor x = randn({1, 1, 6, 6}, kSeed + 2, {DType::f64}).requires_grad_();
  FusedSequential one;
  one.push_pool(std::make_shared<MaxPool2d>(2), Activation::leaky_relu);
  EXPECT_STREQ(one.forward(x).grad_fn()->name(), "max_pool2d_act");
  FusedSequential alone;
  alone.push_pool(std::make_shared<MaxPool2d>(2));
  EXPECT_STREQ(alone.forward(x).grad_fn()->name(), "max_pool2d");
  FusedSequential tanh_pair;
  tanh_pair.push_pool(std::make_shared<MaxPool2d>(2), Activation::tanh);
  Sequential plain_tanh;
  plain_tanh.push_back(std::make_shared<MaxPool2d>(2));
  plain_tanh.push_back(make_activation(Activation::tanh));
  const char* tanh_op = plain_tanh.forward(x).grad_fn()->name();
  EXPECT_STRNE(tanh_op, "max_pool2d_act");
  EXPECT_STREQ(tanh_pair.forward(x).grad_fn()->name(), tanh_op) << "an unfusable pair records the activation's op";

  std::vector<size_t> seen;
  auto copy = clone_as(seq);
  Tensor xc = randn({1, 2, 22, 21}, kSeed + 3, {DType::f64});
  EXPECT_TRUE(bit_equal(copy->forward(xc), seq.forward(xc)));
  copy->forward_with(xc, [&](size_t i, const Tensor&) { seen.push_back(i); });
  EXPECT_EQ(seen, (std::vector<size_t>{1, 3, 5, 6, 8}));  // a fused pair once, as its activation
  auto copy_one = clone_as(one);
  EXPECT_STREQ(copy_one->forward(x).grad_fn()->name(), "max_pool2d_act");
}

TEST(FusedPool, NullPoolIsAnError) {
  FusedSequential seq;
  expect_error([&] { seq.push_pool(nullptr, Activation::relu); }, "FusedSequential",
               "push_pool got a null MaxPool2d");
}

// ---- distances on the CPU --------------------------------------------------------------------

TEST(L1Distance, HandComputedWithSignZeroAtTies) {
  Tensor a = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  Tensor b = from_vector<double>({1.5, 2, 5}, {3}).requires_grad_();
  Tensor d = l1_distance(a, b);
  EXPECT_EQ(d.dim(), 0);
  EXPECT_NEAR(d.item(), 2.5 / 3, 1e-15);
  d.backward();
  // sign(a − b) = (−1, 0, −1): the tie gives 0, as torch.sign.
  expect_near_all(a.grad(), {-1.0 / 3, 0, -1.0 / 3}, 1e-15, "da");
  expect_near_all(b.grad(), {1.0 / 3, 0, 1.0 / 3}, 1e-15, "db");

  Tensor m = mse_distance(a.detach(), b.detach());
  EXPECT_NEAR(m.item(), 4.25 / 3, 1e-15);
}

TEST(L1Distance, MatchesLossesAndTheirGradients) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(std::string(dtype_name(dt)) + ", seed " + std::to_string(kSeed));
    const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    Tensor a = randn({4, 7}, kSeed, {dt}).requires_grad_();
    Tensor b = randn({4, 7}, kSeed + 1, {dt}).requires_grad_();
    for (bool l1 : {true, false}) {
      a.zero_grad();
      b.zero_grad();
      Tensor f = l1 ? l1_distance(a, b) : mse_distance(a, b);
      (f * 3.0).backward();
      Tensor ga = a.grad(), gb = b.grad();
      a.zero_grad();
      b.zero_grad();
      Tensor r = l1 ? l1_loss(a, b) : mse_loss(a, b);
      (r * 3.0).backward();
      EXPECT_NEAR(f.item(), r.item(), tol);
      expect_near_all(ga, a.grad(), tol, l1 ? "l1 da" : "mse da");
      expect_near_all(gb, b.grad(), tol, l1 ? "l1 db" : "mse db");
    }
  }
}

TEST(L1Distance, OnlyRequestedGradientAndBadInput) {
  Tensor a = randn({5}, kSeed, {DType::f64}).requires_grad_();
  Tensor b = randn({5}, kSeed + 1, {DType::f64});
  l1_distance(a, b).backward();
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  expect_error(
      [&] {
        l1_distance(randn({2, 3}, 1), randn({3, 2}, 2));
      },
      "l1_distance", "must have the same shape");
  expect_error([&] { mse_distance(zeros({0}), zeros({0})); }, "mse_distance", "non-empty");
  expect_error([&] { l1_distance(randn({3}, 1), randn({3}, 2, {DType::f64})); }, "l1_distance",
               "dtype mismatch");
  expect_error([&] { l1_distance(zeros({3}, {DType::i32}), zeros({3}, {DType::i32})); },
               "l1_distance", "floating");
}

// ---- CUDA -------------------------------------------------------------------------------------

class FusedCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    IDEM_REQUIRE_GPU();
  }
  static Options gpu() { return {DType::f32, Device::cuda(0)}; }
};

TEST_F(FusedCuda, SmallLayerIsOneLaunchEachWayAndBitEqualToUnfused) {
  GemmGuard hand(GemmBackend::hand);
  for (FusedAct act : kActs) {
    SCOPED_TRACE(std::string(fused_act_name(act)) + ", seed " + std::to_string(kSeed));
    Tensor x = randn({8, 14}, kSeed, gpu()).requires_grad_();
    Tensor w = randn({30, 14}, kSeed + 1, gpu()).requires_grad_();
    Tensor b = randn({30}, kSeed + 2, gpu()).requires_grad_();
    Tensor y;
    EXPECT_EQ(launches([&] { y = ops::linear_act(x.detach(), w.detach(), b.detach(), act, 0.1); }),
              1u);
    EXPECT_TRUE(bit_equal(y, unfused(x.detach(), w.detach(), b.detach(), act, 0.1)));
    Tensor g = randn({8, 30}, kSeed + 3, gpu());
    ops::LinearActGrads r;
    EXPECT_EQ(launches([&] {
                r = ops::linear_act_backward(g, y, x.detach(), w.detach(), true, act, 0.1, true,
                                             true, true);
              }),
              1u);
    // Against the unfused autograd path on the same GPU.
    sum(mul(unfused(x, w, b, act, 0.1), g)).backward();
    expect_near_all(r.dx, x.grad(), 1e-5, "dx");
    expect_near_all(r.dweight, w.grad(), 1e-5, "dW");
    expect_near_all(r.dbias, b.grad(), 1e-5, "db");
  }
}

// The small paths tile the outputs (forward: up to 64 rows × 32 columns a block; backward:
// 16 × 16 tiles, the reduction in chunks of 64). Shapes that cut tiles and chunks unevenly, one
// row, one column and a 1024-row reduction: the forward keeps the unfused bits, the backward
// matches the CPU for every subset of requested gradients and repeats bit for bit.
TEST_F(FusedCuda, SmallPathsAcrossTileAndChunkEdges) {
  GemmGuard hand(GemmBackend::hand);
  struct Case {
    int64_t N, in, out;
  };
  const Case cases[] = {{1, 1, 1},   {7, 5, 3},     {37, 21, 45}, {65, 127, 1},
                        {300, 3, 33}, {1000, 16, 2}, {1024, 31, 33}, {8, 14, 30}};
  const Device d = Device::cuda(0);
  for (const Case& c : cases)
    for (FusedAct act : kActs) {
      SCOPED_TRACE(std::to_string(c.N) + "x" + std::to_string(c.in) + "x" + std::to_string(c.out) +
                   " " + fused_act_name(act) + ", seed " + std::to_string(kSeed));
      Tensor x = randn({c.N, c.in}, kSeed), w = randn({c.out, c.in}, kSeed + 1);
      Tensor b = randn({c.out}, kSeed + 2), g = randn({c.N, c.out}, kSeed + 3);
      Tensor xg = x.to(d), wg = w.to(d), bg = b.to(d), gg = g.to(d);
      Tensor yg = ops::linear_act(xg, wg, bg, act, 0.1);
      EXPECT_TRUE(bit_equal(yg, unfused(xg, wg, bg, act, 0.1)));
      Tensor yc = ops::linear_act(x, w, b, act, 0.1);
      expect_near_all(yg, yc, 2e-6 * static_cast<double>(c.in), "y");
      const ops::LinearActGrads rc =
          ops::linear_act_backward(g, yc, x, w, true, act, 0.1, true, true, true);
      const double k = static_cast<double>(std::max(c.N, c.out));
      // dx, dW, db alone, dW + db, all three.
      const bool want[5][3] = {{true, false, false}, {false, true, false}, {false, false, true},
                               {false, true, true},  {true, true, true}};
      for (const auto& wnt : want) {
        SCOPED_TRACE(std::string("dx ") + (wnt[0] ? "y" : "n") + " dW " + (wnt[1] ? "y" : "n") +
                     " db " + (wnt[2] ? "y" : "n"));
        const ops::LinearActGrads r1 = ops::linear_act_backward(gg, yg, xg, wg, true, act, 0.1,
                                                                wnt[0], wnt[1], wnt[2]);
        const ops::LinearActGrads r2 = ops::linear_act_backward(gg, yg, xg, wg, true, act, 0.1,
                                                                wnt[0], wnt[1], wnt[2]);
        EXPECT_EQ(r1.dx.defined(), wnt[0]);
        EXPECT_EQ(r1.dweight.defined(), wnt[1]);
        EXPECT_EQ(r1.dbias.defined(), wnt[2]);
        if (wnt[0]) {
          expect_near_all(r1.dx, rc.dx, 2e-6 * static_cast<double>(c.out), "dx");
          EXPECT_TRUE(bit_equal(r1.dx, r2.dx));
        }
        if (wnt[1]) {
          expect_near_all(r1.dweight, rc.dweight, 2e-6 * k, "dW");
          EXPECT_TRUE(bit_equal(r1.dweight, r2.dweight));
        }
        if (wnt[2]) {
          expect_near_all(r1.dbias, rc.dbias, 2e-6 * k, "db");
          EXPECT_TRUE(bit_equal(r1.dbias, r2.dbias));
        }
      }
    }
}

// The general backward's epilogue puts 256-row chunks on gridDim.y (at most 65 535) and walks
// the rest in turns: one row more than 65 535 chunks still gets the right dx, dW and db.
TEST_F(FusedCuda, BackwardEpilogueBeyondTheGridRows) {
  GemmGuard hand(GemmBackend::hand);
  const int64_t N = int64_t{65535} * 256 + 77;
  Tensor x = randn({N, 1}, kSeed), w = randn({2, 1}, kSeed + 1), b = randn({2}, kSeed + 2);
  Tensor g = randn({N, 2}, kSeed + 3);
  Tensor yc = ops::linear_act(x, w, b, FusedAct::relu, 0.0);
  const ops::LinearActGrads rc =
      ops::linear_act_backward(g, yc, x, w, true, FusedAct::relu, 0.0, true, true, true);
  const Device d = Device::cuda(0);
  Tensor yg = ops::linear_act(x.to(d), w.to(d), b.to(d), FusedAct::relu, 0.0);
  const ops::LinearActGrads rg = ops::linear_act_backward(g.to(d), yg, x.to(d), w.to(d), true,
                                                          FusedAct::relu, 0.0, true, true, true);
  // dx row by row (a row whose gz was never written would be far off); db is a double sum on
  // both sides; dW is a float GEMM over 16.8 M rows on the CPU (values around 3 000, so 2.0 is
  // under 1e-3 relative). The last 77 rows alone move db and dW by units.
  expect_near_all(rg.dx, rc.dx, 1e-5, "dx");
  expect_near_all(rg.dweight, rc.dweight, 2.0, "dW");
  expect_near_all(rg.dbias, rc.dbias, 1e-2, "db");
}

// The general forward on the hand backend: one tiled GEMM whose store adds the bias and applies
// the activation (matmul_hand_epilogue), with the bits of matmul + add + activation on the same
// GPU. Shapes: 32x32 tiles with float4 stores (64x17x129: a 129th column alone in its tile),
// scalar stores (out 37), a long K (in 200), and 17 000 rows (the 128x64 tile on an H100).
TEST_F(FusedCuda, GeneralForwardIsOneLaunchAndBitEqualToUnfused) {
  GemmGuard hand(GemmBackend::hand);
  struct Case {
    int64_t N, in, out;
  };
  // {64, 256, 256} and {256, 256, 256}: mlp_256's layers at batch 64 and 256, the cluster split-K
  // (the epilogue in its finishing blocks).
  const Case cases[] = {{64, 17, 129},   {3000, 20, 37}, {300, 200, 40},
                        {17000, 64, 64}, {64, 256, 256}, {256, 256, 256}};
  for (const Case& c : cases)
    for (FusedAct act : kActs)
      for (bool bias : {true, false}) {
        SCOPED_TRACE(std::to_string(c.N) + "x" + std::to_string(c.in) + "x" +
                     std::to_string(c.out) + " " + fused_act_name(act) +
                     (bias ? " bias" : " no bias") + ", seed " + std::to_string(kSeed));
        const Tensor x = randn({c.N, c.in}, kSeed, gpu());
        const Tensor w = randn({c.out, c.in}, kSeed + 1, gpu());
        const Tensor b = bias ? randn({c.out}, kSeed + 2, gpu()) : Tensor();
        Tensor y;
        EXPECT_EQ(launches([&] { y = ops::linear_act(x, w, b, act, 0.1); }), 1u);
        EXPECT_TRUE(bit_equal(y, unfused(x, w, b, act, 0.1)));
      }
}

// Shapes that take the general paths (and the cuBLAS backend) against the CPU reference.
TEST_F(FusedCuda, GeneralPathsMatchCpu) {
  struct Case {
    int64_t N, in, out;
  };
  // general fwd + bwd; general fwd; general bwd; general both; one warp per output (in >= 128)
  const Case cases[] = {{256, 64, 256}, {64, 17, 129}, {2000, 3, 5}, {300, 200, 40}, {8, 300, 30}};
  for (GemmBackend backend : {GemmBackend::hand, GemmBackend::cublas}) {
#ifndef IDEM_WITH_CUBLAS
    if (backend == GemmBackend::cublas) continue;
#endif
    GemmGuard guard(backend);
    for (const Case& c : cases)
      for (FusedAct act : kActs) {
        SCOPED_TRACE(std::string(gemm_backend_name(backend)) + " " + std::to_string(c.N) + "x" +
                     std::to_string(c.in) + "x" + std::to_string(c.out) + " " +
                     fused_act_name(act) + ", seed " + std::to_string(kSeed));
        Tensor x = randn({c.N, c.in}, kSeed), w = randn({c.out, c.in}, kSeed + 1);
        Tensor b = randn({c.out}, kSeed + 2), g = randn({c.N, c.out}, kSeed + 3);
        Tensor yc = ops::linear_act(x, w, b, act, 0.1);
        ops::LinearActGrads rc =
            ops::linear_act_backward(g, yc, x, w, true, act, 0.1, true, true, true);
        const Device d = Device::cuda(0);
        Tensor yg = ops::linear_act(x.to(d), w.to(d), b.to(d), act, 0.1);
        ops::LinearActGrads rg = ops::linear_act_backward(g.to(d), yg, x.to(d), w.to(d), true, act,
                                                          0.1, true, true, true);
        const double k = static_cast<double>(std::max({c.N, c.in, c.out}));
        expect_near_all(yg, yc, 2e-6 * c.in, "y");
        expect_near_all(rg.dx, rc.dx, 2e-6 * c.out, "dx");
        expect_near_all(rg.dweight, rc.dweight, 2e-6 * k, "dW");
        expect_near_all(rg.dbias, rc.dbias, 2e-6 * k, "db");
      }
  }
}

// The measurement: a 4-layer MLP's forward and backward, fused vs module by module.
TEST_F(FusedCuda, MlpForwardBackwardLaunches) {
  GemmGuard hand(GemmBackend::hand);
  MLP mlp({14, 30, 20, 10, 1}, {}, {DType::f32}, 3);
  mlp.to(Device::cuda(0));
  Tensor x = randn({8, 14}, kSeed, gpu());
  uint64_t fwd[2], bwd[2];           // [0] module by module, [1] fused
  for (int rep = 0; rep < 2; ++rep)  // the first round warms up the allocator cache
    for (int fused = 0; fused < 2; ++fused) {
      mlp.zero_grad();
      Tensor loss;
      fwd[fused] =
          launches([&] { loss = sum(fused ? mlp.forward(x) : mlp.layers()->forward_unfused(x)); });
      bwd[fused] = launches([&] { loss.backward(); });
    }
  std::cout << "[ launches ] MLP 14-30-20-10-1, batch 8 (forward includes the final sum, "
            << "backward its seed and the sum's backward): forward " << fwd[0] << " -> " << fwd[1]
            << ", backward " << bwd[0] << " -> " << bwd[1] << ", total " << fwd[0] + bwd[0]
            << " -> " << fwd[1] + bwd[1] << "\n";
  // Forward: matmul + add (+ relu) per layer = 11 -> one linear_act per layer = 4.
  EXPECT_EQ(fwd[0] - fwd[1], 11u - 4u);
  // Backward: relu' + bias sum + dx + dW per layer (no dx for the first, no relu' for the last)
  // = 14 -> one per layer = 4.
  EXPECT_EQ(bwd[0] - bwd[1], 14u - 4u);
}

TEST_F(FusedCuda, DistanceIsOneDeterministicLaunchAtEverySize) {
  // 16384 is the last one-block size; above it the last-block pattern runs (the counter must
  // reset itself between calls, so sizes alternate; 5000000 needs the 1024-block cap).
  for (int64_t n : {1, 1000, 16384, 16385, 1000003, 5000000, 70000, 3}) {
    for (DistanceKind k : {DistanceKind::l1, DistanceKind::mse}) {
      SCOPED_TRACE("n " + std::to_string(n) + " " + distance_name(k) + ", seed " +
                   std::to_string(kSeed));
      Tensor a = randn({n}, kSeed), b = randn({n}, kSeed + 1);
      Tensor ref = ops::distance(a, b, k);
      Tensor ag = a.to(Device::cuda(0)), bg = b.to(Device::cuda(0));
      Tensor d1, d2;
      EXPECT_EQ(launches([&] { d1 = ops::distance(ag, bg, k); }), 1u);
      d2 = ops::distance(ag, bg, k);
      EXPECT_TRUE(bit_equal(d1, d2)) << "two runs differ";
      EXPECT_NEAR(d1.item(), ref.item(), 1e-6 * std::fabs(ref.item()) + 1e-7);

      Tensor g = full({}, 3.0, gpu());
      ops::DistanceGrads r;
      EXPECT_EQ(launches([&] { r = ops::distance_backward(g, ag, bg, k, true, true); }), 1u);
      ops::DistanceGrads rc = ops::distance_backward(full({}, 3.0), a, b, k, true, true);
      EXPECT_TRUE(bit_equal(r.da, rc.da));
      EXPECT_TRUE(bit_equal(r.db, rc.db));
    }
  }
}

TEST_F(FusedCuda, DistanceGradientReadsUpstreamOnDevice) {
  Tensor a = from_vector<float>({1, 2, 3, 4}, {4}, Device::cuda(0)).requires_grad_();
  Tensor b = from_vector<float>({2, 2, 1, 5}, {4}, Device::cuda(0));
  // The upstream gradient (5) is produced on the GPU by mul's backward.
  (l1_distance(a, b) * 5.0).backward();
  expect_near_all(a.grad(), {-1.25, 0, 1.25, -1.25}, 1e-7, "da");
}

}  // namespace
}  // namespace idem
