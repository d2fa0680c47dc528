// The instruction-set checks behind IDEM_CPU_AVX2 and IDEM_CPU_AVX512 (CMakeLists.txt):
// core/cpu/matmul.cpp may be compiled for AVX2 + FMA, core/cpu/sgemm_avx512.cpp for AVX-512F. This file is compiled without those flags, so the check itself runs on
// any x86-64 CPU and turns what would be an illegal-instruction crash into a clear error.
#include "core/kernels/matmul.h"

#include "core/error.h"

namespace idem::cpu {

void require_cpu_features() {
#if defined(IDEM_CPU_AVX2) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  if (!ok)
    fail("matmul", "this build's CPU GEMM uses AVX2 and FMA (IDEM_CPU_AVX2=ON, the build machine had "
         "them), but this CPU lacks them: rebuild with cmake -DIDEM_CPU_AVX2=OFF");
#endif
}

bool cpu_supports_avx512f() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool ok = [] {
    __builtin_cpu_init();
    return bool(__builtin_cpu_supports("avx512f"));
  }();
  return ok;
#else
  return false;
#endif
}

}  // namespace idem::cpu
