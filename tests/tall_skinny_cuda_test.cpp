// The CUDA paths for tall, skinny tensors (the GNN benchmarks: tens of thousands of nodes, 64
// features): the hand GEMM's 128x64 tile for N <= 64 (cuda/kernels/matmul.cu) and the binary
// ops' row/column broadcast kernel (cuda/kernels/elementwise.cu) — a bias (F) or a per-row scale
// (R, 1) against an (R, F) tensor. Both must give the CPU's values (the broadcast ops the CPU's
// exact bits: one IEEE operation per element on both devices), the same bits run after run, and
// the GEMM the same bits whichever tile computes it (each output is one fmaf chain over k in
// order in every tile config, and in the narrow kernel for N <= 4). Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "core/kernels/matmul.h"
#include "core/ops/elementwise.h"
#include "test_util.h"

using namespace idem;
using idem::testing::bit_equal;
using idem::testing::expect_near_all;

namespace {

const Device kGpu = Device::cuda(0);

using idem::testing::GemmGuard;

// ---- broadcast binary ops -----------------------------------------------------------------------

// Positive values (pow's base, div's divisor), a few of them repeated so eq/le/ge see equal
// pairs: U[0.5, 2) rounded to a multiple of 1/8 on every third element.
Tensor sample(const Shape& s, uint64_t seed) {
  Tensor t = uniform(s, 0.5, 2.0, seed);
  std::vector<double> v = t.to_vector<double>();
  for (size_t i = 0; i < v.size(); i += 3) v[i] = std::round(v[i] * 8.0) / 8.0;
  return from_vector<double>(v, s).to(DType::f32);
}

// a op b on the GPU against the CPU: the same bits, except pow (powf on the device, the C++
// library's pow on the host: within a few ulp).
void check_binary(BinaryOp op, const Tensor& a, const Tensor& b, int64_t shift_a, int64_t shift_b,
                  const std::string& what) {
  SCOPED_TRACE(std::string(binary_name(op)) + " " + shape_str(a.shape()) + " op " +
               shape_str(b.shape()) + " shifts " + std::to_string(shift_a) + "," +
               std::to_string(shift_b) + " " + what);
  const Tensor want = ops::binary(a, b, op);
  const Tensor got = ops::binary(idem::testing::shifted_copy(a, kGpu, shift_a),
                                     idem::testing::shifted_copy(b, kGpu, shift_b), op);
  ASSERT_EQ(got.shape(), want.shape());
  if (op == BinaryOp::pow) {
    const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
    double worst = 0;
    for (size_t i = 0; i < g.size(); ++i)
      worst = std::max(worst, std::abs(g[i] - w[i]) / std::max(1.0, std::abs(w[i])));
    EXPECT_LE(worst, 1e-6);
  } else {
    EXPECT_TRUE(bit_equal(got, want));
  }
}

// Both operand orders of `big` against `small`.
void check_both_orders(BinaryOp op, const Tensor& big, const Tensor& small, int64_t shift,
                       const std::string& what) {
  check_binary(op, big, small, shift, 0, what + " big first");
  check_binary(op, small, big, 0, shift, what + " small first");
}

class TallSkinnyCuda : public ::testing::Test {
 protected:
  void SetUp() override { IDEM_REQUIRE_GPU(); }
};

// Rows (F), (1, F), columns (R, 1), scalars () and (1, 1), every binary op, both orders, F that
// is and is not a multiple of the vector width, aligned and misaligned operands.
TEST_F(TallSkinnyCuda, BroadcastBinaryMatchesTheCpuForEveryOpAndOrder) {
  uint64_t seed = 1000;
  for (int64_t R : {1, 7, 33})
    for (int64_t F : {1, 3, 64, 65}) {
      const Tensor big = sample({R, F}, seed++);
      const Tensor row = sample({F}, seed++), row2 = sample({1, F}, seed++);
      const Tensor col = sample({R, 1}, seed++), scal = sample({}, seed++);
      for (BinaryOp op : kBinaryOps)  // every listed op (core/kernels/elementwise.h)
        for (int64_t shift : {0, 1}) {
          check_both_orders(op, big, row, shift, "row (F)");
          check_both_orders(op, big, row2, shift, "row (1,F)");
          check_both_orders(op, big, col, shift, "column (R,1)");
          check_both_orders(op, big, scal, shift, "scalar");
        }
    }
}

// The sage shapes: (65536, 64) against a bias (64) and a per-row scale (65536, 1), plus F = 65
// (no vector loads) and a misaligned (65536, 64) view.
TEST_F(TallSkinnyCuda, BroadcastBinaryAtGraphScale) {
  const int64_t R = 65536;
  uint64_t seed = 2000;
  for (int64_t F : {64, 65}) {
    const Tensor big = sample({R, F}, seed++);
    const Tensor row = sample({F}, seed++), col = sample({R, 1}, seed++);
    for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::lt})
      for (int64_t shift : {0, 3}) {
        check_both_orders(op, big, row, shift, "bias");
        check_both_orders(op, big, col, shift, "row scale");
      }
  }
}

// Shapes that collapse to the same (R, F) kernels — (B, T, F) + (F), (B, T, F) * (B, T, 1),
// (B, T, F) + (1, 1, F) — shapes that differ only in extent-1 dims (the plain map), and shapes the
// general kernel keeps (an outer product, a middle-dim broadcast), next to each other.
TEST_F(TallSkinnyCuda, BroadcastBinaryCollapsedAndGeneralShapes) {
  uint64_t seed = 3000;
  const Tensor x = sample({3, 5, 8}, seed++), x3 = sample({3, 5, 7}, seed++);
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::div, BinaryOp::maximum}) {
    check_both_orders(op, x, sample({8}, seed++), 0, "(B,T,F) row");
    check_both_orders(op, x, sample({1, 1, 8}, seed++), 1, "(B,T,F) row (1,1,F)");
    check_both_orders(op, x, sample({3, 5, 1}, seed++), 0, "(B,T,F) column");
    check_both_orders(op, x3, sample({3, 5, 1}, seed++), 1, "(B,T,7) column");
    check_both_orders(op, x, sample({1, 5, 8}, seed++), 0, "(B,T,F) vs (1,T,F)");
    check_both_orders(op, sample({1, 15, 8}, seed++), sample({15, 8}, seed++), 1, "extent-1 only");
    check_binary(op, sample({6, 1}, seed++), sample({1, 9}, seed++), 0, 0, "outer product");
    check_both_orders(op, x, sample({3, 1, 8}, seed++), 0, "middle-dim broadcast");
  }
}

// Integer dtypes take the same kernels (the vector width grows as the element shrinks).
TEST_F(TallSkinnyCuda, BroadcastBinaryIntegerDtypes) {
  uint64_t seed = 4000;
  for (DType dt : {DType::i32, DType::i64})
    for (int64_t F : {3, 64}) {
      auto ints = [&](const Shape& s) { return uniform(s, -50.0, 50.0, seed++).to(dt); };
      const Tensor big = ints({9, F}), row = ints({F}), col = ints({9, 1});
      for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::maximum,
                          BinaryOp::ge})
        for (int64_t shift : {0, 1}) {
          check_both_orders(op, big, row, shift, dtype_name(dt));
          check_both_orders(op, big, col, shift, dtype_name(dt));
        }
    }
}

TEST_F(TallSkinnyCuda, BroadcastBinaryRepeatsBitForBit) {
  const Tensor big = randn({65536, 64}, 5, {DType::f32, kGpu});
  const Tensor col = randn({65536, 1}, 6, {DType::f32, kGpu});
  const Tensor row = randn({64}, 7, {DType::f32, kGpu});
  for (BinaryOp op : {BinaryOp::mul, BinaryOp::add}) {
    EXPECT_TRUE(bit_equal(ops::binary(big, col, op), ops::binary(big, col, op)));
    EXPECT_TRUE(bit_equal(ops::binary(row, big, op), ops::binary(row, big, op)));
  }
}

// ---- matmul -------------------------------------------------------------------------------------

// GPU matmul of CPU operands against the CPU (f32 error grows with K), twice on the GPU for
// run-to-run bits.
void check_matmul(const Shape& as, const Shape& bs, bool ta, bool tb, uint64_t seed) {
  SCOPED_TRACE(shape_str(as) + (ta ? "ᵀ" : "") + " · " + shape_str(bs) + (tb ? "ᵀ" : "") +
               ", seed " + std::to_string(seed));
  const Tensor a = randn(as, seed), b = randn(bs, seed + 1);
  const Tensor want = matmul(a, b, ta, tb);
  const Tensor ga = a.to(kGpu), gb = b.to(kGpu);
  const Tensor got = matmul(ga, gb, ta, tb);
  const int64_t K = ta ? as[0] : as[1];
  expect_near_all(got, want, 2e-4 * std::max<double>(1.0, static_cast<double>(K) / 64.0));
  EXPECT_TRUE(bit_equal(got, matmul(ga, gb, ta, tb))) << "not deterministic";
}

TEST_F(TallSkinnyCuda, MatmulGraphShapesMatchTheCpuAndRepeat) {
  GemmGuard hand(GemmBackend::hand);
  check_matmul({65536, 64}, {64, 64}, false, true, 10);   // x·Wᵀ (Linear forward)
  check_matmul({65536, 64}, {64, 64}, false, false, 12);  // gz·W (its input gradient)
  check_matmul({8, 64}, {64, 64}, false, true, 14);       // a small batch
  check_matmul({8, 64}, {64, 64}, false, false, 16);
  check_matmul({65536, 64}, {65536, 64}, true, false, 18);  // gzᵀ·x (weight gradient, split-K)
  check_matmul({65536, 64}, {3, 64}, false, true, 20);      // a 3-wide output layer
  check_matmul({20000, 37}, {37, 63}, false, false, 22);    // odd K and N: scalar loads
}

#ifdef IDEM_WITH_CUDA
// Every tiled config and the small kernel give the same bits on shapes that cut the 128x64 tile
// unevenly (ragged M, N < 64 and not a multiple of 4, K not a multiple of the tile depth),
// with alpha/beta, a batch sharing B, and all four transpose layouts; and match the CPU.
TEST_F(TallSkinnyCuda, MatmulTileConfigsGiveTheSameBits) {
  struct Case {
    int64_t batch, M, N, K;
    bool share_b;
    double alpha, beta;
  };
  const Case cases[] = {
      {1, 65536, 64, 64, false, 1.0, 0.0},  // the sage layer
      {1, 17000, 63, 67, false, 1.0, 0.0},  // ragged everywhere
      {1, 16901, 1, 5, false, 1.0, 0.0},    // N = 1, K below the tile depth
      {1, 65536, 64, 3, false, 1.0, 1.0},   // the sage first layer's a·Wlᵀ + y: K = 3, beta = 1
      {3, 4097, 40, 33, true, 0.5, 1.0},    // batched, shared B, beta = 1
  };
  uint64_t seed = 500;
  for (const Case& mc : cases)
    for (int t = 0; t < 4; ++t) {
      MatmulParams p;
      p.trans_a = t & 1;
      p.trans_b = t & 2;
      p.batch = mc.batch;
      p.M = mc.M;
      p.N = mc.N;
      p.K = mc.K;
      p.alpha = mc.alpha;
      p.beta = mc.beta;
      p.stride_a = mc.M * mc.K;
      p.stride_b = mc.share_b ? 0 : mc.K * mc.N;
      p.stride_c = mc.M * mc.N;
      Shape as = p.trans_a ? Shape{mc.K, mc.M} : Shape{mc.M, mc.K};
      Shape bs = p.trans_b ? Shape{mc.N, mc.K} : Shape{mc.K, mc.N};
      as.insert(as.begin(), mc.batch);
      if (!mc.share_b) bs.insert(bs.begin(), mc.batch);
      const Shape cs{mc.batch, mc.M, mc.N};
      SCOPED_TRACE("batch " + std::to_string(mc.batch) + " M " + std::to_string(mc.M) + " N " +
                   std::to_string(mc.N) + " K " + std::to_string(mc.K) + " trans_a " +
                   std::to_string(p.trans_a) + " trans_b " + std::to_string(p.trans_b) +
                   ", seed " + std::to_string(seed));
      const Tensor a = randn(as, seed++), b = randn(bs, seed++);
      const Tensor c0 = mc.beta == 0 ? full(cs, NAN) : randn(cs, seed++);
      const Tensor want = c0.clone_data();
      cpu::matmul_fwd(want, a, b, p);
      const Tensor ga = a.to(kGpu), gb = b.to(kGpu);
      std::vector<Tensor> got;
      for (int v : {6, 1, 3, 4, 5}) {
        const Tensor c = c0.clone_data().to(kGpu);
        cuda::matmul_hand_variant(c, ga, gb, p, v);
        got.push_back(c);
      }
      const double tol = 2e-4 * std::max<double>(1.0, static_cast<double>(mc.K) / 64.0);
      expect_near_all(got[0], want, tol, "128x64x8 vs CPU");
      for (size_t i = 1; i < got.size(); ++i)
        EXPECT_TRUE(bit_equal(got[i], got[0])) << "config " << i << " differs from 128x64x8";
      // matmul_hand's own choice (whichever config its rules pick) agrees too.
      const Tensor c = c0.clone_data().to(kGpu);
      cuda::matmul_hand(c, ga, gb, p);
      EXPECT_TRUE(bit_equal(c, got[0])) << "matmul_hand differs from 128x64x8";
    }
}

// The narrow kernel (variant 10: N <= 4, one thread a row, A staged in 64-column chunks) gives
// the 128x64 tile's bits and the CPU's values: every N from 1 to 4, K of one partial chunk, of
// several chunks with a ragged last one and the largest K it takes, ragged M, alpha/beta, B
// transposed or not; and matmul_hand routes the sage first layer's input gradient to it.
TEST_F(TallSkinnyCuda, MatmulNarrowGivesTheTilesBits) {
  struct Case {
    int64_t M, N, K;
    double alpha, beta;
  };
  const Case cases[] = {
      {65536, 3, 64, 1.0, 0.0},  // the sage first layer's gz·W
      {65536, 3, 64, 1.0, 1.0},  // ... accumulated into C
      {17001, 1, 4, 1.0, 0.0},   // one partial chunk, ragged M
      {16999, 2, 200, 0.5, 1.0}, // four chunks, the last one 8 wide
      {300, 4, 256, -2.0, 0.5},  // the largest K, three blocks, the last one ragged
  };
  uint64_t seed = 900;
  for (const Case& mc : cases)
    for (bool tb : {false, true}) {
      MatmulParams p = single_gemm(mc.M, mc.N, mc.K, false, tb);
      p.alpha = mc.alpha;
      p.beta = mc.beta;
      SCOPED_TRACE("M " + std::to_string(mc.M) + " N " + std::to_string(mc.N) + " K " +
                   std::to_string(mc.K) + " trans_b " + std::to_string(tb) + ", seed " +
                   std::to_string(seed));
      const Tensor a = randn({mc.M, mc.K}, seed++);
      const Tensor b = randn(tb ? Shape{mc.N, mc.K} : Shape{mc.K, mc.N}, seed++);
      const Tensor c0 = mc.beta == 0 ? full({mc.M, mc.N}, NAN) : randn({mc.M, mc.N}, seed++);
      const Tensor want = c0.clone_data();
      cpu::matmul_fwd(want, a, b, p);
      const Tensor ga = a.to(kGpu), gb = b.to(kGpu);
      const Tensor narrow = c0.clone_data().to(kGpu), tile = c0.clone_data().to(kGpu);
      cuda::matmul_hand_variant(narrow, ga, gb, p, 10);
      cuda::matmul_hand_variant(tile, ga, gb, p, 6);
      expect_near_all(narrow, want, idem::testing::gemm_tolerance(mc.K), "narrow vs CPU");
      EXPECT_TRUE(bit_equal(narrow, tile)) << "the narrow kernel differs from 128x64x8";
      const Tensor again = c0.clone_data().to(kGpu);
      cuda::matmul_hand_variant(again, ga, gb, p, 10);
      EXPECT_TRUE(bit_equal(again, narrow)) << "not deterministic";
    }
  // matmul_hand on the sage shape: the router picks the narrow kernel (matmul_hand_route), runs
  // it in one launch, and gives the forced kernel's bits.
  const MatmulParams p = single_gemm(65536, 3, 64, false, false);
  const Tensor ga = randn({65536, 64}, 990).to(kGpu), gb = randn({64, 3}, 991).to(kGpu);
  const Tensor routed = empty({65536, 3}, ga.options()), forced = empty({65536, 3}, ga.options());
  EXPECT_EQ(cuda::matmul_hand_route(routed, ga, gb, p, false), 10);
  EXPECT_EQ(idem::testing::launches([&] { cuda::matmul_hand(routed, ga, gb, p); }), 1u);
  cuda::matmul_hand_variant(forced, ga, gb, p, 10);
  EXPECT_TRUE(bit_equal(routed, forced));
}

// The router's choice for tall products with a short K or few columns (matmul_hand_route's
// numbering: 5 the small kernel, 6 the 128x64 tile, 10 the narrow kernel).
TEST_F(TallSkinnyCuda, RouterPicksByShape) {
  struct Case {
    int64_t batch, M, N, K;
    bool trans_b;
    int want;
    const char* why;
  };
  const Case cases[] = {
      {1, 65536, 64, 3, true, 6, "the sage first layer's x·Wrᵀ: one tall product, K 3, N 64"},
      {1, 65536, 3, 64, false, 10, "its input gradient gz·W: N 3, K 64"},
      {1, 65536, 3, 6, false, 5, "N 3 with K % 4 != 0: not narrow, and short K stays small"},
      {1, 65536, 3, 8, false, 10, "N 3, K 8: narrow"},
      {1, 65536, 8, 8, false, 6, "N 8 (wider than narrow), K 8: the tile"},
      {2, 65536, 64, 3, true, 5, "a batch of two short-K products stays on the small kernel"},
      {1, 1000, 64, 3, true, 5, "8 rows of tiles cannot fill the SMs: small"},
  };
  for (const Case& rc : cases) {
    SCOPED_TRACE(rc.why);
    MatmulParams p = single_gemm(rc.M, rc.N, rc.K, false, rc.trans_b);
    p.batch = rc.batch;
    p.stride_a = rc.M * rc.K;
    p.stride_b = rc.K * rc.N;
    p.stride_c = rc.M * rc.N;
    const Tensor a = randn({rc.batch, rc.M, rc.K}, 5).to(kGpu);
    const Tensor b =
        randn({rc.batch, rc.trans_b ? rc.N : rc.K, rc.trans_b ? rc.K : rc.N}, 6).to(kGpu);
    const Tensor c = empty({rc.batch, rc.M, rc.N}, a.options());
    EXPECT_EQ(cuda::matmul_hand_route(c, a, b, p, false), rc.want);
  }
}

// Forcing the narrow kernel on a shape it does not take names the shape.
TEST_F(TallSkinnyCuda, MatmulNarrowRejectsShapesItDoesNotTake) {
  auto expect_rejected = [](int64_t M, int64_t N, int64_t K, bool ta, const std::string& what) {
    const MatmulParams p = single_gemm(M, N, K, ta, false);
    const Tensor a = (ta ? randn({K, M}, 1) : randn({M, K}, 1)).to(kGpu);
    const Tensor b = randn({K, N}, 2).to(kGpu), c = empty({M, N}, a.options());
    idem::testing::expect_error([&] { cuda::matmul_hand_variant(c, a, b, p, 10); }, "matmul",
                                what);
  };
  expect_rejected(1000, 5, 64, false, "M=1000 N=5 K=64");     // N > 4
  expect_rejected(1000, 3, 260, false, "M=1000 N=3 K=260");   // K > 256
  expect_rejected(1000, 3, 6, false, "aligned A false");      // K % 4 != 0
  expect_rejected(1000, 3, 64, true, "trans_a=true");         // A transposed
}
#endif

}  // namespace
