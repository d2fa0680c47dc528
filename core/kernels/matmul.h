// Kernel contract: (batched) matrix product C = op(A)·op(B), row-major.
//   op(A) is (M,K): A stored (M,K), or (K,M) when trans_a;  op(B) is (K,N): B stored (K,N),
//   or (N,K) when trans_b;  C is (M,N). Batches are contiguous; a batch stride of 0 shares one
//   matrix across the batch (a weight used by every sample).
// beta = 0 overwrites C (C may hold garbage); beta = 1 accumulates into C.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem {

struct MatmulParams {
  bool trans_a = false, trans_b = false;
  int64_t batch = 1, M = 0, N = 0, K = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch entries
  double alpha = 1.0, beta = 0.0;
};

// One unbatched product C (M×N) = op(A)·op(B) with alpha 1, beta 0: what the fused ops (a
// layer's forward and its two backward GEMMs) ask of matmul_fwd.
inline MatmulParams single_gemm(int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b) {
  MatmulParams p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.stride_c = M * N;
  return p;
}

// Which CUDA implementation matmul uses. Chosen at run time so both can be timed in one
// process: set_gemm_backend(), or else the environment variable IDEM_GEMM=hand|cublas, read at
// the first gemm_backend() and kept. A bad value throws there (core/env.h); set_gemm_backend()
// overrides the variable, a bad value included.
enum class GemmBackend : uint8_t { hand, cublas };
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend b);
const char* gemm_backend_name(GemmBackend b);

// Which CPU implementation matmul's f32 products use: our packed AVX2/AVX-512 SGEMM
// (cpu::sgemm_packed) or Eigen. Chosen at run time so both can be timed in one process:
// set_cpu_gemm(), or else the environment variable IDEM_CPU_GEMM=packed|eigen, read as IDEM_GEMM is
// (default packed where sgemm_packed_avx512_available(), else eigen). A build without IDEM_CPU_AVX2 has
// no packed GEMM and runs Eigen whatever is chosen; f64 products always run Eigen.
enum class CpuGemm : uint8_t { packed, eigen };
CpuGemm cpu_gemm();
void set_cpu_gemm(CpuGemm g);
const char* cpu_gemm_name(CpuGemm g);

namespace cpu {
// Dispatches f32 products to sgemm_packed or Eigen according to cpu_gemm(); f64 to Eigen.
void matmul_fwd(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p);
// Which micro-kernels the packed GEMM runs: AVX-512 (MR × 32) where the build and the CPU have
// it, else AVX2 (6 × 16); or one of them by name (benchmarks, tests). Both compute each element
// as the same FMA chains, so they give the same bits.
enum class SgemmIsa : uint8_t { best, avx2, avx512 };
// The packed f32 GEMM (core/cpu/sgemm_packed.cpp) on raw contiguous buffers, same contract as
// matmul_fwd (K = 0 allowed: C = beta·C). Each element's sum order depends on K alone, so C has
// the same bits at every thread count and tiling, and with either instruction set. Throws
// idem::Error when !sgemm_packed_available() (a build without IDEM_CPU_AVX2), or when `isa` is
// avx512 and !sgemm_packed_avx512_available().
void sgemm_packed(const float* a, const float* b, float* c, const MatmulParams& p,
                  SgemmIsa isa = SgemmIsa::best);
bool sgemm_packed_available();
// The build has the AVX-512 kernels (IDEM_CPU_AVX512) and this CPU has AVX-512F.
bool sgemm_packed_avx512_available();
// Throws idem::Error when the CPU GEMM was compiled for instructions this CPU lacks (AVX2 + FMA
// with IDEM_CPU_AVX2=ON); nothing otherwise. Called by matmul_fwd before any Eigen code runs.
// (The AVX-512 kernels need no such check: the packed GEMM calls them only on a CPU that has
// AVX-512F, and runs the AVX2 ones elsewhere.)
void require_cpu_features();
// Whether this CPU has AVX-512F (false off x86-64).
bool cpu_supports_avx512f();
}
enum class FusedAct : uint8_t;  // core/kernels/fused.h

namespace cuda {
// Dispatches to matmul_hand or matmul_cublas according to gemm_backend().
void matmul_fwd(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p);
void matmul_hand(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p);
// matmul_hand with an epilogue in its store: C = act(alpha·A·Bᵀ + beta·C + bias[n]) — requires
// !trans_a && trans_b (a Linear's x·Wᵀ; throws otherwise) —, bias (N) f32 on C's device or
// undefined, act and slope as in core/kernels/fused.h. The same kernel choice as matmul_hand,
// and each output rounded in the order of matmul_hand followed by cuda::bias_act (the bias added
// after the beta·C term): the bits of that pair, with one launch and one pass over C fewer.
void matmul_hand_epilogue(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p,
                          const Tensor& bias, FusedAct act, double slope);
// Throws idem::Error when built without IDEM_CUBLAS.
void matmul_cublas(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p);
// For benchmarks and tests (CUDA builds only, no stub): matmul_hand with its kernel forced.
// variant 0 picks the kernel by shape (what matmul_hand does); 1..6 force one tile config
// (1: 128x128x8, 2: 128x128x16, 3: 64x64x16, 4: 32x32x16, 5: the small-shape kernels,
// 6: 128x64x8, tall-skinny with N <= 64), 7 the tiled split-K and 8 the batched-GEMM split-K
// (both unbatched Aᵀ·B only), 9 the cluster split-K (one product of more than 8 192 outputs in
// at most 64 32x32 tiles, N > 64, K >= 32, float4-aligned operands, an sm_90 build; throws
// otherwise), 10 the narrow kernel (one product, A not transposed, N <= 4, K <= 256 and a
// multiple of 4, 16-byte aligned A, no epilogue; throws otherwise).
// Split-K is taken only for variant 0, 7, 8 or 9.
void matmul_hand_variant(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p,
                         int variant);
// For tests (CUDA builds only): the variant matmul_hand (epilogue = false) or
// matmul_hand_epilogue (true) runs for these operands, in the numbering above (for a batch of
// more than 65 535 products, the first chunk's); 0 when there is nothing to compute.
int matmul_hand_route(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p,
                      bool epilogue);
}  // namespace cuda

}  // namespace idem
