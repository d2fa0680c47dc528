// Run-time choice of the matmul implementations, so both can be timed in one process: on CUDA
// the hand-written SGEMM or cuBLAS (IDEM_GEMM=hand|cublas), on the CPU the packed SGEMM or
// Eigen (IDEM_CPU_GEMM=packed|eigen, default eigen).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/kernels/matmul.h"

namespace idem {

namespace {
GemmBackend initial_backend() {
  const char* env = std::getenv("IDEM_GEMM");
  if (env && std::strcmp(env, "cublas") == 0) return GemmBackend::cublas;
  return GemmBackend::hand;
}
std::atomic<GemmBackend>& backend_slot() {
  static std::atomic<GemmBackend> b{initial_backend()};
  return b;
}
}  // namespace

GemmBackend gemm_backend() { return backend_slot().load(); }
void set_gemm_backend(GemmBackend b) { backend_slot().store(b); }
const char* gemm_backend_name(GemmBackend b) { return b == GemmBackend::hand ? "hand" : "cublas"; }

namespace {
CpuGemm initial_cpu_gemm() {
  // Eigen by default: the packed GEMM is not faster on this project's shapes with AVX2
  // (docs/performance.md, 2026-12-05), and the switch changes the last bits of every product.
  const char* env = std::getenv("IDEM_CPU_GEMM");
  if (env && std::strcmp(env, "packed") == 0) return CpuGemm::packed;
  return CpuGemm::eigen;
}
std::atomic<CpuGemm>& cpu_gemm_slot() {
  static std::atomic<CpuGemm> g{initial_cpu_gemm()};
  return g;
}
}  // namespace

CpuGemm cpu_gemm() { return cpu_gemm_slot().load(); }
void set_cpu_gemm(CpuGemm g) { cpu_gemm_slot().store(g); }
const char* cpu_gemm_name(CpuGemm g) { return g == CpuGemm::packed ? "packed" : "eigen"; }

}  // namespace idem
