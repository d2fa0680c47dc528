// matmul: hand-computed products in every transpose layout, batched and shared operands,
// a naive-loop reference on odd shapes, empty extents, gradient routing, and bad input.
#include "core/ops/matmul.h"

#include <gtest/gtest.h>

#include <string>

#include "autograd/functions.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;

// A = [[1,2,3],[4,5,6]] (2x3), B = [[7,8],[9,10],[11,12]] (3x2), A·B = [[58,64],[139,154]].
const std::vector<double> kA = {1, 2, 3, 4, 5, 6};
const std::vector<double> kAt = {1, 4, 2, 5, 3, 6};  // Aᵀ stored (3x2)
const std::vector<double> kB = {7, 8, 9, 10, 11, 12};
const std::vector<double> kBt = {7, 9, 11, 8, 10, 12};  // Bᵀ stored (2x3)
const std::vector<double> kAB = {58, 64, 139, 154};

// Naive triple loop in double on the stored layouts.
std::vector<double> reference(const std::vector<double>& a, const std::vector<double>& b, int64_t M,
                              int64_t N, int64_t K, bool ta, bool tb) {
  std::vector<double> c(M * N, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? a[k * M + m] : a[m * K + k]) * (tb ? b[n * K + k] : b[k * N + n]);
      c[m * N + n] = s;
    }
  return c;
}

TEST(Matmul, HandComputedAllTransposeLayouts) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Tensor a = from_vector(ta ? kAt : kA, ta ? Shape{3, 2} : Shape{2, 3}).to(dt);
        Tensor b = from_vector(tb ? kBt : kB, tb ? Shape{2, 3} : Shape{3, 2}).to(dt);
        Tensor c = matmul(a, b, ta, tb);
        EXPECT_EQ(c.shape(), (Shape{2, 2}));
        EXPECT_EQ(c.dtype(), dt);
        EXPECT_EQ(c.to_vector<double>(), kAB) << "ta=" << ta << " tb=" << tb;
      }
  }
}

TEST(Matmul, BatchedAndSharedOperands) {
  // Batch 0 uses A, batch 1 uses 2A: C[1] = 2·C[0].
  std::vector<double> a2 = kA;
  for (double v : kA) a2.push_back(2 * v);
  const Tensor a3 = from_vector(a2, {2, 2, 3});
  const Tensor b2 = from_vector(kB, {3, 2});
  std::vector<double> want = kAB;
  for (double v : kAB) want.push_back(2 * v);

  // 3-D x shared 2-D.
  Tensor c = matmul(a3, b2);
  EXPECT_EQ(c.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(c.to_vector<double>(), want);

  // 3-D x 3-D with the same B twice.
  std::vector<double> bb = kB;
  bb.insert(bb.end(), kB.begin(), kB.end());
  EXPECT_EQ(matmul(a3, from_vector(bb, {2, 3, 2})).to_vector<double>(), want);

  // Shared 2-D A x 3-D B: batch 1 uses 2B.
  std::vector<double> b2x = kB;
  for (double v : kB) b2x.push_back(2 * v);
  Tensor c2 = matmul(from_vector(kA, {2, 3}), from_vector(b2x, {2, 3, 2}));
  EXPECT_EQ(c2.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(c2.to_vector<double>(), want);
}

TEST(Matmul, MatchesNaiveLoopOnOddShapes) {
  const int64_t M = 37, N = 23, K = 19;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const uint64_t seed = 100 + 2 * ta + tb;
      Tensor a = randn(ta ? Shape{K, M} : Shape{M, K}, seed, {DType::f64});
      Tensor b = randn(tb ? Shape{N, K} : Shape{K, N}, seed + 50, {DType::f64});
      const auto want = reference(a.to_vector<double>(), b.to_vector<double>(), M, N, K, ta, tb);
      const auto got64 = matmul(a, b, ta, tb).to_vector<double>();
      const auto got32 = matmul(a.to(DType::f32), b.to(DType::f32), ta, tb).to_vector<double>();
      for (int64_t i = 0; i < M * N; ++i) {
        EXPECT_NEAR(got64[i], want[i], 1e-12) << "seed " << seed << " element " << i;
        EXPECT_NEAR(got32[i], want[i], 1e-4) << "seed " << seed << " element " << i;
      }
    }
}

TEST(Matmul, EmptyExtents) {
  EXPECT_EQ(matmul(zeros({0, 3}), zeros({3, 4})).shape(), (Shape{0, 4}));
  EXPECT_EQ(matmul(zeros({2, 3}), zeros({3, 0})).shape(), (Shape{2, 0}));
  EXPECT_EQ(matmul(zeros({0, 2, 3}), zeros({3, 4})).shape(), (Shape{0, 2, 4}));
  // K = 0: the empty sum is zero, not garbage.
  Tensor c = matmul(empty({2, 0}), empty({0, 3}));
  EXPECT_EQ(c.shape(), (Shape{2, 3}));
  EXPECT_EQ(c.to_vector<float>(), std::vector<float>(6, 0.0f));
}

TEST(Matmul, GradientsOfSharedWeightSumOverBatch) {
  // d/dW sum(X·W) with X (B,M,K): every entry of row k of dW is Σ_{b,m} X[b,m,k].
  Tensor x = randn({3, 4, 5}, 7, {DType::f64});
  Tensor w = randn({5, 2}, 8, {DType::f64}).requires_grad_();
  sum(matmul(x, w)).backward();
  ASSERT_TRUE(w.grad().defined());
  const auto xs = x.to_vector<double>();
  for (int64_t k = 0; k < 5; ++k) {
    double want = 0;
    for (int64_t r = 0; r < 12; ++r) want += xs[r * 5 + k];
    EXPECT_NEAR(w.grad().at({k, 0}), want, 1e-12) << "k " << k;
    EXPECT_NEAR(w.grad().at({k, 1}), want, 1e-12) << "k " << k;
  }
  // x did not ask for a gradient: none is computed for it.
  EXPECT_FALSE(x.grad().defined());
}

TEST(Matmul, FrozenWeightStillPassesInputGradient) {
  Tensor x = from_vector(kA, {2, 3}).requires_grad_();
  Tensor w = from_vector(kB, {3, 2});
  sum(matmul(x, w)).backward();
  // dX = 1·Wᵀ: row sums of W = [15, 19, 23] in every row.
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{15, 19, 23, 15, 19, 23}));
  EXPECT_FALSE(w.grad().defined());
}

TEST(Matmul, BadInput) {
  expect_error(
      [] {
        ops::matmul(zeros({80, 513}), zeros({1, 513}));
      },
      "matmul", "shapes (80x513) and (1x513) on cpu cannot be multiplied");
  // The transpose flags as the code spells them (not 1/0), and each operand's K.
  expect_error(
      [] {
        matmul(zeros({2, 3}), zeros({2, 3}), true, true);
      },
      "matmul",
      "shapes (2x3) and (2x3) on cpu cannot be multiplied (trans_a=true, trans_b=true: op(a) has "
      "K=2, op(b) has K=3)");
  expect_error([] { matmul(zeros({2, 3}), zeros({2, 4}), false, true); }, "matmul",
               "(trans_a=false, trans_b=true: op(a) has K=3, op(b) has K=4)");
  expect_error(
      [] {
        matmul(zeros({2, 3}), zeros({3, 2}, {DType::f64}));
      },
      "matmul", "dtype mismatch");
  expect_error(
      [] {
        matmul(zeros({2, 3}, {DType::i64}), zeros({3, 2}, {DType::i64}));
      },
      "matmul", "floating");
  expect_error([] { matmul(zeros({3}), zeros({3, 2})); }, "matmul",
               "expected 2-D or 3-D (batched) operands, got (3) and (3x2) on cpu");
  expect_error([] { matmul(zeros({2, 2, 3, 1}), zeros({3, 2})); }, "matmul", "2-D or 3-D");
  expect_error([] { matmul(zeros({2, 2, 3}), zeros({3, 3, 2})); }, "matmul",
               "batch sizes differ: shapes (2x2x3) and (3x3x2) on cpu (dim 0: 2 vs 3)");
  expect_error([] { matmul(Tensor(), zeros({3, 2})); }, "matmul", "undefined");
}

// The same checks on a GPU name its device.
TEST(MatmulCuda, BadInputNamesTheDevice) {
  IDEM_REQUIRE_GPU();
  const Options gpu{DType::f32, Device::cuda(0)};
  expect_error([&] { matmul(zeros({2, 3}, gpu), zeros({3, 3}, gpu), true, false); }, "matmul",
               "shapes (2x3) and (3x3) on cuda:0 cannot be multiplied (trans_a=true, "
               "trans_b=false: op(a) has K=2, op(b) has K=3)");
  expect_error([&] { matmul(zeros({2, 2, 3}, gpu), zeros({3, 3, 2}, gpu)); }, "matmul",
               "batch sizes differ: shapes (2x2x3) and (3x3x2) on cuda:0");
}

}  // namespace
}  // namespace idem
