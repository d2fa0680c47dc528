// Run-time choice of the matmul implementations, so both can be timed in one process: on CUDA
// the hand-written SGEMM or cuBLAS (IDEM_GEMM=hand|cublas), on the CPU the packed SGEMM or
// Eigen (IDEM_CPU_GEMM=packed|eigen; default packed where its AVX-512 kernels run, else eigen).
// Any other value of either variable is an error (core/env.h) when the choice is read without
// a set_* call first; a set_* call overrides the variable and never reads it (EnvSetting).
#include "core/env.h"
#include "core/kernels/matmul.h"

namespace idem {

namespace {
GemmBackend initial_backend() {
  return env_choice("IDEM_GEMM", {"hand", "cublas"}, "hand") == "cublas" ? GemmBackend::cublas
                                                                         : GemmBackend::hand;
}
EnvSetting<GemmBackend>& backend_slot() {
  static EnvSetting<GemmBackend> b{initial_backend};
  return b;
}
}  // namespace

GemmBackend gemm_backend() { return backend_slot().get(); }
void set_gemm_backend(GemmBackend b) { backend_slot().set(b); }
const char* gemm_backend_name(GemmBackend b) { return b == GemmBackend::hand ? "hand" : "cublas"; }

namespace {
CpuGemm initial_cpu_gemm() {
  // The packed GEMM by default where it runs its AVX-512 kernels: there it is 1.2-2.5x Eigen's
  // speed on this project's products at 1 and 2 threads (docs/performance.md, 2026-12-06).
  // With AVX2 only it is not faster (2026-12-05), so Eigen stays the default there. Either
  // choice gives the same bits at every thread count, but not the same bits as the other.
  const char* best = cpu::sgemm_packed_avx512_available() ? "packed" : "eigen";
  return env_choice("IDEM_CPU_GEMM", {"packed", "eigen"}, best) == "packed" ? CpuGemm::packed
                                                                            : CpuGemm::eigen;
}
EnvSetting<CpuGemm>& cpu_gemm_slot() {
  static EnvSetting<CpuGemm> g{initial_cpu_gemm};
  return g;
}
}  // namespace

CpuGemm cpu_gemm() { return cpu_gemm_slot().get(); }
void set_cpu_gemm(CpuGemm g) { cpu_gemm_slot().set(g); }
const char* cpu_gemm_name(CpuGemm g) { return g == CpuGemm::packed ? "packed" : "eigen"; }

}  // namespace idem
