// Pooling and upsampling: hand-computed values (PyTorch semantics: first maximum gets the
// gradient, padding never wins a max, count_include_pad averaging, adaptive windows, nearest
// and bilinear source pixels with and without align_corners), the backward as the adjoint of
// the forward, CUDA against the CPU (skipped without a GPU), bad input; max_pool2d_act against
// max_pool2d followed by its activation, bit for bit, on the CPU and on CUDA.
#include "core/ops/pool.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using testing::expect_error;
using testing::expect_near_all;
using testing::iota;

TEST(MaxPool2d, HandComputedValuesAndGradient) {
  Tensor x = iota({1, 1, 4, 4});
  x.requires_grad_();
  Tensor y = max_pool2d(x, 2);
  expect_near_all(y, {5, 7, 13, 15}, 1e-12);
  sum(y).backward();
  expect_near_all(x.grad(), {0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1}, 1e-12);
}

TEST(MaxPool2d, GradientGoesToTheFirstMaximum) {
  // All equal: PyTorch routes each window's gradient to its first element in row-major order.
  Tensor x = ones({1, 1, 4, 4}, {DType::f64});
  x.requires_grad_();
  sum(max_pool2d(x, 2)).backward();
  expect_near_all(x.grad(), {1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0}, 1e-12);
  // Overlapping windows (stride 1) over a constant: every window picks its own first element.
  Tensor z = ones({1, 1, 3, 3}, {DType::f64});
  z.requires_grad_();
  sum(max_pool2d(z, 2, 1)).backward();
  expect_near_all(z.grad(), {1, 1, 0, 1, 1, 0, 0, 0, 0}, 1e-12);
}

TEST(MaxPool2d, PaddingNeverWins) {
  // All negative: a zero-padded max would return 0 at the border; PyTorch pads with -inf.
  Tensor x = from_vector<double>({-5, -4, -3, -2, -1, -6, -7, -8, -9}, {1, 1, 3, 3});
  expect_near_all(max_pool2d(x, 3, 2, 1), {-1, -1, -1, -1}, 1e-12);
  Tensor y = max_pool2d(x, 2, 2, 1);  // windows clipped to one to four pixels
  expect_near_all(y, {-5, -3, -2, -1}, 1e-12);
}

TEST(MaxPool2d, NanPropagates) {
  Tensor x = from_vector<double>({1, NAN, 3, 4}, {1, 1, 2, 2});
  EXPECT_TRUE(std::isnan(max_pool2d(x, 2).item()));
}

// The 2×2 / stride 2 forward has its own loop (four windows at a time in SSE2 for f32, the
// rest one by one): against a plain loop over every window, on planes whose widths leave 0 to
// 3 windows for the one-by-one tail and odd sizes (a last row and column no window reads),
// with many ties, NaNs and −∞ in any tap, in f32 and f64. Values and indices must be equal.
TEST(MaxPool2d, TwoByTwoFastPathMatchesAPlainLoop) {
  const std::vector<Shape> shapes = {{2, 3, 9, 11}, {1, 2, 2, 2}, {1, 1, 8, 16},
                                     {2, 2, 7, 29}, {1, 3, 5, 18}, {3, 1, 24, 24}};
  uint64_t seed = 70;
  for (const Shape& shape : shapes) {
    const int64_t H = shape[2], W = shape[3], P = H / 2, Q = W / 2;
    std::vector<double> v = randn(shape, seed++, {DType::f64}).to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = std::floor(v[i] * 1.5);  // few distinct values: ties within most windows
      if (i % 23 == 5) v[i] = NAN;
      if (i % 19 == 3) v[i] = -INFINITY;
    }
    // The rule of every max-pool: taps in row-major order, strict '>' keeps the first
    // maximum, a NaN always wins, −∞ padding never exists here.
    std::vector<double> want_y;
    std::vector<int64_t> want_i;
    for (int64_t nc = 0; nc < shape[0] * shape[1]; ++nc)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          double best = -INFINITY;
          int64_t at = 2 * p * W + 2 * q;
          for (int64_t h = 2 * p; h < 2 * p + 2; ++h)
            for (int64_t w = 2 * q; w < 2 * q + 2; ++w) {
              const double t = v[size_t(nc * H * W + h * W + w)];
              if (t > best || std::isnan(t)) {
                best = t;
                at = h * W + w;
              }
            }
          want_y.push_back(best);
          want_i.push_back(at);
        }
    ops::PoolWindow win;
    win.kernel_h = win.kernel_w = win.stride_h = win.stride_w = 2;
    for (DType dt : {DType::f32, DType::f64}) {
      const auto [y, idx] = ops::max_pool2d(from_vector<double>(v, shape).to(dt), win);
      const std::vector<double> got_y = y.to(DType::f64).to_vector<double>();
      const std::vector<int64_t> got_i = idx.to_vector<int64_t>();
      ASSERT_EQ(got_y.size(), want_y.size());
      for (size_t k = 0; k < want_y.size(); ++k) {
        const std::string where = std::string(dt == DType::f32 ? "f32" : "f64") + " shape (" +
                                  std::to_string(H) + ", " + std::to_string(W) + ") output " +
                                  std::to_string(k);
        EXPECT_EQ(got_i[k], want_i[k]) << where;
        if (std::isnan(want_y[k]))
          EXPECT_TRUE(std::isnan(got_y[k])) << where;
        else
          EXPECT_EQ(got_y[k], want_y[k]) << where;
      }
    }
  }
}

// ---- max_pool2d_act: max_pool2d and its activation as one op ----

// One (activation, slope) of max_pool2d_act and the activation op it replaces.
struct PoolAct {
  const char* name;
  FusedAct act;
  double slope;
};
const PoolAct kPoolActs[] = {{"none", FusedAct::none, 0.0},
                             {"relu", FusedAct::relu, 0.0},
                             {"leaky_relu 0.01", FusedAct::leaky_relu, 0.01},
                             {"leaky_relu 0.2", FusedAct::leaky_relu, 0.2},
                             {"leaky_relu 0", FusedAct::leaky_relu, 0.0}};

Tensor act_op(const Tensor& h, const PoolAct& a) {
  switch (a.act) {
    case FusedAct::relu:
      return relu(h);
    case FusedAct::leaky_relu:
      return leaky_relu(h, a.slope);
    case FusedAct::none:
      return h;
  }
  return h;
}

// Values with ties (floor of a scaled normal), exact zeros, negative zeros, ±∞ and NaNs, so the
// first-maximum rule, the activation's kink at 0 and NaN propagation are all exercised.
Tensor awkward_input(const Shape& shape, uint64_t seed, DType dt) {
  std::vector<double> v = randn(shape, seed, {DType::f64}).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = std::floor(v[i] * 2.0) * 0.75;
    if (i % 17 == 4) v[i] = -0.0;
    if (i % 29 == 7) v[i] = -INFINITY;
    if (i % 31 == 9) v[i] = INFINITY;
    if (i % 37 == 11) v[i] = NAN;
  }
  return from_vector<double>(v, shape).to(dt);
}

// The fused op against max_pool2d followed by relu / leaky_relu through autograd, on `dev`:
// the same output bits, the same argmax indices (ops level) and the same input-gradient bits,
// for the 2×2 fast path (with its one-window tail), a padded strided window and overlapping
// windows (an input that is the maximum of several windows sums their gradients).
void expect_pool_act_matches_two_ops(Device dev, DType dt) {
  struct Win {
    Shape x;
    int64_t k, st, pad;
  };
  const Win wins[] = {{{2, 3, 9, 11}, 2, 0, 0},
                      {{2, 10, 24, 24}, 2, 0, 0},
                      {{2, 2, 7, 7}, 3, 2, 1},
                      {{2, 2, 5, 6}, 3, 1, 0}};
  uint64_t seed = 300;
  for (const Win& w : wins) {
    for (const PoolAct& a : kPoolActs) {
      ++seed;
      const std::string where = std::string(a.name) + " " + dtype_name(dt) + " " + dev.str() +
                                " input " + shape_str(w.x) + " kernel " + std::to_string(w.k) +
                                " seed " + std::to_string(seed);
      Tensor x1 = awkward_input(w.x, seed, dt).to(dev), x2 = x1.clone_data();
      x1.requires_grad_();
      x2.requires_grad_();
      Tensor fused = max_pool2d_act(x1, w.k, w.st, w.pad, a.act, a.slope);
      Tensor plain = act_op(max_pool2d(x2, w.k, w.st, w.pad), a);
      ASSERT_TRUE(bit_equal(fused, plain)) << "forward, " << where;
      EXPECT_STREQ(fused.grad_fn()->name(), "max_pool2d_act") << where;
      // The gradient reaching the pool's output has ties at 0 too (and a NaN-free sign mix).
      std::vector<double> gv = randn(fused.shape(), seed + 1000, {DType::f64}).to_vector<double>();
      for (size_t i = 0; i < gv.size(); i += 5) gv[i] = 0.0;
      const Tensor g = from_vector<double>(gv, fused.shape()).to(dt).to(dev);
      fused.backward(g);
      plain.backward(g);
      EXPECT_TRUE(bit_equal(x1.grad(), x2.grad())) << "input gradient, " << where;

      ops::PoolWindow win;
      win.kernel_h = win.kernel_w = w.k;
      win.stride_h = win.stride_w = w.st == 0 ? w.k : w.st;
      win.pad_h = win.pad_w = w.pad;
      const Tensor xd = x1.detach();
      const auto [y_f, i_f] = ops::max_pool2d_act(xd, win, a.act, a.slope);
      const auto [y_p, i_p] = ops::max_pool2d(xd, win);
      EXPECT_TRUE(bit_equal(i_f, i_p)) << "indices, " << where;
    }
  }
}

TEST(MaxPool2dAct, SameBitsAsMaxPoolThenActivation) {
  expect_pool_act_matches_two_ops(Device::cpu(), DType::f32);
  expect_pool_act_matches_two_ops(Device::cpu(), DType::f64);
}

TEST(MaxPool2dAct, HandComputedValuesAndGradient) {
  // Windows of a 4×4 plane: maxima 3, −1, 0.5, −4 (the −4 window is all negative).
  Tensor x = from_vector<double>({1, 3, -2, -1, 0, 2, -3, -5, 0.5, 0, -4, -6, -1, 0.25, -7, -8},
                                 {1, 1, 4, 4});
  x.requires_grad_();
  Tensor y = max_pool2d_act(x, 2, 0, 0, FusedAct::leaky_relu, 0.5);
  expect_near_all(y, {3, -0.5, 0.5, -2}, 0);
  y.backward(from_vector<double>({10, 20, 30, 40}, {1, 1, 2, 2}));
  // Each window's gradient lands on its first maximum, times 1 (positive) or the slope 0.5.
  expect_near_all(x.grad(), {0, 10, 0, 10, 0, 0, 0, 0, 30, 0, 20, 0, 0, 0, 0, 0}, 0);
}

TEST(MaxPool2dAct, BadInput) {
  Tensor x = randn({2, 3, 5, 5}, 1);
  expect_error([&] { max_pool2d_act(x, 2, 0, 0, FusedAct::leaky_relu, -0.1); }, "max_pool2d_act",
               "slope must be finite and >= 0");
  expect_error([&] { max_pool2d_act(x, 2, 0, 0, FusedAct::leaky_relu, NAN); }, "max_pool2d_act",
               "slope");
  expect_error([&] { max_pool2d_act(x, 2, 0, 0, static_cast<FusedAct>(9)); }, "max_pool2d_act",
               "unknown activation 9");
  expect_error(
      [&] {
        max_pool2d_act(randn({3, 5, 5}, 2), 2, 0, 0, FusedAct::relu);
      },
      "max_pool2d_act", "4-D");
  expect_error([&] { max_pool2d_act(x, 7, 0, 0, FusedAct::relu); }, "max_pool2d_act", "too small");
  ops::PoolWindow win{2, 2, 2, 2, 0, 0};
  const std::pair<Tensor, Tensor> r = ops::max_pool2d_act(x, win, FusedAct::relu, 0.0);
  const Tensor y = r.first, idx = r.second;  // (lambdas may not capture structured bindings)
  expect_error([&] { ops::max_pool2d_act_backward(y, y, y, x.shape(), win, FusedAct::relu); },
               "max_pool2d_act_backward", "indices");
  expect_error(
      [&] {
        ops::max_pool2d_act_backward(y, randn({2, 3, 3, 3}, 3), idx, x.shape(), win,
                                     FusedAct::relu);
      },
      "max_pool2d_act_backward", "out (2x3x3x3)");
  expect_error(
      [&] { ops::max_pool2d_act_backward(y, Tensor(), idx, x.shape(), win, FusedAct::relu); },
      "max_pool2d_act_backward", "out");
  expect_error(
      [&] {
        ops::max_pool2d_act_backward(randn({2, 3, 3, 3}, 4), y, idx, x.shape(), win,
                                     FusedAct::relu);
      },
      "max_pool2d_act_backward", "grad_out");
}

TEST(MaxPool2dActCuda, SameBitsAsMaxPoolThenActivation) {
  IDEM_REQUIRE_GPU();
  expect_pool_act_matches_two_ops(Device::cuda(0), DType::f32);
}

TEST(MaxPool2dActCuda, RejectsF64AndMixedDevices) {
  IDEM_REQUIRE_GPU();
  const Device dev = Device::cuda(0);
  expect_error(
      [&] {
        max_pool2d_act(randn({1, 2, 4, 4}, 1, {DType::f64}).to(dev), 2, 0, 0, FusedAct::relu);
      },
      "max_pool2d_act", "f64");
  ops::PoolWindow win{2, 2, 2, 2, 0, 0};
  Tensor x = randn({1, 2, 4, 4}, 2).to(dev);
  const std::pair<Tensor, Tensor> r = ops::max_pool2d_act(x, win, FusedAct::relu, 0.0);
  const Tensor y = r.first, idx = r.second;
  expect_error(
      [&] {
        ops::max_pool2d_act_backward(y, y.to(Device::cpu()), idx, x.shape(), win, FusedAct::relu);
      },
      "max_pool2d_act_backward", "one device");
}

TEST(AvgPool2d, CountsPaddingLikePyTorch) {
  // count_include_pad=True: every 3x3 window divides by 9, padding included.
  Tensor x = ones({1, 1, 3, 3}, {DType::f64});
  expect_near_all(avg_pool2d(x, 3, 1, 1),
                  {4.0 / 9, 6.0 / 9, 4.0 / 9, 6.0 / 9, 1, 6.0 / 9, 4.0 / 9, 6.0 / 9, 4.0 / 9},
                  1e-12);
  expect_near_all(avg_pool2d(iota({1, 1, 4, 4}), 2), {2.5, 4.5, 10.5, 12.5}, 1e-12);
}

TEST(AvgPool2d, GradientSpreadsOverTheWindow) {
  Tensor x = zeros({1, 1, 4, 4}, {DType::f64});
  x.requires_grad_();
  sum(avg_pool2d(x, 2)).backward();
  for (double v : x.grad().to_vector<double>()) EXPECT_DOUBLE_EQ(v, 0.25);
}

TEST(AdaptiveAvgPool2d, UnevenWindows) {
  // H = 5 -> P = 3: windows [0,2), [1,4), [3,5) (start ⌊pH/P⌋, end ⌈(p+1)H/P⌉).
  Tensor x = from_vector<double>({0, 1, 2, 3, 4}, {1, 1, 5, 1});
  expect_near_all(adaptive_avg_pool2d(x, 3, 1), {0.5, 2.0, 3.5}, 1e-12);
  // Upsampling adaptive pooling repeats pixels: H = 2 -> P = 3: windows [0,1), [0,2), [1,2).
  Tensor z = from_vector<double>({2, 4}, {1, 1, 2, 1});
  expect_near_all(adaptive_avg_pool2d(z, 3, 1), {2, 3, 4}, 1e-12);
}

TEST(GlobalAvgPool2d, IsTheMeanOverThePlane) {
  Tensor x = randn({2, 3, 4, 5}, 3, {DType::f64});
  Tensor g = global_avg_pool2d(x);
  ASSERT_EQ(g.shape(), (Shape{2, 3}));
  const auto want = mean(x, {2, 3}).to_vector<double>();
  expect_near_all(g, want, 1e-14);
}

TEST(UpsampleNearest2d, SourcePixels) {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  expect_near_all(upsample_nearest2d(x, 4, 4), {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4},
                  1e-12);
  // in 3 -> out 5: src = ⌊dst·0.6⌋ = 0, 0, 1, 1, 2.
  Tensor r = from_vector<double>({10, 20, 30}, {1, 1, 1, 3});
  expect_near_all(upsample_nearest2d(r, 1, 5), {10, 10, 20, 20, 30}, 1e-12);
  // in 5 -> out 2: src = ⌊dst·2.5⌋ = 0, 2.
  Tensor d = from_vector<double>({1, 2, 3, 4, 5}, {1, 1, 1, 5});
  expect_near_all(upsample_nearest2d(d, 1, 2), {1, 3}, 1e-12);
}

TEST(UpsampleBilinear2d, SourcePixelsAndAlignCorners) {
  Tensor x = from_vector<double>({0, 1}, {1, 1, 1, 2});
  // align_corners=false: src = 0.5·(dst + 0.5) − 0.5 clamped at 0 -> 0, 0.25, 0.75, 1.
  expect_near_all(upsample_bilinear2d(x, 1, 4), {0, 0.25, 0.75, 1}, 1e-12);
  // align_corners=true: src = dst·(in−1)/(out−1) -> 0, 1/3, 2/3, 1.
  expect_near_all(upsample_bilinear2d(x, 1, 4, true), {0, 1.0 / 3, 2.0 / 3, 1}, 1e-15);
  // 2-D: corners preserved with align_corners, centre is the mean of the four pixels.
  Tensor q = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  expect_near_all(upsample_bilinear2d(q, 3, 3, true), {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}, 1e-12);
  // Output of one pixel with align_corners: scale 0, the top-left pixel.
  expect_near_all(upsample_bilinear2d(q, 1, 1, true), {1}, 1e-12);
}

// For a linear map f, the gradient of <f(x), g> is fᵀg: check <f(x), g> = <x, fᵀg>.
void expect_adjoint(const std::function<Tensor(const Tensor&)>& f, const Shape& xs, uint64_t seed) {
  Tensor x = randn(xs, seed, {DType::f64});
  x.requires_grad_();
  Tensor y = f(x);
  Tensor g = randn(y.shape(), seed + 1, {DType::f64});
  sum(y * g).backward();
  const auto yv = y.to_vector<double>(), gv = g.to_vector<double>();
  const auto xv = x.to_vector<double>(), xg = x.grad().to_vector<double>();
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < yv.size(); ++i) lhs += yv[i] * gv[i];
  for (size_t i = 0; i < xv.size(); ++i) rhs += xv[i] * xg[i];
  EXPECT_NEAR(lhs, rhs, 1e-10 * (1 + std::fabs(lhs))) << "seed " << seed;
}

TEST(Pool, BackwardIsTheAdjoint) {
  expect_adjoint([](const Tensor& x) { return avg_pool2d(x, 3, 2, 1); }, {2, 3, 9, 8}, 21);
  expect_adjoint([](const Tensor& x) { return adaptive_avg_pool2d(x, 4, 3); }, {2, 2, 9, 7}, 22);
  expect_adjoint([](const Tensor& x) { return upsample_nearest2d(x, 7, 11); }, {2, 2, 3, 5}, 23);
  expect_adjoint([](const Tensor& x) { return upsample_nearest2d(x, 2, 3); }, {2, 2, 7, 8}, 24);
  expect_adjoint([](const Tensor& x) { return upsample_bilinear2d(x, 9, 7); }, {2, 2, 4, 3}, 25);
  expect_adjoint([](const Tensor& x) { return upsample_bilinear2d(x, 9, 7, true); }, {2, 2, 4, 3},
                 26);
  expect_adjoint([](const Tensor& x) { return upsample_bilinear2d(x, 3, 2, true); }, {2, 2, 8, 9},
                 27);
  expect_adjoint([](const Tensor& x) { return upsample_bilinear2d(x, 3, 2); }, {2, 2, 8, 9}, 28);
}

TEST(PoolCuda, MatchesCpu) {
  IDEM_REQUIRE_GPU();
  const Device dev = Device::cuda(0);
  using F = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<std::string, F>> ops_list = {
      {"max_pool2d", [](const Tensor& x) { return max_pool2d(x, 3, 2, 1); }},
      {"avg_pool2d", [](const Tensor& x) { return avg_pool2d(x, 3, 2, 1); }},
      {"adaptive_avg_pool2d", [](const Tensor& x) { return adaptive_avg_pool2d(x, 5, 3); }},
      {"global_avg_pool2d", [](const Tensor& x) { return global_avg_pool2d(x); }},
      {"upsample_nearest2d", [](const Tensor& x) { return upsample_nearest2d(x, 29, 13); }},
      {"upsample_bilinear2d", [](const Tensor& x) { return upsample_bilinear2d(x, 29, 13); }},
      {"upsample_bilinear2d_align",
       [](const Tensor& x) { return upsample_bilinear2d(x, 7, 30, true); }},
  };
  uint64_t seed = 40;
  for (const auto& [name, f] : ops_list) {
    ++seed;
    Tensor x = randn({3, 4, 17, 15}, seed);
    Tensor xc = x.to(dev);
    x.requires_grad_();
    xc.requires_grad_();
    Tensor y = f(x), yc = f(xc);
    Tensor g = randn(y.shape(), seed + 100);
    sum(y * g).backward();
    sum(yc * g.to(dev)).backward();
    const std::pair<Tensor, Tensor> pairs[] = {{y, yc}, {x.grad(), xc.grad()}};
    for (const auto& [c, d] : pairs) {
      const auto cv = c.to_vector<float>(), dv = d.to_vector<float>();
      ASSERT_EQ(cv.size(), dv.size()) << name;
      for (size_t i = 0; i < cv.size(); ++i)
        ASSERT_NEAR(dv[i], cv[i], 1e-5 * (1 + std::fabs(cv[i])))
            << name << " element " << i << " seed " << seed;
    }
  }
}

TEST(Pool, BadInput) {
  Tensor x = randn({2, 3, 5, 5}, 1);
  expect_error([&] { max_pool2d(randn({3, 5, 5}, 2), 2); }, "max_pool2d", "4-D");
  expect_error([&] { max_pool2d(x, 3, 1, 2); }, "max_pool2d", "padding");
  expect_error([&] { max_pool2d(x, 7); }, "max_pool2d", "too small");
  expect_error([&] { max_pool2d(x, 0); }, "max_pool2d", "kernel");
  expect_error([&] { max_pool2d(x, 2, -1); }, "max_pool2d", "stride");
  expect_error([&] { avg_pool2d(x.to(DType::i64), 2); }, "avg_pool2d", "floating");
  expect_error([&] { avg_pool2d(Tensor(), 2); }, "avg_pool2d", "undefined");
  expect_error([&] { adaptive_avg_pool2d(x, 0, 2); }, "adaptive_avg_pool2d", "output size");
  expect_error([&] { global_avg_pool2d(randn({2, 3}, 3)); }, "global_avg_pool2d", "4-D");
  expect_error([&] { upsample_nearest2d(x, 4, -1); }, "upsample_nearest2d", "output size");
  expect_error(
      [&] {
        upsample_bilinear2d(randn({2, 3, 0, 4}, 4), 4, 4);
      },
      "upsample_bilinear2d", "non-empty");
  expect_error(
      [&] {
        ops::avg_pool2d_backward(randn({2, 3, 3, 3}, 5), x.shape(),
                                 ops::PoolWindow{2, 2, 2, 2, 0, 0});
      },
      "avg_pool2d_backward", "grad_out");
}

}  // namespace
}  // namespace idem
