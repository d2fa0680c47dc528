// sage_conv (autograd/sage_conv_function.h): a SAGEConv layer's aggregation and linear part as
// one op, on a GPU one kernel (core/kernels/sage_conv.h).
//  - CPU: the forward, the kept mean and every gradient are the bits of csr_mean_aggregate
//    followed by sage_linear (the two ops it replaces); the mean is kept only when weight_l
//    needs a gradient; the layer records one node; errors name the op.
//  - CUDA (skipped without a GPU): the fused kernel gives the composed path's bits (y and the
//    mean) at the shapes of the bench's sage model and at uneven ones (nodes not a multiple of
//    the kernel's 64-row tile, 3- and 13-wide inputs, 1- and 40-wide outputs, nodes without
//    in-edges, no edges at all), in one launch; it agrees with the CPU; beyond 64 features it
//    falls back to the composed ops; a whole IT³ adaptation of the sage model gives the same
//    bits on both paths.
// The op-case rows (tests/op_cases/fused_cases.cpp) add f64 gradcheck and CPU/CUDA parity.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autograd/csr_aggregate_function.h"
#include "autograd/functions.h"
#include "autograd/sage_conv_function.h"
#include "autograd/sage_linear_function.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "core/ops/csr_aggregate.h"
#include "core/ops/elementwise.h"
#include "core/ops/sage_conv.h"
#include "it3/adapt.h"
#include "it3/models.h"
#include "layers/gnn.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using testing::launches;

constexpr uint64_t kSeed = 20261207;
constexpr FusedAct kActs[] = {FusedAct::none, FusedAct::relu, FusedAct::leaky_relu};
constexpr double kSlope = 0.1;

// Sets the CUDA forward's path for one scope.
using PathGuard = testing::ScopedSetting<SageConvPath, sage_conv_path, set_sage_conv_path>;

// A random graph on `nodes` nodes with `edges` edges (self-loops and repeats allowed), so some
// nodes have no in-edge; the index as SAGEConv builds it.
Tensor random_nodes(int64_t edges, int64_t nodes, uint64_t seed) {
  return ops::cast(ops::binary(rand({edges}, seed, {DType::f64}),
                               full({}, static_cast<double>(nodes), {DType::f64}), BinaryOp::mul),
                   DType::i64);
}
// Built on the CPU (the same index for every device) and copied to d.
CsrAggregateIndex random_index(int64_t nodes, int64_t edges, uint64_t seed, Device d) {
  const CsrAggregateIndex c = csr_aggregate_index(random_nodes(edges, nodes, seed),
                                                  random_nodes(edges, nodes, seed + 1), nodes, nodes);
  auto to = [&](const Tensor& t) { return t.defined() ? t.to(d) : t; };
  return {to(c.row_ptr), to(c.col), to(c.src_ptr), to(c.src_perm), to(c.perm), to(c.dst), to(c.group_dst)};
}

struct Operands {
  Tensor x, wl, b, wr;
  std::vector<Tensor> all() const {
    std::vector<Tensor> v = {x, wl};
    if (b.defined()) v.push_back(b);
    v.push_back(wr);
    return v;
  }
};

Operands make_operands(int64_t nodes, int64_t in, int64_t out, bool bias, Options o,
                       bool grad = true) {
  Operands r;
  r.x = randn({nodes, in}, kSeed, o).requires_grad_(grad);
  r.wl = randn({out, in}, kSeed + 1, o).requires_grad_(grad);
  if (bias) r.b = randn({out}, kSeed + 2, o).requires_grad_(grad);
  r.wr = randn({out, in}, kSeed + 3, o).requires_grad_(grad);
  return r;
}

Operands detached_copy(const Operands& o) {
  Operands r;
  r.x = o.x.detach().clone_data().requires_grad_();
  r.wl = o.wl.detach().clone_data().requires_grad_();
  if (o.b.defined()) r.b = o.b.detach().clone_data().requires_grad_();
  r.wr = o.wr.detach().clone_data().requires_grad_();
  return r;
}

// The two ops sage_conv replaces.
Tensor composed(const Operands& o, const CsrAggregateIndex& idx, FusedAct act) {
  return sage_linear(csr_mean_aggregate(o.x, idx), o.wl, o.b, o.x, o.wr, act, kSlope);
}

TEST(SageConv, GivesTheBitsOfAggregationThenSageLinear) {
  const CsrAggregateIndex idx = random_index(29, 90, kSeed, Device::cpu());
  for (DType dt : {DType::f32, DType::f64})
    for (FusedAct act : kActs)
      for (bool bias : {true, false}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + ", " + fused_act_name(act) +
                     (bias ? ", bias" : ", no bias"));
        const Operands f = make_operands(29, 6, 5, bias, {dt});
        const Operands c = detached_copy(f);
        Tensor y = sage_conv(f.x, idx, f.wl, f.b, f.wr, act, kSlope);
        Tensor yc = composed(c, idx, act);
        EXPECT_TRUE(bit_equal(y, yc)) << "forward";
        Tensor g = randn(y.shape(), kSeed + 9, {dt});
        sum(mul(y, g)).backward();
        sum(mul(yc, g)).backward();
        const std::vector<Tensor> gf = f.all(), gc = c.all();
        for (size_t i = 0; i < gf.size(); ++i)
          EXPECT_TRUE(bit_equal(gf[i].grad(), gc[i].grad())) << "gradient of input " << i;
      }
}

TEST(SageConv, AddsToAnInputGradientInTheOrderOfTheTwoOps) {
  // x feeds the layer and a second op (a skip connection) and already holds a gradient: its
  // gradient is summed from three terms, in the order the replaced nodes added them.
  const CsrAggregateIndex idx = random_index(17, 50, kSeed + 7, Device::cpu());
  const Operands f = make_operands(17, 5, 5, true, {});
  const Operands c = detached_copy(f);
  const Tensor gy = randn({17, 5}, kSeed + 8), gx = randn({17, 5}, kSeed + 9);
  auto run = [&](const Operands& o, const Tensor& y) {
    sum(mul(add(y, mul(o.x, o.x)), gy)).backward();
    sum(mul(o.x, gx)).backward();  // a second backward adds to .grad
  };
  run(f, sage_conv(f.x, idx, f.wl, f.b, f.wr, FusedAct::relu, kSlope));
  run(c, composed(c, idx, FusedAct::relu));
  EXPECT_TRUE(bit_equal(f.x.grad(), c.x.grad()));
}

// x passed as the layer's input and as both weights, then as either one (6 nodes of 6
// features, a 6 -> 6 layer):
// its gradient is four terms, which the node must leave to the engine in the composed order
// (the adjoint may not fold the root term in while the weights' terms come between).
TEST(SageConv, InputThatIsAlsoAWeightKeepsTheComposedOrder) {
  const CsrAggregateIndex idx = random_index(6, 20, kSeed + 11, Device::cpu());
  const Tensor b = randn({6}, kSeed + 13), gy = randn({6, 6}, kSeed + 14);
  const Tensor w = randn({6, 6}, kSeed + 15);
  // x's gradient through sage_conv and through the two ops it replaces, x standing in for
  // weight_l and/or weight_r (w for the other).
  auto check = [&](bool x_is_left, bool x_is_right, uint64_t seed) {
    SCOPED_TRACE(std::string("x as ") + (x_is_left ? "weight_l " : "") +
                 (x_is_right ? "weight_r" : ""));
    Tensor xf = randn({6, 6}, seed).requires_grad_();
    Tensor xc = xf.detach().clone_data().requires_grad_();
    sum(mul(sage_conv(xf, idx, x_is_left ? xf : w, b, x_is_right ? xf : w, FusedAct::relu,
                      kSlope),
            gy))
        .backward();
    sum(mul(sage_linear(csr_mean_aggregate(xc, idx), x_is_left ? xc : w, b, xc,
                        x_is_right ? xc : w, FusedAct::relu, kSlope),
            gy))
        .backward();
    EXPECT_TRUE(bit_equal(xf.grad(), xc.grad()));
  };
  check(true, true, kSeed + 12);
  check(true, false, kSeed + 16);
  check(false, true, kSeed + 16);
}

TEST(SageConv, KeepsTheMeanOnlyWhenAsked) {
  const CsrAggregateIndex idx = random_index(12, 30, kSeed + 5, Device::cpu());
  const Operands o = make_operands(12, 4, 3, true, {}, false);
  const ops::SageConvResult kept =
      ops::sage_conv(o.x, idx, o.wl, o.b, o.wr, FusedAct::relu, kSlope, true);
  EXPECT_TRUE(bit_equal(kept.mean, ops::csr_mean_aggregate(o.x, idx)));
  const ops::SageConvResult dropped =
      ops::sage_conv(o.x, idx, o.wl, o.b, o.wr, FusedAct::relu, kSlope, false);
  EXPECT_FALSE(dropped.mean.defined());
  EXPECT_TRUE(bit_equal(kept.y, dropped.y));
}

TEST(SageConv, FrozenWeightsStillGiveTheInputGradient) {
  // F of IT³: frozen weights, a gradient for the input only (the mean is not kept then).
  const CsrAggregateIndex idx = random_index(15, 40, kSeed + 6, Device::cpu());
  Operands f = make_operands(15, 5, 4, true, {}, false);
  f.x.requires_grad_();
  Operands c = detached_copy(f);
  for (Tensor* t : {&c.wl, &c.b, &c.wr}) *t = t->detach();
  Tensor y = sage_conv(f.x, idx, f.wl, f.b, f.wr, FusedAct::leaky_relu, kSlope);
  Tensor yc = composed(c, idx, FusedAct::leaky_relu);
  sum(square(y)).backward();
  sum(square(yc)).backward();
  EXPECT_TRUE(bit_equal(f.x.grad(), c.x.grad()));
  EXPECT_FALSE(f.wl.grad().defined());
}

TEST(SageConv, LayerRecordsOneNode) {
  const Graph g = Graph::from_edges(5, {0, 1, 2, 3, 4, 0}, {1, 2, 3, 4, 0, 2});
  SAGEConv conv(3, 4, true, true, {}, kSeed);
  Tensor x = randn({5, 3}, kSeed).requires_grad_();
  Tensor y = conv.forward_act(x, g, FusedAct::relu);
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_STREQ(y.grad_fn()->name(), "sage_conv");
}

TEST(SageConv, ErrorsNameTheOpAndTheShapes) {
  const CsrAggregateIndex idx = random_index(6, 10, kSeed, Device::cpu());
  const Operands o = make_operands(6, 4, 3, true, {}, false);
  testing::expect_error([&] { sage_conv(randn({7, 4}, 1), idx, o.wl, o.b, o.wr); }, "sage_conv",
                        "x must be (V, in) for the V = 6 nodes", "got x (7x4)");
  testing::expect_error([&] { sage_conv(o.x, idx, randn({3, 5}, 1), o.b, o.wr); }, "sage_conv",
                        "weight (3x5)");
  testing::expect_error([&] { sage_conv(o.x, idx, o.wl, o.b, randn({2, 4}, 1)); }, "sage_conv",
                        "weight_r (2x4)");
}

// ---- CUDA ------------------------------------------------------------------------------------

struct Shape {
  int64_t nodes, edges, in, out;
};

TEST(SageConvCuda, FusedKernelGivesTheComposedBits) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  testing::GemmGuard hand(GemmBackend::hand);
  const bool poison = cuda::poison_allocations();
  cuda::set_poison_allocations(false);  // a poisoning memset would count as a launch
  // The bench model's layers (3 → 64, 64 → 64) at 2 of its meshes (the composed GEMMs on 32×32
  // tiles or one thread per output) and at 17 000 nodes (its 128×64 tiles, as the bench's
  // 65 536); 20 inputs at 3 000 nodes (a tiled GEMM whose K is padded); uneven shapes: a
  // partial last tile, 13 features (no 16-byte packs), 40 and 1 outputs, few edges (isolated
  // nodes), none.
  for (const Shape& s : {Shape{2048, 11780, 3, 64}, Shape{2048, 11780, 64, 64},
                         Shape{17000, 98000, 64, 64}, Shape{3000, 17000, 20, 37},
                         Shape{150, 600, 64, 64}, Shape{67, 50, 13, 40}, Shape{64, 300, 64, 1},
                         Shape{9, 0, 8, 8}})
    for (FusedAct act : kActs)
      for (bool bias : {true, false}) {
        const std::string what = std::to_string(s.nodes) + " nodes, " + std::to_string(s.edges) +
                                 " edges, " + std::to_string(s.in) + " → " + std::to_string(s.out) +
                                 ", " + fused_act_name(act) + (bias ? ", bias" : "");
        const CsrAggregateIndex idx = random_index(s.nodes, s.edges, kSeed + s.nodes, gpu);
        const Operands o = make_operands(s.nodes, s.in, s.out, bias, {DType::f32, gpu}, false);
        ops::SageConvResult fused, comp;
        {
          PathGuard p(SageConvPath::fused);
          EXPECT_EQ(launches([&] {
                      fused = ops::sage_conv(o.x, idx, o.wl, o.b, o.wr, act, kSlope, true);
                    }),
                    1u)
              << what;
        }
        {
          PathGuard p(SageConvPath::composed);
          comp = ops::sage_conv(o.x, idx, o.wl, o.b, o.wr, act, kSlope, true);
        }
        EXPECT_TRUE(bit_equal(fused.y, comp.y)) << what;
        EXPECT_TRUE(bit_equal(fused.mean, comp.mean)) << what << ": mean";
        // And against the CPU (other GEMM order): within f32 rounding of sums over 2·in terms.
        const ops::SageConvResult cpu = ops::sage_conv(
            o.x.to(Device::cpu()), random_index(s.nodes, s.edges, kSeed + s.nodes, Device::cpu()),
            o.wl.to(Device::cpu()), bias ? o.b.to(Device::cpu()) : Tensor(), o.wr.to(Device::cpu()),
            act, kSlope, true);
        testing::expect_close(fused.y.to(Device::cpu()), cpu.y, 5e-4, 1e-4, what + ": y vs CPU", kSeed);
        EXPECT_TRUE(bit_equal(fused.mean.to(Device::cpu()), cpu.mean)) << what << ": mean vs CPU";
      }
  cuda::set_poison_allocations(poison);
}

TEST(SageConvCuda, WiderThanTheKernelTakesTheComposedOps) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  testing::GemmGuard hand(GemmBackend::hand);
  PathGuard p(SageConvPath::fused);
  const bool poison = cuda::poison_allocations();
  cuda::set_poison_allocations(false);  // a poisoning memset would count as a launch
  const CsrAggregateIndex idx = random_index(100, 400, kSeed, gpu);
  const Operands o = make_operands(100, 65, 64, true, {DType::f32, gpu}, false);
  EXPECT_FALSE(ops::sage_conv_takes_fused(o.x, 64));
  Tensor y;
  // csr_mean_aggregate, then sage_linear's two GEMMs (the second one's store adds the bias).
  EXPECT_EQ(launches([&] { y = sage_conv(o.x, idx, o.wl, o.b, o.wr, FusedAct::relu); }), 3u);
  cuda::set_poison_allocations(poison);
}

// The backward on the GPU: while x's gradient is empty the aggregation's adjoint adds the root
// term in its own pass, so the layer's two terms cost no add; once x holds a gradient (a second
// backward) the node hands both terms to the engine, which adds each (two launches more), and
// the gradient is the CPU's either way.
TEST(SageConvCuda, BackwardAddsTheRootTermInTheAdjointWhileTheGradientIsEmpty) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  testing::GemmGuard hand(GemmBackend::hand);
  const testing::PoisonGuard no_poison(false);
  const CsrAggregateIndex idx = random_index(300, 1200, kSeed, gpu);
  const CsrAggregateIndex idx_cpu = random_index(300, 1200, kSeed, Device::cpu());
  // Only x requires a gradient, so the weights' accumulations do not enter the count.
  Operands cpu = make_operands(300, 64, 64, true, {}, false);
  Operands dev = make_operands(300, 64, 64, true, {DType::f32, gpu}, false);
  cpu.x.requires_grad_();
  dev.x.requires_grad_();
  const Tensor g = randn({300, 64}, kSeed + 20);
  const Tensor gd = g.to(gpu);
  auto step = [&](const Operands& o, const CsrAggregateIndex& i, const Tensor& gy) {
    const Tensor y = sage_conv(o.x, i, o.wl, o.b, o.wr, FusedAct::relu, kSlope);
    return launches([&] { y.backward(gy); });
  };
  const uint64_t first = step(dev, idx, gd), second = step(dev, idx, gd);
  EXPECT_EQ(second, first + 2);
  step(cpu, idx_cpu, g);
  step(cpu, idx_cpu, g);
  testing::expect_near_all(dev.x.grad().to(Device::cpu()), cpu.x.grad(), 1e-4);
}

TEST(SageConvCuda, It3AdaptationIsBitIdenticalOnBothPaths) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  testing::GemmGuard hand(GemmBackend::hand);
  std::vector<Tensor> preds;
  for (SageConvPath path : {SageConvPath::composed, SageConvPath::fused}) {
    PathGuard p(path);
    auto model = it3::make_sage_model(2, 64, 4, it3::SignalSpec::regression(1, 0.2), {}, kSeed);
    model->to(gpu);
    const it3::Input in = it3::grid_mesh_batch(3, 8, gpu);
    it3::AdaptOptions opt = it3::AdaptOptions::for_method(it3::Method::it3);
    opt.steps = 2;
    it3::Adapter adapter(model, opt);
    preds.push_back(adapter.predict(in).prediction.to(Device::cpu()));
  }
  EXPECT_TRUE(bit_equal(preds[0], preds[1]));
}

}  // namespace
}  // namespace idem
