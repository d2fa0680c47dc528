// The AVX-512 micro-kernels of the packed f32 GEMM (core/cpu/sgemm_packed.cpp), kept in their
// own file because only that file is compiled with -mavx512f (IDEM_CPU_AVX512, CMakeLists.txt):
// the rest of the GEMM (packing, blocking, the update of C) stays AVX2 code that runs on any
// AVX2 CPU, and calls these only after checking that the CPU has AVX-512F.
#pragma once

#include <cstdint>

namespace idem::cpu {

// t (mr × 32 floats, row-major, 64-byte aligned) <- a_panel (kc × mr, k-major) · b_panel
// (kc × 32, k-major, 64-byte aligned): element (r, j) is one FMA chain over k = 0, 1, ...,
// kc − 1 starting from 0, the chain the AVX2 kernels compute too.
using SgemmMicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* t);

// The AVX-512 kernel with mr rows (4, 6, 8, 10, 12 or 14), or nullptr when this build has none
// (IDEM_CPU_AVX512=OFF) or there is no kernel of that height.
SgemmMicroKernel sgemm_avx512_kernel(int64_t mr);

}  // namespace idem::cpu
