// it3_head_loss and feature_head (autograd/it3_head_function.h): the IT³ loss of a
// feature-injection head as one op, one launch each way on a GPU (core/kernels/it3_head.h).
//  - CPU, f64 and f32: the loss, y0, y1 and every gradient (h_f, h_F, f's embed and layers)
//    agree with the composed ops it replaces (linear_act, add, softmax, the distance) at the
//    cnn's head and at other shapes (one to three layers, odd widths, batch 1, relu / leaky /
//    none, l1 and mse), with h_f and h_F distinct tensors or the same one; F gets no gradient;
//    only the wanted gradients are computed; errors name the op.
//  - CUDA (skipped without a GPU): the same against the composed ops on the CPU, one launch
//    each way, the same bits on a second call; feature_head is one launch.
//  - The Adapter: the cnn's IT³ adaptation with the fused head gives the composed path's
//    predictions and losses (CPU with fused_head on; the GPU's default).
// The op-case rows (tests/op_cases/fused_cases.cpp) add f64 gradcheck and CPU/CUDA parity.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autograd/fused_functions.h"
#include "autograd/it3_head_function.h"
#include "it3/adapt.h"
#include "it3/models.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_close;
using testing::launches;

constexpr uint64_t kSeed = 20261207;

struct HeadShape {
  std::string name;
  int64_t batch, features, classes;
  std::vector<int64_t> hidden;  // the widths between n_0 and C
  It3HeadSpec spec;
};

const FusedAct kNone = FusedAct::none, kRelu = FusedAct::relu, kLeaky = FusedAct::leaky_relu;

std::vector<HeadShape> shapes() {
  return {
      // The benchmark's cnn: embed Linear(10,50)+LeakyReLU, Linear(50,50)+LeakyReLU, Linear(50,10).
      {"cnn_b8", 8, 50, 10, {50}, {kLeaky, {kLeaky, kNone}, 0.01, DistanceKind::l1}},
      {"cnn_b1_mse", 1, 50, 10, {50}, {kLeaky, {kLeaky, kNone}, 0.01, DistanceKind::mse}},
      {"one_layer_relu", 5, 7, 3, {}, {kRelu, {kNone}, 0.01, DistanceKind::l1}},
      {"three_layers", 13, 33, 6, {17, 40}, {kNone, {kRelu, kLeaky, kNone}, 0.2, DistanceKind::mse}},
      {"act_on_last", 4, 9, 5, {11}, {kLeaky, {kRelu, kLeaky}, 0.1, DistanceKind::l1}},
  };
}

struct Operands {
  Tensor h_f, h_F, s0;
  std::vector<Tensor> f, F;
};

// f and F differ (F is Θ, f a θ that moved away from it), as after a step of K > 1.
std::vector<Tensor> make_net(const HeadShape& s, uint64_t seed, Options o, bool grad) {
  std::vector<int64_t> widths{s.features};
  widths.insert(widths.end(), s.hidden.begin(), s.hidden.end());
  widths.push_back(s.classes);
  std::vector<Tensor> net;
  const auto add = [&](Shape shape, double scale) {
    net.push_back((randn(shape, seed + net.size(), o) * scale).detach().requires_grad_(grad));
  };
  add({s.features, s.classes}, 0.5);
  add({s.features}, 0.2);
  for (size_t l = 0; l + 1 < widths.size(); ++l) {
    add({widths[l + 1], widths[l]}, 1.0 / std::sqrt(double(widths[l])));
    add({widths[l + 1]}, 0.2);
  }
  return net;
}

Operands make_operands(const HeadShape& s, Options o, bool same_features) {
  Operands r;
  r.h_f = randn({s.batch, s.features}, kSeed, o).requires_grad_(true);
  r.h_F = same_features ? r.h_f : randn({s.batch, s.features}, kSeed + 1, o).requires_grad_(true);
  r.s0 = full({s.batch, s.classes}, 1.0 / double(s.classes), o);
  r.f = make_net(s, kSeed + 100, o, true);
  r.F = make_net(s, kSeed + 200, o, false);
  return r;
}

Tensor composed_head(const Tensor& h, const Tensor& sig, const std::vector<Tensor>& net,
                     const It3HeadSpec& spec) {
  Tensor a = h + linear_act(sig, net[0], net[1], spec.embed_act, spec.slope);
  for (size_t l = 0; l < spec.acts.size(); ++l)
    a = linear_act(a, net[2 + 2 * l], net[3 + 2 * l], spec.acts[l], spec.slope);
  return a;
}

It3HeadLoss composed_loss(const Operands& x, const It3HeadSpec& spec) {
  Tensor y0 = composed_head(x.h_f, x.s0, x.f, spec);
  Tensor s = softmax(y0, 1);
  Tensor y1 = composed_head(x.h_F, s, x.F, spec);
  Tensor p1 = softmax(y1, 1);
  Tensor loss = spec.distance == DistanceKind::l1 ? l1_distance(p1, s) : mse_distance(p1, s);
  return {loss, y0, y1};
}

struct Results {
  Tensor loss, y0, y1, dh_f, dh_F;
  std::vector<Tensor> df;
};

Results run(const Operands& x, const It3HeadSpec& spec, bool fused) {
  It3HeadLoss r = fused ? it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.F, spec) : composed_loss(x, spec);
  r.loss.backward();
  Results out{r.loss.detach(), r.y0.detach(), r.y1.detach(), x.h_f.grad(), x.h_F.grad(), {}};
  for (const Tensor& t : x.f) out.df.push_back(t.grad());
  for (const Tensor& t : x.F) EXPECT_FALSE(t.grad().defined()) << "F got a gradient";
  return out;
}

void expect_results_close(const Results& got, const Results& want, double atol, double rtol,
                          const std::string& what) {
  expect_close(got.loss, want.loss, atol, rtol, what + " loss");
  expect_close(got.y0, want.y0, atol, rtol, what + " y0");
  expect_close(got.y1, want.y1, atol, rtol, what + " y1");
  expect_close(got.dh_f, want.dh_f, atol, rtol, what + " dh_f");
  expect_close(got.dh_F, want.dh_F, atol, rtol, what + " dh_F");
  ASSERT_EQ(got.df.size(), want.df.size());
  for (size_t k = 0; k < got.df.size(); ++k)
    expect_close(got.df[k], want.df[k], atol, rtol, what + " df[" + std::to_string(k) + "]");
}

// The composed reference in f64 on the CPU, the op under test in `o`.
void check_against_composed(const HeadShape& s, Options o, bool same_features, double atol,
                            double rtol) {
  const Options ref{DType::f64, Device::cpu()};
  const Results want = run(make_operands(s, ref, same_features), s.spec, false);
  const Results got = run(make_operands(s, o, same_features), s.spec, true);
  expect_results_close(got, want, atol, rtol,
                       s.name + (same_features ? " (h_F = h_f)" : "") + " on " + o.device.str());
}

TEST(It3Head, MatchesTheComposedOpsInF64) {
  for (const HeadShape& s : shapes())
    for (bool same : {false, true})
      check_against_composed(s, {DType::f64, Device::cpu()}, same, 1e-12, 1e-10);
}

TEST(It3Head, MatchesTheComposedOpsInF32) {
  for (const HeadShape& s : shapes())
    for (bool same : {false, true}) check_against_composed(s, {}, same, 1e-4, 1e-3);
}

TEST(It3Head, ComputesOnlyTheWantedGradients) {
  const HeadShape s = shapes()[0];
  Operands x = make_operands(s, {}, false);
  x.h_F = x.h_F.detach();                 // the shared body's detached features
  x.f[2] = x.f[2].detach();               // a frozen layer weight
  It3HeadLoss r = it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.F, s.spec);
  r.loss.backward();
  EXPECT_TRUE(x.h_f.grad().defined());
  EXPECT_FALSE(x.f[2].grad().defined());
  EXPECT_TRUE(x.f[3].grad().defined());
  EXPECT_FALSE(r.y0.requires_grad());
  EXPECT_FALSE(r.y1.requires_grad());
}

TEST(It3Head, FeatureHeadIsTheHeadsForward) {
  for (const HeadShape& s : shapes()) {
    Operands x = make_operands(s, {}, false);
    Tensor want = composed_head(x.h_f, x.s0, x.f, s.spec).detach();
    NoGradGuard ng;
    expect_close(feature_head(x.h_f, x.s0, x.f, s.spec), want, 1e-5, 1e-5, s.name);
  }
}

TEST(It3Head, ErrorsNameTheOp) {
  const HeadShape s = shapes()[0];
  Operands x = make_operands(s, {}, false);
  using testing::expect_error;
  expect_error([&] { it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.f, s.spec); }, "it3_head_loss",
               "the anchor F's weights must not require grad");
  Operands bad = x;
  bad.F[2] = zeros({50, 49});
  expect_error([&] { it3_head_loss(x.h_f, x.h_F, x.s0, x.f, bad.F, s.spec); }, "it3_head_loss",
               "F's layer 1 weight must be (50x50), got (50x49)");
  expect_error(
      [&] { it3_head_loss(x.h_f, x.h_F, zeros({8, 9}), x.f, x.F, s.spec); }, "it3_head_loss",
      "the last layer gives 10 outputs but the signal has C = 9");
  expect_error([&] { it3_head_loss(zeros({300, 50}), zeros({300, 50}), zeros({300, 10}), x.f, x.F,
                                   s.spec); },
               "it3_head_loss", "the batch must be 1 to 256 rows, got 300");
  It3HeadSpec five = s.spec;
  five.acts.assign(5, kNone);
  expect_error([&] { it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.F, five); }, "it3_head_loss",
               "the head needs 1 to 4 layers, got 5");
  expect_error([&] { feature_head(x.h_f, x.s0, x.f, s.spec); }, "feature_head",
               "must not require grad");
}

// The cnn's IT³ adaptation through the Adapter with the fused head and without: the same
// predictions and step losses within the gate, K = 1 and 3, the three frozen-style anchors.
struct AdaptRun {
  Tensor y, first, last;
  std::string reason;
};

AdaptRun adapt_cnn(Device d, it3::FusedMode head, it3::Anchor anchor, int steps, int64_t batch,
                   uint64_t seed) {
  auto model = it3::make_small_cnn(10, {DType::f32, d}, seed);
  it3::AdaptOptions o = it3::AdaptOptions::for_method(it3::Method::it3);
  o.steps = steps;
  o.anchor = anchor;
  if (anchor == it3::Anchor::ema) o.reset = it3::ResetPolicy::never;  // it3-online's pairing
  o.lr = 1e-2;  // large enough that the steps move the predictions visibly
  o.check_finite = false;
  o.fused_head = head;
  it3::Adapter a(model, o);
  AdaptRun r;
  r.reason = a.fused_head_reason();
  const it3::Input x(randn({batch, 1, 28, 28}, seed + 7, {DType::f32, d}));
  r.y = a.adapt_and_predict(x, nullptr, &r.first, &r.last).detach();
  return r;
}

void check_adapter(Device d, it3::FusedMode fused) {
  for (it3::Anchor anchor : {it3::Anchor::frozen, it3::Anchor::head, it3::Anchor::ema})
    for (int k : {1, 3}) {
      const std::string what = std::string("anchor ") + it3::anchor_name(anchor) + ", K " +
                               std::to_string(k) + " on " + d.str();
      const AdaptRun on = adapt_cnn(d, fused, anchor, k, 8, kSeed);
      const AdaptRun off = adapt_cnn(d, it3::FusedMode::off, anchor, k, 8, kSeed);
      EXPECT_EQ(on.reason, "") << what;
      EXPECT_NE(off.reason, "") << what;
      expect_close(on.first, off.first, 1e-4, 1e-3, what + " first loss");
      expect_close(on.last, off.last, 1e-4, 1e-3, what + " last loss");
      expect_close(on.y, off.y, 1e-4, 1e-3, what + " prediction");
    }
}

TEST(It3Head, AdapterGivesTheComposedPathsPredictions) {
  check_adapter(Device::cpu(), it3::FusedMode::on);
}

TEST(It3Head, AdapterSaysWhyNot) {
  auto model = it3::make_small_cnn(10, {}, 1);
  it3::AdaptOptions o = it3::AdaptOptions::for_method(it3::Method::it3);
  EXPECT_NE(it3::Adapter(model, o).fused_head_reason().find("on the CPU"), std::string::npos);
  o.fused_head = it3::FusedMode::on;
  EXPECT_EQ(it3::Adapter(model, o).fused_head_reason(), "");
  o.anchor = it3::Anchor::shared;
  EXPECT_NE(it3::Adapter(model, o).fused_head_reason().find("anchor"), std::string::npos);
  o.anchor = it3::Anchor::frozen;
  o.distance = it3::Distance::js;
  EXPECT_NE(it3::Adapter(model, o).fused_head_reason().find("distance js"), std::string::npos);
  o.distance = it3::Distance::l1;
  o.method = it3::Method::tent;
  EXPECT_NE(it3::Adapter(model, o).fused_head_reason().find("method tent"), std::string::npos);
}

TEST(It3HeadCuda, MatchesTheComposedOpsAndRunsOneLaunchEachWay) {
  IDEM_REQUIRE_GPU();
  const Options gpu{DType::f32, Device::cuda(0)};
  for (const HeadShape& s : shapes())
    for (bool same : {false, true}) check_against_composed(s, gpu, same, 1e-4, 1e-3);
  testing::PoisonGuard no_poison(false);
  const HeadShape s = shapes()[0];
  Operands x = make_operands(s, gpu, false);
  ops::It3HeadLossResult r;
  EXPECT_EQ(launches([&] { r = ops::it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.F, s.spec); }), 1u);
  const Tensor g = ones({}, gpu);
  const std::vector<bool> all(x.f.size(), true);
  ops::It3HeadGrads d;
  EXPECT_EQ(launches([&] {
              d = ops::it3_head_loss_backward(g, r.work, x.h_f, x.h_F, x.s0, x.f, x.F, s.spec,
                                              true, true, all);
            }),
            1u);
  // Nothing is atomic: a second call gives the same bits.
  const ops::It3HeadLossResult r2 = ops::it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.F, s.spec);
  const ops::It3HeadGrads d2 =
      ops::it3_head_loss_backward(g, r2.work, x.h_f, x.h_F, x.s0, x.f, x.F, s.spec, true, true, all);
  EXPECT_TRUE(testing::bit_equal(r2.loss, r.loss));
  EXPECT_TRUE(testing::bit_equal(d2.dh_f, d.dh_f));
  EXPECT_TRUE(testing::bit_equal(d2.df[2], d.df[2]));
  NoGradGuard ng;
  EXPECT_EQ(launches([&] { feature_head(x.h_f, x.s0, x.f, s.spec); }), 1u);
}

TEST(It3HeadCuda, AdapterGivesTheComposedPathsPredictions) {
  IDEM_REQUIRE_GPU();
  check_adapter(Device::cuda(0), it3::FusedMode::automatic);
}

}  // namespace
}  // namespace idem
