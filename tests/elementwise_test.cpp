// Elementwise and reduction forwards against hand-computed values; broadcasting; bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "core/ops/reduce.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;
using testing::expect_near_all;
using testing::vals;

TEST(Unary, HandComputedValues) {
  Tensor x = from_vector<double>({-1.0, 0.5, 2.0}, {3});
  expect_near_all(vals(neg(x)), {1.0, -0.5, -2.0}, 1e-6);
  expect_near_all(vals(exp(x)), {std::exp(-1.0), std::exp(0.5), std::exp(2.0)}, 1e-6);
  expect_near_all(vals(abs(x)), {1.0, 0.5, 2.0}, 1e-6);
  expect_near_all(vals(relu(x)), {0.0, 0.5, 2.0}, 1e-6);
  expect_near_all(vals(leaky_relu(x, 0.1)), {-0.1, 0.5, 2.0}, 1e-6);
  expect_near_all(vals(sigmoid(x)),
                  {1 / (1 + std::exp(1.0)), 1 / (1 + std::exp(-0.5)), 1 / (1 + std::exp(-2.0))},
                  1e-6);
  expect_near_all(vals(tanh(x)), {std::tanh(-1.0), std::tanh(0.5), std::tanh(2.0)}, 1e-6);
  // gelu(x) = x Φ(x): gelu(-1) = -0.158655..., gelu(2) = 1.954499...
  expect_near_all(vals(gelu(x)), {-0.15865525393145707, 0.34573123063700656, 1.9544997361036416},
                  1e-6);
  expect_near_all(vals(square(x)), {1.0, 0.25, 4.0}, 1e-6);
  Tensor p = from_vector<double>({0.25, 4.0}, {2});
  expect_near_all(vals(sqrt(p)), {0.5, 2.0}, 1e-6);
  expect_near_all(vals(log(p)), {std::log(0.25), std::log(4.0)}, 1e-6);
  expect_near_all(vals(pow(p, 0.5)), {0.5, 2.0}, 1e-6);
  expect_near_all(vals(2.0 / p), {8.0, 0.5}, 1e-6);
  expect_near_all(vals(1.0 - p), {0.75, -3.0}, 1e-6);
  expect_near_all(vals(p * 3.0 + 1.0), {1.75, 13.0}, 1e-6);
}

TEST(Binary, BroadcastingLikeNumPy) {
  Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor row = from_vector<float>({10, 20, 30}, {3});
  Tensor col = from_vector<float>({100, 200}, {2, 1});
  expect_near_all(vals(a + row), {11, 22, 33, 14, 25, 36}, 1e-6);
  expect_near_all(vals(a * col), {100, 200, 300, 800, 1000, 1200}, 1e-6);
  Tensor outer = from_vector<float>({1, 2}, {2, 1}) - from_vector<float>({1, 2, 3}, {1, 3});
  EXPECT_EQ(outer.shape(), (Shape{2, 3}));
  expect_near_all(vals(outer), {0, -1, -2, 1, 0, -1}, 1e-6);
  expect_near_all(vals(a / scalar_tensor(2.0)), {0.5, 1, 1.5, 2, 2.5, 3}, 1e-6);
  expect_near_all(vals(maximum(a, row / 10.0 + 1.0)), {2, 3, 4, 4, 5, 6}, 1e-6);
  expect_near_all(vals(minimum(a, scalar_tensor(3.0))), {1, 2, 3, 3, 3, 3}, 1e-6);
  expect_near_all(vals(pow(from_vector<float>({2, 3}, {2}), from_vector<float>({3, 2}, {2}))),
                  {8, 9}, 1e-6);
  // Integer arithmetic works where it is exact.
  Tensor i = from_vector<int64_t>({1, 2, 3}, {3});
  EXPECT_EQ((i + i).to_vector<int64_t>(), (std::vector<int64_t>{2, 4, 6}));
}

TEST(Binary, ComparisonsAndWhere) {
  Tensor a = from_vector<float>({1, 5, 3}, {3});
  Tensor b = from_vector<float>({2, 5, 1}, {3});
  EXPECT_EQ(lt(a, b).dtype(), DType::u8);
  EXPECT_EQ(lt(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 0}));
  EXPECT_EQ(le(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 1, 0}));
  EXPECT_EQ(eq(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(ne(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(gt(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(ge(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 1}));
  expect_near_all(vals(where(gt(a, b), a, b)), {2, 5, 3}, 1e-6);
  expect_near_all(vals(where(gt(a, b), a, scalar_tensor(0.0))), {0, 0, 3}, 1e-6);
}

TEST(Reduce, HandComputedValues) {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_DOUBLE_EQ(sum(x).item(), 21.0);
  expect_near_all(vals(sum(x, {0})), {5, 7, 9}, 1e-6);
  expect_near_all(vals(sum(x, {1})), {6, 15}, 1e-6);
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1}));
  EXPECT_DOUBLE_EQ(mean(x).item(), 3.5);
  expect_near_all(vals(mean(x, {-1})), {2, 5}, 1e-6);
  expect_near_all(vals(max(x, {0})), {4, 5, 6}, 1e-6);
  EXPECT_DOUBLE_EQ(max(x).item(), 6.0);
  EXPECT_EQ(argmax(from_vector<float>({1, 9, 9, 2}, {2, 2}), 1).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 0}));                          // first maximum wins
  expect_near_all(vals(var(x, {1})), {1.0, 1.0}, 1e-6);             // unbiased
  expect_near_all(vals(var(x, {1}, 0)), {2.0 / 3, 2.0 / 3}, 1e-6);  // population
  // Non-adjacent dims (BatchNorm's N,H,W of NCHW).
  Tensor y = arange(24, {DType::f64}).view_as_shape({2, 3, 2, 2});
  expect_near_all(vals(sum(y, {0, 2, 3})),
                  {0 + 1 + 2 + 3 + 12 + 13 + 14 + 15, 4 + 5 + 6 + 7 + 16 + 17 + 18 + 19,
                   8 + 9 + 10 + 11 + 20 + 21 + 22 + 23},
                  1e-6);
  EXPECT_EQ(sum(y, {0, 2, 3}, true).shape(), (Shape{1, 3, 1, 1}));
  // Reducing an empty dim: sum is 0; max is an error.
  EXPECT_EQ(sum(zeros({0, 3}), {0}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  expect_error([] { max(zeros({0, 3}), {0}); }, "[max]");
}

// A sum over the last dim runs several rows side by side (core/cpu/reduce.cpp); each row must
// still be the plain serial sum in double, r increasing, rounded once: the same bits. 19 rows
// leave a remainder after groups of eight; f32 and f64 and a 1-element row included.
TEST(Reduce, SumOverContiguousRowsIsTheSerialSumBitForBit) {
  for (const Shape& shape : {Shape{19, 37}, Shape{3, 1}, Shape{16, 576}, Shape{2, 5, 9}}) {
    Tensor x = randn(shape, 91, {DType::f64}) * 1000.0;
    const int64_t R = shape.back(), rows = x.numel() / R;
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor xt = x.to(dt);
      const std::vector<double> xv = xt.to(DType::f64).to_vector<double>();  // exact
      const Tensor got = sum(xt, {-1}).to(DType::f64);
      const std::vector<double> g = got.to_vector<double>();
      ASSERT_EQ(int64_t(g.size()), rows);
      for (int64_t o = 0; o < rows; ++o) {
        double acc = 0.0;
        for (int64_t r = 0; r < R; ++r) acc += xv[size_t(o * R + r)];
        const double want = dt == DType::f32 ? double(float(acc)) : acc;
        EXPECT_EQ(g[size_t(o)], want) << "row " << o << " of " << rows << " (R " << R << ")";
      }
    }
  }
}

TEST(Elementwise, BadInputRaisesErrorsNamingTheOp) {
  expect_error([] { zeros({2, 3}) + zeros({4}); }, "[add]");
  expect_error([] { zeros({2, 3}) * zeros({2, 3}, {DType::f64}); }, "[mul]");
  expect_error([] { exp(zeros({2}, {DType::i64})); }, "[exp]");
  expect_error([] { div(ones({2}, {DType::i64}), ones({2}, {DType::i64})); }, "[div]");
  expect_error([] { where(zeros({2}), zeros({2}), zeros({2})); }, "[where]");
  expect_error([] { sum(zeros({2, 3}), {2}); }, "[sum]");
  expect_error([] { sum(zeros({2, 3}), {1, -1}); }, "[sum]");
  expect_error([] { argmax(zeros({2, 3}), 5); }, "[argmax]");
  expect_error([] { var(zeros({1}), {0}); }, "[var]");
  expect_error([] { expand(zeros({3}), {2, 4}); }, "[expand]");
  expect_error([] { exp(Tensor()); }, "undefined");
}

}  // namespace
}  // namespace idem
