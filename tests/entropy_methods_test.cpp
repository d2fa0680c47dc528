// The entropy-family test-time methods EATA, DeYO and MEMO (issue 17; docs/it3.md, "Methods"):
// their losses by hand and against finite differences, their augmentations, the Adapter's
// K = 0 equivalences, the Fisher term, and the misuse errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/augment.h"
#include "it3/adapt.h"
#include "it3/methods/entropy.h"
#include "it3/models.h"
#include "test_util.h"

using namespace idem;
using namespace idem::it3;
using idem::testing::bit_equal;
using idem::testing::expect_error;
using idem::testing::vals;

namespace {

// Entropy, softmax in double, for the hand computations.
std::vector<double> softmax_d(const std::vector<double>& z) {
  const double m = *std::max_element(z.begin(), z.end());
  std::vector<double> p(z.size());
  double s = 0;
  for (size_t i = 0; i < z.size(); ++i) s += p[i] = std::exp(z[i] - m);
  for (double& v : p) v /= s;
  return p;
}
double entropy_d(const std::vector<double>& z) {
  double h = 0;
  for (double p : softmax_d(z)) h -= p * std::log(p);
  return h;
}
std::vector<double> row(const std::vector<double>& flat, size_t r, size_t c) {
  return {flat.begin() + long(r * c), flat.begin() + long((r + 1) * c)};
}
// A row of C logits with `peak` on class k.
std::vector<double> peaked(size_t c, size_t k, double peak) {
  std::vector<double> z(c, 0.0);
  z[k] = peak;
  return z;
}
Tensor logits_of(const std::vector<std::vector<double>>& rows) {
  std::vector<double> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return from_vector<double>(flat, {int64_t(rows.size()), int64_t(rows[0].size())});
}

std::shared_ptr<RecursiveModel> tiny_bn_cnn() {
  auto m = make_bn_cnn(10, 2, 4, {}, 0);
  m->eval();
  return m;
}
Tensor images(int64_t n, uint64_t seed) { return rand({n, 1, 28, 28}, seed); }

double distance_from(const Adapter& a, const ActmadStats& s) {
  double d = 0;
  for (size_t i = 0; i < a.adapted_names().size(); ++i)
    for (double v : vals(a.adapted_params()[i] - s.fisher_theta0.at(a.adapted_names()[i]))) d += v * v;
  return std::sqrt(d);
}

}  // namespace

// ---- augmentations ----

TEST(EntropyAugment, PatchShuffleIsSeededShapePreservingAndMovesWholePatches) {
  Tensor x = images(3, 1);
  Tensor a = data::patch_shuffle(x, 4, 7), b = data::patch_shuffle(x, 4, 7), c = data::patch_shuffle(x, 4, 8);
  EXPECT_EQ(a.shape(), x.shape());
  EXPECT_TRUE(bit_equal(a, b));
  EXPECT_FALSE(bit_equal(a, c));
  EXPECT_TRUE(bit_equal(data::patch_shuffle(x, 1, 7), x)) << "a 1x1 grid has nothing to shuffle";
  // An image result does not depend on its batch: image 2 alone with index_offset 2.
  EXPECT_TRUE(bit_equal(data::patch_shuffle(narrow(x, 0, 2, 1), 4, 7, 2), narrow(a, 0, 2, 1)));
  // Every 7x7 output patch is one whole input patch, and each input patch is used once.
  const std::vector<double> xi = vals(x), ai = vals(a);
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<int> used(16, 0);
    for (int p = 0; p < 16; ++p) {
      int match = -1;
      for (int q = 0; q < 16 && match < 0; ++q) {
        bool same = true;
        for (int r = 0; r < 7 && same; ++r)
          for (int s = 0; s < 7 && same; ++s)
            same = ai[size_t(i * 784 + ((p / 4) * 7 + r) * 28 + (p % 4) * 7 + s)] ==
                   xi[size_t(i * 784 + ((q / 4) * 7 + r) * 28 + (q % 4) * 7 + s)];
        if (same) match = q;
      }
      ASSERT_GE(match, 0) << "image " << i << " patch " << p;
      ++used[size_t(match)];
    }
    EXPECT_EQ(std::count(used.begin(), used.end(), 1), 16);
  }
  expect_error([&] { data::patch_shuffle(rand({2, 3}, 1), 4, 0); }, "data::patch_shuffle", "(N,C,H,W)");
}

TEST(EntropyAugment, MemoAugmentIsSeededShapedCopyMajorAndInRange) {
  Tensor x = images(2, 3);
  Tensor a = data::memo_augment(x, 4, 9), b = data::memo_augment(x, 4, 9), c = data::memo_augment(x, 4, 10);
  EXPECT_EQ(a.shape(), (Shape{8, 1, 28, 28}));
  EXPECT_TRUE(bit_equal(a, b));
  EXPECT_FALSE(bit_equal(a, c));
  for (double v : vals(a)) ASSERT_TRUE(v >= 0.0 && v <= 1.0);
  // Copies of one image differ (independent draws), and copy a of image 1 is row a·2 + 1:
  // image 1 augmented alone (index_offset 1) gives the same rows.
  EXPECT_FALSE(bit_equal(narrow(a, 0, 0, 1), narrow(a, 0, 2, 1)));
  Tensor alone = data::memo_augment(narrow(x, 0, 1, 1), 4, 9, 1);
  for (int64_t k = 0; k < 4; ++k) EXPECT_TRUE(bit_equal(narrow(alone, 0, k, 1), narrow(a, 0, 2 * k + 1, 1)));
  expect_error([&] { data::memo_augment(x, 0, 1); }, "data::memo_augment", "copies");
}

// ---- EATA ----

TEST(EntropyEata, FilterAndWeightsByHand) {
  const size_t c = 10;
  const std::vector<std::vector<double>> z{peaked(c, 0, 6.0), std::vector<double>(c, 0.0),
                                           peaked(c, 3, 4.0), peaked(c, 5, 1.0)};
  const double e0 = 0.4 * std::log(double(c));
  entropy::EataState state;
  auto t = entropy::eata_entropy_loss(logits_of(z), e0, -1.0, state);  // redundancy filter off
  std::vector<double> kept, want;
  double num = 0, count = 0;
  for (const auto& r : z) {
    const double h = entropy_d(r);
    const bool k = h < e0;
    kept.push_back(k);
    want.push_back(k ? std::exp(-(h - e0)) : 0.0);
    num += k ? h * std::exp(-(h - e0)) : 0.0;
    count += k;
  }
  EXPECT_EQ(kept, (std::vector<double>{1, 0, 1, 0}));  // the uniform row and the weak peak fail
  EXPECT_EQ(vals(t.kept), kept);
  idem::testing::expect_near_all(t.weight, want, 1e-12);
  EXPECT_NEAR(t.loss.item(), num / count, 1e-12);
  // Nobody passes: a zero loss (and no update of the average).
  entropy::EataState none;
  auto t0 = entropy::eata_entropy_loss(logits_of({std::vector<double>(c, 0.0)}), e0, 0.05, none);
  EXPECT_EQ(t0.loss.item(), 0.0);
  EXPECT_EQ(none.defined.item(), 0.0);
}

TEST(EntropyEata, RedundancyFilterDropsSamplesLikeTheMovingAverage) {
  const size_t c = 10;
  const double e0 = 0.4 * std::log(double(c));
  entropy::EataState state;
  // The first batch sets m to the mean of its kept samples (all predict class 0).
  auto t1 = entropy::eata_entropy_loss(logits_of({peaked(c, 0, 6.0), peaked(c, 0, 7.0)}), e0, 0.05, state);
  EXPECT_EQ(vals(t1.kept), (std::vector<double>{1, 1}));
  const std::vector<double> p0 = softmax_d(peaked(c, 0, 6.0)), p1 = softmax_d(peaked(c, 0, 7.0));
  std::vector<double> m(c);
  for (size_t j = 0; j < c; ++j) m[j] = 0.5 * (p0[j] + p1[j]);
  idem::testing::expect_near_all(state.avg, m, 1e-12);
  // The second: a class-0 sample is redundant (cos ≈ 1), a class-3 sample is not (cos ≈ 0.01).
  auto t2 = entropy::eata_entropy_loss(logits_of({peaked(c, 0, 6.5), peaked(c, 3, 6.5)}), e0, 0.05, state);
  EXPECT_EQ(vals(t2.kept), (std::vector<double>{0, 1}));
  const std::vector<double> p3 = softmax_d(peaked(c, 3, 6.5));
  for (size_t j = 0; j < c; ++j) m[j] = 0.9 * m[j] + 0.1 * p3[j];
  idem::testing::expect_near_all(state.avg, m, 1e-12);
}

TEST(EntropyEata, GradientMatchesFiniteDifferencesWithTheWeightsHeld) {
  // The published loss treats the weights as constants: d/dz Σ_i w_i H_i(z) / count.
  const size_t c = 4;
  const std::vector<std::vector<double>> z{{2.0, 0.5, -1.0, 0.1}, {0.2, 0.1, 0.0, -0.1}, {-0.5, 3.0, 0.2, 0.4}};
  const double e0 = 0.4 * std::log(double(c));
  Tensor zt = logits_of(z);
  zt.requires_grad_(true);
  entropy::EataState state;
  auto t = entropy::eata_entropy_loss(zt, e0, -1.0, state);
  t.loss.backward();
  const std::vector<double> g = vals(zt.grad()), w = vals(t.weight);
  const double count = std::max(1.0, vals(sum(t.kept))[0]);
  ASSERT_GT(count, 0.0);
  for (size_t i = 0; i < z.size(); ++i)
    for (size_t j = 0; j < c; ++j) {
      auto zp = z[i], zm = z[i];
      zp[j] += 1e-6, zm[j] -= 1e-6;
      const double fd = w[i] * (entropy_d(zp) - entropy_d(zm)) / 2e-6 / count;
      EXPECT_NEAR(g[i * c + j], fd, 1e-7) << i << "," << j;
    }
}

TEST(EntropyEata, FisherPenaltyByHand) {
  ActmadStats s;
  s.fisher["w"] = from_vector<double>({0.5, 2.0}, {2});
  s.fisher_theta0["w"] = from_vector<double>({1.0, -1.0}, {2});
  Tensor w = from_vector<double>({1.5, 0.0}, {2});
  w.requires_grad_(true);
  Tensor other = from_vector<double>({3.0}, {1});  // no Fisher: not in the term
  Tensor pen = entropy::fisher_penalty({"w", "b"}, {w, other}, s, 10.0);
  EXPECT_NEAR(pen.item(), 10.0 * (0.5 * 0.25 + 2.0 * 1.0), 1e-12);
  pen.backward();
  idem::testing::expect_near_all(w.grad(), {2 * 10.0 * 0.5 * 0.5, 2 * 10.0 * 2.0 * 1.0}, 1e-12);
  EXPECT_FALSE(entropy::fisher_penalty({"b"}, {other}, s, 10.0).defined());
}

// ---- DeYO ----

TEST(EntropyDeyo, PlpdFilterAndWeightsByHand) {
  const size_t c = 10;
  const double lnc = std::log(double(c));
  // Sample 0: confident, its class collapses under the shuffle (kept).
  // Sample 1: confident, the shuffle changes nothing (PLPD 0: dropped).
  // Sample 2: unsure (entropy above 0.5·ln C: dropped).
  const std::vector<std::vector<double>> z{peaked(c, 2, 6.0), peaked(c, 7, 5.0), peaked(c, 1, 0.5)};
  const std::vector<std::vector<double>> zs{peaked(c, 4, 1.0), peaked(c, 7, 5.0), peaked(c, 1, 0.5)};
  auto t = entropy::deyo_loss(logits_of(z), logits_of(zs), 0.5 * lnc, 0.2, 0.4 * lnc);
  const std::vector<double> plpd{softmax_d(z[0])[2] - softmax_d(zs[0])[2], 0.0, 0.0};
  idem::testing::expect_near_all(t.plpd, plpd, 1e-12);
  EXPECT_EQ(vals(t.kept), (std::vector<double>{1, 0, 0}));
  const double h0 = entropy_d(z[0]), w0 = std::exp(-(h0 - 0.4 * lnc)) + std::exp(plpd[0]);
  idem::testing::expect_near_all(t.weight, {w0, 0.0, 0.0}, 1e-12);
  EXPECT_NEAR(t.loss.item(), w0 * h0, 1e-12);
}

// ---- MEMO ----

TEST(EntropyMemo, MarginalEntropyByHandAndItsGradientByFiniteDifferences) {
  // 3 copies of 2 samples, C = 3, copy-major rows (a·2 + i).
  const std::vector<double> flat{1.0, 0.0, -1.0, 0.3, 0.3, 2.0,   // copy 0
                                 -0.5, 2.0, 0.0, 0.0, 1.0, 0.0,   // copy 1
                                 0.2, 0.1, 0.0, 40.0, -40.0, 0.0};  // copy 2 (extreme: no log 0)
  auto loss_d = [&](const std::vector<double>& f) {
    double total = 0;
    for (size_t i = 0; i < 2; ++i) {
      std::vector<double> pbar(3, 0.0);
      for (size_t a = 0; a < 3; ++a) {
        auto p = softmax_d(row(f, a * 2 + i, 3));
        for (size_t j = 0; j < 3; ++j) pbar[j] += p[j] / 3.0;
      }
      for (double p : pbar) total -= p * std::log(p) / 2.0;
    }
    return total;
  };
  Tensor z = from_vector<double>(flat, {6, 3});
  z.requires_grad_(true);
  Tensor loss = entropy::marginal_entropy(z, 3);
  EXPECT_NEAR(loss.item(), loss_d(flat), 1e-12);
  loss.backward();
  const std::vector<double> g = vals(z.grad());
  for (size_t k = 0; k < flat.size(); ++k) {
    auto fp = flat, fm = flat;
    fp[k] += 1e-6, fm[k] -= 1e-6;
    EXPECT_NEAR(g[k], (loss_d(fp) - loss_d(fm)) / 2e-6, 1e-7) << k;
  }
  expect_error([&] { entropy::marginal_entropy(z, 4); }, "memo", "copies");
}

// ---- the Adapter ----

TEST(EntropyAdapter, ZeroStepsArePlainInference) {
  auto m = tiny_bn_cnn();
  const Input x(images(6, 21));
  Adapter none(m, AdaptOptions::for_method(Method::none)), bn(m, AdaptOptions::for_method(Method::bn));
  const Tensor plain = none.predict(x).prediction, batch = bn.predict(x).prediction;
  for (Method meth : {Method::eata, Method::deyo, Method::memo}) {
    AdaptOptions o = AdaptOptions::for_method(meth);
    o.steps = 0;
    Adapter a(m, o);  // eata with K = 0 needs no Fisher
    AdaptResult r = a.predict(x);
    // eata and deyo normalize with the batch by design: K = 0 is the bn baseline; memo is none.
    EXPECT_TRUE(bit_equal(r.prediction, meth == Method::memo ? plain : batch)) << method_name(meth);
    EXPECT_EQ(r.cost.forwards, 1u);
    EXPECT_EQ(r.cost.backwards, 0u);
    EXPECT_TRUE(std::isnan(r.loss_before));
  }
}

TEST(EntropyAdapter, FisherFromTrainingBatches) {
  auto m = tiny_bn_cnn();
  ActmadStats s;
  add_eata_fisher(*m, {Input(images(4, 1)), Input(images(1, 2)), Input(images(4, 3))}, s);
  const NamedTensors params = m->named_parameters();
  ASSERT_EQ(s.fisher.size(), params.size());
  double total = 0;
  for (const auto& [name, p] : params) {
    const Tensor& f = s.fisher.at(name);
    EXPECT_EQ(f.shape(), p.shape()) << name;
    for (double v : vals(f)) {
      ASSERT_GE(v, 0.0) << name;
      total += v;
    }
    EXPECT_TRUE(bit_equal(s.fisher_theta0.at(name), p)) << name;
    EXPECT_FALSE(p.grad().defined()) << "the trained model's gradients are untouched: " << name;
  }
  EXPECT_GT(total, 0.0);
  expect_error([&] { add_eata_fisher(*m, {Input(images(1, 4))}, s); }, "eata", "at least 2 samples");
}

TEST(EntropyAdapter, EataFirstStepLossIsTheFilteredEntropyOfTheBatchStatisticsPrediction) {
  auto m = tiny_bn_cnn();
  ActmadStats s;
  add_eata_fisher(*m, {Input(images(8, 5))}, s);
  const Input x(images(6, 22));
  AdaptOptions o = AdaptOptions::for_method(Method::eata);
  o.steps = 1;
  o.entropy.eata_margin = 1.0;  // an untrained model is unsure: let every sample pass
  Adapter a(m, o, s);
  AdaptResult r = a.predict(x);
  // At the first step θ = θ0, so the Fisher term is 0 and the loss is the filtered entropy of
  // what `bn` predicts.
  Adapter bn(m, AdaptOptions::for_method(Method::bn));
  entropy::EataState fresh;
  const Tensor logits = bn.predict(x).prediction;
  const double want = entropy::eata_entropy_loss(logits, std::log(10.0), 0.05, fresh).loss.item();
  EXPECT_NEAR(r.loss_before, want, 1e-6);
  EXPECT_GT(want, 0.0);
  EXPECT_EQ(r.cost.forwards, 2u);
  EXPECT_EQ(r.cost.backwards, 1u);
  EXPECT_EQ(r.cost.optimizer_steps, 1u);
  EXPECT_EQ(r.cost.reset_bytes, 0u) << "eata adapts online (never reset), as published";
  EXPECT_EQ(a.adapted_names().size(), 4u) << "the two BatchNorm layers' weight and bias";
}

TEST(EntropyAdapter, TheFisherTermPullsTowardTheTrainedWeights) {
  auto m = tiny_bn_cnn();
  ActmadStats s;
  add_eata_fisher(*m, {Input(images(8, 5)), Input(images(8, 6))}, s);
  auto run = [&](double beta) {
    AdaptOptions o = AdaptOptions::for_method(Method::eata);
    o.steps = 4;
    o.lr = 1e-2;
    o.entropy.eata_margin = 1.0;
    o.entropy.eata_redundancy = -1.0;  // every sample counts
    o.entropy.fisher_beta = beta;
    auto a = std::make_unique<Adapter>(m, o, s);
    for (uint64_t b = 0; b < 3; ++b) a->predict(Input(images(6, 30 + b)));
    return distance_from(*a, s);
  };
  const double free = run(0.0), held = run(1e8);
  EXPECT_GT(free, 0.0);
  EXPECT_LT(held, 0.5 * free) << "free " << free << ", held " << held;
}

TEST(EntropyAdapter, DeyoAndMemoAreSeededAndCountTheirPasses) {
  auto m = tiny_bn_cnn();
  const Input x(images(6, 23));
  for (Method meth : {Method::deyo, Method::memo}) {
    AdaptOptions o = AdaptOptions::for_method(meth);
    o.steps = 2;
    o.lr = 1e-2;
    o.entropy.deyo_margin = 1.0, o.entropy.deyo_plpd = -1.0;  // an untrained model: let all pass
    o.seed = 3;
    Adapter a(m, o), b(m, o);
    AdaptResult ra = a.predict(x), rb = b.predict(x);
    EXPECT_TRUE(bit_equal(ra.prediction, rb.prediction)) << method_name(meth);
    EXPECT_TRUE(std::isfinite(ra.loss_before) && ra.loss_before > 0) << method_name(meth);
    // deyo: 2 passes per step (x and its shuffle); memo: 8 copies per step; + the prediction.
    EXPECT_EQ(ra.cost.forwards, meth == Method::deyo ? 5u : 17u) << method_name(meth);
    EXPECT_EQ(ra.cost.backwards, 2u);
    EXPECT_EQ(ra.cost.reset_bytes > 0, meth == Method::memo) << "memo resets per batch";
    o.seed = 4;
    Adapter c(m, o);
    EXPECT_FALSE(bit_equal(c.predict(x).prediction, ra.prediction)) << method_name(meth);
  }
}

TEST(EntropyAdapter, MisuseIsAClearError) {
  auto reg = make_mlp_model(3, {4}, SignalSpec::regression(), {}, 0);
  for (Method meth : {Method::eata, Method::deyo, Method::memo})
    expect_error([&] { Adapter a(reg, AdaptOptions::for_method(meth)); }, "it3::Adapter",
                 std::string(method_name(meth)) + " needs a classification model");
  auto m = tiny_bn_cnn();
  expect_error([&] { Adapter a(m, AdaptOptions::for_method(Method::eata)); }, "it3::Adapter",
               "Fisher statistics");
  AdaptOptions no_fisher = AdaptOptions::for_method(Method::eata);
  no_fisher.entropy.fisher_beta = 0;
  Adapter eata(m, no_fisher), deyo(m, AdaptOptions::for_method(Method::deyo));
  const Input one(images(1, 3));
  expect_error([&] { eata.predict(one); }, "it3::Adapter", "at least 2 samples");
  expect_error([&] { deyo.predict(one); }, "it3::Adapter", "at least 2 samples");
  // The augmentations need images.
  auto flat = make_mlp_model(5, {8}, SignalSpec::classification(3), {}, 0);
  for (Method meth : {Method::deyo, Method::memo}) {
    AdaptOptions o = AdaptOptions::for_method(meth);
    o.bn_mode = BnMode::running;
    o.params = ParamSelection::all();
    Adapter a(flat, o);
    expect_error([&] { a.predict(Input(randn({4, 5}, 1))); }, "it3::Adapter", "transforms images");
  }
  AdaptOptions bad = AdaptOptions::for_method(Method::memo);
  bad.entropy.memo_copies = 0;
  expect_error([&] { Adapter a(m, bad); }, "it3::Adapter", "memo_copies");
  EXPECT_EQ(parse_method("eata"), Method::eata);
  EXPECT_EQ(parse_method("deyo"), Method::deyo);
  EXPECT_EQ(parse_method("memo"), Method::memo);
}
