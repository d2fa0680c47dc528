// Run-time choice of the CUDA matmul implementation (hand-written SGEMM or cuBLAS), so both
// can be timed in one process. Initialised from IDEM_GEMM=hand|cublas.
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

}  // namespace idem
