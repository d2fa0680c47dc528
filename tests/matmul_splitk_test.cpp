// Split-K in the hand-written CUDA GEMM (cuda/kernels/matmul.cu): Aᵀ·B with few outputs and a
// long K — the weight gradient of a layer over a large batch — against the CPU, deterministic,
// routed by shape, and with the launches it promises. Two implementations:
//  - tiled (M, N <= 128, K >= 4096): one partial-product launch + one fixed-order sum, chunks
//    chosen from the shape alone (splitk_plan);
//  - batched-GEMM (the other M·N <= 65 536 shapes): (K/1024 capped at 64) chunks as one batched
//    GEMM + the sum + a launch for the leftover rows.
// Every test skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "autograd/functions.h"
#include "core/kernels/fused.h"  // FusedAct
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "test_util.h"

using namespace idem;
using idem::testing::bit_equal;
using idem::testing::GemmGuard;
using idem::testing::gemm_tolerance;
using idem::testing::launches;

namespace {

// Aᵀ·B for A (k,m), B (k,n) through the L1 op: matches the CPU, repeats bit for bit, and takes
// `want_launches` launches.
void check_shape(int64_t k, int64_t m, int64_t n, uint64_t want_launches, uint64_t seed) {
  SCOPED_TRACE("K " + std::to_string(k) + " M " + std::to_string(m) + " N " + std::to_string(n));
  Tensor a = randn({k, m}, seed), b = randn({k, n}, seed + 1);
  Tensor want = matmul(a, b, true, false);
  Tensor ga = a.to(Device::cuda()), gb = b.to(Device::cuda());
  Tensor got;
  EXPECT_EQ(launches([&] { got = matmul(ga, gb, true, false); }), want_launches);
  idem::testing::expect_near_all(got.to(Device::cpu()), want, gemm_tolerance(k));
  for (int rep = 0; rep < 3; ++rep)
    EXPECT_TRUE(bit_equal(got, matmul(ga, gb, true, false))) << "split-K must be deterministic";
}

MatmulParams tn_params(int64_t k, int64_t m, int64_t n) {
  return single_gemm(m, n, k, true, false);
}

}  // namespace

TEST(MatmulSplitKCuda, TiledMatchesTheCpuWithTails) {
  IDEM_REQUIRE_GPU();
  GemmGuard hand(GemmBackend::hand);
  check_shape(65536, 64, 64, 2, 11);  // the sage weight gradient: 256 chunks of 256 rows
  check_shape(8192, 64, 64, 2, 13);    // 64 chunks of 128 (the shortest chunk)
  check_shape(4096, 64, 64, 2, 15);    // the shortest K routed here: 32 chunks of 128
  check_shape(65536 + 37, 64, 3, 2, 17);  // 228 chunks of 288, the last 197; N % 4 != 0
  check_shape(5000, 30, 20, 2, 19);     // M, N % 4 != 0 (scalar loads and stores); last chunk 8
  check_shape(4133, 70, 37, 2, 21);     // two row tiles, the second 6 rows; K % 32 != 0
  check_shape(8200, 128, 128, 2, 23);   // four tiles, chunks of 160 (51 of them + 40 rows)
  check_shape(9001, 1, 128, 2, 25);     // one row, two column tiles; 71 chunks, the last 41
}

TEST(MatmulSplitKCuda, RoutesByShape) {
  IDEM_REQUIRE_GPU();
  GemmGuard hand(GemmBackend::hand);
  // M or N > 128 with M·N <= 65 536: the batched-GEMM split-K, 2 launches + 1 for leftover rows
  // (K/1024 = 8 chunks of K/8 rows; 8203 leaves 3).
  check_shape(8192, 256, 16, 2, 31);
  check_shape(8203, 256, 16, 3, 33);
  check_shape(8192, 16, 129, 2, 35);
  // K < 4096: no split-K (one tiled or small-kernel launch).
  check_shape(4095, 64, 64, 1, 37);
#ifdef IDEM_WITH_CUDA  // matmul_hand_variant exists in CUDA builds only
  // The router's choice equals the tiled split-K forced by variant 7, bit for bit.
  const Tensor a = randn({20000, 64}, 39, {DType::f32, Device::cuda()});
  const Tensor b = randn({20000, 48}, 40, {DType::f32, Device::cuda()});
  const MatmulParams p = tn_params(20000, 64, 48);
  const Tensor c0 = empty({64, 48}, a.options()), c7 = empty({64, 48}, a.options());
  cuda::matmul_hand_variant(c0, a, b, p, 0);
  cuda::matmul_hand_variant(c7, a, b, p, 7);
  EXPECT_TRUE(bit_equal(c0, c7));
  // The batched split-K forced on the same shape agrees within rounding (another sum order).
  const Tensor c8 = empty({64, 48}, a.options());
  cuda::matmul_hand_variant(c8, a, b, p, 8);
  idem::testing::expect_near_all(c8.to(Device::cpu()), c0.to(Device::cpu()), gemm_tolerance(20000));
#endif
}

TEST(MatmulSplitKCuda, TiledHonoursAlphaAndBeta) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  const int64_t k = 6000, m = 20, n = 36;
  const Tensor a = randn({k, m}, 41), b = randn({k, n}, 42), c0 = randn({m, n}, 43);
  const std::vector<double> pv = matmul(a, b, true, false).to_vector<double>(),
                            cv = c0.to_vector<double>();
  // C = 0.5·Aᵀ·B + 2·C (beta != 0: the sum kernel reads C).
  MatmulParams p = tn_params(k, m, n);
  p.alpha = 0.5;
  p.beta = 2.0;
  Tensor gc = c0.to(gpu);
  const Tensor ga = a.to(gpu), gb = b.to(gpu);
  EXPECT_EQ(launches([&] { cuda::matmul_hand(gc, ga, gb, p); }), 2u);
  std::vector<double> want(pv.size());
  for (size_t i = 0; i < pv.size(); ++i) want[i] = 0.5 * pv[i] + 2.0 * cv[i];
  idem::testing::expect_near_all(gc.to(Device::cpu()), want, gemm_tolerance(k), "alpha, beta");
  // The epilogue entry point takes x·Wᵀ only; the refusal spells the flags and the device.
  idem::testing::expect_error(
      [&] { cuda::matmul_hand_epilogue(gc, ga, gb, p, Tensor(), FusedAct::relu, 0.0); }, "matmul",
      "got trans_a=true, trans_b=false, M=20 N=36 K=6000 on cuda:0");
}

TEST(MatmulSplitKCuda, LinearWeightGradientOverALargeBatch) {
  IDEM_REQUIRE_GPU();
  Tensor x = randn({20000, 16}, 1), w = randn({16, 8}, 2);
  Tensor xc = x.clone_data(), wc = w.clone_data();
  Tensor xg = x.to(Device::cuda()), wg = w.to(Device::cuda());
  wc.requires_grad_(), wg.requires_grad_();
  sum(matmul(xc, wc)).backward();
  sum(matmul(xg, wg)).backward();
  idem::testing::expect_near_all(wg.grad().to(Device::cpu()), wc.grad(), 2e-2);
}
