// The AVX-512 micro-kernels of the packed f32 GEMM (see core/cpu/sgemm_avx512.h): MR × 32
// blocks of C in 2·MR zmm accumulators. Per k: two aligned loads of the B panel's 32 values,
// MR broadcasts of A, 2·MR fused multiply-adds. With 32 zmm registers, up to 14 rows fit
// (28 accumulators, 2 of B, 1 broadcast); which heights the GEMM uses is measured
// (docs/performance.md).
//
// This file is compiled with -mavx512f when IDEM_CPU_AVX512 is on and must stay
// self-contained: it includes no header with inline or template code that other files also
// instantiate (a copy compiled here could be the one the linker keeps, and run on a CPU without
// AVX-512). Everything here besides sgemm_avx512_kernel has internal linkage.
#include "core/cpu/sgemm_avx512.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace idem::cpu {

#if defined(__AVX512F__)

namespace {

// Each element one FMA chain over k in increasing order (the order the bits depend on). The
// loops over rows are unrolled so the accumulator arrays live in registers.
template <int MR>
__attribute__((noinline)) void kernel(int64_t kc, const float* a, const float* b, float* t) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += 32) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(x, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(x, b1, c1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm512_store_ps(t + r * 32, c0[r]);
    _mm512_store_ps(t + r * 32 + 16, c1[r]);
  }
}

}  // namespace

SgemmMicroKernel sgemm_avx512_kernel(int64_t mr) {
  switch (mr) {
    case 4: return kernel<4>;
    case 6: return kernel<6>;
    case 8: return kernel<8>;
    case 10: return kernel<10>;
    case 12: return kernel<12>;
    case 14: return kernel<14>;
    default: return nullptr;
  }
}

#else  // built without IDEM_CPU_AVX512

SgemmMicroKernel sgemm_avx512_kernel(int64_t) { return nullptr; }

#endif

}  // namespace idem::cpu
