// it3_head_loss and feature_head (autograd/it3_head_function.h): the IT³ loss of a
// feature-injection head as one op, one launch each way on a GPU (core/kernels/it3_head.h).
//  - CPU, f64 and f32: the loss, y0, y1 and every gradient (h_f, h_F, f's embed and layers)
//    agree with the composed ops it replaces (linear_act, add, softmax, the distance) at the
//    cnn's head and at other shapes (one to three layers, odd widths, batch 1, relu / leaky /
//    none, l1 and mse), with h_f and h_F distinct tensors or the same one; F gets no gradient;
//    only the wanted gradients are computed; errors name the op.
//  - CUDA (skipped without a GPU): the same against the composed ops on the CPU, one launch
//    each way, the same bits on a second call; feature_head is one launch; staging (on by
//    default) picks the shared-memory kernel where it fits, and each setting gives the same
//    values; the graph path captures the head when it is on.
//  - The Adapter: the cnn's IT³ adaptation with the fused head gives the composed path's
//    predictions and losses under nine option variants (CPU with fused_head on; the GPU with
//    automatic), and takes the batches its mode allows.
// The op-case rows (tests/op_cases/fused_cases.cpp) add f64 gradcheck and CPU/CUDA parity.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/fused_functions.h"
#include "autograd/it3_head_function.h"
#include "it3/adapt.h"
#include "it3/adapt_path.h"
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
      // Batches that make every phase stride past the GPU block's 512 threads, and the limits:
      // four layers, width 256, batch 256.
      {"cnn_b64", 64, 50, 10, {50}, {kLeaky, {kLeaky, kNone}, 0.01, DistanceKind::l1}},
      {"widest_b256", 256, 256, 10, {256, 64, 32},
       {kRelu, {kLeaky, kRelu, kLeaky, kNone}, 0.05, DistanceKind::mse}},
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
  // Random, not the uniform ∅: an index mix-up in f's embed gradient dE = dzᵀ·s0 would hide
  // behind equal columns.
  r.s0 = rand({s.batch, s.classes}, kSeed + 2, o);
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

TEST(It3Head, ComputesOnlyTheWantedGradientsWithTheRightValues) {
  const HeadShape s = shapes()[0];
  const auto freeze = [](Operands x) {
    x.h_F = x.h_F.detach();   // the shared body's detached features
    x.f[0] = x.f[0].detach();  // a frozen embed weight
    x.f[2] = x.f[2].detach();  // a frozen layer weight
    return x;
  };
  const Results want = run(freeze(make_operands(s, {DType::f64}, false)), s.spec, false);
  const Operands x = freeze(make_operands(s, {}, false));
  const Results got = run(x, s.spec, true);
  EXPECT_FALSE(got.dh_F.defined());
  EXPECT_FALSE(got.df[0].defined());
  EXPECT_FALSE(got.df[2].defined());
  expect_close(got.dh_f, want.dh_f, 1e-4, 1e-3, "dh_f");
  for (size_t k : {1, 3, 4, 5}) expect_close(got.df[k], want.df[k], 1e-4, 1e-3, "df[" + std::to_string(k) + "]");
  // Only the head's last layer adapts: the embed's phase is skipped altogether.
  const auto last_layer_only = [](Operands x) {
    for (size_t k = 0; k < 4; ++k) x.f[k] = x.f[k].detach();
    x.h_f = x.h_f.detach(), x.h_F = x.h_F.detach();
    return x;
  };
  const Results only = run(last_layer_only(make_operands(s, {}, false)), s.spec, true);
  const Results only_want =
      run(last_layer_only(make_operands(s, {DType::f64}, false)), s.spec, false);
  expect_close(only.df[4], only_want.df[4], 1e-4, 1e-3, "last layer weight");
  expect_close(only.df[5], only_want.df[5], 1e-4, 1e-3, "last layer bias");
  EXPECT_FALSE(only.df[1].defined());
  It3HeadLoss r = it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.F, s.spec);
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
  expect_error([&] { it3_head_loss(x.h_f, zeros({8, 49}), x.s0, x.f, x.F, s.spec); },
               "it3_head_loss", "h_F (8x49) must have h_f's shape (8x50)");
  std::vector<Tensor> missing = x.F;
  missing[1] = Tensor();
  expect_error([&] { it3_head_loss(x.h_f, x.h_F, x.s0, x.f, missing, s.spec); }, "it3_head_loss",
               "F's embed bias");
  const ops::It3HeadLossResult r = ops::it3_head_loss(x.h_f, x.h_F, x.s0, x.f, x.F, s.spec);
  expect_error(
      [&] {
        ops::it3_head_loss_backward(ones({}), r.work, x.h_f, x.h_F, x.s0, x.f, x.F, s.spec, true,
                                    true, std::vector<bool>(3, true));
      },
      "it3_head_loss_backward", "need_df has 3 flags for 6 tensors of f");
  expect_error(
      [&] {
        ops::it3_head_loss_backward(ones({2}), r.work, x.h_f, x.h_F, x.s0, x.f, x.F, s.spec, true,
                                    true, std::vector<bool>(6, true));
      },
      "it3_head_loss_backward", "grad_output must hold 1 element");
}

// The cnn's IT³ adaptation through the Adapter with the fused head and without: the same
// predictions and step losses within the gate, K = 1 and 3, the three frozen-style anchors.
struct AdaptRun {
  Tensor y, first, last;
  std::string reason;
  bool fused = false;  // the batch went through the fused head
};

// One variation of the options: the knobs the fused head must follow as the composed ops do.
struct Variant {
  std::string name;
  std::function<void(it3::AdaptOptions&)> set;
};

std::vector<Variant> variants() {
  return {
      {"frozen", [](it3::AdaptOptions&) {}},
      {"head anchor", [](it3::AdaptOptions& o) { o.anchor = it3::Anchor::head; }},
      {"ema anchor, reset never",
       [](it3::AdaptOptions& o) { o.anchor = it3::Anchor::ema, o.reset = it3::ResetPolicy::never; }},
      {"mse", [](it3::AdaptOptions& o) { o.distance = it3::Distance::mse; }},
      {"prediction anchor", [](it3::AdaptOptions& o) { o.prediction = it3::Prediction::anchor; }},
      {"read-out before the update", [](it3::AdaptOptions& o) { o.readout_before_update = true; }},
      {"random one-hot ∅", [](it3::AdaptOptions& o) { o.neutral = it3::NeutralSignal::random_one_hot; }},
      {"random-step", [](it3::AdaptOptions& o) { o.method = it3::Method::random_step; }},
      {"last layer only", [](it3::AdaptOptions& o) { o.params = it3::ParamSelection::last(1); }},
  };
}

AdaptRun adapt_cnn(Device d, it3::FusedMode head, const Variant& v, int steps, int64_t batch,
                   uint64_t seed) {
  auto model = it3::make_small_cnn(10, {DType::f32, d}, seed);
  it3::AdaptOptions o = it3::AdaptOptions::for_method(it3::Method::it3);
  o.steps = steps;
  o.lr = 1e-2;  // large enough that the steps move the predictions visibly
  v.set(o);
  o.check_finite = false;
  o.fused_head = head;
  it3::Adapter a(model, o);
  AdaptRun r;
  r.reason = a.fused_head_reason();
  const it3::Input x(randn({batch, 1, 28, 28}, seed + 7, {DType::f32, d}));
  r.fused = a.uses_fused_head(x);
  r.y = a.adapt_and_predict(x, nullptr, &r.first, &r.last).detach();
  return r;
}

void check_adapter(Device d, it3::FusedMode fused) {
  for (const Variant& v : variants())
    for (int k : {1, 3}) {
      const std::string what = v.name + ", K " + std::to_string(k) + " on " + d.str();
      const AdaptRun on = adapt_cnn(d, fused, v, k, 8, kSeed);
      const AdaptRun off = adapt_cnn(d, it3::FusedMode::off, v, k, 8, kSeed);
      EXPECT_EQ(on.reason, "") << what;
      EXPECT_TRUE(on.fused) << what;
      EXPECT_NE(off.reason, "") << what;
      EXPECT_FALSE(off.fused) << what;
      expect_close(on.first, off.first, 1e-4, 1e-3, what + " first loss");
      expect_close(on.last, off.last, 1e-4, 1e-3, what + " last loss");
      expect_close(on.y, off.y, 1e-4, 1e-3, what + " prediction");
    }
}

TEST(It3Head, AdapterGivesTheComposedPathsPredictions) {
  check_adapter(Device::cpu(), it3::FusedMode::on);
}

TEST(It3Head, AdapterTakesUpToTheKernelsBatchWhenOn) {
  const int64_t most = kIt3HeadMaxBatch;
  EXPECT_TRUE(adapt_cnn(Device::cpu(), it3::FusedMode::on, variants()[0], 1, most, kSeed).fused);
  EXPECT_FALSE(adapt_cnn(Device::cpu(), it3::FusedMode::on, variants()[0], 1, most + 1, kSeed).fused);
}

TEST(It3Head, AdapterSaysWhyNot) {
  auto model = it3::make_small_cnn(10, {}, 1);
  it3::AdaptOptions o = it3::AdaptOptions::for_method(it3::Method::it3);
  EXPECT_EQ(o.fused_head, it3::FusedMode::automatic);  // the default
  EXPECT_NE(it3::Adapter(model, o).fused_head_reason().find("on the CPU"), std::string::npos);
  o.fused_head = it3::FusedMode::off;
  EXPECT_NE(it3::Adapter(model, o).fused_head_reason().find("is off"), std::string::npos);
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

// A CUDA-graph capture keeps the fused head only where asked for: under auto it is off there,
// since it was slower in a graph at every batch measured (flip this with kFusedHeadAutoInGraphs).
TEST(It3Head, GraphCapturesTakeItOnlyWhenOn) {
  EXPECT_EQ(it3::fused_head_in_graph(it3::FusedMode::on), it3::FusedMode::on);
  EXPECT_EQ(it3::fused_head_in_graph(it3::FusedMode::off), it3::FusedMode::off);
  EXPECT_EQ(it3::fused_head_in_graph(it3::FusedMode::automatic), it3::FusedMode::off);
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
  EXPECT_TRUE(testing::bit_equal(r2.y0, r.y0));
  EXPECT_TRUE(testing::bit_equal(r2.y1, r.y1));
  EXPECT_TRUE(testing::bit_equal(d2.dh_f, d.dh_f));
  EXPECT_TRUE(testing::bit_equal(d2.dh_F, d.dh_F));
  for (size_t k = 0; k < d.df.size(); ++k)
    EXPECT_TRUE(testing::bit_equal(d2.df[k], d.df[k])) << "df[" << k << "]";
  NoGradGuard ng;
  EXPECT_EQ(launches([&] { feature_head(x.h_f, x.s0, x.f, s.spec); }), 1u);
}

// Staging (on by default: core/kernels/it3_head.h) picks the kernel: with it on the cnn's
// shapes run the staged one (batch 8 needs 45 KB, which every GPU has, batch 64 157 KB, which
// an H100 has) and the limits the global-memory one (too large to stage); with it off every
// shape runs from global memory. Under each setting, whatever IDEM_IT3_HEAD_STAGED says, the
// values against the composed ops, and the Adapter's losses and predictions (feature_head
// included) against the composed path's.
TEST(It3HeadCuda, EachStagingSettingMatchesTheComposedOps) {
  IDEM_REQUIRE_GPU();
  struct Restore {
    bool was = it3_head_staging();
    ~Restore() { set_it3_head_staging(was); }
  } restore;
  const Options gpu{DType::f32, Device::cuda(0)};
  const std::vector<HeadShape> all = shapes();  // s below points into it
  for (const bool on : {false, true}) {
    set_it3_head_staging(on);
    for (const std::string name : {"cnn_b8", "widest_b256"}) {
      const HeadShape* s = nullptr;
      for (const HeadShape& c : all) s = c.name == name ? &c : s;
      ASSERT_NE(s, nullptr) << name;
      const Operands x = make_operands(*s, gpu, false);
      const It3HeadParams p = ops::it3_head_params(x.h_f, x.h_F, x.s0, x.f, x.F, s->spec, true, "test");
      const bool staged = on && name != "widest_b256";
      EXPECT_EQ(cuda::it3_head_staged(p, 0, false), staged) << name << " staging " << on;
      EXPECT_EQ(cuda::it3_head_staged(p, 0, true), staged) << name << " staging " << on;
    }
  }
  for (const bool on : {true, false}) {
    SCOPED_TRACE(on ? "staging on" : "staging off");
    set_it3_head_staging(on);
    for (const HeadShape& s : shapes())
      for (bool same : {false, true}) check_against_composed(s, gpu, same, 1e-4, 1e-3);
    check_adapter(Device::cuda(0), it3::FusedMode::automatic);
  }
}

// In a CUDA graph (the command line's graph path) the fused head is captured when it is on, and
// under auto only where kFusedHeadAutoInGraphs says it is faster; the replay's prediction is the
// composed eager one's either way.
TEST(It3HeadCuda, GraphPathCapturesItWhenOn) {
  IDEM_REQUIRE_GPU();
  const Device d = Device::cuda(0);
  const AdaptRun eager = adapt_cnn(d, it3::FusedMode::off, variants()[0], 1, 8, kSeed);
  for (const it3::FusedMode head : {it3::FusedMode::on, it3::FusedMode::automatic}) {
    const std::string what = std::string("--fused-head ") + it3::fused_mode_name(head);
    auto model = it3::make_small_cnn(10, {DType::f32, d}, kSeed);
    it3::AdaptOptions o = it3::AdaptOptions::for_method(it3::Method::it3);
    o.steps = 1;
    o.lr = 1e-2;
    o.fused_head = head;
    it3::PathAdapter p(model, o, {}, it3::AdaptPath::graph);
    const it3::Input x(randn({8, 1, 28, 28}, kSeed + 7, {DType::f32, d}));
    const it3::AdaptResult r = p.predict(x);
    EXPECT_EQ(p.path(), it3::AdaptPath::graph) << what;
    EXPECT_EQ(p.captures(), 1u) << what;
    EXPECT_EQ(p.adapter().uses_fused_head(x), head == it3::FusedMode::on || it3::kFusedHeadAutoInGraphs)
        << what;
    expect_close(r.prediction, eager.y, 1e-4, 1e-3, what + " prediction");
    // A second batch replays the same graph.
    const it3::AdaptResult r2 = p.predict(x);
    EXPECT_EQ(p.captures(), 1u) << what;
    expect_close(r2.prediction, eager.y, 1e-4, 1e-3, what + " second prediction");
  }
}

TEST(It3HeadCuda, AdapterGivesTheComposedPathsPredictions) {
  IDEM_REQUIRE_GPU();
  check_adapter(Device::cuda(0), it3::FusedMode::automatic);
  // Automatic stops at kFusedHeadAutoMaxBatch rows; on goes on to kIt3HeadMaxBatch.
  const int64_t above = it3::kFusedHeadAutoMaxBatch + 1;
  EXPECT_FALSE(adapt_cnn(Device::cuda(0), it3::FusedMode::automatic, variants()[0], 1, above, kSeed).fused);
  EXPECT_TRUE(adapt_cnn(Device::cuda(0), it3::FusedMode::on, variants()[0], 1, above, kSeed).fused);
}

}  // namespace
}  // namespace idem
