// The cluster split-K of the hand-written CUDA GEMM (cuda/kernels/matmul.cu, "Cluster split-K"):
// one product of few outputs and a moderate K — the wide IT³ MLP's layers at batch 64 and 256 —
// cut into 2, 4 or 8 K chunks, one block of a thread-block cluster each, the partial tiles summed
// in chunk order through distributed shared memory. Against the CPU in all four transpose
// layouts and with tails, deterministic, one launch, routed by shape only where its plan splits,
// and the unsplit 32x32 tile's bits everywhere else. Every test skips without a GPU; the tests of
// the split itself skip on a GPU before sm_90 and under IDEM_GEMM_CLUSTER_SPLIT=off. CUDA builds
// only (matmul_hand_variant has no CPU-only stub).
#include <gtest/gtest.h>

#ifdef IDEM_WITH_CUDA
#include <cstdlib>
#include <string>

#include "autograd/functions.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "test_util.h"

using namespace idem;
using idem::testing::bit_equal;
using idem::testing::GemmGuard;
using idem::testing::gemm_tolerance;
using idem::testing::launches;

namespace {

struct Product {
  int64_t M, N, K;
  bool ta, tb;
  double alpha = 1.0, beta = 0.0;
  std::string name() const {
    return std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (ta ? " Aᵀ" : " A") +
           (tb ? "·Bᵀ" : "·B") + " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta);
  }
};

// Operands of `pr` (stored as its flags say) and C's initial value (NaN where beta = 0: the
// kernel must not read it).
struct Operands {
  Tensor a, b, c0;
  MatmulParams p;
};
Operands operands(const Product& pr, uint64_t seed) {
  Operands o;
  o.p = single_gemm(pr.M, pr.N, pr.K, pr.ta, pr.tb);
  o.p.alpha = pr.alpha;
  o.p.beta = pr.beta;
  o.a = randn(pr.ta ? Shape{pr.K, pr.M} : Shape{pr.M, pr.K}, seed);
  o.b = randn(pr.tb ? Shape{pr.N, pr.K} : Shape{pr.K, pr.N}, seed + 1);
  o.c0 = pr.beta == 0.0 ? full({pr.M, pr.N}, NAN) : randn({pr.M, pr.N}, seed + 2);
  return o;
}

// C = op(A)·op(B) (alpha, beta) on the GPU through matmul_hand_variant(v).
Tensor gpu_product(const Operands& o, int variant) {
  const Device gpu = Device::cuda();
  Tensor c = o.c0.to(gpu);
  cuda::matmul_hand_variant(c, o.a.to(gpu), o.b.to(gpu), o.p, variant);
  return c;
}

// The shapes the plan splits: S chunks of kc rows (in the comments), the last one shorter where K
// is not a multiple of kc, and rows or columns past a 32x32 tile where M or N is not a multiple
// of 32.
const Product kSplit[] = {
    {64, 256, 256, false, true},    // mlp_256's x·Wᵀ at batch 64: 16 tiles, S = 8, kc = 32
    {64, 256, 256, false, false},   // its g·W (the input gradient)
    {256, 256, 64, true, false},    // its gᵀ·x (the weight gradient): 64 tiles, S = 2, kc = 32
    {256, 256, 256, false, true},   // batch 256: S = 2, kc = 128
    {96, 128, 200, true, true},     // 12 tiles, S = 4, kc = 64, the last chunk 8 rows
    {100, 92, 300, false, false},   // ragged tiles (100 = 3·32 + 4, 92 = 2·32 + 28), S = 4, kc = 80
    {64, 256, 256, false, true, 0.5, 2.0},  // alpha and beta (C read once, by the finishing block)
};

// Why the split cannot run here ("" where it can): a GPU before sm_90, or the switch off. Any
// other refusal of the forced split (variant 9) is a failure, not a skip.
std::string cluster_split_unavailable() {
  const char* sw = std::getenv("IDEM_GEMM_CLUSTER_SPLIT");
  if (sw && std::string(sw) == "off") return "IDEM_GEMM_CLUSTER_SPLIT=off";
  if (cuda::device_properties(0).cc_major < 9) return "a GPU before sm_90 (no thread-block clusters)";
  return "";
}

#define IDEM_REQUIRE_CLUSTER_SPLIT()                                           \
  do {                                                                         \
    IDEM_REQUIRE_GPU();                                                        \
    const std::string why = cluster_split_unavailable();                       \
    if (!why.empty()) GTEST_SKIP() << "the cluster split-K cannot run: " << why; \
  } while (0)

}  // namespace

TEST(MatmulClusterSplitCuda, MatchesTheCpuInEveryLayoutWithTails) {
  IDEM_REQUIRE_CLUSTER_SPLIT();
  GemmGuard hand(GemmBackend::hand);
  uint64_t seed = 100;
  for (const Product& pr : kSplit) {
    SCOPED_TRACE(pr.name() + ", seed " + std::to_string(seed));
    const Operands o = operands(pr, seed);
    seed += 3;
    Tensor want = o.c0.clone_data();
    cpu::matmul_fwd(want, o.a, o.b, o.p);
    const Device gpu = Device::cuda();
    const Tensor ga = o.a.to(gpu), gb = o.b.to(gpu);
    Tensor got = o.c0.to(gpu);
    // matmul_hand routes the shape to the split: one launch, the bits of the forced variant 9.
    EXPECT_EQ(launches([&] { cuda::matmul_hand(got, ga, gb, o.p); }), 1u);
    idem::testing::expect_near_all(got.to(Device::cpu()), want, gemm_tolerance(pr.K), "cluster split vs CPU");
    EXPECT_TRUE(bit_equal(got, gpu_product(o, 9))) << "the router's choice is variant 9";
    for (int rep = 0; rep < 3; ++rep) {
      Tensor again = o.c0.to(gpu);
      cuda::matmul_hand(again, ga, gb, o.p);
      EXPECT_TRUE(bit_equal(again, got)) << "the split must be deterministic";
    }
    // The unsplit 32x32 tile agrees within rounding (one fmaf chain per output, not S).
    idem::testing::expect_near_all(gpu_product(o, 4).to(Device::cpu()), got.to(Device::cpu()),
                                   gemm_tolerance(pr.K), "unsplit 32x32 vs split");
  }
}

// Where the plan does not split, matmul_hand gives the bits it gave before the split existed: the
// unsplit 32x32 tile (variant 4) or the small-shape kernels (variant 5).
TEST(MatmulClusterSplitCuda, OtherShapesKeepTheirKernel) {
  IDEM_REQUIRE_GPU();
  GemmGuard hand(GemmBackend::hand);
  struct Case {
    Product pr;
    int variant;  // the kernel the router takes
    const char* why;
  };
  const Case cases[] = {
      {{64, 256, 254, false, false}, 4, "K % 4 != 0: A's rows are not float4-aligned"},
      {{288, 288, 256, false, true}, 4, "81 tiles, more than 64"},
      {{64, 256, 16, false, true}, 5, "K <= 16: the small kernel"},
      {{32, 256, 256, false, true}, 5, "8 192 outputs: the small kernel"},
      {{64, 256, 24, false, true}, 4, "K < 32: no two chunks of 16"},
      {{150, 64, 64, false, true}, 4, "N <= 64: a GNN layer's x·Wᵀ keeps one chain an output"},
  };
  uint64_t seed = 300;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.pr.name() + ": " + c.why);
    const Operands o = operands(c.pr, seed);
    seed += 3;
    const Device gpu = Device::cuda();
    const Tensor ga = o.a.to(gpu), gb = o.b.to(gpu);  // copies count as GPU ops: outside the count
    Tensor got = o.c0.to(gpu);
    EXPECT_EQ(launches([&] { cuda::matmul_hand(got, ga, gb, o.p); }), 1u);
    EXPECT_TRUE(bit_equal(got, gpu_product(o, c.variant)));
    idem::testing::expect_error([&] { gpu_product(o, 9); }, "matmul", "internal: the cluster split-K");
  }
  // A batch of products never splits (blockIdx.z is the batch entry there).
  const Tensor a = randn({2, 64, 256}, 400, {DType::f32, Device::cuda()});
  const Tensor b = randn({2, 256, 256}, 401, {DType::f32, Device::cuda()});
  MatmulParams p = single_gemm(64, 256, 256, false, false);
  p.batch = 2;
  p.stride_a = 64 * 256;
  p.stride_b = 256 * 256;
  p.stride_c = 64 * 256;
  const Tensor c = empty({2, 64, 256}, a.options()), c4 = empty({2, 64, 256}, a.options());
  cuda::matmul_hand(c, a, b, p);
  cuda::matmul_hand_variant(c4, a, b, p, 4);
  EXPECT_TRUE(bit_equal(c, c4));
  idem::testing::expect_error([&] { cuda::matmul_hand_variant(c4, a, b, p, 9); }, "matmul",
                              "got batch 2, M=64 N=256 K=256");
}

// The wide MLP's Linear layer at batch 64, forward and backward through autograd, on the GPU
// against the CPU. Its three products (x·Wᵀ, g·W, gᵀ·x) are shapes the router splits (the first
// test checks that routing on the same shapes); here they run from the autograd engine.
TEST(MatmulClusterSplitCuda, WideLinearLayerForwardAndBackward) {
  IDEM_REQUIRE_CLUSTER_SPLIT();
  GemmGuard hand(GemmBackend::hand);
  const Tensor x = randn({64, 256}, 500), w = randn({256, 256}, 501), g = randn({64, 256}, 502);
  auto run = [&](Device d, Tensor* dx, Tensor* dw) {
    Tensor xd = x.to(d).requires_grad_(true), wd = w.to(d).requires_grad_(true);
    Tensor y = matmul(xd, wd, false, true);
    sum(y * g.to(d)).backward();
    *dx = xd.grad().to(Device::cpu());
    *dw = wd.grad().to(Device::cpu());
    return y.to(Device::cpu());
  };
  Tensor dx_c, dw_c, dx_g, dw_g;
  const Tensor y_c = run(Device::cpu(), &dx_c, &dw_c);
  const Tensor y_g = run(Device::cuda(), &dx_g, &dw_g);
  idem::testing::expect_near_all(y_g, y_c, gemm_tolerance(256), "y");
  idem::testing::expect_near_all(dx_g, dx_c, gemm_tolerance(256), "dx");
  idem::testing::expect_near_all(dw_g, dw_c, gemm_tolerance(64), "dw");
}

#endif  // IDEM_WITH_CUDA
