// sage_linear (autograd/sage_linear_function.h): y = act(a·Wlᵀ + x·Wrᵀ + b) as one op.
//  - CPU: equal to the unfused composition (matmul + bias + matmul + add + activation) within
//    f32 rounding — forward and every gradient —, and to 1e-12 in f64; the same tensor as a and
//    x (the engine adds the two gradients); only the requested gradients; errors.
//  - SAGEConv: forward / forward_act against the unfused layer built from its own Linear
//    modules, with and without root weight; parameter names unchanged.
//  - GraphModel (it3): a SAGE model's output and gradients equal those of the same layers run
//    unfused (a wrapper the model cannot fuse).
//  - CUDA (skipped without a GPU): parity with the CPU for both GEMM backends and launch counts
//    (forward 2 on the hand GEMM, whose second GEMM's store adds the bias and applies the
//    activation; backward 6 with every gradient); the fused store gives the bits of the
//    separate hand GEMMs + bias_act pass, on every tile path.
// The op-case rows (tests/op_cases/fused_cases.cpp) add f64 gradcheck and CPU/CUDA parity.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/sage_linear_function.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "core/ops/fused.h"
#include "it3/models.h"
#include "it3/recursive_model.h"
#include "layers/gnn.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using testing::expect_near_all;
using testing::launches;

constexpr uint64_t kSeed = 20261127;
constexpr FusedAct kActs[] = {FusedAct::none, FusedAct::relu, FusedAct::leaky_relu};
constexpr double kSlope = 0.1;

using testing::GemmGuard;

Tensor apply_act(const Tensor& z, FusedAct act, double slope) {
  if (act == FusedAct::relu) return relu(z);
  if (act == FusedAct::leaky_relu) return leaky_relu(z, slope);
  return z;
}

// What SAGEConv computed before the fusion: lin_l(a) + lin_r(x), then the activation.
Tensor unfused(const Tensor& a, const Tensor& wl, const Tensor& b, const Tensor& x,
               const Tensor& wr, FusedAct act, double slope) {
  Tensor l = matmul(a, wl, false, true);
  if (b.defined()) l = l + b;
  return apply_act(l + matmul(x, wr, false, true), act, slope);
}

// |got − want| <= rel · max(1, max|want|) elementwise (testing::expect_close with that absolute
// tolerance): the two sums round in different orders, so an element that cancels to ~0 is
// compared against the scale of the whole result.
void expect_close_scaled(const Tensor& got, const Tensor& want, double rel,
                         const std::string& what) {
  double scale = 1.0;
  if (want.defined())
    for (double v : want.to_vector<double>()) scale = std::max(scale, std::fabs(v));
  testing::expect_close(got, want, rel * scale, 0.0, what, kSeed);
}

struct Inputs {
  Tensor a, wl, b, x, wr;
  std::vector<Tensor> all() const {
    std::vector<Tensor> v = {a, wl};
    if (b.defined()) v.push_back(b);
    v.push_back(x);
    v.push_back(wr);
    return v;
  }
};

Inputs make_inputs(int64_t n, int64_t in_l, int64_t in_r, int64_t out, bool bias, Options o,
                   uint64_t seed = kSeed) {
  Inputs in;
  in.a = randn({n, in_l}, seed, o).requires_grad_();
  in.wl = randn({out, in_l}, seed + 1, o).requires_grad_();
  if (bias) in.b = randn({out}, seed + 2, o).requires_grad_();
  in.x = randn({n, in_r}, seed + 3, o).requires_grad_();
  in.wr = randn({out, in_r}, seed + 4, o).requires_grad_();
  return in;
}

// Forward and every gradient of sage_linear against the unfused composition.
void compare_with_unfused(DType dt, double rel) {
  for (FusedAct act : kActs)
    for (bool bias : {true, false}) {
      SCOPED_TRACE(std::string(fused_act_name(act)) + (bias ? ", bias" : ", no bias") + ", seed " +
                   std::to_string(kSeed));
      const Inputs f = make_inputs(37, 6, 5, 9, bias, {dt});
      const Inputs u = make_inputs(37, 6, 5, 9, bias, {dt});
      Tensor yf = sage_linear(f.a, f.wl, f.b, f.x, f.wr, act, kSlope);
      Tensor yu = unfused(u.a, u.wl, u.b, u.x, u.wr, act, kSlope);
      expect_close_scaled(yf, yu, rel, "y");
      Tensor g = randn(yf.shape(), kSeed + 9, {dt});
      sum(mul(yf, g)).backward();
      sum(mul(yu, g)).backward();
      const std::vector<Tensor> tf = f.all(), tu = u.all();
      for (size_t i = 0; i < tf.size(); ++i)
        expect_close_scaled(tf[i].grad(), tu[i].grad(), rel * 10,
                            "gradient of input " + std::to_string(i));
    }
}

TEST(SageLinear, EqualsUnfusedCompositionF32) {
  compare_with_unfused(DType::f32, 1e-6);
}

TEST(SageLinear, EqualsUnfusedCompositionF64) {
  compare_with_unfused(DType::f64, 1e-12);
}

// SAGEConv feeds one tensor as x and (through mean_aggregate) a; here literally the same tensor:
// the engine sums the da and dx the node returns.
TEST(SageLinear, SameTensorAsBothInputsAccumulates) {
  Tensor h = randn({11, 4}, kSeed, {DType::f64}).requires_grad_();
  Tensor wl = randn({3, 4}, kSeed + 1, {DType::f64}), wr = randn({3, 4}, kSeed + 2, {DType::f64});
  Tensor b = randn({3}, kSeed + 3, {DType::f64});
  Tensor g = randn({11, 3}, kSeed + 4, {DType::f64});
  sum(mul(sage_linear(h, wl, b, h, wr, FusedAct::relu), g)).backward();
  Tensor fused_grad = h.grad();
  Tensor h2 = h.detach().requires_grad_();
  sum(mul(unfused(h2, wl, b, h2, wr, FusedAct::relu, 0.01), g)).backward();
  expect_close_scaled(fused_grad, h2.grad(), 1e-12, "dh");
}

TEST(SageLinear, ComputesOnlyTheRequestedGradients) {
  Inputs in = make_inputs(6, 3, 2, 4, true, {});
  Tensor y = ops::sage_linear(in.a.detach(), in.wl.detach(), in.b.detach(), in.x.detach(),
                              in.wr.detach(), FusedAct::relu, 0.01);
  Tensor g = randn({6, 4}, kSeed + 5);
  ops::SageLinearGrads r = ops::sage_linear_backward(g, y, in.a.detach(), in.wl.detach(), true,
                                                     in.x.detach(), in.wr.detach(), FusedAct::relu,
                                                     0.01, false, true, false, true, false);
  EXPECT_FALSE(r.da.defined());
  EXPECT_TRUE(r.dweight_l.defined());
  EXPECT_FALSE(r.dbias.defined());
  EXPECT_TRUE(r.dx.defined());
  EXPECT_FALSE(r.dweight_r.defined());
  // A frozen layer (no parameter needs a gradient) still passes gradients to its inputs.
  Tensor a = randn({5, 3}, kSeed).requires_grad_();
  Tensor w = randn({2, 3}, kSeed + 1);
  sum(sage_linear(a, w, Tensor(), a.detach(), w, FusedAct::none)).backward();
  EXPECT_TRUE(a.grad().defined());
  // Empty batch: zero weight and bias gradients.
  Tensor e = zeros({0, 3});
  Tensor ye = ops::sage_linear(e, w, zeros({2}), e, w, FusedAct::relu, 0.01);
  EXPECT_EQ(ye.shape(), (Shape{0, 2}));
  ops::SageLinearGrads re = ops::sage_linear_backward(
      zeros({0, 2}), ye, e, w, true, e, w, FusedAct::relu, 0.01, true, true, true, true, true);
  EXPECT_EQ(re.dweight_l.to_vector<double>(), std::vector<double>(6, 0.0));
  EXPECT_EQ(re.dbias.to_vector<double>(), std::vector<double>(2, 0.0));
  EXPECT_EQ(re.da.shape(), (Shape{0, 3}));
}

// The empty batch on the GPU: the epilogue kernel still writes db = 0 (nothing else does).
TEST(SageLinearCuda, EmptyBatchGivesZeroGradients) {
  IDEM_REQUIRE_GPU();
  const Options gpu{DType::f32, Device::cuda(0)};
  Tensor w = randn({2, 3}, kSeed + 1, gpu), e = zeros({0, 3}, gpu);
  Tensor ye = ops::sage_linear(e, w, zeros({2}, gpu), e, w, FusedAct::relu, 0.01);
  EXPECT_EQ(ye.shape(), (Shape{0, 2}));
  const ops::SageLinearGrads re = ops::sage_linear_backward(
      zeros({0, 2}, gpu), ye, e, w, true, e, w, FusedAct::relu, 0.01, true, true, true, true, true);
  EXPECT_EQ(re.dweight_l.to_vector<double>(), std::vector<double>(6, 0.0));
  EXPECT_EQ(re.dbias.to_vector<double>(), std::vector<double>(2, 0.0));
}

TEST(SageLinear, RejectsMismatchedOperands) {
  Tensor a = randn({4, 3}, 1), wl = randn({2, 3}, 2), x = randn({4, 5}, 3), wr = randn({2, 5}, 4);
  EXPECT_EQ(sage_linear(a, wl, Tensor(), x, wr).shape(), (Shape{4, 2}));
  testing::expect_error(
      [&] {
        sage_linear(a, wl, Tensor(), randn({5, 5}, 3), wr);
      },
      "sage_linear", "one shape");
  testing::expect_error(
      [&] {
        sage_linear(a, wl, Tensor(), x, randn({3, 5}, 4));
      },
      "sage_linear", "one shape");
  testing::expect_error([&] { sage_linear(a, wl, randn({3}, 5), x, wr); }, "sage_linear", "bias");
  testing::expect_error(
      [&] {
        sage_linear(a, wl, Tensor(), x, randn({2, 4}, 4));
      },
      "sage_linear", "cannot be multiplied");
  testing::expect_error([&] { sage_linear(a, wl, Tensor(), x, wr, FusedAct::leaky_relu, -0.5); },
                        "sage_linear", "slope");
}

// ---- SAGEConv and GraphModel ----------------------------------------------------------------

// The layer as it was before the fusion, from its own Linear modules.
Tensor unfused_sage(SAGEConv& conv, const Tensor& x, const Graph& g) {
  Tensor out = conv.lin_neigh()->forward(mean_aggregate(x, g));
  return conv.lin_root() ? out + conv.lin_root()->forward(x) : out;
}

Graph small_graph() {
  // 7 nodes, a ring plus chords; node 6 has no in-edge.
  return Graph::from_edges(7, {0, 1, 2, 3, 4, 5, 0, 2, 6, 6}, {1, 2, 3, 4, 5, 0, 3, 5, 0, 4});
}

TEST(SageLinearConv, ForwardAndForwardActMatchTheUnfusedLayer) {
  const Graph g = small_graph();
  for (bool root : {true, false})
    for (bool bias : {true, false})
      for (FusedAct act : kActs) {
        SCOPED_TRACE(std::string(fused_act_name(act)) + (root ? ", root" : ", no root") +
                     (bias ? ", bias" : ", no bias"));
        SAGEConv conv(5, 6, bias, root, {}, kSeed);
        Tensor x = randn({7, 5}, kSeed + 1).requires_grad_();
        Tensor y = act == FusedAct::none ? conv.forward(x, g) : conv.forward_act(x, g, act, kSlope);
        Tensor g_out = randn(y.shape(), kSeed + 2);
        sum(mul(y, g_out)).backward();
        std::vector<Tensor> fused_grads = {x.grad()};
        for (auto& [name, p] : conv.named_parameters()) fused_grads.push_back(p.grad());
        conv.zero_grad();
        Tensor x2 = x.detach().requires_grad_();
        Tensor yu = apply_act(unfused_sage(conv, x2, g), act, kSlope);
        expect_close_scaled(y, yu, 1e-6, "y");
        if (!root) EXPECT_TRUE(bit_equal(y, yu)) << "linear_act keeps the unfused bits on the CPU";
        sum(mul(yu, g_out)).backward();
        expect_close_scaled(fused_grads[0], x2.grad(), 1e-5, "dx");
        size_t i = 1;
        for (auto& [name, p] : conv.named_parameters())
          expect_close_scaled(fused_grads[i++], p.grad(), 1e-5, "d" + name);
      }
  std::vector<std::string> names;
  for (auto& [n, t] : SAGEConv(3, 4).named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"lin_l.weight", "lin_l.bias", "lin_r.weight"}));
}

// A SAGEConv behind a wrapper GraphModel cannot see through: the unfused reference path.
class UnfusedSage : public GraphLayer {
 public:
  explicit UnfusedSage(std::shared_ptr<SAGEConv> c) : GraphLayer("UnfusedSage"), c_(std::move(c)) {
    register_module("inner", c_);
  }
  Tensor forward(const Tensor& x, const Graph& g) override { return unfused_sage(*c_, x, g); }

 protected:
  std::shared_ptr<Module> clone_impl() const override {
    return std::make_shared<UnfusedSage>(std::dynamic_pointer_cast<SAGEConv>(c_->clone()));
  }

 private:
  std::shared_ptr<SAGEConv> c_;
};

TEST(SageLinearConv, GraphModelOutputUnchanged) {
  auto model = it3::make_sage_model(2, 8, 3, it3::SignalSpec::regression(1, 0.2), {}, kSeed);
  auto* gm = dynamic_cast<it3::GraphModel*>(model.get());
  ASSERT_NE(gm, nullptr);
  std::vector<std::shared_ptr<GraphLayer>> wrapped;
  for (const auto& c : gm->convs()) {
    auto sage = std::dynamic_pointer_cast<SAGEConv>(c);
    ASSERT_NE(sage, nullptr);
    wrapped.push_back(std::make_shared<UnfusedSage>(sage));  // the same parameters
  }
  it3::GraphModel reference(wrapped, gm->head(), it3::SignalSpec::regression(1, 0.2));
  it3::Input in = it3::grid_mesh_batch(2, 4);
  Tensor s = full({2, 1}, 0.7);
  Tensor y = model->forward(in, s);
  sum(square(y)).backward();
  std::vector<Tensor> grads;
  for (auto& [n, p] : model->named_parameters()) grads.push_back(p.grad());
  model->zero_grad();
  Tensor yr = reference.forward(in, s);
  expect_close_scaled(y, yr, 1e-6, "model output");
  sum(square(yr)).backward();
  size_t i = 0;
  for (auto& [n, p] : model->named_parameters())
    expect_close_scaled(grads[i++], p.grad(), 1e-5, n);
}

// ---- CUDA ------------------------------------------------------------------------------------

TEST(SageLinearCuda, MatchesCpuOnBothGemmBackends) {
  IDEM_REQUIRE_GPU();
  struct Case {
    int64_t n, in_l, in_r, out;
  };
  // A small layer (the hand GEMM's small kernels), the IT³ sage width (tiled GEMMs, 40 columns
  // of the gz/db kernel's blocks), and a K = N >= 4096 backward (hand split-K for dW).
  for (const Case& c : {Case{9, 3, 2, 5}, Case{700, 64, 64, 64}, Case{5000, 10, 12, 40}})
    for (GemmBackend backend : {GemmBackend::hand, GemmBackend::cublas}) {
#ifndef IDEM_WITH_CUBLAS
      if (backend == GemmBackend::cublas) continue;
#endif
      GemmGuard guard(backend);
      for (FusedAct act : kActs) {
        SCOPED_TRACE("N=" + std::to_string(c.n) + " out=" + std::to_string(c.out) + " " +
                     gemm_backend_name(backend) + " " + fused_act_name(act));
        const Inputs h = make_inputs(c.n, c.in_l, c.in_r, c.out, true, {});
        Inputs d;
        for (auto [src, dst] :
             {std::pair{&h.a, &d.a}, {&h.wl, &d.wl}, {&h.b, &d.b}, {&h.x, &d.x}, {&h.wr, &d.wr}})
          *dst = src->detach().to(Device::cuda(0)).requires_grad_();
        Tensor yh = sage_linear(h.a, h.wl, h.b, h.x, h.wr, act, kSlope);
        Tensor yd = sage_linear(d.a, d.wl, d.b, d.x, d.wr, act, kSlope);
        const double k = static_cast<double>(std::max({c.in_l + c.in_r, c.out, c.n}));
        expect_close_scaled(yd.to(Device::cpu()), yh, 1e-6 * k, "y");
        Tensor g = randn(yh.shape(), kSeed + 7);
        sum(mul(yh, g)).backward();
        sum(mul(yd, g.to(Device::cuda(0)))).backward();
        const std::vector<Tensor> th = h.all(), td = d.all();
        for (size_t i = 0; i < th.size(); ++i)
          expect_close_scaled(td[i].grad().to(Device::cpu()), th[i].grad(), 1e-6 * k,
                              "gradient of input " + std::to_string(i));
      }
    }
}

// The hand GEMM's fused epilogue (cuda::sage_linear_fwd -> matmul_hand_epilogue) against the
// sequence it replaces: two hand GEMMs, then the bias + activation pass. Same rounding order, so
// the same bits, on each store path: the small kernels (9 rows), the 32x32 tiles (700 rows),
// scalar stores (out 37) and, on a card with <= 133 SMs, the 128x64 tile (17 000 rows).
TEST(SageLinearCuda, FusedEpilogueGivesTheBitsOfTheSeparatePass) {
  IDEM_REQUIRE_GPU();
  const Options gpu{DType::f32, Device::cuda(0)};
  GemmGuard hand(GemmBackend::hand);
  struct Case {
    int64_t n, in_l, in_r, out;
  };
  for (const Case& c : {Case{9, 3, 2, 5}, Case{700, 64, 64, 64}, Case{3000, 20, 24, 37},
                        Case{17000, 64, 64, 64}})
    for (bool bias : {true, false})
      for (FusedAct act : kActs) {
        SCOPED_TRACE("N=" + std::to_string(c.n) + " out=" + std::to_string(c.out) +
                     (bias ? " bias " : " no bias ") + fused_act_name(act));
        const Inputs in = make_inputs(c.n, c.in_l, c.in_r, c.out, bias, gpu);
        const Tensor a = in.a.detach(), wl = in.wl.detach(), x = in.x.detach(),
                     wr = in.wr.detach(), b = bias ? in.b.detach() : Tensor();
        const Tensor fused = ops::sage_linear(a, wl, b, x, wr, act, kSlope);
        LinearActParams p;
        p.N = c.n;
        p.in = c.in_l;
        p.out = c.out;
        p.act = act;
        p.slope = kSlope;
        p.bias = bias;
        const Tensor sep = empty({c.n, c.out}, gpu);
        MatmulParams neigh = single_gemm(c.n, c.out, c.in_l, false, true);
        neigh.beta = 1.0;
        cuda::matmul_hand(sep, x, wr, single_gemm(c.n, c.out, c.in_r, false, true));
        cuda::matmul_hand(sep, a, wl, neigh);
        cuda::bias_act(sep, b, p);
        EXPECT_TRUE(bit_equal(fused, sep));
        EXPECT_TRUE(bit_equal(fused, ops::sage_linear(a, wl, b, x, wr, act, kSlope)))
            << "not deterministic";
      }
}

TEST(SageLinearCuda, LaunchCounts) {
  IDEM_REQUIRE_GPU();
  const Options gpu{DType::f32, Device::cuda(0)};
  GemmGuard hand(GemmBackend::hand);
  // The sage model's layer shape at a small node count (K = N < 4096: no split-K).
  const Inputs in = make_inputs(1024, 64, 64, 64, true, gpu);
  const Tensor a = in.a.detach(), wl = in.wl.detach(), b = in.b.detach(), x = in.x.detach(),
               wr = in.wr.detach();
  for (FusedAct act : kActs) {
    SCOPED_TRACE(fused_act_name(act));
    Tensor y;
    // Two GEMMs; the second one's store adds the bias and applies the activation.
    EXPECT_EQ(launches([&] { y = ops::sage_linear(a, wl, b, x, wr, act, 0.01); }), 2u);
    Tensor g = randn(y.shape(), kSeed, gpu);
    ops::SageLinearGrads r;
    // gz + db over 1 024 rows (4 chunks of 256: the epilogue and the chunks' sum) + 4 GEMMs.
    EXPECT_EQ(launches([&] {
                r = ops::sage_linear_backward(g, y, a, wl, true, x, wr, act, 0.01, true, true, true,
                                              true, true);
              }),
              6u);
    // Only dx (a frozen layer on the root path): gz (when there is an activation) + 1 GEMM.
    EXPECT_EQ(launches([&] {
                r = ops::sage_linear_backward(g, y, a, wl, true, x, wr, act, 0.01, false, false,
                                              false, true, false);
              }),
              act == FusedAct::none ? 1u : 2u);
    EXPECT_EQ(launches([&] { y = ops::sage_linear(a, wl, Tensor(), x, wr, act, 0.01); }), 2u);
  }
  // The autograd node records nothing on the device: forward 2 launches through the L2 call.
  Tensor ad = in.a, xd = in.x;
  Tensor y;
  EXPECT_EQ(launches([&] { y = sage_linear(ad, in.wl, in.b, xd, in.wr, FusedAct::relu); }), 2u);
  // Unfused (before): matmul, bias add, matmul, add, relu = 5 launches.
  EXPECT_EQ(launches([&] { y = unfused(a, wl, b, x, wr, FusedAct::relu, 0.01); }), 5u);
}

}  // namespace
}  // namespace idem
