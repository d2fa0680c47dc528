// The authors' recipes as knobs and presets, and the random-step control (issue 16; docs/it3.md,
// "Recipes" and "random-step"). Each knob is checked on a tiny model for what it says it does.
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>
#include <map>
#include <set>

#include "io/json.h"
#include "it3/adapt.h"
#include "it3/models.h"
#include "it3/recipe.h"
#include "it3/training.h"
#include "layers/containers.h"
#include "layers/linear.h"
#include "test_util.h"

using namespace idem;
using namespace idem::it3;
using idem::testing::bit_equal;
using idem::testing::expect_error;

namespace {

constexpr int64_t kClasses = 4;

// A tiny feature-injection classifier: head(body(x) + embed(s)), all Linear.
std::shared_ptr<RecursiveModel> tiny_feature_model(uint64_t seed) {
  auto body = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Linear>(5, 8, true, Options{}, seed), std::make_shared<ReLU>()});
  auto embed = std::make_shared<Linear>(kClasses, 8, true, Options{}, seed + 1);
  auto head = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Linear>(8, 8, true, Options{}, seed + 2), std::make_shared<ReLU>(),
      std::make_shared<Linear>(8, kClasses, true, Options{}, seed + 3)});
  return std::make_shared<FeatureModel>(body, embed, head, SignalSpec::classification(kClasses));
}

Input batch_x(int64_t b, uint64_t seed) { return Input(randn({b, 5}, seed)); }
Tensor labels(int64_t b, uint64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(b));
  const std::vector<float> u = rand({b}, seed).to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t(u[i] * kClasses) % kClasses;
  return from_vector<int64_t>(v, {b});
}

std::vector<int64_t> argmax_rows(const Tensor& t) { return argmax(t, 1).to_vector<int64_t>(); }

void expect_one_hot_rows(const Tensor& s) {
  const std::vector<float> v = s.to_vector<float>();
  for (int64_t i = 0; i < s.size(0); ++i) {
    int ones = 0;
    for (int64_t c = 0; c < s.size(1); ++c) {
      const float x = v[size_t(i * s.size(1) + c)];
      EXPECT_TRUE(x == 0.0f || x == 1.0f) << "row " << i << " entry " << x;
      ones += x == 1.0f;
    }
    EXPECT_EQ(ones, 1) << "row " << i;
  }
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to(DType::f32).to_vector<float>(), y = b.to(DType::f32).to_vector<float>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(double(x[i]) - double(y[i])));
  return m;
}

// Every field of an options object, as JSON text per key.
std::map<std::string, std::string> fields(const std::string& json_text) {
  std::map<std::string, std::string> f;
  const json::Value parsed = json::parse(json_text);  // kept alive while iterating
  for (const auto& [k, v] : parsed.as_object()) f[k] = json::dump(v);
  return f;
}
// The fields that differ from the defaults, with their new values.
std::map<std::string, std::string> changed(const std::string& before, const std::string& after) {
  auto a = fields(before), b = fields(after);
  EXPECT_EQ(a.size(), b.size());
  std::map<std::string, std::string> d;
  for (const auto& [k, v] : b)
    if (a.at(k) != v) d[k] = v;
  return d;
}

}  // namespace

// ---- training knobs ----

TEST(It3Recipe, WrongLabelFeedingNeverFeedsTheTrueLabelOnTheWrongBranch) {
  auto m = tiny_feature_model(1);
  TrainOptions t = TrainOptions::for_task(TaskKind::classification);
  t.first = FirstSignal::target_or_wrong, t.p_first_target = 0.5, t.seed = 7;
  EXPECT_FALSE(t.trains_neutral());
  int wrong = 0, target = 0;
  for (int64_t step = 0; step < 40; ++step) {
    Input x = batch_x(16, 100 + uint64_t(step));
    Tensor y = labels(16, 200 + uint64_t(step));
    TrainStep s = it3_objective(*m, x, y, t, step);
    ASSERT_NE(s.first, TrainStep::First::neutral) << "∅ must never be fed";
    expect_one_hot_rows(s.first_signal);
    const auto fed = argmax_rows(s.first_signal), lab = y.to_vector<int64_t>();
    for (size_t i = 0; i < lab.size(); ++i) {
      if (s.first == TrainStep::First::wrong)
        EXPECT_NE(fed[i], lab[i]) << "step " << step << " row " << i;
      else
        EXPECT_EQ(fed[i], lab[i]) << "step " << step << " row " << i;
    }
    (s.first == TrainStep::First::wrong ? wrong : target)++;
  }
  EXPECT_GT(wrong, 5);   // both branches are drawn (p = 0.5 over 40 batches)
  EXPECT_GT(target, 5);
  // Deterministic: the same (seed, step) gives the same wrong labels.
  Input x = batch_x(16, 3);
  Tensor y = labels(16, 4);
  t.p_first_target = 0.0;
  EXPECT_TRUE(bit_equal(it3_objective(*m, x, y, t, 5).first_signal, it3_objective(*m, x, y, t, 5).first_signal));
}

TEST(It3Recipe, TargetOrNeutralFeedsYOrTheUniformNeutral) {
  auto m = tiny_feature_model(2);
  TrainOptions t = TrainOptions::for_task(TaskKind::classification);
  t.first = FirstSignal::target_or_neutral, t.p_first_target = 0.0;
  EXPECT_TRUE(t.trains_neutral());
  Input x = batch_x(6, 1);
  Tensor y = labels(6, 2);
  TrainStep s = it3_objective(*m, x, y, t, 0);
  EXPECT_EQ(s.first, TrainStep::First::neutral);
  EXPECT_TRUE(bit_equal(s.first_signal, m->neutral(6, Device::cpu())));
  t.p_first_target = 1.0;
  s = it3_objective(*m, x, y, t, 0);
  EXPECT_EQ(s.first, TrainStep::First::target);
  EXPECT_TRUE(bit_equal(s.first_signal, m->target_signal(y)));
}

TEST(It3Recipe, OwnSoftmaxSecondPassCarriesGradientIntoTheFirstPass) {
  // source self: L = CE(f(x, s0), y) + CE(f(x, softmax(f(x, s0))), y); the second term reaches
  // the weights through softmax(y0) too, so the gradient differs from the detached variant.
  auto m = tiny_feature_model(3);
  TrainOptions t = TrainOptions::for_task(TaskKind::classification);
  t.first = FirstSignal::target_or_wrong, t.p_first_target = 1.0, t.p_feed = 1.0;
  Input x = batch_x(8, 5);
  Tensor y = labels(8, 6);
  auto grad_of = [&](SignalSource src) {
    t.source = src;
    for (auto& p : m->parameters()) p.zero_grad();
    TrainStep s = it3_objective(*m, x, y, t, 0);
    EXPECT_TRUE(s.fed);
    s.loss.backward();
    return m->named_parameters().front().second.grad().clone_data();
  };
  Tensor g_self = grad_of(SignalSource::self), g_det = grad_of(SignalSource::self_detached);
  EXPECT_GT(max_abs_diff(g_self, g_det), 1e-7);
}

TEST(It3Recipe, WrongLabelFeedingOnRegressionIsAClearError) {
  TrainOptions t;
  t.first = FirstSignal::target_or_wrong;
  expect_error([&] { t.validate(TaskKind::regression); }, "needs a classification task");
  expect_error([&] { parse_first_signal("sometimes"); }, "target-or-wrong");
  t.first = FirstSignal::target_or_neutral, t.p_first_target = 1.5;
  expect_error([&] { t.validate(TaskKind::regression); }, "p_first_target");
}

// ---- adaptation knobs ----

TEST(It3Recipe, RandomOneHotNeutralRowsAreOneHotAndSeeded) {
  auto m = tiny_feature_model(4);
  AdaptOptions o = AdaptOptions::for_method(Method::none);
  o.neutral = NeutralSignal::random_one_hot, o.seed = 11;
  Adapter a(m, o), b(m, o);
  Input x = batch_x(64, 9);
  Tensor s1 = a.neutral_signal(x), s2 = a.neutral_signal(x);
  expect_one_hot_rows(s1);
  EXPECT_FALSE(bit_equal(s1, s2));                 // every draw is fresh
  EXPECT_TRUE(bit_equal(s1, b.neutral_signal(x)));  // the same seed gives the same draws
  std::set<int64_t> classes;
  for (int64_t c : argmax_rows(s1)) classes.insert(c);
  EXPECT_EQ(classes.size(), size_t(kClasses));  // 64 draws cover all 4 classes
  o.seed = 12;
  Adapter c(m, o);
  EXPECT_FALSE(bit_equal(s1, c.neutral_signal(x)));
  // The prediction uses it too: f(x, random one-hot) differs from f(x, uniform ∅).
  Tensor p = c.predict(x).prediction;
  NoGradGuard ng;
  EXPECT_GT(max_abs_diff(p, m->forward_neutral(x)), 1e-6);
  auto reg = make_mlp_model(3, {4}, SignalSpec::regression(), {}, 0);
  expect_error([&] { Adapter r(reg, o); }, "random one-hot");
}

TEST(It3Recipe, AuthorsJsIsTheMixtureForm) {
  Tensor p = from_vector<float>({0.7f, 0.2f, 0.1f, 0.25f, 0.25f, 0.5f}, {2, 3});
  Tensor q = from_vector<float>({0.1f, 0.3f, 0.6f, 0.4f, 0.4f, 0.2f}, {2, 3});
  const auto pv = p.to_vector<float>(), qv = q.to_vector<float>();
  double want = 0;  // ½(KL(m‖p) + KL(m‖q)) per row, mean over rows
  for (size_t i = 0; i < pv.size(); ++i) {
    const double m = 0.5 * (pv[i] + qv[i]);
    want += 0.5 * (m * std::log(m / pv[i]) + m * std::log(m / qv[i]));
  }
  want /= 2;
  EXPECT_NEAR(distance(p, q, Distance::js_authors).item(), want, 1e-6);
  EXPECT_GT(std::abs(distance(p, q, Distance::js).item() - want), 1e-4);  // not the textbook JS
  EXPECT_EQ(parse_distance("js-authors"), Distance::js_authors);
}

TEST(It3Recipe, HeadOnlyAnchorComparesWithTheFrozenHeadOnAdaptedFeatures) {
  auto m = tiny_feature_model(5);
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.anchor = Anchor::head, o.distance = Distance::js_authors, o.steps = 2, o.lr = 1e-2;
  Adapter a(m, o);
  Input x = batch_x(8, 3);
  AdaptResult r = a.predict(x);
  // Step 1 starts at θ = Θ: the loss is d(softmax(F.head(h + F.embed(s))), s), s = softmax(y0).
  auto& f = static_cast<FeatureModel&>(*m);
  Tensor h = f.features(x);
  Tensor y0 = f.from_features(h, m->neutral(8, Device::cpu()));
  Tensor s = softmax(y0, 1);
  Tensor y1 = f.from_features(h, s);
  EXPECT_NEAR(r.loss_before, distance(softmax(y1, 1), s, Distance::js_authors).item(), 1e-6);
  // The second step runs the *frozen* head on the *adapted* features.
  auto& fa = static_cast<FeatureModel&>(a.model());
  auto& F = static_cast<FeatureModel&>(a.anchor());
  EXPECT_NE(&fa, &F);
  EXPECT_TRUE(bit_equal(F.head()->named_parameters().front().second,
                        f.head()->named_parameters().front().second));  // F is Θ, frozen
  // A model without body/embed/head cannot have one.
  auto concat_model = make_mlp_model(3, {4}, SignalSpec::classification(3), {}, 0);
  expect_error([&] { Adapter bad(concat_model, o); }, "feature-injection model");
}

TEST(It3Recipe, PersistentMomentsCarryAcrossBatchesWhileWeightsReset) {
  auto m = tiny_feature_model(6);
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 1, o.lr = 1e-2;
  AdaptOptions op = o;
  op.persistent_moments = true;
  Adapter plain(m, o), keep(m, op);
  for (uint64_t b = 0; b < 2; ++b) {
    Input x = batch_x(8, 20 + b);
    plain.predict(x);
    keep.predict(x);
  }
  // After batch 2, the zero-reset optimizer holds batch 2's moments only; the persistent one
  // holds batches 1 and 2: they differ.
  const Tensor sp = plain.optimizer()->state_buffer(), sk = keep.optimizer()->state_buffer();
  EXPECT_GT(max_abs_diff(sp, sk), 1e-9);
  // A reset restores the weights but not the moments.
  keep.reset();
  auto pk = keep.model().named_parameters(), pm = m->named_parameters();
  for (size_t i = 0; i < pk.size(); ++i) EXPECT_TRUE(bit_equal(pk[i].second, pm[i].second)) << pk[i].first;
  EXPECT_TRUE(bit_equal(keep.optimizer()->state_buffer(), sk));
  plain.reset();
  EXPECT_EQ(max_abs_diff(plain.optimizer()->state_buffer(), zeros(sp.shape(), Options{sp.dtype()})), 0.0);
}

TEST(It3Recipe, ReadOutBeforeUpdateEqualsThePreStepPasses) {
  auto m = tiny_feature_model(7);
  Input x = batch_x(8, 4);
  Tensor y0, y1;
  {
    NoGradGuard ng;
    y0 = m->forward_neutral(x);
    y1 = m->forward(x, softmax(y0, 1));
  }
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.anchor = Anchor::shared, o.steps = 1, o.lr = 5e-2, o.readout_before_update = true;
  o.prediction = Prediction::anchor;  // the CIFAR notebook's read-out: the second pass
  Adapter second(m, o);
  EXPECT_LT(max_abs_diff(second.predict(x).prediction, y1), 1e-6);
  o.prediction = Prediction::adapted;  // the first pass
  Adapter first(m, o);
  EXPECT_LT(max_abs_diff(first.predict(x).prediction, y0), 1e-6);
  // Without it, the prediction is after the update: different.
  o.readout_before_update = false;
  Adapter after(m, o);
  EXPECT_GT(max_abs_diff(after.predict(x).prediction, y0), 1e-6);
  o.readout_before_update = true, o.steps = 0;
  expect_error([&] { o.validate(); }, "readout_before_update");
  o.steps = 1, o.method = Method::random_step;
  expect_error([&] { o.validate(); }, "readout_before_update");
}

// ---- presets ----

TEST(It3Recipe, PaperMnistSetsExactlyItsKnobs) {
  TrainOptions t0 = TrainOptions::for_task(TaskKind::classification), t = t0;
  AdaptOptions a0 = AdaptOptions::for_method(Method::it3), a = a0;
  apply_recipe("paper-mnist", t, a);
  std::map<std::string, std::string> want_t{{"p_feed", "1"},
                                            {"signal_source", "\"self\""},
                                            {"first_signal", "\"target-or-wrong\""},
                                            {"trains_neutral", "false"},
                                            {"recipe", "\"paper-mnist\""}};
  EXPECT_EQ(changed(t0.to_json(), t.to_json()), want_t);
  EXPECT_EQ(t.p_first_target, 0.75);  // equal to the default, set explicitly
  std::map<std::string, std::string> want_a{{"steps", "11"},
                                            {"distance", "\"js-authors\""},
                                            {"anchor", "\"head\""},
                                            {"neutral", "\"random-onehot\""},
                                            {"persistent_moments", "true"},
                                            {"readout_before_update", "true"},
                                            {"recipe", "\"paper-mnist\""}};
  EXPECT_EQ(changed(a0.to_json(), a.to_json()), want_a);
  EXPECT_EQ(a.lr, 1e-3);
  EXPECT_EQ(a.prediction, Prediction::adapted);
  const Recipe r = find_recipe("paper-mnist");
  EXPECT_EQ(r.model, "small-cnn");
  EXPECT_EQ(r.adapt_batch, 64);
  EXPECT_EQ(r.train_batch, 64);
  a.validate();
  t.validate(TaskKind::classification);
}

TEST(It3Recipe, PaperCifarSetsExactlyItsKnobs) {
  TrainOptions t0 = TrainOptions::for_task(TaskKind::classification), t = t0;
  AdaptOptions a0 = AdaptOptions::for_method(Method::it3), a = a0;
  apply_recipe("paper-cifar", t, a);
  std::map<std::string, std::string> want_t{{"p_feed", "1"},
                                            {"signal_source", "\"self\""},
                                            {"first_signal", "\"target-or-neutral\""},
                                            {"p_first_target", "0.2"},
                                            {"recipe", "\"paper-cifar\""}};
  EXPECT_EQ(changed(t0.to_json(), t.to_json()), want_t);
  std::map<std::string, std::string> want_a{{"distance", "\"js-authors\""},
                                            {"anchor", "\"shared\""},
                                            {"bn_mode", "\"batch\""},
                                            {"prediction", "\"anchor\""},
                                            {"persistent_moments", "true"},
                                            {"readout_before_update", "true"},
                                            {"recipe", "\"paper-cifar\""}};
  EXPECT_EQ(changed(a0.to_json(), a.to_json()), want_a);
  EXPECT_EQ(a.steps, 1);
  EXPECT_EQ(find_recipe("paper-cifar").model, "");
  a.validate();
}

TEST(It3Recipe, TorchTttSetsExactlyItsKnobs) {
  TrainOptions t0 = TrainOptions::for_task(TaskKind::classification), t = t0;
  AdaptOptions a0 = AdaptOptions::for_method(Method::it3), a = a0;
  apply_recipe("torch-ttt", t, a);
  std::map<std::string, std::string> want_t{{"p_feed", "1"}, {"recipe", "\"torch-ttt\""}};
  EXPECT_EQ(changed(t0.to_json(), t.to_json()), want_t);
  std::map<std::string, std::string> want_a{{"anchor", "\"shared\""},
                                            {"distance", "\"mse\""},
                                            {"recipe", "\"torch-ttt\""}};
  EXPECT_EQ(changed(a0.to_json(), a.to_json()), want_a);
  EXPECT_EQ(find_recipe("torch-ttt").adapt_batch, 0);
}

TEST(It3Recipe, UnknownRecipeListsTheValidNames) {
  TrainOptions t;
  AdaptOptions a;
  expect_error([&] { apply_recipe("paper-imagenet", t, a); }, "paper-mnist, paper-cifar, torch-ttt");
  EXPECT_EQ(recipe_names().size(), 3u);
}

TEST(It3Recipe, PaperMnistAdaptsTheSmallCnn) {
  // The whole preset runs on the notebook's LeNet: 11 steps, the prediction read before the
  // 11th update, one optimizer for all batches.
  auto m = make_small_cnn(10, {}, 3);
  TrainOptions t = TrainOptions::for_task(TaskKind::classification);
  AdaptOptions a = AdaptOptions::for_method(Method::it3);
  apply_recipe("paper-mnist", t, a);
  Adapter ad(m, a);
  Input x(randn({4, 1, 28, 28}, 1));
  AdaptResult r = ad.predict(x);
  EXPECT_EQ(r.cost.optimizer_steps, 11u);
  EXPECT_EQ(r.prediction.size(1), 10);
  EXPECT_TRUE(std::isfinite(r.loss_after));
}

// ---- random-step ----

namespace {
struct Steps {
  std::vector<Tensor> delta;  // θ − Θ per adapted parameter after one batch
  Tensor prediction;
};
Steps one_batch(const std::shared_ptr<RecursiveModel>& m, Method method, uint64_t seed, int k = 1) {
  AdaptOptions o = AdaptOptions::for_method(method);
  o.steps = k, o.lr = 1e-2, o.seed = seed;
  Adapter a(m, o);
  Steps s;
  s.prediction = a.predict(batch_x(8, 42)).prediction;
  auto pa = a.model().named_parameters(), pm = m->named_parameters();
  NoGradGuard ng;
  for (size_t i = 0; i < pa.size(); ++i) s.delta.push_back(pa[i].second - pm[i].second);
  return s;
}
double norm(const Tensor& t) { return std::sqrt(sum(t * t).item()); }
}  // namespace

TEST(It3RandomStep, SameSizePerParameterAsIt3sFirstStepInAnotherDirection) {
  auto m = tiny_feature_model(8);
  Steps it3 = one_batch(m, Method::it3, 5), rs = one_batch(m, Method::random_step, 5);
  ASSERT_EQ(it3.delta.size(), rs.delta.size());
  for (size_t i = 0; i < it3.delta.size(); ++i) {
    const double n = norm(it3.delta[i]);
    ASSERT_GT(n, 0.0);
    EXPECT_NEAR(norm(rs.delta[i]), n, 1e-4 * n + 1e-7) << "parameter " << i;
    if (it3.delta[i].numel() >= 8) {  // the direction differs: cosine well below 1
      const double cos = sum(it3.delta[i] * rs.delta[i]).item() / (n * norm(rs.delta[i]));
      EXPECT_LT(cos, 0.9) << "parameter " << i;
    }
  }
  EXPECT_GT(max_abs_diff(it3.prediction, rs.prediction), 1e-7);
}

TEST(It3RandomStep, DeterministicForASeedAndZeroStepsIsNone) {
  auto m = tiny_feature_model(9);
  Steps a = one_batch(m, Method::random_step, 3), b = one_batch(m, Method::random_step, 3),
        c = one_batch(m, Method::random_step, 4);
  for (size_t i = 0; i < a.delta.size(); ++i) EXPECT_TRUE(bit_equal(a.delta[i], b.delta[i]));
  EXPECT_GT(max_abs_diff(a.delta[0], c.delta[0]), 1e-9);
  Steps k0 = one_batch(m, Method::random_step, 3, 0), none = one_batch(m, Method::none, 3, 0);
  EXPECT_TRUE(bit_equal(k0.prediction, none.prediction));
  EXPECT_EQ(parse_method("random-step"), Method::random_step);
  EXPECT_NE(std::find(all_methods().begin(), all_methods().end(), Method::random_step), all_methods().end());
}
