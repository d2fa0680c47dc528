// The packed CPU SGEMM (cpu::sgemm_packed, core/cpu/sgemm_packed.cpp) against a plain
// double-precision reference: every transpose case over shapes at and around the micro-tile
// (6×16 and 4×16 with AVX2; 4..14 × 32 with AVX-512) and block (KC = 256, MC = 168) edges,
// K = 0, batches with a shared operand, alpha and beta, and a K of 65 536. Small-integer inputs
// make every product and partial sum exact in f32, so those cases must match the reference
// exactly; Gaussian inputs must match within a bound that grows with K. Every check runs the
// AVX2 kernels and, where the build and CPU have them, the AVX-512 ones, and requires the two
// to give the same bits. Also: beta = 0 never reads C, each element's bits do not depend on
// where it lies in C, and the matmul op gives the same result through the packed GEMM and Eigen.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/kernels/matmul.h"
#include "core/ops/matmul.h"
#include "core/parallel.h"
#include "tests/op_cases/op_cases.h"
#include "tests/test_util.h"

namespace idem {
namespace {

#define REQUIRE_PACKED() \
  if (!cpu::sgemm_packed_available()) GTEST_SKIP() << "built without IDEM_CPU_AVX2"

struct Problem {
  MatmulParams p;
  std::vector<float> a, b, c;  // as stored; c holds the initial C (read when beta != 0)
};

// Operands for p, batch entries at p's strides (a stride of 0 shares one matrix); `ints`: values
// in {-3..3}, else N(0, 1).
Problem make_problem(const MatmulParams& p, bool ints, uint32_t seed) {
  Problem pr;
  pr.p = p;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int> small(-3, 3);
  auto fill = [&](std::vector<float>& v, int64_t n) {
    v.resize(size_t(std::max<int64_t>(n, 1)));
    for (float& x : v) x = ints ? float(small(rng)) : normal(rng);
  };
  const int64_t ea = p.M * p.K, eb = p.K * p.N, ec = p.M * p.N;
  fill(pr.a, p.stride_a ? p.batch * p.stride_a : ea);
  fill(pr.b, p.stride_b ? p.batch * p.stride_b : eb);
  fill(pr.c, p.batch * p.stride_c);
  return pr;
}

MatmulParams params(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K,
                    bool shared_a = false, double alpha = 1.0, double beta = 0.0) {
  MatmulParams p;
  p.trans_a = ta, p.trans_b = tb, p.batch = batch, p.M = M, p.N = N, p.K = K;
  p.stride_a = shared_a ? 0 : M * K;
  p.stride_b = K * N;
  p.stride_c = M * N;
  p.alpha = alpha, p.beta = beta;
  return p;
}

// C = alpha·op(A)·op(B) + beta·C in double, and Σ|alpha·a·b| + |beta·c| per element (the scale
// of the rounding error).
void reference(const Problem& pr, std::vector<double>& want, std::vector<double>& scale) {
  const MatmulParams& p = pr.p;
  want.assign(size_t(p.batch * p.M * p.N), 0.0);
  scale.assign(want.size(), 0.0);
  for (int64_t n = 0; n < p.batch; ++n) {
    const float* a = pr.a.data() + n * p.stride_a;
    const float* b = pr.b.data() + n * p.stride_b;
    for (int64_t i = 0; i < p.M; ++i)
      for (int64_t j = 0; j < p.N; ++j) {
        double s = 0, m = 0;
        for (int64_t k = 0; k < p.K; ++k) {
          const double x = p.trans_a ? a[k * p.M + i] : a[i * p.K + k];
          const double y = p.trans_b ? b[j * p.K + k] : b[k * p.N + j];
          s += x * y;
          m += std::abs(x * y);
        }
        const size_t at = size_t(n * p.stride_c + i * p.N + j);
        const double c0 = p.beta == 0.0 ? 0.0 : p.beta * double(pr.c[at]);
        want[at] = p.alpha * s + c0;
        scale[at] = std::abs(p.alpha) * m + std::abs(c0);
      }
  }
}

// The instruction sets this build and CPU can run: AVX2, and AVX-512 where available.
std::vector<cpu::SgemmIsa> isas() {
  std::vector<cpu::SgemmIsa> v{cpu::SgemmIsa::avx2};
  if (cpu::sgemm_packed_avx512_available()) v.push_back(cpu::SgemmIsa::avx512);
  return v;
}

const char* isa_name(cpu::SgemmIsa isa) { return isa == cpu::SgemmIsa::avx512 ? "avx512" : "avx2"; }

// C after the packed GEMM with the kernels of `isa` on pr.
std::vector<float> run_packed(const Problem& pr, cpu::SgemmIsa isa) {
  std::vector<float> got = pr.c;
  cpu::sgemm_packed(pr.a.data(), pr.b.data(), got.data(), pr.p, isa);
  return got;
}

void check_one(const Problem& pr, bool ints, cpu::SgemmIsa isa, const std::vector<float>& got);

// Runs the packed GEMM on pr with each instruction set and compares with the reference:
// exactly (`ints`) or within 2^-24 · (4·√K + 4) · scale, a bound on f32 rounding that grows
// like a random walk over K; and the instruction sets with each other, bit for bit.
void check(const Problem& pr, bool ints) {
  std::vector<float> first;
  for (cpu::SgemmIsa isa : isas()) {
    const std::vector<float> got = run_packed(pr, isa);
    check_one(pr, ints, isa, got);
    if (first.empty()) {
      first = got;
      continue;
    }
    ASSERT_EQ(std::memcmp(first.data(), got.data(), got.size() * sizeof(float)), 0)
        << "avx2 and " << isa_name(isa) << " differ: M=" << pr.p.M << " N=" << pr.p.N
        << " K=" << pr.p.K << " ta=" << pr.p.trans_a << " tb=" << pr.p.trans_b;
  }
}

void check_one(const Problem& pr, bool ints, cpu::SgemmIsa isa, const std::vector<float>& got) {
  const MatmulParams& p = pr.p;
  std::vector<double> want, scale;
  reference(pr, want, scale);
  const double tol_per_scale = std::ldexp(1.0, -24) * (4 * std::sqrt(double(p.K)) + 4);
  int64_t bad = 0;
  for (size_t e = 0; e < want.size(); ++e) {
    const double err = std::abs(double(got[e]) - want[e]);
    const bool ok = ints ? err == 0.0 : err <= tol_per_scale * scale[e];
    if (!ok && ++bad <= 3)
      ADD_FAILURE() << isa_name(isa) << " ta=" << p.trans_a << " tb=" << p.trans_b << " batch=" << p.batch
                    << " M=" << p.M << " N=" << p.N << " K=" << p.K << " alpha=" << p.alpha
                    << " beta=" << p.beta << ": element " << e << " is " << got[e] << ", want "
                    << want[e] << " (|err| " << err << ")";
  }
}

struct Dims {
  int64_t M, N, K;
};

// Shapes at and around the micro-tile, block and tiling edges.
const Dims kShapes[] = {
    {1, 1, 1},     {1, 1, 7},     {2, 3, 1},     {5, 15, 3},    {6, 16, 8},    {7, 17, 9},
    {11, 31, 33},  {12, 32, 255}, {13, 33, 256}, {17, 47, 257}, {35, 49, 300}, {1, 300, 40},
    {300, 1, 40},  {143, 15, 10}, {145, 17, 11}, {64, 256, 256}, {10, 2048, 25}, {250, 2048, 20},
    {20, 250, 600}, {97, 130, 513}, {150, 260, 64}, {8, 256, 256}, {28, 40, 100}, {256, 256, 8},
    {10, 25, 1728}, {25, 63, 40},  {169, 65, 17},  {14, 95, 9},    {30, 96, 31},  {250, 33, 24}};

TEST(CpuSgemm, SmallIntegersAreExactForEveryTransposeAndShape) {
  REQUIRE_PACKED();
  uint32_t seed = 1;
  for (const Dims& d : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) check(make_problem(params(ta, tb, 1, d.M, d.N, d.K), true, seed++), true);
}

TEST(CpuSgemm, GaussianInputsMatchADoubleReferenceWithinAnF32Bound) {
  REQUIRE_PACKED();
  uint32_t seed = 100;
  for (const Dims& d : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) check(make_problem(params(ta, tb, 1, d.M, d.N, d.K), false, seed++), false);
}

TEST(CpuSgemm, BatchesSharedOperandsAlphaAndBeta) {
  REQUIRE_PACKED();
  uint32_t seed = 200;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool shared : {false, true})
        for (double beta : {0.0, 1.0, -0.5}) {
          check(make_problem(params(ta, tb, 3, 13, 37, 300, shared, 1.0, beta), true, seed++), true);
          check(make_problem(params(ta, tb, 2, 70, 40, 520, shared, 0.75, beta), false, seed++), false);
        }
}

// K = 65 536 over a 64×64 output: 256 KC blocks per element.
TEST(CpuSgemm, LargeK) {
  REQUIRE_PACKED();
  check(make_problem(params(false, false, 1, 64, 64, 65536), false, 300), false);
  check(make_problem(params(true, true, 1, 64, 64, 65536), false, 301), false);
  check(make_problem(params(false, true, 1, 64, 64, 4096), true, 302), true);
}

// K = 0 sums nothing: C = beta·C, and beta = 0 writes zeros over garbage.
TEST(CpuSgemm, EmptyInnerDimensionScalesC) {
  REQUIRE_PACKED();
  for (double beta : {0.0, 2.0}) {
    MatmulParams p = params(false, false, 2, 7, 19, 0, false, 1.0, beta);
    std::vector<float> a(1), b(1), c(size_t(2 * 7 * 19));
    for (size_t e = 0; e < c.size(); ++e) c[e] = beta == 0.0 ? std::nanf("") : float(e);
    cpu::sgemm_packed(a.data(), b.data(), c.data(), p);
    for (size_t e = 0; e < c.size(); ++e) ASSERT_EQ(c[e], beta == 0.0 ? 0.f : 2.f * float(e)) << e;
  }
}

// beta = 0 overwrites: a C full of NaN must not leak into the result.
TEST(CpuSgemm, BetaZeroNeverReadsC) {
  REQUIRE_PACKED();
  for (const Dims& d : {Dims{7, 17, 300}, Dims{300, 40, 20}}) {
    Problem pr = make_problem(params(false, true, 1, d.M, d.N, d.K), true, 400);
    std::fill(pr.c.begin(), pr.c.end(), std::numeric_limits<float>::quiet_NaN());
    check(pr, true);
  }
}

// Each element's sum order depends on K alone: rows computed inside a big product (several
// tiles and edge panels) have the bits of the same rows computed on their own.
TEST(CpuSgemm, AnElementsBitsDoNotDependOnItsPlaceInC) {
  REQUIRE_PACKED();
  const int64_t M = 301, N = 203, K = 700;
  Problem pr = make_problem(params(false, false, 1, M, N, K), false, 500);
  for (cpu::SgemmIsa isa : isas()) {
    std::vector<float> full(size_t(M * N));
    cpu::sgemm_packed(pr.a.data(), pr.b.data(), full.data(), pr.p, isa);
    // The rows on their own run other kernel heights than the whole product does (AVX2: 4 or 6;
    // AVX-512: 4 to 14, Kernels::pick), and other tilings.
    for (int64_t r0 : {0, 5, 143, 296})
      for (int64_t want_rows : {4, 5, 10, 13}) {
        const int64_t rows = std::min<int64_t>(want_rows, M - r0);
        MatmulParams sub = params(false, false, 1, rows, N, K);
        std::vector<float> part(size_t(rows * N));
        cpu::sgemm_packed(pr.a.data() + r0 * K, pr.b.data(), part.data(), sub, isa);
        for (int64_t e = 0; e < rows * N; ++e)
          ASSERT_EQ(part[size_t(e)], full[size_t(r0 * N + e)]) << isa_name(isa) << " row " << r0 + e / N;
      }
  }
}

// Every product height from 1 to 60 (each AVX-512 kernel height, alone and with remainders),
// N across one and two 32-column panels, K across a KC block: the AVX2 and AVX-512 kernels
// give the same bits (check), and both match the reference.
TEST(CpuSgemm, EveryHeightMatchesAcrossInstructionSets) {
  REQUIRE_PACKED();
  uint32_t seed = 600;
  for (int64_t M = 1; M <= 60; ++M)
    for (const Dims& nk : {Dims{0, 33, 300}, Dims{0, 64, 7}}) {
      check(make_problem(params(M % 2 == 1, M % 3 == 0, 1, M, nk.N, nk.K, false, 0.5, 1.0), false, seed++), false);
    }
}

// Asking for the AVX-512 kernels where the build or the CPU has none is a clear error, and the
// default then runs the AVX2 ones.
TEST(CpuSgemm, Avx512WhereUnavailableIsAnError) {
  REQUIRE_PACKED();
  if (cpu::sgemm_packed_avx512_available()) GTEST_SKIP() << "this build and CPU have AVX-512";
  Problem pr = make_problem(params(false, false, 1, 7, 9, 11), true, 700);
  std::vector<float> c = pr.c;
  EXPECT_THROW(cpu::sgemm_packed(pr.a.data(), pr.b.data(), c.data(), pr.p, cpu::SgemmIsa::avx512), Error);
  check(pr, true);
}

// The switch: the matmul op through the packed GEMM and through Eigen, both near the reference.
TEST(CpuSgemm, MatmulOpAgreesThroughPackedAndEigen) {
  REQUIRE_PACKED();
  const Tensor a = randn({3, 70, 90}, 1), b = randn({3, 90, 50}, 2);
  Tensor packed, eigen;
  {
    testing::CpuGemmGuard g(CpuGemm::packed);
    packed = ops::matmul(a, b);
  }
  {
    testing::CpuGemmGuard g(CpuGemm::eigen);
    eigen = ops::matmul(a, b);
  }
  const float* x = packed.data<float>();
  const float* y = eigen.data<float>();
  for (int64_t e = 0; e < packed.numel(); ++e) ASSERT_NEAR(x[e], y[e], 2e-5f * (1.f + std::abs(y[e]))) << e;
  EXPECT_STREQ(cpu_gemm_name(CpuGemm::packed), "packed");
  EXPECT_STREQ(cpu_gemm_name(CpuGemm::eigen), "eigen");
}

// Every op-case row of the families whose CPU kernels call matmul (matmul, conv, fused), in f32,
// through the packed GEMM and through Eigen: the outputs agree to f32 rounding, and where the
// row has a gradient, so do the input gradients of one backward.
TEST(CpuSgemm, OpCasesAgreeThroughPackedAndEigen) {
  REQUIRE_PACKED();
  int rows = 0;
  for (const testing::OpCase& c : testing::all_op_cases()) {
    if (c.family != "matmul" && c.family != "conv" && c.family != "fused") continue;
    SCOPED_TRACE(c.family + "/" + c.name);
    std::vector<Tensor> results[2];
    for (int b = 0; b < 2; ++b) {
      testing::CpuGemmGuard g(b == 0 ? CpuGemm::packed : CpuGemm::eigen);
      std::vector<Tensor> in = testing::make_inputs(c, 7, DType::f32, Device::cpu());
      Tensor out = c.fn(in);
      results[b].push_back(out);
      if (c.gradcheck && out.requires_grad()) {
        out.backward(ones(out.shape(), out.options()));
        for (const Tensor& t : in)
          if (t.defined() && t.grad().defined()) results[b].push_back(t.grad());
      }
    }
    ASSERT_EQ(results[0].size(), results[1].size());
    for (size_t r = 0; r < results[0].size(); ++r) {
      const Tensor& x = results[0][r];
      const Tensor& y = results[1][r];
      ASSERT_EQ(x.shape(), y.shape());
      if (x.dtype() != DType::f32) continue;
      float scale = 1.f;
      for (int64_t e = 0; e < y.numel(); ++e) scale = std::max(scale, std::abs(y.data<float>()[e]));
      for (int64_t e = 0; e < x.numel(); ++e)
        ASSERT_NEAR(x.data<float>()[e], y.data<float>()[e], 1e-5f * scale) << "result " << r << " element " << e;
    }
    ++rows;
  }
  EXPECT_GE(rows, 10);
}

}  // namespace
}  // namespace idem
