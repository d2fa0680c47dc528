// Layers: each forward against a hand computation or the underlying op, initialization bounds
// and seed reproducibility, BatchNorm's train/eval switch, Dropout masks, the MLP builder.
#include <gtest/gtest.h>

#include <cmath>

#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/conv.h"
#include "layers/dropout.h"
#include "layers/flatten.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/mlp.h"
#include "layers/norm.h"
#include "layers/pool.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_near_all;
using testing::set;

// ---- Linear ----

TEST(Linear, ForwardMatchesHandComputation) {
  Linear lin(3, 2);
  set(lin.weight(), {1, 2, 3, -1, 0, 0.5});
  set(lin.bias(), {0.5, -2});
  Tensor x = from_vector<float>({1, 0, -1, 2, 1, 4}, {2, 3});
  // row 0: [1-3+0.5, -1-0.5-2]; row 1: [2+2+12+0.5, -2+2-2]
  expect_near_all(lin.forward(x), {-1.5, -3.5, 16.5, -2}, 1e-6);
  // Leading dims are rows: (2,2,3) gives the same rows as (4,3).
  Tensor x3 = randn({2, 2, 3}, 7);
  Tensor y3 = lin.forward(x3);
  EXPECT_EQ(y3.shape(), (Shape{2, 2, 2}));
  expect_near_all(y3.reshape({4, 2}), lin.forward(x3.reshape({4, 3})), 1e-6);
  Linear nb(3, 2, false);
  EXPECT_FALSE(nb.bias().defined());
  EXPECT_THROW(lin.forward(randn({2, 4}, 1)), Error);
}

TEST(Linear, DefaultInitBoundsAndSeeds) {
  const int64_t in = 50, out = 40;
  Linear a(in, out, true, {}, 42), b(in, out, true, {}, 42), c(in, out, true, {}, 43);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  auto w = a.weight().to_vector<double>(), bias = a.bias().to_vector<double>();
  double lo = 1, hi = -1;
  for (double v : w) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.9 * bound);  // 2000 draws fill the interval
  EXPECT_GT(hi, 0.9 * bound);
  for (double v : bias) EXPECT_LE(std::abs(v), bound);
  EXPECT_EQ(a.weight().to_vector<float>(), b.weight().to_vector<float>());
  EXPECT_EQ(a.bias().to_vector<float>(), b.bias().to_vector<float>());
  EXPECT_NE(a.weight().to_vector<float>(), c.weight().to_vector<float>());
  // Weight and bias use different Philox offsets: the bias is not the weight's first row.
  EXPECT_NE(bias[0] * std::sqrt(in), w[0] * std::sqrt(in));

  // The global stream: manual_seed reproduces a whole model.
  init::manual_seed(5);
  MLP m1({4, 8, 2});
  init::manual_seed(5);
  MLP m2({4, 8, 2});
  MLP m3({4, 8, 2});
  EXPECT_EQ(m1.parameters()[0].to_vector<float>(), m2.parameters()[0].to_vector<float>());
  EXPECT_NE(m2.parameters()[0].to_vector<float>(), m3.parameters()[0].to_vector<float>());
  // Different layers of one MLP get different seeds.
  EXPECT_NE(m1.parameters()[0].to_vector<float>()[0], m1.parameters()[2].to_vector<float>()[0]);
}

// ---- init ----

TEST(Init, FansGainsAndDistributions) {
  EXPECT_EQ(init::fan_in_out({4, 3}), (std::pair<int64_t, int64_t>{3, 4}));
  EXPECT_EQ(init::fan_in_out({8, 2, 3, 3}), (std::pair<int64_t, int64_t>{18, 72}));
  EXPECT_THROW(init::fan_in_out({5}), Error);
  EXPECT_DOUBLE_EQ(init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
  EXPECT_THROW(init::calculate_gain("swish"), Error);

  Tensor t = empty({200, 100});
  init::kaiming_normal_(t, 0.0, 3);  // std = √2/√100
  auto v = t.to_vector<double>();
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= v.size();
  for (double x : v) s += (x - m) * (x - m);
  s = std::sqrt(s / v.size());
  EXPECT_NEAR(m, 0.0, 0.005);
  EXPECT_NEAR(s, std::sqrt(2.0) / 10.0, 0.005);

  Tensor u = empty({30, 20});
  init::xavier_uniform_(u, 1.0, 4);
  const double b = std::sqrt(6.0 / 50.0);
  for (double x : u.to_vector<double>()) EXPECT_LE(std::abs(x), b);
  Tensor u2 = empty({30, 20});
  init::xavier_uniform_(u2, 1.0, 4);
  EXPECT_EQ(u.to_vector<float>(), u2.to_vector<float>());
  init::zeros_(u);
  EXPECT_EQ(sum(abs(u)).item(), 0.0);
  init::ones_(u);
  EXPECT_EQ(sum(u).item(), 600.0);
  // Initializers write in place and keep requires_grad.
  Tensor p = empty({3, 3});
  p.requires_grad_();
  void* ptr = p.raw_data();
  init::kaiming_uniform_(p, std::sqrt(5.0), 1);
  EXPECT_EQ(p.raw_data(), ptr);
  EXPECT_TRUE(p.requires_grad() && p.is_leaf());
  EXPECT_THROW(init::uniform_(zeros({2}, {DType::i64}), 0, 1, 1), Error);
}

// ---- activations ----

TEST(Activation, ModulesMatchFunctions) {
  Tensor x = randn({4, 5}, 8);
  expect_near_all(ReLU().forward(x), relu(x), 0);
  expect_near_all(LeakyReLU(0.2).forward(x), leaky_relu(x, 0.2), 0);
  expect_near_all(Sigmoid().forward(x), sigmoid(x), 0);
  expect_near_all(Tanh().forward(x), tanh(x), 0);
  expect_near_all(GELU().forward(x), gelu(x), 0);
  Tensor s = Softmax(1).forward(x);
  expect_near_all(sum(s, {1}), std::vector<double>(4, 1.0), 1e-6);
  // Hand values: leaky_relu(−2) = −0.4, relu(−2) = 0, sigmoid(0) = ½, GELU(1) = Φ(1).
  Tensor h = from_vector<float>({-2, 0, 1}, {3});
  expect_near_all(LeakyReLU(0.2).forward(h), {-0.4, 0, 1}, 1e-7);
  expect_near_all(Sigmoid().forward(h), {1 / (1 + std::exp(2.0)), 0.5, 1 / (1 + std::exp(-1.0))},
                  1e-6);
  expect_near_all(
      GELU().forward(h),
      {-2 * 0.5 * std::erfc(2 / std::sqrt(2.0)), 0, 0.5 * std::erfc(-1 / std::sqrt(2.0))}, 1e-6);
  EXPECT_EQ(parse_activation("tanh"), Activation::tanh);
  EXPECT_EQ(make_activation(Activation::leaky_relu)->type_name(), "LeakyReLU");
  EXPECT_THROW(parse_activation("swish"), Error);
  EXPECT_EQ(LeakyReLU(0.2).repr(), "LeakyReLU(negative_slope=0.2)");
}

// ---- convolution ----

TEST(ConvLayer, Conv2dMatchesTheOpAndInitsLikePyTorch) {
  Conv2dOptions o;
  o.stride = 2;
  o.padding = {1, 0};
  Conv2d conv(2, 3, {3, 2}, o, {}, 9);
  EXPECT_EQ(conv.weight().shape(), (Shape{3, 2, 3, 2}));
  EXPECT_EQ(conv.bias().shape(), (Shape{3}));
  const double bound = 1.0 / std::sqrt(2.0 * 3 * 2);
  for (double v : conv.weight().to_vector<double>()) EXPECT_LE(std::abs(v), bound);
  for (double v : conv.bias().to_vector<double>()) EXPECT_LE(std::abs(v), bound);
  Tensor x = randn({2, 2, 7, 6}, 10);
  Conv2dParams p;
  p.stride_h = p.stride_w = 2;
  p.pad_h = 1;
  expect_near_all(conv.forward(x), conv2d(x, conv.weight(), conv.bias(), p), 1e-6);
  EXPECT_EQ(conv.repr(), "Conv2d(2, 3, kernel_size=(3, 2), stride=(2, 2), padding=(1, 0))");
  EXPECT_THROW(conv.forward(randn({2, 3, 7, 6}, 1)), Error);
  Conv2dOptions g;
  g.groups = 2;
  EXPECT_THROW(Conv2d(3, 4, 3, g), Error);  // groups must divide in_channels
}

TEST(ConvLayer, Conv2dHandComputed) {
  // 1 channel 3x3 input, a 2x2 kernel of ones, bias 1: each output is a 2x2 window sum + 1.
  Conv2d conv(1, 1, 2);
  set(conv.weight(), {1, 1, 1, 1});
  set(conv.bias(), {1});
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  expect_near_all(conv.forward(x), {13, 17, 25, 29}, 1e-6);
}

TEST(ConvLayer, ConvTranspose2dShapesAndOp) {
  ConvTranspose2dOptions o;
  o.stride = 2;
  o.padding = 1;
  o.output_padding = 1;
  ConvTranspose2d deconv(4, 2, 3, o, {}, 3);
  EXPECT_EQ(deconv.weight().shape(), (Shape{4, 2, 3, 3}));
  Tensor x = randn({1, 4, 5, 5}, 4);
  Tensor y = deconv.forward(x);
  EXPECT_EQ(y.shape(), (Shape{1, 2, 10, 10}));  // (5−1)·2 − 2 + 3 + 1
  expect_near_all(y, conv_transpose2d(x, deconv.weight(), deconv.bias(), deconv.params()), 1e-6);
  const double bound = 1.0 / std::sqrt(2.0 * 9);  // fan_in from weight dim 1, as PyTorch
  for (double v : deconv.weight().to_vector<double>()) EXPECT_LE(std::abs(v), bound);
}

// ---- normalization ----

TEST(BatchNormLayer, TrainNormalizesAndUpdatesRunningStatsEvalUsesThem) {
  BatchNorm1d bn(2);
  // Feature 0: 1,2,3,4 (mean 2.5, biased var 1.25, unbiased 5/3); feature 1: 0,0,4,4.
  Tensor x = from_vector<float>({1, 0, 2, 0, 3, 4, 4, 4}, {4, 2});
  Tensor y = bn.forward(x);
  const double s0 = std::sqrt(1.25 + 1e-5), s1 = std::sqrt(4.0 + 1e-5);
  expect_near_all(y, {-1.5 / s0, -2 / s1, -0.5 / s0, -2 / s1, 0.5 / s0, 2 / s1, 1.5 / s0, 2 / s1},
                  1e-5);
  expect_near_all(bn.running_mean(), {0.25, 0.2}, 1e-6);
  expect_near_all(bn.running_var(), {0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 16.0 / 3.0}, 1e-6);
  EXPECT_EQ(bn.num_batches_tracked().item(), 1);
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked().item(), 2);

  // Evaluation: (x − running_mean)/√(running_var + eps)·w + b, no statistics update.
  bn.eval();
  set(bn.weight(), {2, 1});
  set(bn.bias(), {0, 1});
  auto rm = bn.running_mean().to_vector<double>(), rv = bn.running_var().to_vector<double>();
  Tensor xe = from_vector<float>({1, 2}, {1, 2});
  Tensor ye = bn.forward(xe);
  expect_near_all(
      ye, {2 * (1 - rm[0]) / std::sqrt(rv[0] + 1e-5), (2 - rm[1]) / std::sqrt(rv[1] + 1e-5) + 1},
      1e-5);
  EXPECT_EQ(bn.running_mean().to_vector<double>(), rm);
  EXPECT_EQ(bn.num_batches_tracked().item(), 2);
  bn.reset_running_stats();
  expect_near_all(bn.running_var(), {1, 1}, 0);
  EXPECT_EQ(bn.num_batches_tracked().item(), 0);

  // Batch statistics without touching the buffers (TENT / IT³ "batch" statistics), in eval.
  bn.set_track_running_stats(false);
  set(bn.weight(), {1, 1});
  set(bn.bias(), {0, 0});
  expect_near_all(bn.forward(x), y.to_vector<double>(), 1e-5);
  expect_near_all(bn.running_mean(), {0, 0}, 0);
  EXPECT_EQ(bn.num_batches_tracked().item(), 0);
  bn.train();
  bn.forward(x);
  expect_near_all(bn.running_mean(), {0, 0}, 0);
  EXPECT_EQ(bn.num_batches_tracked().item(), 0);
  auto c = clone_as(bn);
  EXPECT_FALSE(c->tracks_running_stats());
  bn.set_track_running_stats(true);
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked().item(), 1);
}

TEST(BatchNormLayer, TwoDimensionalAndWithoutRunningStats) {
  BatchNorm2d bn(3);
  Tensor x = randn({4, 3, 5, 5}, 11) * 3.0 + 1.0;
  Tensor y = bn.forward(x);
  // Per channel over (N,H,W): mean 0, biased variance ≈ 1.
  expect_near_all(mean(y, {0, 2, 3}), std::vector<double>(3, 0.0), 1e-5);
  expect_near_all(mean(square(y), {0, 2, 3}), std::vector<double>(3, 1.0), 1e-3);
  expect_near_all(bn.running_mean(), mul(mean(x, {0, 2, 3}), 0.1), 1e-5);
  EXPECT_THROW(bn.forward(randn({4, 3}, 1)), Error);

  BatchNormOptions o;
  o.track_running_stats = false;
  o.affine = false;
  BatchNorm1d plain(3, o);
  EXPECT_TRUE(plain.named_buffers().empty());
  EXPECT_TRUE(plain.named_parameters().empty());
  plain.eval();  // no running stats: evaluation still uses the batch
  Tensor z = plain.forward(randn({6, 3}, 12));
  expect_near_all(mean(z, {0}), std::vector<double>(3, 0.0), 1e-5);
}

TEST(LayerNormLayer, HandComputed) {
  LayerNorm ln(4);
  set(ln.weight(), {1, 2, 1, 1});
  set(ln.bias(), {0, 0, 0, 1});
  Tensor x = from_vector<float>({1, 2, 3, 4, -1, -1, 1, 1}, {2, 4});
  const double s0 = std::sqrt(1.25 + 1e-5), s1 = std::sqrt(1.0 + 1e-5);
  expect_near_all(
      ln.forward(x),
      {-1.5 / s0, -1.0 / s0, 0.5 / s0, 1.5 / s0 + 1, -1 / s1, -2 / s1, 1 / s1, 1 / s1 + 1}, 1e-5);
  EXPECT_EQ(ln.repr(), "LayerNorm((4,), eps=1e-05, elementwise_affine=True)");
  EXPECT_THROW(ln.forward(randn({2, 5}, 1)), Error);
  LayerNorm ln2(Shape{2, 3});
  EXPECT_EQ(ln2.forward(randn({4, 2, 3}, 2)).shape(), (Shape{4, 2, 3}));
}

TEST(GroupNormLayer, HandComputed) {
  GroupNorm gn(2, 4);
  // N=1, C=4, L=2: group 0 = channels 0,1 = {1,3,5,7}, group 1 = {0,0,2,2}.
  Tensor x = from_vector<float>({1, 3, 5, 7, 0, 0, 2, 2}, {1, 4, 2});
  const double s0 = std::sqrt(5.0 + 1e-5), s1 = std::sqrt(1.0 + 1e-5);
  expect_near_all(gn.forward(x),
                  {-3 / s0, -1 / s0, 1 / s0, 3 / s0, -1 / s1, -1 / s1, 1 / s1, 1 / s1}, 1e-5);
  EXPECT_THROW(GroupNorm(3, 4), Error);
}

// ---- dropout, pooling, flatten, residual ----

TEST(DropoutLayer, MasksAreReproducibleAndAdvance) {
  Dropout d(0.3, 77);
  Tensor x = ones({1000});
  Tensor y1 = d.forward(x);
  EXPECT_EQ(d.offset(), 1u);
  Tensor y2 = d.forward(x);
  auto v1 = y1.to_vector<double>(), v2 = y2.to_vector<double>();
  // Kept elements are scaled by 1/(1−p); the mask is uniform(seed, offset, i) >= p.
  auto u = rand({1000}, 77, {}, 0).to_vector<double>();
  int kept = 0;
  for (size_t i = 0; i < v1.size(); ++i) {
    EXPECT_NEAR(v1[i], u[i] >= 0.3 ? 1 / 0.7 : 0.0, 1e-6) << i;
    kept += v1[i] != 0;
  }
  EXPECT_NEAR(kept, 700, 60);
  EXPECT_NE(v1, v2);  // the offset advanced
  d.set_offset(0);
  EXPECT_EQ(d.forward(x).to_vector<double>(), v1);
  d.eval();
  EXPECT_TRUE(d.forward(x).same_storage(x));
  EXPECT_THROW(Dropout(1.0), Error);
}

TEST(PoolingLayer, HandComputed) {
  Tensor x =
      from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4});
  expect_near_all(MaxPool2d(2).forward(x), {6, 8, 14, 16}, 0);
  expect_near_all(AvgPool2d(2).forward(x), {3.5, 5.5, 11.5, 13.5}, 1e-6);
  Tensor g = AdaptiveAvgPool2d(1).forward(x);
  EXPECT_EQ(g.shape(), (Shape{1, 1, 1, 1}));
  expect_near_all(g, {8.5}, 1e-6);
  expect_near_all(AdaptiveAvgPool2d(2).forward(x), {3.5, 5.5, 11.5, 13.5}, 1e-6);
  EXPECT_EQ(MaxPool2d(2).repr(), "MaxPool2d(kernel_size=2, stride=2, padding=0)");
  EXPECT_EQ(Flatten().forward(randn({2, 3, 4, 5}, 1)).shape(), (Shape{2, 60}));
  EXPECT_THROW(MaxPool2d(2, 1, 2), Error);
}

TEST(Residual, AddsTheBody) {
  auto lin = std::make_shared<Linear>(3, 3);
  Residual r(lin);
  Tensor x = randn({4, 3}, 5);
  expect_near_all(r.forward(x), x + lin->forward(x), 1e-6);
  Residual bad(std::make_shared<Linear>(3, 2));
  EXPECT_THROW(bad.forward(x), Error);
  auto proj = std::make_shared<Linear>(3, 2, false);
  Residual pr(std::make_shared<Linear>(3, 2), proj);
  EXPECT_EQ(pr.forward(x).shape(), (Shape{4, 2}));
  EXPECT_EQ(pr.named_parameters().size(), 3u);
}

// ---- MLP ----

TEST(MLP, StructureAndForward) {
  MLP m({5, 16, 8, 2}, {Activation::leaky_relu, MlpNorm::batch, 0.2});
  const auto& L = *m.layers();
  std::vector<std::string> types;
  for (size_t i = 0; i < L.size(); ++i) types.push_back(L[i]->type_name());
  EXPECT_EQ(types,
            (std::vector<std::string>{"Linear", "BatchNorm1d", "LeakyReLU", "Dropout", "Linear",
                                      "BatchNorm1d", "LeakyReLU", "Dropout", "Linear"}));
  EXPECT_EQ(m.linears().size(), 3u);
  EXPECT_EQ(m.forward(randn({7, 5}, 1)).shape(), (Shape{7, 2}));
  // The plain MLP equals the hand-chained Linear/ReLU computation.
  MLP p({3, 4, 1});
  Tensor x = randn({6, 3}, 2);
  auto lins = p.linears();
  expect_near_all(p.forward(x), lins[1]->forward(relu(lins[0]->forward(x))), 1e-6);
  EXPECT_THROW(MLP({3}), Error);
  EXPECT_THROW(MLP({3, 0, 1}), Error);
}

}  // namespace
}  // namespace idem
