// IT³ module: recursive-input models, training objective, adaptation and baselines
// (issue "The it3 module"; docs/it3.md, and docs/design.md#tests for what IT³ tests must show).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <unordered_set>

#include "autograd/node.h"
#include "core/kernels/runtime.h"
#include "it3/adapt.h"
#include "it3/models.h"
#include "it3/training.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/mlp.h"
#include "layers/optim.h"
#include "test_util.h"

using namespace idem;
using namespace idem::it3;
using idem::testing::bit_equal;
using idem::testing::expect_error;

namespace {

Tensor to_cpu(const Tensor& t) { return t.to(Device::cpu()); }

bool params_bit_equal(const Module& a, const Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i)
    if (!bit_equal(to_cpu(pa[i].second), to_cpu(pb[i].second))) return false;
  return true;
}

// A smooth regression target: y = Σ_j tanh(x_j · w_j) + 0.5·x_0·x_1.
Tensor tab_target(const Tensor& x) {
  const int64_t d = x.size(1);
  std::vector<float> w(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) w[size_t(j)] = float(0.5 + 0.25 * double(j % 4));
  Tensor wt = from_vector<float>(w, {1, d});
  Tensor y = sum(tanh(x * wt), {1}, true);
  return y + narrow(x, 1, 0, 1) * narrow(x, 1, 1, 1) * 0.5;
}

// Trains `model` on (x, y) batches from `make` for `steps` Adam steps with the IT³ objective.
void fit(RecursiveModel& model, const std::function<std::pair<Input, Tensor>(int64_t)>& make,
         int steps, double lr, TrainOptions topt) {
  model.train();
  AdamOptions ao;
  ao.lr = lr;
  Adam opt(model.parameters(), ao);
  for (int s = 0; s < steps; ++s) {
    auto [x, y] = make(s);
    train_step(model, opt, x, y, topt, s);
  }
  model.eval();
}

std::shared_ptr<RecursiveModel> trained_mlp(uint64_t seed = 1) {
  auto m = make_mlp_model(4, {16, 16}, SignalSpec::regression(1, 5.0), {}, seed);
  TrainOptions t = TrainOptions::for_task(TaskKind::regression);
  t.p_feed = 0.5;
  t.source = SignalSource::self_detached;
  t.signal_noise = 0.1;
  fit(*m, [](int64_t s) {
        Tensor x = randn({32, 4}, 100 + uint64_t(s));
        return std::make_pair(Input(x), tab_target(x));
      }, 300, 3e-3, t);
  return m;
}

// The idempotence loss d(F(x, s(f(x,∅))), f(x,∅)) of an adapter's current weights.
double idempotence_loss(Adapter& a, const Input& x) {
  NoGradGuard ng;
  Tensor y0 = a.model().forward_neutral(x);
  Tensor s = a.model().to_signal(y0);
  Tensor y1 = a.anchor().forward(x, s);
  if (a.model().task() == TaskKind::classification)
    return distance(softmax(y1, 1), s, a.options().distance).item();
  return distance(y1, y0, a.options().distance).item();
}

// Adapting on `shifted` lowers d(F(x, s(f(x,∅))), f(x,∅)) by at least 10 %.
void expect_adaptation_lowers_idempotence_loss(const std::shared_ptr<RecursiveModel>& m,
                                               const Input& shifted, const AdaptOptions& o) {
  Adapter a(m, o);
  Adapter none(m, AdaptOptions::for_method(Method::none));
  const double before = idempotence_loss(none, shifted);
  a.predict(shifted);
  const double after = idempotence_loss(a, shifted);
  EXPECT_LT(after, before * 0.9) << "before " << before << " after " << after;
}

// Tiny 10-class images: class c = a bright 6×6 square at one of 10 positions, plus noise.
std::pair<Tensor, Tensor> toy_images(int64_t n, uint64_t seed, double noise = 0.1) {
  Tensor noise_t = rand({n, 1, 28, 28}, seed);
  std::vector<float> img = noise_t.to_vector<float>();
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (i * 7 + int64_t(seed)) % 10;
    labels[size_t(i)] = c;
    const int64_t r0 = 3 + (c / 5) * 13, c0 = 2 + (c % 5) * 5;
    for (int64_t p = 0; p < 28 * 28; ++p) img[size_t(i * 784 + p)] *= float(noise);
    for (int64_t r = r0; r < r0 + 6; ++r)
      for (int64_t q = c0; q < c0 + 6 && q < 28; ++q) img[size_t(i * 784 + r * 28 + q)] += 0.9f;
  }
  return {from_vector<float>(img, {n, 1, 28, 28}), from_vector<int64_t>(labels, {n})};
}

std::shared_ptr<RecursiveModel> trained_bn_cnn() {
  auto m = make_bn_cnn(10, 4, 8, {}, 7);
  TrainOptions t = TrainOptions::for_task(TaskKind::classification);
  fit(*m, [](int64_t s) {
        auto [x, y] = toy_images(16, 300 + uint64_t(s));
        return std::make_pair(Input(x), y);
      }, 40, 1e-2, t);
  return m;
}

}  // namespace

// ---- models ----

TEST(It3Models, ParameterNamesMatchTheBenchmarkContract) {
  auto mlp = make_mlp_model(13, {30, 20, 10}, SignalSpec::regression(1, 50.0), {}, 0);
  auto names = mlp->state_dict();
  for (const char* k : {"net.layers.0.weight", "net.layers.0.bias", "net.layers.6.weight"})
    EXPECT_TRUE(names.count(k)) << k;
  EXPECT_EQ(mlp->parameter("net.layers.0.weight").shape(), (Shape{30, 14}));

  auto cnn = make_small_cnn(10, {}, 0);
  for (const char* k : {"body.0.weight", "body.3.weight", "body.7.weight", "embed.0.weight",
                        "head.0.weight", "head.2.bias"})
    EXPECT_TRUE(cnn->has_parameter(k)) << k;

  auto sage = make_sage_model(2, 64, 4, SignalSpec::regression(1, 0.2), {}, 0);
  for (const char* k : {"convs.0.lin_l.weight", "convs.0.lin_l.bias", "convs.0.lin_r.weight",
                        "convs.3.lin_r.weight", "head.weight", "head.bias"})
    EXPECT_TRUE(sage->has_parameter(k)) << k;
  EXPECT_EQ(sage->parameter("convs.0.lin_l.weight").shape(), (Shape{64, 3}));
}

// The bench cnn's body runs each MaxPool2d + LeakyReLU as one max_pool2d_act (push_pool) and
// Linear + LeakyReLU as one linear_act: the same children, names and repr as the plain
// module list, the forward bits of the module-by-module run, and its gradients (to rounding:
// linear_act's weight gradients sum in another order; the pool's are bit-equal).
TEST(It3Models, SmallCnnBodyFusesPoolAndActivation) {
  auto cnn = std::dynamic_pointer_cast<FeatureModel>(make_small_cnn(10, {DType::f64}, 4));
  ASSERT_NE(cnn, nullptr);
  auto body = std::dynamic_pointer_cast<FusedSequential>(cnn->body());
  ASSERT_NE(body, nullptr);
  const char* types[] = {"Conv2d",    "MaxPool2d", "LeakyReLU", "Conv2d",   "MaxPool2d",
                         "LeakyReLU", "Flatten",   "Linear",    "LeakyReLU"};
  ASSERT_EQ(body->size(), 9u);
  for (size_t i = 0; i < body->size(); ++i) {
    EXPECT_EQ(body->children()[i].first, std::to_string(i));
    EXPECT_EQ((*body)[i]->type_name(), types[i]) << "child " << i;
  }
  EXPECT_NE(body->repr().find("LeakyReLU(negative_slope=0.01)"), std::string::npos) << body->repr();

  Tensor im = randn({3, 1, 28, 28}, 12, {DType::f64});
  Tensor fused = body->forward(im), plain = body->forward_unfused(im);
  EXPECT_TRUE(bit_equal(fused, plain));
  // The first pool + LeakyReLU alone: one fused node, the unfused run's bits, both ways.
  Tensor conv = (*body)[0]->forward(im).detach();
  Tensor c1 = conv.clone_data().requires_grad_(), c2 = conv.clone_data().requires_grad_();
  Tensor p1 = max_pool2d_act(c1, 2, 0, 0, FusedAct::leaky_relu, 0.01);
  Tensor p2 = (*body)[2]->forward((*body)[1]->forward(c2));
  EXPECT_TRUE(bit_equal(p1, p2));
  const Tensor gp = randn(p1.shape(), 13, {DType::f64});
  p1.backward(gp);
  p2.backward(gp);
  EXPECT_TRUE(bit_equal(c1.grad(), c2.grad()));

  const Tensor up = randn(fused.shape(), 14, {DType::f64});
  std::vector<Tensor> fused_grads;
  cnn->zero_grad();
  sum(mul(fused, up)).backward();
  for (const Tensor& p : body->parameters()) fused_grads.push_back(p.grad());
  cnn->zero_grad();
  sum(mul(plain, up)).backward();
  const auto named = body->named_parameters();
  ASSERT_EQ(named.size(), fused_grads.size());
  for (size_t i = 0; i < named.size(); ++i) {
    const auto a = fused_grads[i].to_vector<double>();
    const auto b = named[i].second.grad().to_vector<double>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k)
      ASSERT_NEAR(a[k], b[k], 1e-12 * (1 + std::fabs(b[k]))) << named[i].first << " element " << k;
  }

  // The it3 taps see the same activations (names and values) fused and unfused.
  std::vector<size_t> seen;
  std::vector<Tensor> tapped;
  body->forward_with(im, [&](size_t i, const Tensor& h) {
    seen.push_back(i);
    tapped.push_back(h);
  });
  EXPECT_EQ(seen, (std::vector<size_t>{0, 2, 3, 5, 6, 8}));
  Tensor h = im;
  for (size_t i = 0; i < body->size(); ++i) {
    h = (*body)[i]->forward(h);
    const auto at = std::find(seen.begin(), seen.end(), i);
    if (at != seen.end()) EXPECT_TRUE(bit_equal(h, tapped[size_t(at - seen.begin())])) << i;
  }
}

TEST(It3Models, EveryInjectionModeRunsAndUsesTheSignal) {
  Tensor x = randn({3, 5}, 1);
  auto concat = make_mlp_model(5, {8}, SignalSpec::regression(2, 10.0), {}, 1);
  Tensor a = concat->forward(Input(x), full({3, 2}, 1.0));
  Tensor b = concat->forward(Input(x), full({3, 2}, -1.0));
  EXPECT_EQ(a.shape(), (Shape{3, 2}));
  EXPECT_FALSE(bit_equal(a, b)) << "the signal must change the output";

  auto net = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Conv2d>(1 + 3, 2, 3, Conv2dOptions{}, Options{}, 1),
      std::make_shared<Flatten>(), std::make_shared<Linear>(2 * 4 * 4, 3, true, Options{}, 2)});
  PlaneModel plane(net, SignalSpec::classification(3));
  Tensor img = randn({2, 1, 6, 6}, 3);
  Tensor p1 = plane.forward(Input(img), full({2, 3}, 1.0 / 3));
  Tensor p2 = plane.forward(Input(img), full({2, 3}, 0.9));
  EXPECT_EQ(p1.shape(), (Shape{2, 3}));
  EXPECT_FALSE(bit_equal(p1, p2));

  auto cnn = make_small_cnn(10, {}, 2);
  Tensor im = randn({2, 1, 28, 28}, 4);
  Tensor c0 = cnn->forward_neutral(Input(im));
  Tensor c1 = cnn->forward(Input(im), one_hot(from_vector<int64_t>({1, 2}, {2}), 10));
  EXPECT_EQ(c0.shape(), (Shape{2, 10}));
  EXPECT_FALSE(bit_equal(c0, c1));

  Input g = grid_mesh_batch(2, 4);
  EXPECT_EQ(g.x.shape(), (Shape{32, 2}));
  EXPECT_EQ(g.graph->num_graphs, 2);
  // 4×4 grid: 3 directions → 12 right + 12 down + 9 diagonal = 33 undirected edges per graph.
  EXPECT_EQ(g.graph->num_edges(), 2 * 2 * 33);
  auto sage = make_sage_model(2, 8, 2, SignalSpec::regression(1, 0.2), {}, 3);
  Tensor s0 = sage->forward_neutral(g);
  Tensor s1 = sage->forward(g, full({2, 1}, 1.0));
  EXPECT_EQ(s0.shape(), (Shape{2, 1}));
  EXPECT_FALSE(bit_equal(s0, s1));
}

TEST(It3Models, NeutralSignal) {
  auto reg = make_mlp_model(2, {4}, SignalSpec::regression(1, 50.0), {}, 0);
  EXPECT_EQ(reg->neutral(3, Device::cpu()).to_vector<float>(), std::vector<float>(3, 50.f));
  auto cls = make_small_cnn(10, {}, 0);
  EXPECT_NEAR(cls->neutral(1, Device::cpu()).to_vector<float>()[4], 0.1, 1e-7);
  EXPECT_EQ(SignalSpec::classification(4, true).neutral_fill(), 0.0);
  // Cached: the same tensor storage for the same batch and device.
  EXPECT_EQ(reg->neutral(3, Device::cpu()).raw_data(), reg->neutral(3, Device::cpu()).raw_data());
}

TEST(It3Models, CloneAndCheckpointKeepTheModel) {
  auto m = make_small_cnn(10, {}, 5);
  auto c = std::dynamic_pointer_cast<RecursiveModel>(m->clone());
  ASSERT_NE(c, nullptr);
  Tensor im = randn({2, 1, 28, 28}, 9);
  EXPECT_TRUE(bit_equal(m->forward_neutral(Input(im)), c->forward_neutral(Input(im))));
}

// ---- misuse ----

TEST(It3Misuse, WrongSignalShapeNamesTheExpectedShape) {
  auto m = make_mlp_model(3, {4}, SignalSpec::regression(1, 50.0), {}, 0);
  Tensor x = randn({5, 3}, 1);
  expect_error([&] { m->forward(Input(x), zeros({5, 2})); }, "ConcatModel", "(5, 1)");
  expect_error([&] { m->forward(Input(x), zeros({4, 1})); }, "ConcatModel", "does not fit");
}

TEST(It3Misuse, TentOnRegressionIsAClearError) {
  auto m = make_mlp_model(3, {4}, SignalSpec::regression(), {}, 0);
  expect_error([&] { Adapter a(m, AdaptOptions::for_method(Method::tent)); }, "it3::Adapter",
               "classification");
}

TEST(It3Misuse, AdaptingParametersThatDoNotExist) {
  auto m = make_mlp_model(3, {4}, SignalSpec::regression(), {}, 0);
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.params = ParamSelection::named({"net.layers.9"});
  expect_error([&] { Adapter a(m, o); }, "it3::Adapter", "no parameter or module named 'net.layers.9'");
  // A model without normalization layers has nothing for "norm".
  o.params = ParamSelection::norm_affine();
  expect_error([&] { Adapter a(m, o); }, "it3::Adapter", "no normalization layers");
}

TEST(It3Misuse, BatchOfOneWithBatchStatistics) {
  auto m = make_bn_cnn(10, 2, 4, {}, 0);
  m->eval();
  Tensor x = randn({1, 1, 28, 28}, 2);
  Adapter bn(m, AdaptOptions::for_method(Method::bn));
  expect_error([&] { bn.predict(Input(x)); }, "it3::Adapter", "at least 2 samples");
  Adapter tent(m, AdaptOptions::for_method(Method::tent));
  expect_error([&] { tent.predict(Input(x)); }, "it3::Adapter", "at least 2 samples");
}

TEST(It3Misuse, BadKnobs) {
  auto m = make_mlp_model(3, {4}, SignalSpec::regression(), {}, 0);
  AdaptOptions o;
  o.steps = -1;
  expect_error([&] { Adapter a(m, o); }, "it3::Adapter", "steps");
  o = AdaptOptions{};
  o.distance = Distance::js;
  expect_error([&] { Adapter a(m, o); }, "it3::Adapter", "js");
  expect_error([&] { parse_method("tnet"); }, "it3::Adapter", "unknown method");
  expect_error([&] { parse_prediction("adaptd"); }, "it3::Adapter", "unknown prediction");
  o = AdaptOptions::for_method(Method::it3);
  o.anchor = Anchor::ema;  // with the default per-batch reset
  expect_error([&] { Adapter a(m, o); }, "it3::Adapter", "anchor ema with reset per_batch");
  expect_error([&] { Adapter a(m, AdaptOptions::for_method(Method::actmad)); }, "it3::Adapter",
               "training statistics");
}

// ---- K = 0 is plain inference, bit for bit ----

TEST(It3Adapt, ZeroStepsPredictExactlyPlainInference) {
  auto m = trained_bn_cnn();
  auto [x, y] = toy_images(8, 77, 0.4);
  Input in(x);
  Tensor plain;
  {
    NoGradGuard ng;
    plain = m->forward_neutral(in);
  }
  ActmadStats stats = collect_actmad_stats(*m, {Input(toy_images(16, 5).first)});
  for (Method meth : {Method::it3, Method::it3_online, Method::actmad}) {
    AdaptOptions o = AdaptOptions::for_method(meth);
    o.steps = 0;
    Adapter a(m, o, stats);
    EXPECT_TRUE(bit_equal(a.predict(in).prediction, plain)) << method_name(meth);
  }
  // tent normalizes with the batch by design: with K = 0 it is exactly the `bn` baseline.
  AdaptOptions t = AdaptOptions::for_method(Method::tent);
  t.steps = 0;
  Adapter tent(m, t), bn(m, AdaptOptions::for_method(Method::bn));
  Tensor pb = bn.predict(in).prediction;
  EXPECT_TRUE(bit_equal(tent.predict(in).prediction, pb));
  EXPECT_FALSE(bit_equal(pb, plain)) << "bn must use the test batch's statistics";
  // The trained model itself is untouched by any adapter (running statistics included).
  Tensor again;
  {
    NoGradGuard ng;
    again = m->forward_neutral(in);
  }
  EXPECT_TRUE(bit_equal(again, plain));
}

// ---- resets ----

TEST(It3Adapt, OfflineKeepsTheAnchorAndRestoresWeightsAndOptimizerState) {
  auto m = trained_mlp();
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 3;
  o.lr = 1e-2;
  Adapter a(m, o);
  Input x1(randn({16, 4}, 11) * 2.0 + 1.0), x2(randn({16, 4}, 12) * 2.0 - 1.0);
  const void* storage = a.model().parameters()[0].raw_data();
  AdaptResult r1 = a.predict(x1);
  EXPECT_TRUE(params_bit_equal(a.anchor(), *m)) << "the frozen anchor must not change";
  EXPECT_FALSE(params_bit_equal(a.model(), *m)) << "three steps must move θ";
  a.reset();
  EXPECT_TRUE(params_bit_equal(a.model(), *m)) << "reset restores θ = Θ exactly";
  for (float v : to_cpu(a.optimizer()->state_buffer()).to_vector<float>()) ASSERT_EQ(v, 0.f);
  EXPECT_EQ(a.optimizer()->step_count(0), 0);
  EXPECT_EQ(a.model().parameters()[0].raw_data(), storage) << "reset must not reallocate";
  // Episodic: the same batch again gives the same bits (θ and moments were reset).
  a.predict(x2);
  EXPECT_TRUE(bit_equal(a.predict(x1).prediction, r1.prediction));
  EXPECT_TRUE(params_bit_equal(a.anchor(), *m));
}

TEST(It3Adapt, FrozenAnchorBuildsNoWeightGradientWork) {
  auto m = make_mlp_model(4, {8, 8}, SignalSpec::regression(1, 5.0), {}, 3);
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 1;
  Adapter a(m, o);
  Input x(randn({6, 4}, 1));
  // Walk the graph of one adaptation loss and count edges into leaves (parameters): with a
  // frozen F only f_θ's parameters appear, each exactly once.
  Tensor y0 = a.model().forward_neutral(x);
  Tensor loss = distance(a.anchor().forward(x, y0), y0, Distance::l1);
  std::vector<std::shared_ptr<Node>> stack{loss.grad_fn()};
  std::unordered_set<const Node*> seen;
  size_t leaf_edges = 0;
  while (!stack.empty()) {
    auto n = stack.back();
    stack.pop_back();
    if (!n || !seen.insert(n.get()).second) continue;
    for (const Edge& e : n->next()) {
      if (e.leaf) ++leaf_edges;
      if (e.fn) stack.push_back(e.fn);
    }
  }
  EXPECT_EQ(leaf_edges, a.model().parameters().size());
  loss.backward();
  for (const Tensor& p : a.anchor().parameters()) {
    EXPECT_FALSE(p.requires_grad());
    EXPECT_FALSE(p.grad().defined()) << "F must get no weight gradient";
  }
  for (const Tensor& p : a.model().parameters()) EXPECT_TRUE(p.grad().defined());
}

// At the first step after a reset f = Θ = F, so the Adapter runs the body once for both passes
// (share_first_features_ in it3/adapt.cpp). The predictions must be those of IT³ written out
// with F running its own body: the same bits, K = 1 and 3 (the later steps run both bodies),
// Adam and SGD, two batches (a reset between them).
TEST(It3Adapt, SharedFirstStepFeaturesGiveTheBitsOfTwoBodies) {
  auto trained = make_small_cnn(10, {}, 7);
  const Tensor xs[] = {randn({4, 1, 28, 28}, 8), randn({4, 1, 28, 28}, 9)};
  for (OptimizerKind opt : {OptimizerKind::adam, OptimizerKind::sgd})
    for (int k : {1, 3}) {
      SCOPED_TRACE(std::string(opt == OptimizerKind::adam ? "adam" : "sgd") + ", K " +
                   std::to_string(k));
      AdaptOptions o = AdaptOptions::for_method(Method::it3);
      o.steps = k;
      o.optimizer = opt;
      o.lr = 0.05;  // large steps, so a step that went wrong would show
      Adapter a(trained, o);
      for (const Tensor& x : xs) {
        const Tensor got = a.predict(Input(x)).prediction;
        // IT³ by hand: θ ← Θ, K steps of d(softmax(F(x, f(x, ∅))), f(x, ∅)), F = Θ frozen.
        auto f = std::dynamic_pointer_cast<RecursiveModel>(trained->clone());
        auto F = std::dynamic_pointer_cast<RecursiveModel>(trained->clone());
        f->eval();
        F->eval();
        F->set_requires_grad(false);
        std::unique_ptr<Optimizer> step;
        if (opt == OptimizerKind::adam) {
          AdamOptions ao;
          ao.lr = o.lr;
          step = std::make_unique<Adam>(f->parameters(), ao);
        } else {
          SGDOptions so;
          so.lr = o.lr;
          step = std::make_unique<SGD>(f->parameters(), so);
        }
        const Input in(x);
        const Tensor s0 = f->neutral(4, x.device(), x.dtype());
        for (int i = 0; i < k; ++i) {
          step->zero_grad();
          const Tensor y0 = f->forward(in, s0);
          const Tensor s = f->to_signal(y0);  // fed to F and compared with y1
          const Tensor y1 = F->forward(in, s);
          distance(softmax(y1, 1), s, o.distance).backward();
          step->step();
        }
        NoGradGuard ng;
        EXPECT_TRUE(bit_equal(got, f->forward(in, s0)));
      }
    }
  // The shared path runs: F's body reports its activations to a tap sink only when it runs,
  // which is never at K = 1 and on steps 2 and 3 only at K = 3 (the prediction runs f_θ).
  size_t per_body = 0;
  {
    auto probe = std::dynamic_pointer_cast<RecursiveModel>(trained->clone());
    probe->set_tap_sink([&](const std::string& name, const Tensor&) {
      if (name.rfind("body.", 0) == 0) ++per_body;
    });
    NoGradGuard ng;
    probe->forward_neutral(Input(xs[0]));
  }
  ASSERT_GT(per_body, 0u);
  for (int k : {1, 3}) {
    AdaptOptions o = AdaptOptions::for_method(Method::it3);
    o.steps = k;
    Adapter a(trained, o);
    size_t taps = 0;
    a.anchor().set_tap_sink([&](const std::string& name, const Tensor&) {
      if (name.rfind("body.", 0) == 0) ++taps;
    });
    a.predict(Input(xs[0]));
    EXPECT_EQ(taps, per_body * size_t(k - 1)) << "K " << k;
  }
}

// ---- one step by hand: an independent f64 finite-difference gradient ----

TEST(It3Adapt, OneStepEqualsAFiniteDifferenceUpdate) {
  // A tiny network with hand-set weights, in f64: f(x, s) = W2·relu(W1·[x, s] + b1) + b2.
  auto m = make_mlp_model(2, {3}, SignalSpec::regression(1, 2.0), Options{DType::f64}, 0);
  auto net = std::dynamic_pointer_cast<ConcatModel>(m);
  const std::vector<double> w1{0.3, -0.2, 0.1, 0.5, 0.4, -0.3, -0.6, 0.2, 0.25};
  const std::vector<double> b1{0.05, -0.1, 0.2}, w2{0.7, -0.4, 0.3}, b2{0.1};
  idem::testing::set(m->parameter("net.layers.0.weight"), w1);
  idem::testing::set(m->parameter("net.layers.0.bias"), b1);
  idem::testing::set(m->parameter("net.layers.2.weight"), w2);
  idem::testing::set(m->parameter("net.layers.2.bias"), b2);
  Tensor xt = from_vector<double>({0.5, -1.0, 1.5, 0.25, -0.75, 2.0}, {3, 2});
  Input x(xt);

  const double lr = 0.1;
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 1, o.lr = lr, o.optimizer = OptimizerKind::sgd, o.distance = Distance::mse;
  Adapter a(m, o);
  a.predict(x);

  // g(θ) = mean (F(x, f_θ(x,∅)) − f_θ(x,∅))², F fixed at Θ; central differences in f64.
  auto theta = m->named_parameters();
  auto loss_at = [&](const std::string& name, size_t i, double delta) {
    auto probe = std::dynamic_pointer_cast<RecursiveModel>(m->clone());
    NoGradGuard ng;
    Tensor p = probe->parameter(name);
    std::vector<double> v = p.to_vector<double>();
    v[i] += delta;
    idem::testing::set(p, v);
    Tensor y0 = probe->forward_neutral(x);
    Tensor y1 = m->forward(x, y0);  // the anchor: the untouched trained weights
    return mse_loss(y1, y0).item();
  };
  const double eps = 1e-6;
  for (const auto& [name, p] : theta) {
    std::vector<double> before = p.to_vector<double>();
    std::vector<double> after = a.model().parameter(name).to_vector<double>();
    for (size_t i = 0; i < before.size(); ++i) {
      const double g = (loss_at(name, i, eps) - loss_at(name, i, -eps)) / (2 * eps);
      EXPECT_NEAR(after[i], before[i] - lr * g, 1e-8) << name << "[" << i << "]";
    }
  }
}

// ---- online: the EMA anchor ----

TEST(It3Adapt, OnlineAnchorFollowsThetaWithRateAlpha) {
  auto m = make_mlp_model(3, {5}, SignalSpec::regression(1, 4.0), {}, 9);
  AdaptOptions o = AdaptOptions::for_method(Method::it3_online);
  o.steps = 1, o.lr = 0.05, o.ema_alpha = 0.9, o.optimizer = OptimizerKind::sgd;
  Adapter a(m, o);
  Input x(randn({8, 3}, 4));
  std::vector<std::vector<float>> f_prev;
  for (const Tensor& p : a.anchor().parameters()) f_prev.push_back(p.to_vector<float>());
  for (int batch = 0; batch < 3; ++batch) {
    a.predict(x);
    auto fp = a.anchor().parameters();
    auto tp = a.model().parameters();
    for (size_t i = 0; i < fp.size(); ++i) {
      std::vector<float> f = fp[i].to_vector<float>(), t = tp[i].to_vector<float>();
      for (size_t j = 0; j < f.size(); ++j) {
        const double want = 0.9 * double(f_prev[i][j]) + 0.1 * double(t[j]);
        ASSERT_NEAR(f[j], want, 1e-6) << "batch " << batch << " param " << i << "[" << j << "]";
      }
      f_prev[i] = f;
    }
  }
  // Never reset: θ keeps moving away from Θ over the batches.
  EXPECT_FALSE(params_bit_equal(a.model(), *m));
}

// ---- counters ----

TEST(It3Adapt, CountersAreExact) {
  auto m = trained_bn_cnn();
  Input x(toy_images(4, 3).first);
  for (int k : {1, 3}) {
    AdaptOptions o = AdaptOptions::for_method(Method::it3);
    o.steps = k;
    Adapter a(m, o);
    Cost c = a.predict(x).cost;
    EXPECT_EQ(c.forwards, uint64_t(2 * k + 1));
    EXPECT_EQ(c.backwards, uint64_t(k));
    EXPECT_EQ(c.optimizer_steps, uint64_t(k));
    EXPECT_EQ(c.samples, 4u);
    int64_t bytes = 0;
    for (const Tensor& t : m->parameters()) bytes += t.numel() * 4;
    for (const Tensor& t : m->buffers()) bytes += t.numel() * int64_t(dtype_size(t.dtype()));
    bytes += a.optimizer()->state_buffer().numel() * 4;
    EXPECT_EQ(c.reset_bytes, uint64_t(bytes));
    EXPECT_GT(c.wall_us, 0.0);
    a.predict(x);
    EXPECT_EQ(a.total().forwards, uint64_t(2 * (2 * k + 1)));
    EXPECT_EQ(a.total().batches, 2u);
  }
  AdaptOptions p = AdaptOptions::for_method(Method::it3);
  p.steps = 2, p.prediction = Prediction::anchor;
  EXPECT_EQ(Adapter(m, p).predict(x).cost.forwards, 6u);
  Adapter none(m, AdaptOptions::for_method(Method::none));
  Cost cn = none.predict(x).cost;
  EXPECT_EQ(cn.forwards, 1u);
  EXPECT_EQ(cn.backwards, 0u);
  EXPECT_EQ(cn.reset_bytes, 0u);
  AdaptOptions t = AdaptOptions::for_method(Method::tent);
  t.steps = 2;
  Cost ct = Adapter(m, t).predict(x).cost;
  EXPECT_EQ(ct.forwards, 3u);
  EXPECT_EQ(ct.backwards, 2u);
}

// ---- adaptation lowers the idempotence loss on shifted inputs ----

TEST(It3Adapt, LowersIdempotenceLossMlp) {
  auto m = trained_mlp();
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 10, o.lr = 3e-3;
  expect_adaptation_lowers_idempotence_loss(m, Input(randn({32, 4}, 99) * 2.5 + 1.5), o);
}

TEST(It3Adapt, LowersIdempotenceLossCnn) {
  auto m = trained_bn_cnn();
  Input shifted(toy_images(16, 1234, 0.6).first * 0.5);  // dimmer, noisier
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 10, o.lr = 1e-4;  // Adam moves every weight by ~lr per step: 1e-3 × 10 overshoots on this CNN
  expect_adaptation_lowers_idempotence_loss(m, shifted, o);
}

TEST(It3Adapt, LowersIdempotenceLossGnn) {
  // Graph-level regression on grid meshes: target = mean over nodes of (x + y)², positions
  // jittered per graph.
  auto make = [](int64_t b, uint64_t seed, double scale) {
    Input g = grid_mesh_batch(b, 4);
    Tensor jitter = randn(g.x.shape(), seed) * 0.1;
    Tensor x = g.x * scale + jitter;
    Tensor node_t = square(sum(x, {1}, true));
    Tensor y = global_mean_pool(node_t, g.graph->batch_vector(), b);
    return std::make_pair(Input(x, g.graph), y);
  };
  auto m = make_sage_model(2, 16, 2, SignalSpec::regression(1, 4.0), {}, 5);
  TrainOptions t = TrainOptions::for_task(TaskKind::regression);
  t.p_feed = 0.5, t.source = SignalSource::self_detached, t.signal_noise = 0.1;
  fit(*m, [&](int64_t s) { return make(8, 500 + uint64_t(s), 1.0); }, 150, 5e-3, t);
  auto [shifted, y] = make(8, 42, 1.8);
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 10, o.lr = 1e-3;
  expect_adaptation_lowers_idempotence_loss(m, shifted, o);
}

TEST(It3Adapt, BaselinesRunAndMoveOnlyWhatTheyShould) {
  auto m = trained_bn_cnn();
  Input x(toy_images(8, 5, 0.5).first);
  AdaptOptions t = AdaptOptions::for_method(Method::tent);
  t.steps = 2;
  Adapter tent(m, t);
  // tent adapts only the BatchNorm affine parameters.
  for (const auto& n : tent.adapted_names())
    EXPECT_TRUE(n.find("weight") != std::string::npos || n.find("bias") != std::string::npos);
  EXPECT_EQ(tent.adapted_names().size(), 4u);  // 2 BatchNorm2d × (weight, bias)
  AdaptResult r = tent.predict(x);
  EXPECT_LT(r.loss_after, r.loss_before + 1e-6);
  EXPECT_TRUE(std::isfinite(r.loss_before));

  ActmadStats stats = collect_actmad_stats(*m, {Input(toy_images(16, 9).first)});
  EXPECT_EQ(stats.mean.size(), m->tap_names().size());
  AdaptOptions am = AdaptOptions::for_method(Method::actmad);
  am.steps = 3, am.lr = 1e-3;
  Adapter act(m, am, stats);
  AdaptResult ra = act.predict(x);
  EXPECT_TRUE(std::isfinite(ra.loss_before));
  EXPECT_LT(ra.loss_after, ra.loss_before);

  AdaptOptions last = AdaptOptions::for_method(Method::it3);
  last.params = ParamSelection::last(1);
  Adapter lastn(m, last);
  EXPECT_EQ(lastn.adapted_names(), (std::vector<std::string>{"head.4.weight", "head.4.bias"}));
  EXPECT_EQ(ParamSelection::parse("last:2").last_n, 2);
  EXPECT_EQ(ParamSelection::parse("body,head.4").names.size(), 2u);
}

TEST(It3Training, ObjectiveHasBothTermsAndSelfSignals) {
  auto m = make_mlp_model(3, {6}, SignalSpec::regression(1, 5.0), {}, 2);
  Tensor x = randn({4, 3}, 1), y = randn({4, 1}, 2);
  TrainOptions t;  // p = 1: both passes
  TrainStep s = it3_objective(*m, Input(x), y, t, 0);
  EXPECT_TRUE(s.fed);
  Tensor l1 = mse_loss(m->forward_neutral(Input(x)), y);
  Tensor l2 = mse_loss(m->forward(Input(x), y), y);
  EXPECT_NEAR(s.loss.item(), l1.item() + l2.item(), 1e-6);
  t.p_feed = 0.0;
  TrainStep s0 = it3_objective(*m, Input(x), y, t, 0);
  EXPECT_FALSE(s0.fed);
  EXPECT_NEAR(s0.loss.item(), l1.item(), 1e-6);
  // p = 0.5: the draw is a function of (seed, step), about half the steps feed.
  t.p_feed = 0.5;
  int fed = 0;
  for (int step = 0; step < 200; ++step) fed += it3_objective(*m, Input(x), y, t, step).fed;
  EXPECT_GT(fed, 70);
  EXPECT_LT(fed, 130);
  expect_error([&] {
    TrainOptions bad;
    bad.loss = TrainLoss::cross_entropy;
    it3_objective(*m, Input(x), y, bad, 0);
  }, "it3 training", "classification");
}

TEST(It3Training, NonFiniteLossStopsBeforeTheUpdate) {
  auto m = make_mlp_model(2, {4}, SignalSpec::regression(1, 5.0), {}, 2);
  Tensor x = randn({4, 2}, 1);
  Tensor y = full({4, 1}, std::nan(""));
  SGD opt(m->parameters(), SGDOptions{0.1});
  auto before = m->clone();
  expect_error([&] { train_step(*m, opt, Input(x), y, TrainOptions{}, 17); }, "anomaly",
               "at step 17 in it3 training");
  EXPECT_TRUE(params_bit_equal(*m, *before));
}

// ---- CPU and CUDA agree ----

TEST(It3Cuda, AdaptedPredictionsMatchTheCpu) {
  IDEM_REQUIRE_GPU();
  auto cnn = trained_bn_cnn();
  auto mlp = trained_mlp();
  struct Case {
    std::shared_ptr<RecursiveModel> model;
    Input x;
    Method method;
  };
  auto [imgs, labels] = toy_images(8, 21, 0.5);
  std::vector<Case> cases{{mlp, Input(randn({16, 4}, 3) * 2.0), Method::it3},
                          {mlp, Input(randn({16, 4}, 3) * 2.0), Method::it3_online},
                          {cnn, Input(imgs), Method::it3},
                          {cnn, Input(imgs), Method::tent},
                          {cnn, Input(imgs), Method::bn}};
  for (auto& c : cases) {
    AdaptOptions o = AdaptOptions::for_method(c.method);
    if (o.steps > 0) o.steps = 3;
    Adapter on_cpu(c.model, o);
    Tensor want = on_cpu.predict(c.x).prediction;
    auto gpu_model = std::dynamic_pointer_cast<RecursiveModel>(c.model->clone());
    gpu_model->to(Device::cuda());
    Adapter on_gpu(gpu_model, o);
    AdaptResult r = on_gpu.predict(c.x.to(Device::cuda()));
    idem::testing::expect_near_all(to_cpu(r.prediction), want, 2e-4, method_name(c.method));
    EXPECT_GT(r.cost.gpu_launches, 0u);
  }
}

TEST(It3Adapt, NonFiniteAdaptationLossStopsBeforeTheUpdate) {
  // A linear recursive model, so a NaN input reaches the loss (idem's relu maps NaN to 0,
  // unlike PyTorch's, and would hide it).
  auto m = std::make_shared<ConcatModel>(std::make_shared<Linear>(4, 1, true, Options{}, 3),
                                         SignalSpec::regression(1, 5.0));
  AdaptOptions o = AdaptOptions::for_method(Method::it3_online);  // never resets: NaN would stay
  o.steps = 2;
  Adapter a(m, o);
  Tensor x = randn({4, 3}, 1);
  idem::testing::set(x, {1, 2, 3, std::nan(""), 1, 1, 1, 1, 1, 1, 1, 1});
  expect_error([&] { a.predict(Input(x)); }, "anomaly", "at step 1 in it3::Adapter it3-online");
  EXPECT_TRUE(params_bit_equal(a.model(), *m)) << "no step may run on a NaN loss";
}
