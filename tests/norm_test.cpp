// batch_norm / layer_norm / group_norm / dropout: hand-computed values, the running-statistic
// update (momentum, unbiased variance), evaluation mode, forward and backward against an
// independent composition of L2 functions (mean, var, sqrt, ...), needs_grad (frozen
// parameters), the Philox dropout mask, bad input, and CPU-vs-CUDA checks on shapes large
// enough to use several warps per block, plus the CUDA split path for few large groups: which
// shapes take it, bit-identical reruns, CUDA graph capture (skipped without a GPU).
#include "core/ops/norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "autograd/nn_functions.h"
#include "core/kernels/cuda_graph.h"
#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_close;
using testing::expect_error;

// ---- references composed from L2 functions (independent of the norm kernels) ----

// Normalizes x over `dims` (biased variance) — the textbook formula.
Tensor ref_normalize(const Tensor& x, const std::vector<int64_t>& dims, double eps) {
  Tensor mu = mean(x, dims, true);
  Tensor v = var(x, dims, /*correction=*/0, true);
  return div(sub(x, mu), sqrt(add(v, eps)));
}

// (C) -> (1, C, 1, ...) for broadcasting over x of rank `rank`.
Tensor per_channel(const Tensor& w, int64_t rank) {
  Shape s(static_cast<size_t>(rank), 1);
  s[1] = w.numel();
  return w.reshape(s);
}

Tensor ref_batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Tensor y = ref_normalize(x, dims, eps);
  if (w.defined()) y = mul(y, per_channel(w, x.dim()));
  if (b.defined()) y = add(y, per_channel(b, x.dim()));
  return y;
}

Tensor ref_group_norm(const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b,
                      double eps) {
  const int64_t n = x.size(0);
  Tensor xg = x.reshape({n, groups, x.numel() / (n * groups)});
  Tensor y = ref_normalize(xg, {2}, eps).reshape(x.shape());
  if (w.defined()) y = mul(y, per_channel(w, x.dim()));
  if (b.defined()) y = add(y, per_channel(b, x.dim()));
  return y;
}

// Compares forward and every gradient of `fn` and `ref` on fresh leaf copies of `inputs`,
// with the output weighted by a random tensor so each element has its own gradient.
void compare_with_reference(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                            const std::function<Tensor(const std::vector<Tensor>&)>& ref,
                            const std::vector<Tensor>& inputs, uint64_t seed, double tol,
                            const std::string& what) {
  auto leaves = [&] {
    std::vector<Tensor> v;
    for (const Tensor& t : inputs) v.push_back(t.clone_data().requires_grad_());
    return v;
  };
  std::vector<Tensor> a = leaves(), b = leaves();
  Tensor ya = fn(a), yb = ref(b);
  expect_close(ya, yb, tol, tol, what + " forward (seed " + std::to_string(seed) + ")");
  Tensor r = randn(ya.shape(), seed + 100, ya.options());
  sum(mul(ya, r)).backward();
  sum(mul(yb, r)).backward();
  for (size_t i = 0; i < a.size(); ++i)
    expect_close(
        a[i].grad(), b[i].grad(), tol, tol,
        what + " grad of input " + std::to_string(i) + " (seed " + std::to_string(seed) + ")");
}

// ---------------------------------------------------------------------------------------------
// batch_norm

TEST(BatchNorm, TrainingHandComputedWithRunningStats) {
  // Channel 0: 1 3 5 7 -> mean 4, biased var 5, unbiased 20/3.
  // Channel 1: 2 4 6 9 -> mean 5.25, biased var 6.6875, unbiased 8.91666...
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 9}, {4, 2}).to(dt);
    Tensor w = from_vector<double>({2, 0.5}, {2}).to(dt);
    Tensor b = from_vector<double>({1, -1}, {2}).to(dt);
    Tensor rm = from_vector<double>({0.5, -0.5}, {2}).to(dt);
    Tensor rv = from_vector<double>({2, 3}, {2}).to(dt);
    Tensor rm_alias = rm;  // the update must be in place: aliases see it
    Tensor y = batch_norm(x, rm, rv, w, b, /*training=*/true, 0.1, 1e-5);
    const std::vector<double> want = {-1.6832788897221995, -1.6283782480643443, 0.10557370342593342,
                                      -1.2416839415632093, 1.8944262965740666,  -0.8549896350620744,
                                      3.6832788897221995,  -0.27494817531037186};
    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
    const auto yv = y.to_vector<double>();
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(yv[i], want[i], tol) << i;
    // running_mean = 0.9·old + 0.1·mean; running_var = 0.9·old + 0.1·unbiased var.
    const auto m = rm_alias.to_vector<double>(), v = rv.to_vector<double>();
    EXPECT_NEAR(m[0], 0.85, tol);
    EXPECT_NEAR(m[1], 0.075, tol);
    EXPECT_NEAR(v[0], 2.466666666666667, tol);
    EXPECT_NEAR(v[1], 3.591666666666667, tol);
  }
}

TEST(BatchNorm, RunningStatsOn4dInputAgainstNaiveLoop) {
  const uint64_t seed = 21;
  Tensor x = randn({3, 2, 2, 3}, seed, {DType::f64});
  Tensor rm = randn({2}, seed + 1, {DType::f64});
  Tensor rv = uniform({2}, 0.5, 2.0, seed + 2, {DType::f64});
  const auto rm0 = rm.to_vector<double>(), rv0 = rv.to_vector<double>();
  const double momentum = 0.25;
  {
    NoGradGuard ng;  // the update happens with grad mode off too
    batch_norm(x, rm, rv, Tensor(), Tensor(), true, momentum);
  }
  const auto rmv = rm.to_vector<double>(), rvv = rv.to_vector<double>();
  for (int64_t c = 0; c < 2; ++c) {
    std::vector<double> vals;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t w = 0; w < 3; ++w) vals.push_back(x.at({n, c, h, w}));
    double mu = 0;
    for (double v : vals) mu += v;
    mu /= vals.size();
    double ss = 0;
    for (double v : vals) ss += (v - mu) * (v - mu);
    const double unbiased = ss / (vals.size() - 1);
    EXPECT_NEAR(rmv[c], (1 - momentum) * rm0[c] + momentum * mu, 1e-12) << "seed " << seed;
    EXPECT_NEAR(rvv[c], (1 - momentum) * rv0[c] + momentum * unbiased, 1e-12) << "seed " << seed;
  }
}

TEST(BatchNorm, EvalUsesRunningStatsAndLeavesThemAlone) {
  const uint64_t seed = 5;
  Tensor x = randn({4, 3, 2}, seed, {DType::f64});
  Tensor w = randn({3}, seed + 1, {DType::f64});
  Tensor b = randn({3}, seed + 2, {DType::f64});
  Tensor rm = from_vector<double>({0.5, -1.0, 2.0}, {3});
  Tensor rv = from_vector<double>({4.0, 0.25, 1.0}, {3});
  Tensor y = batch_norm(x, rm, rv, w, b, /*training=*/false, 0.1, 1e-5);
  for (int64_t n = 0; n < 4; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t s = 0; s < 2; ++s) {
        const double want =
            (x.at({n, c, s}) - rm.at({c})) / std::sqrt(rv.at({c}) + 1e-5) * w.at({c}) + b.at({c});
        EXPECT_NEAR(y.at({n, c, s}), want, 1e-12) << "seed " << seed;
      }
  EXPECT_EQ(rm.to_vector<double>(), (std::vector<double>{0.5, -1.0, 2.0}));
  EXPECT_EQ(rv.to_vector<double>(), (std::vector<double>{4.0, 0.25, 1.0}));
  // One sample per channel is fine in evaluation (no batch statistics).
  Tensor one =
      batch_norm(from_vector<double>({1, 2, 3}, {1, 3}), rm, rv, Tensor(), Tensor(), false);
  EXPECT_NEAR(one.at({0, 0}), 0.5 / std::sqrt(4.0 + 1e-5), 1e-12);
}

TEST(BatchNorm, EvalGradientIsAffine) {
  // y = (x − rm)·rstd·w + b: dx = g·w·rstd, dw = Σ g·x̂, db = Σ g.
  Tensor x = from_vector<double>({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor w = from_vector<double>({3, -1}, {2}).requires_grad_();
  Tensor b = from_vector<double>({0, 0}, {2}).requires_grad_();
  Tensor rm = from_vector<double>({1, 1}, {2});
  Tensor rv = from_vector<double>({3, 8}, {2});
  sum(batch_norm(x, rm, rv, w, b, false, 0.1, 1.0)).backward();  // eps 1: rstd = 1/2, 1/3
  const auto dx = x.grad().to_vector<double>();
  EXPECT_NEAR(dx[0], 1.5, 1e-14);
  EXPECT_NEAR(dx[1], -1.0 / 3, 1e-14);
  EXPECT_NEAR(dx[2], 1.5, 1e-14);
  EXPECT_NEAR(dx[3], -1.0 / 3, 1e-14);
  const auto dw = w.grad().to_vector<double>();
  EXPECT_NEAR(dw[0], (0 + 2) / 2.0, 1e-14);
  EXPECT_NEAR(dw[1], (1 + 3) / 3.0, 1e-14);
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{2, 2}));
}

TEST(BatchNorm, MatchesComposedReference) {
  for (uint64_t seed : {1ull, 2ull}) {
    std::vector<Tensor> in = {randn({4, 3, 2, 3}, seed, {DType::f64}),
                              randn({3}, seed + 1, {DType::f64}),
                              randn({3}, seed + 2, {DType::f64})};
    compare_with_reference(
        [](const std::vector<Tensor>& v) {
          return batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true, 0.1, 1e-5);
        },
        [](const std::vector<Tensor>& v) { return ref_batch_norm(v[0], v[1], v[2], 1e-5); }, in,
        seed, 1e-10, "batch_norm 4d");
    std::vector<Tensor> in2 = {randn({7, 5}, seed, {DType::f64})};
    compare_with_reference(
        [](const std::vector<Tensor>& v) {
          return batch_norm(v[0], Tensor(), Tensor(), Tensor(), Tensor(), true);
        },
        [](const std::vector<Tensor>& v) { return ref_batch_norm(v[0], Tensor(), Tensor(), 1e-5); },
        in2, seed, 1e-10, "batch_norm 2d");
  }
}

TEST(BatchNorm, FrozenParametersGetNoGradient) {
  // IT³'s frozen anchor: weights do not require grad, the input does.
  const uint64_t seed = 9;
  Tensor x = randn({5, 3, 2}, seed, {DType::f64}).requires_grad_();
  Tensor w = randn({3}, seed + 1, {DType::f64});
  Tensor b = randn({3}, seed + 2, {DType::f64});
  Tensor r = randn({5, 3, 2}, seed + 3, {DType::f64});
  sum(mul(batch_norm(x, Tensor(), Tensor(), w, b, true), r)).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // The batch-statistics gradient sums to zero over each channel (Σ x̂ = 0).
  Tensor s = sum(x.grad(), {0, 2});
  for (double v : s.to_vector<double>()) EXPECT_NEAR(v, 0.0, 1e-12) << "seed " << seed;
  // And it equals the reference gradient.
  Tensor x2 = x.detach().clone_data().requires_grad_();
  sum(mul(ref_batch_norm(x2, w, b, 1e-5), r)).backward();
  expect_close(x.grad(), x2.grad(), 1e-10, 1e-10, "frozen batch_norm dx");
}

// ---------------------------------------------------------------------------------------------
// layer_norm and group_norm

TEST(LayerNorm, HandComputed) {
  // [1,2,3,4]: mean 2.5, var 1.25.
  Tensor y = layer_norm(from_vector<double>({1, 2, 3, 4}, {1, 4}), 1, Tensor(), Tensor(), 1e-5);
  const std::vector<double> want = {-1.3416354199689269, -0.447211806656309, 0.447211806656309,
                                    1.3416354199689269};
  const auto v = y.to_vector<double>();
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(v[i], want[i], 1e-14);
}

TEST(LayerNorm, MatchesComposedReference) {
  for (uint64_t seed : {3ull, 4ull}) {
    std::vector<Tensor> in = {randn({3, 5}, seed, {DType::f64}), randn({5}, seed + 1, {DType::f64}),
                              randn({5}, seed + 2, {DType::f64})};
    compare_with_reference(
        [](const std::vector<Tensor>& v) { return layer_norm(v[0], 1, v[1], v[2]); },
        [](const std::vector<Tensor>& v) {
          return add(mul(ref_normalize(v[0], {1}, 1e-5), v[1]), v[2]);
        },
        in, seed, 1e-10, "layer_norm 1 dim");
    std::vector<Tensor> in2 = {randn({2, 3, 4}, seed, {DType::f64}),
                               randn({3, 4}, seed + 1, {DType::f64}),
                               randn({3, 4}, seed + 2, {DType::f64})};
    compare_with_reference(
        [](const std::vector<Tensor>& v) { return layer_norm(v[0], 2, v[1], v[2]); },
        [](const std::vector<Tensor>& v) {
          return add(mul(ref_normalize(v[0], {1, 2}, 1e-5), v[1]), v[2]);
        },
        in2, seed, 1e-10, "layer_norm 2 dims");
  }
}

TEST(GroupNorm, MatchesComposedReference) {
  for (uint64_t seed : {5ull, 6ull}) {
    std::vector<Tensor> in = {randn({2, 6, 2, 3}, seed, {DType::f64}),
                              randn({6}, seed + 1, {DType::f64}),
                              randn({6}, seed + 2, {DType::f64})};
    for (int64_t groups : {1, 2, 3, 6}) {
      compare_with_reference(
          [groups](const std::vector<Tensor>& v) { return group_norm(v[0], groups, v[1], v[2]); },
          [groups](const std::vector<Tensor>& v) {
            return ref_group_norm(v[0], groups, v[1], v[2], 1e-5);
          },
          in, seed, 1e-10, "group_norm groups=" + std::to_string(groups));
    }
  }
}

TEST(GroupNorm, HandComputed) {
  // x (1, 2, 2), one group: [1,3 | 5,7] -> mean 4, var 5.
  Tensor y = group_norm(from_vector<double>({1, 3, 5, 7}, {1, 2, 2}), 1,
                        from_vector<double>({1, 2}, {2}), from_vector<double>({0, 10}, {2}), 0.0);
  const double s = std::sqrt(5.0);
  const std::vector<double> want = {-3 / s, -1 / s, 2 * 1 / s + 10, 2 * 3 / s + 10};
  const auto v = y.to_vector<double>();
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(v[i], want[i], 1e-14);
}

// ---------------------------------------------------------------------------------------------
// dropout

TEST(Dropout, MaskIsThePhiloxUniformDraw) {
  const uint64_t seed = 77, offset = 5;
  const double p = 0.3;
  Tensor x = uniform({40, 25}, 0.5, 2.0, seed + 1, {DType::f64});
  Tensor y = dropout(x, p, true, seed, offset);
  Tensor u = rand({40, 25}, seed, {DType::f64}, offset);  // element i: uniform(seed, offset, i)
  const auto xv = x.to_vector<double>(), yv = y.to_vector<double>(), uv = u.to_vector<double>();
  int64_t kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const bool keep = uv[i] >= p;
    kept += keep;
    EXPECT_DOUBLE_EQ(yv[i], keep ? xv[i] / (1 - p) : 0.0) << i << " seed " << seed;
  }
  // 1000 draws with keep probability 0.7: 700 ± 5σ (σ ≈ 14.5).
  EXPECT_NEAR(static_cast<double>(kept), 700.0, 75.0);
  // f32 uses the same mask.
  const auto y32 = dropout(x.to(DType::f32), p, true, seed, offset).to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(y32[i] != 0.0, yv[i] != 0.0) << i;
  // Another offset gives another mask.
  EXPECT_NE(dropout(x, p, true, seed, offset + 1).to_vector<double>(), yv);
}

TEST(Dropout, BackwardUsesTheSameMaskAndEvalIsIdentity) {
  const uint64_t seed = 3;
  Tensor x = uniform({6, 7}, 0.5, 2.0, seed, {DType::f64}).requires_grad_();
  Tensor y = dropout(x, 0.5, true, seed);
  sum(y).backward();
  const auto g = x.grad().to_vector<double>(), yv = y.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], yv[i] != 0.0 ? 2.0 : 0.0) << i;
  // p = 0 keeps everything; eval returns x itself.
  EXPECT_EQ(dropout(x, 0.0, true, seed).to_vector<double>(), x.to_vector<double>());
  Tensor e = dropout(x, 0.5, false, seed);
  EXPECT_TRUE(e.same_storage(x));
}

// ---------------------------------------------------------------------------------------------
// bad input

TEST(NormBadInput, Errors) {
  Tensor x = zeros({4, 3, 2});
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), ones({4}), Tensor(), true); }, "batch_norm",
               "weight (4)");
  expect_error([&] { batch_norm(x, zeros({2}), ones({2}), Tensor(), Tensor(), true); },
               "batch_norm", "running_mean (2)");
  expect_error([&] { batch_norm(x, zeros({3}), Tensor(), Tensor(), Tensor(), true); }, "batch_norm",
               "both be defined");
  expect_error([&] { batch_norm(zeros({5}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
               "batch_norm", "(N,C)");
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false); }, "batch_norm",
               "evaluation mode");
  expect_error(
      [&] {
        batch_norm(zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true);
      },
      "batch_norm", "more than 1 value per channel");
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), ones({3}, {DType::f64}), Tensor(), true); },
               "batch_norm", "dtype");
  expect_error(
      [&] {
        batch_norm(zeros({4, 3}, {DType::i64}), Tensor(), Tensor(), Tensor(), Tensor(), true);
      },
      "batch_norm", "floating");
  expect_error([&] { layer_norm(x, 4, Tensor(), Tensor()); }, "layer_norm", "normalized_dims 4");
  expect_error([&] { layer_norm(x, 0, Tensor(), Tensor()); }, "layer_norm", "normalized_dims 0");
  expect_error([&] { layer_norm(x, 2, ones({2, 3}), Tensor()); }, "layer_norm", "weight (2x3)");
  expect_error([&] { group_norm(x, 2, Tensor(), Tensor()); }, "group_norm", "2 groups");
  expect_error([&] { group_norm(x, 0, Tensor(), Tensor()); }, "group_norm", "0 groups");
  expect_error([&] { group_norm(x, 3, Tensor(), ones({4})); }, "group_norm", "bias (4)");
  expect_error([&] { dropout(x, 1.0, true, 1); }, "dropout", "[0, 1)");
  expect_error([&] { dropout(x, -0.1, true, 1); }, "dropout", "[0, 1)");
  expect_error([&] { dropout(x, 1.5, false, 1); }, "dropout", "[0, 1)");
  expect_error([&] { dropout(zeros({3}, {DType::i32}), 0.5, true, 1); }, "dropout", "floating");
}

TEST(NormEdge, EmptyBatch) {
  // Layer/group norm of an empty batch: empty output, zero parameter gradients.
  Tensor x = zeros({0, 4}, {DType::f64}).requires_grad_();
  Tensor w = ones({4}, {DType::f64}).requires_grad_();
  Tensor y = layer_norm(x, 1, w, Tensor());
  EXPECT_EQ(y.shape(), (Shape{0, 4}));
  sum(y).backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{0, 0, 0, 0}));
}

// ---------------------------------------------------------------------------------------------
// CUDA against the CPU, on shapes with several warps per block and more groups than one wave.

class NormCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    IDEM_REQUIRE_GPU();
  }
};

// Runs fn on CPU f32 and CUDA copies of `inputs`; compares the output and every gradient.
void cpu_vs_cuda(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                 const std::vector<Tensor>& inputs, uint64_t seed, double tol,
                 const std::string& what) {
  auto run = [&](Device dev, std::vector<Tensor>& leaves) {
    for (const Tensor& t : inputs) leaves.push_back(t.to(DType::f32).to(dev).requires_grad_());
    Tensor y = fn(leaves);
    Tensor r = randn(y.shape(), seed + 50, {DType::f32}).to(dev);
    sum(mul(y, r)).backward();
    return y;
  };
  std::vector<Tensor> lc, lg;
  Tensor yc = run(Device::cpu(), lc);
  Tensor yg = run(Device::cuda(0), lg);
  expect_close(yg.to(Device::cpu()), yc, tol, tol, what + " forward");
  for (size_t i = 0; i < lc.size(); ++i)
    expect_close(lg[i].grad().to(Device::cpu()), lc[i].grad(), tol, tol,
                 what + " grad " + std::to_string(i));
}

TEST_F(NormCuda, BatchNormTrainingMatchesCpu) {
  const uint64_t seed = 31;
  // R = 16·7·7 = 784 per channel: several warps; 2-D input: S = 1.
  cpu_vs_cuda(
      [](const std::vector<Tensor>& v) {
        return batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true);
      },
      {randn({16, 5, 7, 7}, seed, {DType::f64}), randn({5}, seed + 1, {DType::f64}),
       randn({5}, seed + 2, {DType::f64})},
      seed, 2e-4, "batch_norm 4d");
  cpu_vs_cuda(
      [](const std::vector<Tensor>& v) {
        return batch_norm(v[0], Tensor(), Tensor(), Tensor(), v[1], true);
      },
      {randn({300, 40}, seed, {DType::f64}), randn({40}, seed + 1, {DType::f64})}, seed, 2e-4,
      "batch_norm 2d");
}

TEST_F(NormCuda, BatchNormRunningStatsAndEvalMatchCpu) {
  const uint64_t seed = 32;
  Tensor x = randn({8, 6, 5, 5}, seed, {DType::f32});
  Tensor rm_c = randn({6}, seed + 1, {DType::f32}), rv_c = uniform({6}, 0.5, 2, seed + 2);
  Tensor rm_g = rm_c.to(Device::cuda(0)), rv_g = rv_c.to(Device::cuda(0));
  batch_norm(x, rm_c, rv_c, Tensor(), Tensor(), true, 0.1);
  batch_norm(x.to(Device::cuda(0)), rm_g, rv_g, Tensor(), Tensor(), true, 0.1);
  expect_close(rm_g.to(Device::cpu()), rm_c, 1e-5, 1e-5, "running_mean");
  expect_close(rv_g.to(Device::cpu()), rv_c, 1e-5, 1e-5, "running_var");
  cpu_vs_cuda(
      [&](const std::vector<Tensor>& v) {
        Device d = v[0].device();
        return batch_norm(v[0], rm_c.to(d), rv_c.to(d), v[1], v[2], false);
      },
      {randn({8, 6, 5, 5}, seed + 3, {DType::f64}), randn({6}, seed + 4, {DType::f64}),
       randn({6}, seed + 5, {DType::f64})},
      seed, 1e-4, "batch_norm eval");
}

TEST_F(NormCuda, LayerAndGroupNormMatchCpu) {
  const uint64_t seed = 33;
  cpu_vs_cuda([](const std::vector<Tensor>& v) { return layer_norm(v[0], 1, v[1], v[2]); },
              {randn({70, 600}, seed, {DType::f64}), randn({600}, seed + 1, {DType::f64}),
               randn({600}, seed + 2, {DType::f64})},
              seed, 5e-4, "layer_norm");
  cpu_vs_cuda([](const std::vector<Tensor>& v) { return group_norm(v[0], 4, v[1], v[2]); },
              {randn({3, 16, 9, 9}, seed, {DType::f64}), randn({16}, seed + 1, {DType::f64}),
               randn({16}, seed + 2, {DType::f64})},
              seed, 5e-4, "group_norm");
}

TEST_F(NormCuda, FrozenBatchNormInputGradientMatchesCpu) {
  const uint64_t seed = 34;
  Tensor w = randn({4}, seed + 1, {DType::f32}), b = randn({4}, seed + 2, {DType::f32});
  cpu_vs_cuda(
      [&](const std::vector<Tensor>& v) {
        Device d = v[0].device();
        return batch_norm(v[0], Tensor(), Tensor(), w.to(d), b.to(d), true);
      },
      {randn({32, 4, 6, 6}, seed, {DType::f64})}, seed, 2e-4, "frozen batch_norm");
}

// ---- the CUDA split path for few large groups (cuda/kernels/norm.cu) ----

const Options kGpuF32{DType::f32, Device::cuda(0)};

// One normalization forward and backward through the L1 ops (no autograd, so it can be repeated
// and captured in a CUDA graph): y, mean, rstd, dx, dweight, dbias.
struct NormRun {
  enum Kind { bn_train, bn_eval, group, layer } kind;
  Tensor x, w, b, g, rm, rv;  // rm/rv: running statistics (updated by bn_train, read by bn_eval)
  std::vector<Tensor> out;

  NormRun(Kind k, const Shape& shape, int64_t channels, uint64_t seed)
      : kind(k),
        x(randn(shape, seed, kGpuF32)),
        w(randn({channels}, seed + 1, kGpuF32)),
        b(randn({channels}, seed + 2, kGpuF32)),
        g(randn(shape, seed + 3, kGpuF32)),
        rm(randn({channels}, seed + 4, kGpuF32)),
        rv(uniform({channels}, 0.5, 2.0, seed + 5, kGpuF32)) {}

  void run() {
    ops::NormOutputs o;
    if (kind == bn_train || kind == bn_eval)
      o = ops::batch_norm(x, rm, rv, w, b, kind == bn_train, 0.1, 1e-5);
    else if (kind == group)
      o = ops::group_norm(x, 2, w, b, 1e-5);
    else
      o = ops::layer_norm(x, 1, w, b, 1e-5);
    ops::NormGrads gr = ops::norm_backward(g, x, o.mean, o.rstd, w, o.shape, kind != bn_eval,
                                           true, true, true);
    out = {o.y, o.mean, o.rstd, gr.dx, gr.dweight, gr.dbias};
  }
  // The outputs, then the running statistics, as float vectors on the host.
  std::vector<std::vector<float>> host() const {
    std::vector<std::vector<float>> h;
    for (const Tensor& t : out) h.push_back(t.to_vector<float>());
    h.push_back(rm.to_vector<float>());
    h.push_back(rv.to_vector<float>());
    return h;
  }
};

const char* const kRunNames[] = {"y", "mean", "rstd", "dx", "dweight", "dbias", "running_mean",
                                 "running_var"};

void expect_same_bits(const std::vector<std::vector<float>>& a,
                      const std::vector<std::vector<float>>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size()) << what << " " << kRunNames[i];
    EXPECT_EQ(std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)), 0)
        << what << ": " << kRunNames[i] << " differs between two runs";
  }
}

// Kernel launches of one forward + backward of `k` on x of `shape`.
uint64_t launches_of(NormRun::Kind k, const Shape& shape, int64_t channels) {
  NormRun r(k, shape, channels, 7);
  const uint64_t before = cuda::launch_count();
  r.run();
  return cuda::launch_count() - before;
}

TEST_F(NormCuda, SplitPathTakenForFewLargeGroupsOnly) {
  // The split path costs one more launch per reduction (partials, then combine): 255 channels
  // of 4096 elements split, 256 do not; a group of 4096 elements splits, one of 4095 does not.
  // Training: forward + fused backward, one more launch each; evaluation: split dweight/dbias.
  for (auto k : {NormRun::bn_train, NormRun::bn_eval}) {
    SCOPED_TRACE(k == NormRun::bn_train ? "training" : "evaluation");
    const uint64_t extra = k == NormRun::bn_train ? 2 : 1;
    EXPECT_EQ(launches_of(k, {4, 255, 32, 32}, 255), launches_of(k, {4, 256, 32, 32}, 256) + extra);
    EXPECT_EQ(launches_of(k, {1, 3, 4096}, 3), launches_of(k, {1, 3, 4095}, 3) + extra);
  }
  // group_norm (8 groups, 8 channels of 4096): forward, backward data and dweight/dbias split.
  EXPECT_EQ(launches_of(NormRun::group, {4, 8, 32, 32}, 8),
            launches_of(NormRun::group, {4, 8, 31, 33}, 8) + 3);
  // More than 256 chunks a group (2 groups of 550 000 elements: 269 chunks of 2 048): the
  // partials are combined once, by one more launch in the forward and in the backward with
  // batch statistics; evaluation has nothing to combine before its elementwise passes.
  EXPECT_EQ(launches_of(NormRun::bn_train, {550, 2, 1000}, 2),
            launches_of(NormRun::bn_train, {1, 3, 4096}, 3) + 2);
  EXPECT_EQ(launches_of(NormRun::bn_eval, {550, 2, 1000}, 2),
            launches_of(NormRun::bn_eval, {1, 3, 4096}, 3));
  // layer_norm, two rows of 600 000 (293 chunks; non-fused backward) against two of 8 192.
  EXPECT_EQ(launches_of(NormRun::layer, {2, 600000}, 600000),
            launches_of(NormRun::layer, {2, 8192}, 8192) + 2);
}

TEST_F(NormCuda, SplitPathRerunsAreBitIdentical) {
  struct Case {
    NormRun::Kind kind;
    Shape shape;
    int64_t channels;
    const char* what;
  };
  const std::vector<Case> cases = {
      {NormRun::bn_train, {128, 32, 28, 28}, 32, "batch_norm training, bn_cnn layer 1"},
      {NormRun::bn_eval, {128, 64, 14, 14}, 64, "batch_norm evaluation, bn_cnn layer 2"},
      {NormRun::bn_train, {7, 3, 29, 23}, 3, "batch_norm training, ragged last chunk"},
      {NormRun::group, {4, 8, 32, 32}, 8, "group_norm"},
      {NormRun::layer, {2, 8192}, 8192, "layer_norm, two rows"},
      // 269 chunks a group: the partials combined once (norm_*_split_combine_kernel).
      {NormRun::bn_train, {550, 2, 1000}, 2, "batch_norm training, partials combined once"},
      {NormRun::layer, {2, 600000}, 600000, "layer_norm, partials combined once"},
      // 2 groups of 4 320 000: chunks capped at 8 192 elements (528 a group, the last ragged).
      {NormRun::bn_train, {8, 2, 600, 900}, 2, "batch_norm training, capped chunks"},
      {NormRun::bn_eval, {8, 2, 600, 900}, 2, "batch_norm evaluation, capped chunks"},
  };
  for (const Case& c : cases) {
    NormRun a(c.kind, c.shape, c.channels, 41), b(c.kind, c.shape, c.channels, 41);
    a.run();
    b.run();
    expect_same_bits(a.host(), b.host(), c.what);
    // Not vacuous: the run produced finite, non-constant values.
    const std::vector<float> y = a.out[0].to_vector<float>();
    const std::vector<float> dx = a.out[3].to_vector<float>();
    EXPECT_TRUE(std::isfinite(y[0]) && std::isfinite(dx.back()) && y[0] != y[1]) << c.what;
  }
}

TEST_F(NormCuda, SplitPathUnderGraphCaptureMatchesEager) {
  // The partials workspace comes from the caching allocator: after the warm-up a capture is
  // served from the cache, and every replay equals (bit for bit) an eager run on new inputs.
  // The second shape combines its 269 partials a group once, in one more launch per pass.
  const std::vector<std::pair<Shape, int64_t>> shapes = {{{128, 32, 28, 28}, 32},
                                                         {{550, 2, 1000}, 2}};
  for (const auto& [shape, channels] : shapes) {
    for (auto k : {NormRun::bn_eval, NormRun::bn_train}) {
      SCOPED_TRACE(std::string(k == NormRun::bn_train ? "training " : "evaluation ") +
                   std::to_string(channels) + " channels");
      // Training updates the running statistics on every run: captured and eager start equal.
      NormRun cap(k, shape, channels, 51), eager(k, shape, channels, 51);
      cuda::CaptureStream stream(0);
      cap.run();
      cap.run();
      eager.run();
      eager.run();
      // A capture records without running: both have taken two steps.
      cuda::Graph graph = cuda::Graph::capture([&] { cap.run(); }, stream);
      for (int it = 0; it < 2; ++it) {
        const Tensor xn = randn(shape, 60 + static_cast<uint64_t>(it), kGpuF32);
        cap.x.copy_(xn);
        eager.x.copy_(xn);
        graph.replay();
        eager.run();
        expect_same_bits(cap.host(), eager.host(), "replay " + std::to_string(it));
      }
    }
  }
}

// The three normalizations' shapes always let the split path's dweight/dbias pass find an
// element's group by a shortcut (kGroupChan, kGroupOuter in cuda/kernels/norm.cu). A hand-made
// NormShape given to ops::norm_backward may allow neither; with few large channels it then takes
// the one-launch block kernel, which divides to find each group. Here x (2, 3, 4096): one
// statistics group over all of x, seen as (2, 1, 12288), and 3 channels of 8 192 elements.
TEST_F(NormCuda, HandMadeShapeWithoutAGroupShortcutMatchesCpu) {
  const uint64_t seed = 36;
  const NormShape s{2, 1, 3 * 4096, 2, 3, 4096};
  const Shape shape{2, 3, 4096};
  const Options f32{DType::f32};
  const Tensor x = randn(shape, seed, f32), g = randn(shape, seed + 1, f32);
  const Tensor w = randn({3}, seed + 2, f32);
  const Tensor mean = randn({1}, seed + 3, f32), rstd = uniform({1}, 0.5, 2.0, seed + 4, f32);
  const Device gpu = Device::cuda(0);
  for (const bool batch_stats : {true, false}) {
    SCOPED_TRACE(batch_stats ? "batch statistics" : "fixed statistics");
    const ops::NormGrads c =
        ops::norm_backward(g, x, mean, rstd, w, s, batch_stats, true, true, true);
    const ops::NormGrads d = ops::norm_backward(g.to(gpu), x.to(gpu), mean.to(gpu), rstd.to(gpu),
                                                w.to(gpu), s, batch_stats, true, true, true);
    expect_close(d.dx, c.dx, 1e-4, 1e-3, "dx", seed);
    expect_close(d.dweight, c.dweight, 1e-2, 1e-3, "dweight", seed);
    expect_close(d.dbias, c.dbias, 1e-2, 1e-3, "dbias", seed);
  }
  // dweight/dbias alone: one launch (the block kernel), where the split path takes two.
  const Tensor gg = g.to(gpu), xg = x.to(gpu), mg = mean.to(gpu), rg = rstd.to(gpu);
  const Tensor wg = w.to(gpu);
  const uint64_t before = cuda::launch_count();
  ops::norm_backward(gg, xg, mg, rg, wg, s, false, false, true, true);
  EXPECT_EQ(cuda::launch_count() - before, 1u);
}

TEST_F(NormCuda, DropoutMaskIdenticalToCpu) {
  const uint64_t seed = 35;
  Tensor x = uniform({1000, 37}, 0.5, 2.0, seed, {DType::f32});
  const auto yc = dropout(x, 0.3, true, seed, 11).to_vector<float>();
  const auto yg = dropout(x.to(Device::cuda(0)), 0.3, true, seed, 11).to_vector<float>();
  ASSERT_EQ(yc.size(), yg.size());
  for (size_t i = 0; i < yc.size(); ++i) ASSERT_EQ(yc[i], yg[i]) << i << " seed " << seed;
}

}  // namespace
}  // namespace idem
