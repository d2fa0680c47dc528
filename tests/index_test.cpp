// Index/shape family: forward values against hand-computed numbers, torch semantics (gather,
// split sizes, stack), storage sharing of dim-0 narrow, adjoint accumulation with repeated
// indices, integer dtypes, empty tensors, and bad input.
#include "core/ops/index.h"

#include <gtest/gtest.h>

#include <string>

#include "autograd/functions.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;
using testing::iota;

using DV = std::vector<double>;

Tensor idx(const std::vector<int64_t>& v, Shape s = {}) {
  if (s.empty()) s = {static_cast<int64_t>(v.size())};
  return from_vector<int64_t>(v, s);
}

TEST(Index, PermuteAndTranspose) {
  Tensor x = iota({2, 3, 4});
  Tensor y = permute(x, {2, 0, 1});
  ASSERT_EQ(y.shape(), (Shape{4, 2, 3}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(y.at({k, i, j}), x.at({i, j, k}));
  EXPECT_FALSE(y.same_storage(x));  // permute copies
  EXPECT_EQ(transpose(iota({2, 3})).to_vector<double>(), (DV{0, 3, 1, 4, 2, 5}));
  Tensor t = transpose(x, 0, 2);
  ASSERT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.at({3, 1, 0}), x.at({0, 1, 3}));
  // Any dtype; a 0-dim permute is a copy.
  EXPECT_EQ(permute(iota({2, 2}, DType::i64), {1, 0}).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 2, 1, 3}));
  EXPECT_EQ(permute(scalar_tensor(5.0), {}).item(), 5.0);
  // Backward is the inverse permutation.
  Tensor xg = iota({2, 3, 4}).requires_grad_();
  Tensor w = iota({4, 2, 3});
  sum(mul(permute(xg, {2, 0, 1}), w)).backward();
  EXPECT_EQ(xg.grad().to_vector<double>(), permute(w, {1, 2, 0}).to_vector<double>());
}

TEST(Index, ConcatAndStack) {
  Tensor a = iota({2, 2}), b = iota({1, 2}) + 10.0, c = iota({2, 1}) + 20.0;
  EXPECT_EQ(concat({a, b}, 0).to_vector<double>(), (DV{0, 1, 2, 3, 10, 11}));
  EXPECT_EQ(concat({a, c}, 1).to_vector<double>(), (DV{0, 1, 20, 2, 3, 21}));
  EXPECT_EQ(concat({a, c}, -1).shape(), (Shape{2, 3}));
  // An empty piece contributes nothing.
  EXPECT_EQ(concat({a, zeros({0, 2}, {DType::f64})}, 0).to_vector<double>(), (DV{0, 1, 2, 3}));
  // Integer dtypes.
  EXPECT_EQ(concat({iota({2}, DType::u8), iota({1}, DType::u8)}).to_vector<uint8_t>(),
            (std::vector<uint8_t>{0, 1, 0}));

  Tensor s0 = stack({a, a + 4.0}, 0);
  EXPECT_EQ(s0.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(s0.to_vector<double>(), (DV{0, 1, 2, 3, 4, 5, 6, 7}));
  Tensor s2 = stack({a, a + 4.0}, -1);  // torch.stack(dim=-1): the new dim is last
  EXPECT_EQ(s2.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(s2.to_vector<double>(), (DV{0, 4, 1, 5, 2, 6, 3, 7}));
  EXPECT_EQ(stack({a, a, a}, 1).shape(), (Shape{2, 3, 2}));

  // Gradients route back to each input, including one used twice.
  Tensor x = iota({2, 2}).requires_grad_();
  Tensor y = iota({1, 2}).requires_grad_();
  sum(mul(concat({x, y, x}, 0), iota({5, 2}))).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (DV{0 + 6, 1 + 7, 2 + 8, 3 + 9}));
  EXPECT_EQ(y.grad().to_vector<double>(), (DV{4, 5}));
}

TEST(Index, SplitAndNarrow) {
  Tensor x = iota({5, 3});
  auto p = split(x, 2, 0);
  ASSERT_EQ(p.size(), 3u);  // torch.split: sizes 2, 2, 1
  EXPECT_EQ(p[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(p[2].shape(), (Shape{1, 3}));
  EXPECT_EQ(p[2].to_vector<double>(), (DV{12, 13, 14}));
  auto q = split(x, std::vector<int64_t>{1, 2}, 1);
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].to_vector<double>(), (DV{0, 3, 6, 9, 12}));
  EXPECT_EQ(q[1].shape(), (Shape{5, 2}));
  EXPECT_EQ(split(x, 5, 0).size(), 1u);
  EXPECT_EQ(split(x, 7, 0).size(), 1u);

  // Dim-0 narrow is a view (shares storage); other dims copy.
  Tensor n0 = narrow(x, 0, 1, 2);
  EXPECT_TRUE(n0.same_storage(x));
  EXPECT_EQ(n0.to_vector<double>(), (DV{3, 4, 5, 6, 7, 8}));
  Tensor n1 = narrow(x, 1, 1, 2);
  EXPECT_FALSE(n1.same_storage(x));
  EXPECT_EQ(n1.to_vector<double>(), (DV{1, 2, 4, 5, 7, 8, 10, 11, 13, 14}));
  EXPECT_EQ(narrow(x, 0, -2, 2).to_vector<double>(), (DV{9, 10, 11, 12, 13, 14}));
  EXPECT_EQ(narrow(x, 1, 3, 0).shape(), (Shape{5, 0}));

  // The backward of a storage-sharing narrow pads with zeros into a fresh gradient.
  Tensor xg = iota({4, 2}).requires_grad_();
  sum(narrow(xg, 0, 1, 2)).backward();
  EXPECT_EQ(xg.grad().to_vector<double>(), (DV{0, 0, 1, 1, 1, 1, 0, 0}));
  Tensor xh = iota({2, 4}).requires_grad_();
  auto parts = split(xh, std::vector<int64_t>{3, 1}, 1);
  sum(mul(parts[1], iota({2, 1}) + 1.0)).backward();
  EXPECT_EQ(xh.grad().to_vector<double>(), (DV{0, 0, 0, 1, 0, 0, 0, 2}));
}

TEST(Index, IndexSelectAndAdjoint) {
  Tensor x = iota({3, 2});
  EXPECT_EQ(index_select(x, 0, idx({2, 0, 2})).to_vector<double>(), (DV{4, 5, 0, 1, 4, 5}));
  EXPECT_EQ(index_select(x, 1, idx({1})).to_vector<double>(), (DV{1, 3, 5}));
  EXPECT_EQ(index_select(x, 0, idx({})).shape(), (Shape{0, 2}));
  EXPECT_EQ(index_select(iota({3}, DType::i32), 0, idx({2, 1})).to_vector<int32_t>(),
            (std::vector<int32_t>{2, 1}));
  // Repeated indices accumulate in the backward: rows 0 ×2, 1 ×0, 2 ×1.
  Tensor xg = iota({3, 2}).requires_grad_();
  sum(index_select(xg, 0, idx({0, 2, 0}))).backward();
  EXPECT_EQ(xg.grad().to_vector<double>(), (DV{2, 2, 0, 0, 1, 1}));
  EXPECT_EQ(ops::index_add({2, 3}, 1, idx({2, 2}), iota({2, 2})).to_vector<double>(),
            (DV{0, 0, 1, 0, 0, 5}));
}

TEST(Index, GatherMatchesTorchSemantics) {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {2, 2});
  // torch.gather(x, 1, [[0,0],[1,0]]) = [[1,1],[4,3]]
  EXPECT_EQ(gather(x, 1, idx({0, 0, 1, 0}, {2, 2})).to_vector<double>(), (DV{1, 1, 4, 3}));
  // torch.gather(x, 0, [[0,1],[1,0]]) = [[1,4],[3,2]]
  EXPECT_EQ(gather(x, 0, idx({0, 1, 1, 0}, {2, 2})).to_vector<double>(), (DV{1, 4, 3, 2}));
  // Picking one class per row (the cross-entropy use): index (N,1) along dim 1.
  EXPECT_EQ(gather(iota({3, 4}), 1, idx({3, 0, 2}, {3, 1})).to_vector<double>(), (DV{3, 4, 10}));
  // Backward scatters with accumulation.
  Tensor xg = from_vector<double>({1, 2, 3, 4}, {2, 2}).requires_grad_();
  sum(gather(xg, 1, idx({0, 0, 1, 0}, {2, 2}))).backward();
  EXPECT_EQ(xg.grad().to_vector<double>(), (DV{2, 0, 1, 1}));
  EXPECT_EQ(ops::scatter_add({2, 3}, 1, idx({2, 2}, {2, 1}), iota({2, 1})).to_vector<double>(),
            (DV{0, 0, 0, 0, 0, 1}));
}

TEST(Index, OneHot) {
  Tensor o = one_hot(idx({2, 0, 1}), 3);
  EXPECT_EQ(o.shape(), (Shape{3, 3}));
  EXPECT_EQ(o.dtype(), DType::f32);
  EXPECT_EQ(o.to_vector<float>(), (std::vector<float>{0, 0, 1, 1, 0, 0, 0, 1, 0}));
  EXPECT_EQ(one_hot(idx({1, 0}, {2, 1}), 2, DType::f64).shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(one_hot(idx({}), 4).shape(), (Shape{0, 4}));
}

TEST(Index, BadInput) {
  const Tensor x = iota({3, 2});
  expect_error([] { concat({}, 0); }, "concat", "non-empty");
  expect_error([&] { concat({x, iota({3, 3})}, 0); }, "concat", "differ in dim 1");
  expect_error([&] { concat({x, iota({3, 2}, DType::f32)}, 0); }, "concat", "dtype mismatch");
  expect_error([&] { concat({x, iota({6})}, 0); }, "concat", "numbers of dims");
  expect_error([&] { concat({x, x}, 2); }, "concat", "dim 2");
  expect_error([&] { stack({x, iota({2, 3})}); }, "stack", "same shape");
  expect_error([] { stack({}); }, "stack", "non-empty");
  expect_error([&] { split(x, 0, 0); }, "split", "positive");
  expect_error([&] { split(x, std::vector<int64_t>{1, 1}, 0); }, "split", "sum to 2");
  expect_error([&] { narrow(x, 0, 2, 2); }, "narrow", "exceeds");
  expect_error([&] { narrow(x, 1, 1, 2); }, "narrow", "exceeds");
  expect_error([&] { narrow(x, 3, 0, 1); }, "narrow", "dim 3");
  expect_error([&] { index_select(x, 0, from_vector<int32_t>({0}, {1})); }, "index_select",
               "index must be i64");
  expect_error([&] { index_select(x, 0, idx({0, 3})); }, "index_select", "index 3");
  expect_error([&] { index_select(x, 1, idx({-1})); }, "index_select", "out of range");
  expect_error([&] { index_select(x, 0, idx({0, 1}, {1, 2})); }, "index_select", "1-D");
  expect_error([&] { gather(x, 1, idx({0, 2, 0, 0, 0, 0}, {3, 2})); }, "gather", "index 2");
  expect_error([&] { gather(x, 1, idx({0, 0}, {1, 2})); }, "gather", "differ in dim 0");
  expect_error([&] { gather(x, 0, idx({0, 0})); }, "gather", "number of dims");
  expect_error([&] { one_hot(idx({0, 4}), 4); }, "one_hot", "index 4");
  expect_error([&] { one_hot(idx({0}), 0); }, "one_hot", "num_classes");
  expect_error([&] { one_hot(from_vector<int32_t>({0}, {1}), 2); }, "one_hot", "i64");
  expect_error([&] { permute(iota({2, 3, 4}), {0, 0, 1}); }, "permute", "twice");
  expect_error([&] { permute(x, {0}); }, "permute", "length 1");
  expect_error([] { transpose(iota({4})); }, "transpose", "dim -2");
  expect_error(
      [] {
        ops::narrow_backward(iota({2, 2}), {3, 3}, 0, 0);
      },
      "narrow_backward", "differ in dim 1");
}

}  // namespace
}  // namespace idem
