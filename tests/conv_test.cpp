// conv2d / conv_transpose2d: forward values against hand-computed numbers and an independent
// naive loop (every stride / padding / dilation / groups combination of the op-case rows),
// the adjoint identity between the two ops, gradients of the bias and of a frozen weight, the
// backend switch, CUDA hand and cuDNN paths against the CPU (skipped without a GPU), bad input.
#include "core/ops/conv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/kernels/conv.h"  // cuda::conv2d_bwd_weight_two_pass
#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;

// The same fields fill the autograd op's Conv2dParams (the default) and the kernels' ConvParams.
template <typename P = Conv2dParams>
P params(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  P p;
  p.stride_h = sh;
  p.stride_w = sw;
  p.pad_h = ph;
  p.pad_w = pw;
  p.dilation_h = dh;
  p.dilation_w = dw;
  p.groups = groups;
  return p;
}

// The definition, one output at a time, in f64 (independent of im2col and of the kernels).
std::vector<double> naive_conv2d(const Tensor& xt, const Tensor& wt, const Tensor& bt,
                                 const Conv2dParams& p, Shape& out_shape) {
  const auto x = xt.to_vector<double>();
  const auto w = wt.to_vector<double>();
  const std::vector<double> b = bt.defined() ? bt.to_vector<double>() : std::vector<double>();
  const int64_t N = xt.size(0), C = xt.size(1), H = xt.size(2), W = xt.size(3);
  const int64_t O = wt.size(0), Cg = wt.size(1), R = wt.size(2), S = wt.size(3);
  const int64_t Og = O / p.groups;
  const int64_t P = (H + 2 * p.pad_h - p.dilation_h * (R - 1) - 1) / p.stride_h + 1;
  const int64_t Q = (W + 2 * p.pad_w - p.dilation_w * (S - 1) - 1) / p.stride_w + 1;
  out_shape = {N, O, P, Q};
  std::vector<double> y(N * O * P * Q, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < P; ++i)
        for (int64_t j = 0; j < Q; ++j) {
          double acc = b.empty() ? 0.0 : b[o];
          const int64_t g = o / Og;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < R; ++r)
              for (int64_t s = 0; s < S; ++s) {
                const int64_t h = i * p.stride_h - p.pad_h + r * p.dilation_h;
                const int64_t v = j * p.stride_w - p.pad_w + s * p.dilation_w;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                acc +=
                    x[((n * C + g * Cg + c) * H + h) * W + v] * w[((o * Cg + c) * R + r) * S + s];
              }
          y[((n * O + o) * P + i) * Q + j] = acc;
        }
  return y;
}

double dot(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double s = 0.0;
  for (size_t i = 0; i < va.size(); ++i) s += va[i] * vb[i];
  return s;
}

TEST(Conv2d, HandComputedValues) {
  // y[i,j] = x[i,j] − x[i+1,j+1] + 0.5 = −4 + 0.5 for x = 1..9 row-major.
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = from_vector<double>({1, 0, 0, -1}, {1, 1, 2, 2});
  Tensor b = from_vector<double>({0.5}, {1});
  Tensor y = conv2d(x, w, b);
  ASSERT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  for (double v : y.to_vector<double>()) EXPECT_DOUBLE_EQ(v, -3.5);

  // Zero padding: a 3x3 box filter of ones over ones counts the in-range taps.
  Tensor ones3 = ones({1, 1, 3, 3}, {DType::f64});
  Tensor box = ones({1, 1, 3, 3}, {DType::f64});
  const auto z = conv2d(ones3, box, Tensor(), params(1, 1, 1, 1, 1, 1, 1)).to_vector<double>();
  const std::vector<double> want = {4, 6, 4, 6, 9, 6, 4, 6, 4};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(z[i], want[i]) << i;
}

TEST(Conv2d, MatchesNaiveLoop) {
  struct Row {
    Shape x, w;
    bool bias;
    Conv2dParams p;
  };
  const std::vector<Row> rows = {
      {{2, 3, 6, 6}, {4, 3, 3, 3}, true, params(1, 1, 0, 0, 1, 1, 1)},
      {{2, 2, 7, 7}, {3, 2, 3, 3}, true, params(2, 2, 1, 1, 1, 1, 1)},
      {{2, 2, 7, 7}, {2, 2, 3, 3}, false, params(1, 1, 1, 1, 2, 2, 1)},
      {{2, 4, 5, 5}, {6, 2, 3, 3}, true, params(1, 1, 1, 1, 1, 1, 2)},
      {{2, 3, 5, 5}, {3, 1, 3, 3}, true, params(1, 1, 1, 1, 1, 1, 3)},
      {{2, 2, 6, 5}, {3, 2, 2, 3}, true, params(2, 1, 1, 0, 1, 1, 1)},
      {{2, 3, 4, 4}, {5, 3, 1, 1}, true, params(1, 1, 0, 0, 1, 1, 1)},
      {{1, 4, 9, 8}, {4, 2, 2, 3}, false, params(3, 2, 1, 2, 2, 1, 2)},
      {{3, 1, 28, 28}, {10, 1, 5, 5}, true, params(1, 1, 0, 0, 1, 1, 1)},
  };
  uint64_t seed = 100;
  for (const Row& r : rows) {
    for (DType dt : {DType::f64, DType::f32}) {
      ++seed;
      Tensor x = randn(r.x, seed, {dt});
      Tensor w = randn(r.w, seed + 1000, {dt});
      Tensor b = r.bias ? randn({r.w[0]}, seed + 2000, {dt}) : Tensor();
      Shape want_shape;
      const auto want = naive_conv2d(x, w, b, r.p, want_shape);
      Tensor y = conv2d(x, w, b, r.p);
      ASSERT_EQ(y.shape(), want_shape) << "seed " << seed;
      const auto got = y.to_vector<double>();
      const double tol = dt == DType::f64 ? 1e-12 : 1e-4;
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i])))
            << "element " << i << ", x " << shape_str(r.x) << ", w " << shape_str(r.w) << ", seed "
            << seed;
    }
  }
}

TEST(ConvTranspose2d, HandComputedValues) {
  // Stride 2, a 2x2 kernel of ones: every input pixel becomes a 2x2 block.
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor w = ones({1, 1, 2, 2}, {DType::f64});
  ConvTranspose2dParams p;
  p.stride_h = p.stride_w = 2;
  Tensor y = conv_transpose2d(x, w, Tensor(), p);
  ASSERT_EQ(y.shape(), (Shape{1, 1, 4, 4}));
  const std::vector<double> want = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  const auto got = y.to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(got[i], want[i]) << i;

  // Output size (H−1)·s − 2p + d(R−1) + output_padding + 1 = 3·2 − 2 + 2 + 1 + 1 = 8.
  ConvTranspose2dParams q;
  q.stride_h = q.stride_w = 2;
  q.pad_h = q.pad_w = 1;
  q.output_pad_h = q.output_pad_w = 1;
  Tensor y2 =
      conv_transpose2d(randn({2, 3, 4, 4}, 1, {DType::f64}), randn({3, 5, 3, 3}, 2, {DType::f64}),
                       randn({5}, 3, {DType::f64}), q);
  EXPECT_EQ(y2.shape(), (Shape{2, 5, 8, 8}));
}

TEST(ConvTranspose2d, IsTheAdjointOfConv2d) {
  // <conv2d(x, w), y> = <x, conv_transpose2d(y, w)> with the same stride/padding/dilation/
  // groups; output_padding recovers x's extent where the stride drops rows.
  struct Row {
    Shape x, w;
    Conv2dParams p;
  };
  const std::vector<Row> rows = {
      {{2, 3, 7, 7}, {4, 3, 3, 3}, params(2, 2, 1, 1, 1, 1, 1)},
      {{2, 4, 8, 6}, {6, 2, 3, 2}, params(2, 1, 0, 1, 2, 1, 2)},
      {{1, 2, 9, 9}, {2, 1, 3, 3}, params(3, 3, 2, 2, 1, 1, 2)},
  };
  uint64_t seed = 500;
  for (const Row& r : rows) {
    ++seed;
    Tensor x = randn(r.x, seed, {DType::f64});
    Tensor w = randn(r.w, seed + 1, {DType::f64});
    Tensor cx = conv2d(x, w, Tensor(), r.p);
    Tensor y = randn(cx.shape(), seed + 2, {DType::f64});
    ConvTranspose2dParams t;
    t.stride_h = r.p.stride_h;
    t.stride_w = r.p.stride_w;
    t.pad_h = r.p.pad_h;
    t.pad_w = r.p.pad_w;
    t.dilation_h = r.p.dilation_h;
    t.dilation_w = r.p.dilation_w;
    t.groups = r.p.groups;
    const int64_t Ho =
        (cx.size(2) - 1) * t.stride_h - 2 * t.pad_h + t.dilation_h * (r.w[2] - 1) + 1;
    const int64_t Wo =
        (cx.size(3) - 1) * t.stride_w - 2 * t.pad_w + t.dilation_w * (r.w[3] - 1) + 1;
    t.output_pad_h = r.x[2] - Ho;
    t.output_pad_w = r.x[3] - Wo;
    Tensor ty = conv_transpose2d(y, w, Tensor(), t);
    ASSERT_EQ(ty.shape(), x.shape()) << "seed " << seed;
    EXPECT_NEAR(dot(cx, y), dot(x, ty), 1e-10 * (1 + std::fabs(dot(cx, y)))) << "seed " << seed;
  }
}

TEST(Conv2d, BiasGradientSumsOverBatchAndPlane) {
  Tensor x = randn({2, 3, 5, 5}, 7, {DType::f64});
  Tensor w = randn({4, 3, 3, 3}, 8, {DType::f64});
  Tensor b = zeros({4}, {DType::f64});
  b.requires_grad_();
  sum(conv2d(x, w, b)).backward();
  // dL/db[o] = number of outputs per channel = N·P·Q = 2·3·3.
  for (double v : b.grad().to_vector<double>()) EXPECT_DOUBLE_EQ(v, 18.0);
}

TEST(Conv2d, FrozenWeightGetsNoGradientButInputDoes) {
  Tensor x = randn({2, 3, 5, 5}, 9, {DType::f64});
  Tensor w = randn({4, 3, 3, 3}, 10, {DType::f64});
  Tensor b = randn({4}, 11, {DType::f64});
  x.requires_grad_();
  sum(conv2d(x, w, b)).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // d(Σy)/dx[c,h,w] = Σ_o Σ over the taps covering (h,w) of w: check one interior pixel.
  const auto wv = w.to_vector<double>();
  double want = 0.0;
  for (double v : wv) want += v;  // the centre pixel (2,2) of a 5x5 input sees all 9 taps
  double got = 0.0;
  for (int64_t c = 0; c < 3; ++c) got += x.grad().at({0, c, 2, 2});
  EXPECT_NEAR(got, want, 1e-12);
}

TEST(ConvBackend, SwitchRoundTrips) {
  const ConvBackend before = conv_backend();
  set_conv_backend(ConvBackend::cudnn);
  EXPECT_EQ(conv_backend(), ConvBackend::cudnn);
  EXPECT_STREQ(conv_backend_name(ConvBackend::cudnn), "cudnn");
  set_conv_backend(ConvBackend::hand);
  EXPECT_EQ(conv_backend(), ConvBackend::hand);
  EXPECT_STREQ(conv_backend_name(ConvBackend::hand), "hand");
  set_conv_backend(before);
}

// Restores the backend when a test ends, even on failure.
struct BackendGuard {
  ConvBackend saved = conv_backend();
  ~BackendGuard() { set_conv_backend(saved); }
};

// The hand-written kernels for the test's scope (then the backend it found).
struct HandBackend : BackendGuard {
  HandBackend() { set_conv_backend(ConvBackend::hand); }
};

TEST(Conv2dCuda, HandAndCudnnMatchCpuOnFmnistShapes) {
  IDEM_REQUIRE_GPU();
  BackendGuard guard;
  struct Row {
    Shape x, w;
  };
  const std::vector<Row> rows = {{{8, 1, 28, 28}, {10, 1, 5, 5}},
                                 {{8, 10, 12, 12}, {20, 10, 5, 5}}};
  std::vector<ConvBackend> backends = {ConvBackend::hand};
#ifdef IDEM_WITH_CUDNN
  backends.push_back(ConvBackend::cudnn);
#endif
  uint64_t seed = 900;
  for (const Row& r : rows) {
    ++seed;
    Tensor x = randn(r.x, seed), w = randn(r.w, seed + 1), b = randn({r.w[0]}, seed + 2);
    const ConvParams p;
    Tensor y = ops::conv2d(x, w, b, p);
    Tensor g = randn(y.shape(), seed + 3);
    Tensor dx = ops::conv2d_backward_data(g, w, x.shape(), p);
    Tensor dw = ops::conv2d_backward_weight(g, x, w.shape(), p);
    const Device dev = Device::cuda(0);
    for (ConvBackend be : backends) {
      set_conv_backend(be);
      const std::string tag = std::string(conv_backend_name(be)) + " seed " + std::to_string(seed);
      Tensor yc = ops::conv2d(x.to(dev), w.to(dev), b.to(dev), p);
      Tensor dxc = ops::conv2d_backward_data(g.to(dev), w.to(dev), x.shape(), p);
      Tensor dwc = ops::conv2d_backward_weight(g.to(dev), x.to(dev), w.shape(), p);
      const std::pair<const Tensor*, const Tensor*> pairs[] = {{&y, &yc}, {&dx, &dxc}, {&dw, &dwc}};
      for (const auto& [cpu, gpu] : pairs) {
        const auto c = cpu->to_vector<float>();
        const auto d = gpu->to_vector<float>();
        ASSERT_EQ(c.size(), d.size());
        for (size_t i = 0; i < c.size(); ++i)
          ASSERT_NEAR(d[i], c[i], 1e-3 * (1 + std::fabs(c[i]))) << tag << " element " << i;
      }
    }
  }
}

TEST(Conv2dCuda, HandPathIsDeterministic) {
  IDEM_REQUIRE_GPU();
  const HandBackend hand;
  const Device dev = Device::cuda(0);
  Tensor x = randn({16, 10, 12, 12}, 31, {DType::f32, dev});
  Tensor g = randn({16, 20, 8, 8}, 32, {DType::f32, dev});
  const auto a = ops::conv2d_backward_weight(g, x, {20, 10, 5, 5}, {}).to_vector<float>();
  const auto b = ops::conv2d_backward_weight(g, x, {20, 10, 5, 5}, {}).to_vector<float>();
  EXPECT_EQ(a, b);
  // The tiled forward and backward-data kernels (both fmnist layers fit their shared memory).
  Tensor w = randn({20, 10, 5, 5}, 33, {DType::f32, dev});
  EXPECT_EQ(ops::conv2d_backward_data(g, w, x.shape(), {}).to_vector<float>(),
            ops::conv2d_backward_data(g, w, x.shape(), {}).to_vector<float>());
  EXPECT_EQ(ops::conv2d(x, w, Tensor(), {}).to_vector<float>(),
            ops::conv2d(x, w, Tensor(), {}).to_vector<float>());
}

// The tiled fwd and bwd_data kernels stage their operands with 16-byte loads when the weights
// and the image (or dy) are aligned, whole float4 runs and the forward's patch is the image;
// operands one float into a larger buffer take the scalar staging. The compute loops are the
// same, so both give the same bits; both against the CPU.
TEST(Conv2dCuda, TiledKernelsGiveTheSameBitsWithScalarStaging) {
  IDEM_REQUIRE_GPU();
  const HandBackend hand;
  const Device dev = Device::cuda(0);
  struct Row {
    Shape x, w;
    int64_t stride = 1, groups = 1;
  };
  const Row rows[] = {{{8, 10, 12, 12}, {20, 10, 5, 5}},  // the bench cnn's 10 -> 20 layer
                      {{3, 8, 9, 9}, {8, 8, 3, 3}},       // 3x3 taps, 8 x 81 floats an image
                      {{2, 4, 10, 6}, {12, 4, 5, 3}},     // non-square taps and image
                      {{2, 8, 8, 8}, {8, 4, 3, 3}, 1, 2}, // two groups
                      {{2, 4, 11, 9}, {6, 4, 3, 3}, 2},   // stride 2 (every row still read)
                      {{4, 8, 6, 6}, {16, 8, 1, 1}}};     // 1x1 taps (no unrolled tap row)
  uint64_t seed = 1200;
  for (const Row& r : rows) {
    seed += 4;
    SCOPED_TRACE("x " + shape_str(r.x) + " w " + shape_str(r.w) + " stride " +
                 std::to_string(r.stride) + " groups " + std::to_string(r.groups));
    ConvParams p;
    p.stride_h = p.stride_w = r.stride;
    p.groups = r.groups;
    const ConvShape cs = ops::conv2d_shape(r.x, r.w, p, "test");
    ASSERT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::fwd, cs), "tiled");
    ASSERT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::bwd_data, cs), "tiled");
    const Tensor x = randn(r.x, seed), w = randn(r.w, seed + 1), b = randn({r.w[0]}, seed + 2);
    const Tensor y = ops::conv2d(x, w, b, p);
    const Tensor g = randn(y.shape(), seed + 3);
    const Tensor dx = ops::conv2d_backward_data(g, w, x.shape(), p);
    const Tensor wd = w.to(dev), bd = b.to(dev), gd = g.to(dev);
    const Tensor y_vec = ops::conv2d(x.to(dev), wd, bd, p);
    const Tensor y_scalar = ops::conv2d(testing::shifted_copy(x, dev, 1), wd, bd, p);
    const Tensor dx_vec = ops::conv2d_backward_data(gd, wd, x.shape(), p);
    const Tensor dx_scalar =
        ops::conv2d_backward_data(testing::shifted_copy(g, dev, 1), wd, x.shape(), p);
    EXPECT_TRUE(testing::bit_equal(y_vec, y_scalar)) << "fwd";
    EXPECT_TRUE(testing::bit_equal(dx_vec, dx_scalar)) << "bwd_data";
    testing::expect_near_all(y_vec, y, 1e-4 * (1 + r.w[1] * r.w[2] * r.w[3] / 64.0), "fwd vs CPU");
    testing::expect_near_all(dx_vec, dx, 1e-4 * (1 + r.w[0] * r.w[2] * r.w[3] / 64.0),
                             "bwd_data vs CPU");
  }
}

// A layer too big for the tiled backward-data kernel's 48 KB (w: 64·144 floats, dy: 64·324)
// takes the implicit GEMM (576 taps, 16 input channels); with stride 2 and padding, the tiled
// path; all against the CPU.
TEST(Conv2dCuda, HandBackwardDataBothPathsMatchCpu) {
  IDEM_REQUIRE_GPU();
  const HandBackend hand;
  const Device dev = Device::cuda(0);
  struct Row {
    Shape x, w;
    int64_t stride, pad;
  };
  const Row rows[] = {{{2, 16, 20, 20}, {64, 16, 3, 3}, 1, 1},   // implicit GEMM
                      {{3, 4, 11, 9}, {6, 4, 3, 3}, 2, 1},       // tiled, strided
                      {{5, 10, 12, 12}, {20, 10, 5, 5}, 1, 0}};  // tiled, fmnist conv2
  uint64_t seed = 950;
  for (const Row& r : rows) {
    ++seed;
    ConvParams p;
    p.stride_h = p.stride_w = r.stride;
    p.pad_h = p.pad_w = r.pad;
    Tensor x = randn(r.x, seed), w = randn(r.w, seed + 1);
    Tensor y = ops::conv2d(x, w, Tensor(), p);
    Tensor g = randn(y.shape(), seed + 2);
    const auto c = ops::conv2d_backward_data(g, w, x.shape(), p).to_vector<float>();
    const auto d = ops::conv2d_backward_data(g.to(dev), w.to(dev), x.shape(), p).to_vector<float>();
    ASSERT_EQ(c.size(), d.size());
    for (size_t i = 0; i < c.size(); ++i)
      ASSERT_NEAR(d[i], c[i], 1e-4 * (1 + std::fabs(c[i]))) << "seed " << seed << " element " << i;
  }
}

// The implicit-GEMM kernels' selection (host logic: runs without a GPU in a CUDA build). The
// bn_cnn demo's two big layers (apps/idem/bench.cpp, it3/models.cpp make_bn_cnn(10, 32, 64)) at
// batch 128 take it in all three directions; its first layer and the fmnist layers keep the
// tiled kernels in fwd and bwd_data; a layer with few output channels keeps the direct one. In
// bwd_weight, layers with < 16 output channels or < 32 taps per group keep the two passes.
#ifdef IDEM_WITH_CUDA
ConvShape shape_of(const Shape& x, const Shape& w, const ConvParams& p) {
  return ops::conv2d_shape(x, w, p, "test");
}

ConvParams pad1() {
  ConvParams p;
  p.pad_h = p.pad_w = 1;
  return p;
}
#endif

TEST(Conv2dCuda, ImplicitGemmIsChosenForBnCnnShapes) {
#ifndef IDEM_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  using cuda::conv2d_hand_kernel_name;
  for (const auto& [x, w] : {std::pair<Shape, Shape>{{128, 32, 14, 14}, {64, 32, 3, 3}},
                             std::pair<Shape, Shape>{{128, 64, 7, 7}, {64, 64, 3, 3}}}) {
    const ConvShape s = shape_of(x, w, pad1());
    EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::fwd, s), "implicit_gemm") << shape_str(x);
    EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_data, s), "implicit_gemm") << shape_str(x);
    EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_weight, s), "implicit_gemm")
        << shape_str(x);
  }
  // bn_cnn's first layer (1 -> 32) and the fmnist layers fit the tiled kernels. In bwd_weight
  // the 1 -> 32 layer (9 taps) and fmnist's 1 -> 10 layer (10 channels, 25 taps) run per
  // image, and fmnist's 10 -> 20 layer (20 channels, 250 taps) takes the 32-row GEMM tile.
  const ConvShape first = shape_of({128, 1, 28, 28}, {32, 1, 3, 3}, pad1());
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::fwd, first), "tiled");
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_weight, first), "per_image");
  const ConvShape fm1 = shape_of({256, 1, 28, 28}, {10, 1, 5, 5}, {});
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_weight, fm1), "per_image");
  const ConvShape fm2 = shape_of({256, 10, 12, 12}, {20, 10, 5, 5}, {});
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::fwd, fm2), "tiled");
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_data, fm2), "tiled");
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_weight, fm2), "implicit_gemm");
  // The bwd_weight thresholds: 15 output channels per group, or 27 taps, stay two-pass.
  const ConvShape o15 = shape_of({8, 32, 14, 14}, {15, 32, 3, 3}, pad1());
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_weight, o15), "two_pass");
  const ConvShape k27 = shape_of({8, 3, 14, 14}, {64, 3, 3, 3}, pad1());
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_weight, k27), "two_pass");
  const ConvShape k36 = shape_of({8, 4, 14, 14}, {16, 4, 3, 3}, pad1());
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_weight, k36), "implicit_gemm");
  // Too big for the tiled kernels, but 8 output channels (< 16 columns): direct fwd; its
  // bwd_data has 32 columns and 72 taps: implicit GEMM.
  const ConvShape narrow = shape_of({4, 32, 40, 40}, {8, 32, 3, 3}, pad1());
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::fwd, narrow), "direct");
  EXPECT_STREQ(conv2d_hand_kernel_name(ConvDir::bwd_data, narrow), "implicit_gemm");
#endif
}

// The op-case rows named conv2d_igemm_* / conv_transpose2d_igemm_* (tests/op_cases/
// conv_cases.cpp; the shapes are repeated here) route fwd and bwd_data to the implicit GEMM, and
// those and the conv2d_wgrad_igemm_* rows route bwd_weight to its implicit GEMM, so the parity
// suite runs them on the GPU.
TEST(Conv2dCuda, ImplicitGemmRowsRouteToIt) {
#ifndef IDEM_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  struct Row {
    Shape x, w;
    ConvParams p;
  };
  const Row rows[] = {
      {{2, 32, 14, 14}, {64, 32, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},  // bn_cnn2
      {{2, 64, 7, 7}, {64, 64, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},    // bn_cnn_head
      {{2, 32, 24, 24}, {64, 16, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 2)},  // groups2
      {{2, 32, 24, 24}, {64, 32, 3, 3}, params<ConvParams>(2, 2, 1, 1, 1, 1, 1)},  // stride2
      {{3, 36, 9, 7}, {40, 36, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},    // ragged
      {{2, 48, 10, 9}, {48, 48, 3, 2}, params<ConvParams>(2, 1, 1, 0, 1, 2, 1)},   // rect_dilated
      {{4, 96, 12, 12}, {128, 96, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)}, // multiblock
      // conv_transpose2d_igemm_s2: the conv it is the adjoint of maps (2, 32, 14, 14) to
      // (2, 64, 7, 7) with stride 2, padding 1.
      {{2, 32, 14, 14}, {64, 32, 3, 3}, params<ConvParams>(2, 2, 1, 1, 1, 1, 1)},
  };
  for (const Row& r : rows) {
    const ConvShape s = shape_of(r.x, r.w, r.p);
    EXPECT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::fwd, s), "implicit_gemm")
        << shape_str(r.x) << " * " << shape_str(r.w);
    EXPECT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::bwd_data, s), "implicit_gemm")
        << shape_str(r.x) << " * " << shape_str(r.w);
    EXPECT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::bwd_weight, s), "implicit_gemm")
        << shape_str(r.x) << " * " << shape_str(r.w);
  }
  const Row wgrad_rows[] = {
      {{36, 32, 14, 14}, {64, 32, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},  // chunks
      {{5, 24, 3, 3}, {33, 24, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},     // small_pq
      {{6, 4, 1, 1}, {16, 4, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},       // 1x1_out
      {{7, 24, 11, 13}, {96, 8, 3, 3}, params<ConvParams>(2, 1, 1, 2, 1, 2, 3)},    // groups3
  };
  for (const Row& r : wgrad_rows)
    EXPECT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::bwd_weight, shape_of(r.x, r.w, r.p)),
                 "implicit_gemm")
        << shape_str(r.x) << " * " << shape_str(r.w);
#endif
}

// The bn_cnn layers at batch 16 through the implicit GEMM: fwd (with bias) and bwd_data match
// the CPU, and a second call gives the same bits (each output is one thread's sum in a fixed
// order; no atomics).
TEST(Conv2dCuda, ImplicitGemmMatchesCpuAndIsDeterministic) {
  IDEM_REQUIRE_GPU();
  const HandBackend hand;
  const Device dev = Device::cuda(0);
  ConvParams p;
  p.pad_h = p.pad_w = 1;
  const std::pair<Shape, Shape> layers[] = {{{16, 32, 14, 14}, {64, 32, 3, 3}},
                                            {{16, 64, 7, 7}, {64, 64, 3, 3}}};
  uint64_t seed = 970;
  for (const auto& [xs, ws] : layers) {
    ++seed;
    ASSERT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::fwd, ops::conv2d_shape(xs, ws, p, "t")),
                 "implicit_gemm");
    Tensor x = randn(xs, seed), w = randn(ws, seed + 1), b = randn({ws[0]}, seed + 2);
    Tensor y = ops::conv2d(x, w, b, p);
    Tensor g = randn(y.shape(), seed + 3);
    Tensor dx = ops::conv2d_backward_data(g, w, xs, p);
    Tensor xc = x.to(dev), wc = w.to(dev), bc = b.to(dev), gc = g.to(dev);
    const auto y1 = ops::conv2d(xc, wc, bc, p).to_vector<float>();
    const auto y2 = ops::conv2d(xc, wc, bc, p).to_vector<float>();
    const auto d1 = ops::conv2d_backward_data(gc, wc, xs, p).to_vector<float>();
    const auto d2 = ops::conv2d_backward_data(gc, wc, xs, p).to_vector<float>();
    EXPECT_EQ(y1, y2) << shape_str(xs);
    EXPECT_EQ(d1, d2) << shape_str(xs);
    const std::pair<const Tensor*, const std::vector<float>*> pairs[] = {{&y, &y1}, {&dx, &d1}};
    for (const auto& [cpu, gpu] : pairs) {
      const auto c = cpu->to_vector<float>();
      ASSERT_EQ(c.size(), gpu->size());
      for (size_t i = 0; i < c.size(); ++i)
        ASSERT_NEAR((*gpu)[i], c[i], 1e-3 * (1 + std::fabs(c[i])))
            << shape_str(xs) << " element " << i;
    }
  }
}

#ifdef IDEM_WITH_CUDA
struct WgradRow {
  Shape x, w;
  ConvParams p;
};

// bwd_weight on the GPU for each row, which must route to `kernel`: matches the CPU and the
// two-pass kernels, and a second call gives the same bits (no atomics; the split depends on the
// shape only).
void check_bwd_weight_kernel(const std::vector<WgradRow>& rows, const char* kernel, uint64_t seed) {
  const HandBackend hand;
  const Device dev = Device::cuda(0);
  for (const WgradRow& r : rows) {
    ++seed;
    const ConvShape s = ops::conv2d_shape(r.x, r.w, r.p, "t");
    ASSERT_STREQ(cuda::conv2d_hand_kernel_name(ConvDir::bwd_weight, s), kernel)
        << shape_str(r.x);
    Tensor x = randn(r.x, seed), g = randn({s.N, s.O, s.P, s.Q}, seed + 1);
    const auto c = ops::conv2d_backward_weight(g, x, r.w, r.p).to_vector<float>();
    Tensor xc = x.to(dev), gc = g.to(dev);
    const auto d1 = ops::conv2d_backward_weight(gc, xc, r.w, r.p).to_vector<float>();
    const auto d2 = ops::conv2d_backward_weight(gc, xc, r.w, r.p).to_vector<float>();
    EXPECT_EQ(d1, d2) << shape_str(r.x);
    Tensor two = empty(r.w, {DType::f32, dev});
    cuda::conv2d_bwd_weight_two_pass(two, gc, xc, s);
    const auto t = two.to_vector<float>();
    ASSERT_EQ(c.size(), d1.size());
    ASSERT_EQ(c.size(), t.size());
    // The sums run over N·P·Q products of unit normals (up to 172 800 here): tolerance relative
    // to sqrt(N·P·Q), the sums' typical size.
    const double scale = std::sqrt(static_cast<double>(s.N * s.P * s.Q));
    for (size_t i = 0; i < c.size(); ++i) {
      ASSERT_NEAR(d1[i], c[i], 1e-4 * (scale + std::fabs(c[i])))
          << shape_str(r.x) << " element " << i;
      ASSERT_NEAR(d1[i], t[i], 1e-4 * (scale + std::fabs(t[i])))
          << shape_str(r.x) << " element " << i;
    }
  }
}
#endif

// bwd_weight through its implicit GEMM (a fixed split of the N·P·Q positions, then the chunks'
// sum in order). The bn_cnn layers at batch 16 and 128 (49, 98 and 56 chunks), fmnist's
// 10 -> 20 layer (32-row tiles), and groups with stride, padding and dilation per axis and a
// short last chunk.
TEST(Conv2dCuda, BwdWeightImplicitGemmMatchesCpuAndIsDeterministic) {
#ifndef IDEM_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  IDEM_REQUIRE_GPU();
  check_bwd_weight_kernel(
      {
          {{16, 32, 14, 14}, {64, 32, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},
          {{128, 32, 14, 14}, {64, 32, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},
          {{128, 64, 7, 7}, {64, 64, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},
          {{64, 10, 12, 12}, {20, 10, 5, 5}, params<ConvParams>(1, 1, 0, 0, 1, 1, 1)},
          {{7, 24, 11, 13}, {96, 8, 3, 3}, params<ConvParams>(2, 1, 1, 2, 1, 2, 3)},
      },
      "implicit_gemm", 990);
#endif
}

// bwd_weight per image (a block stages an image of x and a band of dy's rows in shared memory;
// the blocks' partials summed in a fixed order): the fmnist CNN's first layer at batch 256 (a
// block an image, two bands) and 300 (two images a block, four bands), at the smallest batch it
// takes (32) stride and padding on the rows with dilation on the columns, and a column stride
// of 2 with column padding and dilation on both axes, three weights a thread (576) and the most
// it takes (1 024, four a thread), and bn_cnn's first layer (padding 1, seven-row bands).
TEST(Conv2dCuda, BwdWeightPerImageMatchesCpuAndIsDeterministic) {
#ifndef IDEM_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  IDEM_REQUIRE_GPU();
  check_bwd_weight_kernel(
      {
          {{256, 1, 28, 28}, {10, 1, 5, 5}, params<ConvParams>(1, 1, 0, 0, 1, 1, 1)},
          {{300, 1, 28, 28}, {10, 1, 5, 5}, params<ConvParams>(1, 1, 0, 0, 1, 1, 1)},
          {{32, 3, 13, 11}, {6, 3, 3, 2}, params<ConvParams>(2, 1, 1, 0, 1, 2, 1)},
          {{32, 3, 13, 11}, {6, 3, 3, 2}, params<ConvParams>(1, 2, 0, 1, 2, 2, 1)},
          {{40, 2, 9, 9}, {32, 2, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},
          {{33, 8, 8, 8}, {8, 8, 4, 4}, params<ConvParams>(1, 1, 0, 0, 1, 1, 1)},
          {{128, 1, 28, 28}, {32, 1, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)},
      },
      "per_image", 1990);
  // What it does not take: 31 images, 1 025 weights, groups, an image of x beyond 48 KB.
  auto name = [](const Shape& x, const Shape& w, ConvParams p) {
    return std::string(
        cuda::conv2d_hand_kernel_name(ConvDir::bwd_weight, ops::conv2d_shape(x, w, p, "t")));
  };
  EXPECT_EQ(name({31, 1, 28, 28}, {10, 1, 5, 5}, {}), "two_pass");
  EXPECT_EQ(name({64, 41, 6, 6}, {1, 41, 5, 5}, {}), "two_pass");
  EXPECT_EQ(name({64, 4, 8, 8}, {8, 2, 3, 3}, params<ConvParams>(1, 1, 0, 0, 1, 1, 2)), "two_pass");
  EXPECT_EQ(name({64, 16, 48, 48}, {4, 16, 3, 3}, params<ConvParams>(1, 1, 1, 1, 1, 1, 1)),
            "two_pass");
#endif
}

TEST(Conv2d, BadInput) {
  Tensor x = randn({2, 3, 5, 5}, 1);
  Tensor w = randn({4, 3, 3, 3}, 2);
  expect_error([&] { conv2d(x, randn({4, 2, 3, 3}, 3), Tensor()); }, "conv2d", "channels");
  expect_error([&] { conv2d(x, w, randn({3}, 4)); }, "conv2d", "bias");
  expect_error([&] { conv2d(randn({3, 5, 5}, 5), w, Tensor()); }, "conv2d", "4-D");
  expect_error([&] { conv2d(x, w.to(DType::f64), Tensor()); }, "conv2d", "dtype");
  expect_error([&] { conv2d(x, randn({4, 3, 6, 6}, 6), Tensor()); }, "conv2d", "smaller");
  expect_error([&] { conv2d(x, w, Tensor(), params(0, 1, 0, 0, 1, 1, 1)); }, "conv2d", "stride");
  expect_error([&] { conv2d(x, w, Tensor(), params(1, 1, -1, 0, 1, 1, 1)); }, "conv2d", "padding");
  expect_error([&] { conv2d(x, w, Tensor(), params(1, 1, 0, 0, 0, 1, 1)); }, "conv2d", "dilation");
  expect_error(
      [&] {
        conv2d(x, randn({4, 1, 3, 3}, 7), Tensor(), params(1, 1, 0, 0, 1, 1, 2));
      },
      "conv2d", "divisible");
  expect_error(
      [&] {
        conv2d(randn({2, 4, 5, 5}, 8), randn({3, 2, 3, 3}, 9), Tensor(),
               params(1, 1, 0, 0, 1, 1, 2));
      },
      "conv2d", "divisible");
  expect_error([&] { conv2d(x.to(DType::i64), w.to(DType::i64), Tensor()); }, "conv2d", "floating");
  expect_error([&] { conv2d(x, Tensor(), Tensor()); }, "conv2d", "undefined");
  expect_error(
      [&] {
        ops::conv2d_backward_data(randn({2, 4, 2, 2}, 10), w, x.shape(), {});
      },
      "conv2d_backward_data", "grad_out");
}

TEST(ConvTranspose2d, BadInput) {
  Tensor x = randn({2, 3, 4, 4}, 1);
  Tensor w = randn({3, 2, 3, 3}, 2);
  ConvTranspose2dParams p;
  p.stride_h = p.stride_w = 2;
  p.output_pad_h = p.output_pad_w = 2;  // not below stride 2 nor dilation 1
  expect_error([&] { conv_transpose2d(x, w, Tensor(), p); }, "conv_transpose2d", "output_padding");
  expect_error(
      [&] {
        conv_transpose2d(x, randn({2, 2, 3, 3}, 3), Tensor());
      },
      "conv_transpose2d", "channels");
  expect_error([&] { conv_transpose2d(x, w, randn({3}, 4)); }, "conv_transpose2d", "bias");
  ConvTranspose2dParams big_pad;
  big_pad.pad_h = big_pad.pad_w = 4;
  expect_error([&] { conv_transpose2d(x, w, Tensor(), big_pad); }, "conv_transpose2d",
               "non-positive");
}

}  // namespace
}  // namespace idem
