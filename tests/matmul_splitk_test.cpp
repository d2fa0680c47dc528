// Split-K in the hand-written CUDA GEMM (cuda/kernels/matmul.cu): Aᵀ·B with few outputs and a
// long K — the weight gradient of a layer over a large batch — against the CPU, deterministic,
// and with the launches it promises.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "test_util.h"

using namespace idem;
using idem::testing::bit_equal;

namespace {
void check_shape(int64_t k, int64_t m, int64_t n) {
  Tensor a = randn({k, m}, 11), b = randn({k, n}, 12);
  Tensor want = matmul(a, b, true, false);
  Tensor ga = a.to(Device::cuda()), gb = b.to(Device::cuda());
  const uint64_t l0 = cuda::launch_count();
  Tensor got = matmul(ga, gb, true, false);
  const uint64_t launches = cuda::launch_count() - l0;
  // (K/1024 capped at 64) chunks as one batched GEMM + the sum + maybe the leftover rows.
  const int64_t chunks = std::min<int64_t>(64, k / 1024);
  EXPECT_EQ(launches, 2u + (k % chunks != 0 ? 1u : 0u)) << "K " << k;
  // f32 sums over K terms: the tolerance grows with K (as the parity tests' scale).
  idem::testing::expect_near_all(got.to(Device::cpu()), want, 2e-4 * double(k) / 64.0,
                                 "K " + std::to_string(k));
  EXPECT_TRUE(bit_equal(got, matmul(ga, gb, true, false))) << "split-K must be deterministic";
}
}  // namespace

TEST(MatmulSplitKCuda, MatchesTheCpuWithAndWithoutLeftoverRows) {
  IDEM_REQUIRE_GPU();
  set_gemm_backend(GemmBackend::hand);
  check_shape(8192, 64, 64);      // 8 chunks of 1024, nothing left over
  check_shape(65536 + 37, 64, 3);  // 64 chunks, 37 leftover rows, N not a multiple of 4
  check_shape(5000, 30, 20);      // 4 chunks of 1250
}

TEST(MatmulSplitKCuda, LinearWeightGradientOverALargeBatch) {
  IDEM_REQUIRE_GPU();
  Tensor x = randn({20000, 16}, 1), w = randn({16, 8}, 2);
  Tensor xc = x.clone_data(), wc = w.clone_data(), xg = x.to(Device::cuda()), wg = w.to(Device::cuda());
  wc.requires_grad_(), wg.requires_grad_();
  sum(matmul(xc, wc)).backward();
  sum(matmul(xg, wg)).backward();
  idem::testing::expect_near_all(wg.grad().to(Device::cpu()), wc.grad(), 2e-2);
}
