// Op-case rows for the matmul family: every transpose combination, batched 3-D, a 2-D operand
// shared across a batch (on either side), the IT³ first-layer shape and odd non-square shapes;
// Aᵀ·B with a long K, the CUDA hand GEMM's split-K shapes (cuda/kernels/matmul.cu): the tiled
// split-K (M, N <= 128, K >= 4096) with tails — K not a multiple of its chunk or of 32, M and N
// not multiples of 4 or 64 — and the batched-GEMM split-K with leftover rows (M > 128). Those
// rows are too large for a gradcheck (parity only; tests/matmul_splitk_test.cpp has more). The
// cluster split-K (few 32x32 tiles, moderate K: the wide IT³ MLP's layers) with its backward's
// products too (tests/matmul_cluster_split_test.cpp has more).
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
// parity_scale grows with the reduction length K (f32 rounding error grows with it).
OpCase mm_case(const std::string& name, Shape a, Shape b, bool ta, bool tb, int64_t k) {
  OpCase c{
      name, "matmul", {{std::move(a)}, {std::move(b)}}, [ta, tb](const std::vector<Tensor>& x) {
        return matmul(x[0], x[1], ta, tb);
      }};
  c.parity_scale = k > 8 ? static_cast<double>(k) / 8.0 : 1.0;
  return c;
}

// A product the cluster split-K takes on the GPU, and so do the two of its backward: parity of
// the output and both input gradients, no finite differences (too many elements).
OpCase cluster_split_case(const std::string& name, Shape a, Shape b, bool ta, bool tb, int64_t k) {
  OpCase c = mm_case(name, std::move(a), std::move(b), ta, tb, k);
  c.gradcheck = false;
  c.grad_parity = true;
  return c;
}

// Aᵀ·B with A (k, m), B (k, n): a split-K shape on the GPU; parity only.
OpCase splitk_case(const std::string& name, int64_t m, int64_t k, int64_t n) {
  OpCase c = mm_case(name, {k, m}, {k, n}, true, false, k);
  c.gradcheck = false;
  return c;
}
}  // namespace

std::vector<OpCase> matmul_cases() {
  return {
      // The IT³ MLP's first layer at batch 8: (8,14)·(14,30).
      mm_case("matmul_it3_8x14x30", {8, 14}, {14, 30}, false, false, 14),
      // M=7, K=5, N=3 in all four storage layouts.
      mm_case("matmul_nn_7x5x3", {7, 5}, {5, 3}, false, false, 5),
      mm_case("matmul_tn_7x5x3", {5, 7}, {5, 3}, true, false, 5),
      mm_case("matmul_nt_7x5x3", {7, 5}, {3, 5}, false, true, 5),
      mm_case("matmul_tt_7x5x3", {5, 7}, {3, 5}, true, true, 5),
      mm_case("matmul_vec_1x6x1", {1, 6}, {6, 1}, false, false, 6),
      // Batched (B,M,K)·(B,K,N).
      mm_case("matmul_batched_3x4x5x2", {3, 4, 5}, {3, 5, 2}, false, false, 5),
      mm_case("matmul_batched_tt", {3, 5, 4}, {3, 2, 5}, true, true, 5),
      mm_case("matmul_batched_tn", {2, 5, 4}, {2, 5, 3}, true, false, 5),
      // 3-D × shared 2-D weight (its gradient sums over the batch).
      mm_case("matmul_shared_b", {3, 4, 5}, {5, 2}, false, false, 5),
      mm_case("matmul_shared_b_nt", {3, 4, 5}, {2, 5}, false, true, 5),
      mm_case("matmul_shared_b_ta", {3, 5, 4}, {5, 2}, true, false, 5),
      mm_case("matmul_shared_b_tt", {2, 5, 4}, {3, 5}, true, true, 5),
      // Shared 2-D × 3-D.
      mm_case("matmul_shared_a", {4, 5}, {3, 5, 2}, false, false, 5),
      mm_case("matmul_shared_a_tt", {5, 4}, {3, 2, 5}, true, true, 5),
      // Split-K (GPU): the GNN's weight-gradient shape at 8 192 rows (64 chunks of 128).
      splitk_case("matmul_splitk_tn_64x8192x64", 64, 8192, 64),
      // Two row tiles (70 = 64 + 6), N = 37: scalar loads and stores; 33 chunks, the last 37 rows.
      splitk_case("matmul_splitk_tn_70x4133x37", 70, 4133, 37),
      // Four 64x64 tiles: 52 chunks of 160 rows, the last 40.
      splitk_case("matmul_splitk_tn_128x8200x128", 128, 8200, 128),
      // A 3-wide product (the first layer's weight gradient).
      splitk_case("matmul_splitk_tn_30x5000x3", 30, 5000, 3),
      // M > 128: the batched-GEMM split-K, 8 chunks of 1025 rows + 3 leftover rows.
      splitk_case("matmul_splitk_batched_256x8203x16", 256, 8203, 16),
      // Cluster split-K: mlp_256's x·Wᵀ at batch 64 (16 tiles, 8 chunks of 32; its backward's g·W
      // the same, gᵀ·x 64 tiles, 2 chunks of 32), and a ragged Aᵀ·Bᵀ (12 tiles, 4 chunks of 64,
      // the last 8 rows).
      cluster_split_case("matmul_cluster_split_nt_64x256x256", {64, 256}, {256, 256}, false, true,
                         256),
      cluster_split_case("matmul_cluster_split_tt_96x200x128", {200, 96}, {128, 200}, true, true,
                         200),
  };
}

}  // namespace idem::testing
