// cuBLAS comparison path for matmul (cuda::matmul_cublas); the hand-written SGEMM is in
// cuda/kernels/matmul.cu. Built only with IDEM_CUBLAS (that file supplies a throwing fallback
// otherwise).
//
// Row-major through column-major cuBLAS: a row-major (M,N) C is a column-major (N,M) Cᵀ, and
// Cᵀ = op(B)ᵀ·op(A)ᵀ, so we call cuBLAS with the operands swapped and M/N swapped; each stored
// matrix keeps its own transpose flag and leading dimension.
//
// Math mode is plain FP32 (CUBLAS_DEFAULT_MATH: no TF32), so the comparison with the FFMA
// kernel is like for like.
//
// libcublas is loaded with dlopen on the first cuBLAS matmul, not linked: its 540 MB companion
// libcublasLt runs about a second of static initialisers at every process start, which every
// test process and CLI call would pay even when cuBLAS is never used.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <string>
#include <vector>

#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

// The cuBLAS entry points we use, resolved from the shared library on first use. cublas_v2.h
// maps the API names to versioned symbols (cublasCreate -> cublasCreate_v2), so the symbol is
// the macro-expanded name.
#define IDEM_STRINGIFY2(x) #x
#define IDEM_STRINGIFY(x) IDEM_STRINGIFY2(x)
#define IDEM_CUBLAS_FUNCTIONS(X) \
  X(cublasCreate)                \
  X(cublasSetMathMode)           \
  X(cublasSetPointerMode)        \
  X(cublasSetWorkspace)          \
  X(cublasSetStream)             \
  X(cublasSgemm)                 \
  X(cublasSgemmStridedBatched)   \
  X(cublasGetStatusName)         \
  X(cublasGetStatusString)

struct CublasApi {
#define IDEM_DECLARE(name) decltype(&::name) name = nullptr;
  IDEM_CUBLAS_FUNCTIONS(IDEM_DECLARE)
#undef IDEM_DECLARE
};

const CublasApi& api() {
  static const CublasApi loaded = [] {
    const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
#ifdef IDEM_CUDA_LIBRARY_DIR
    if (!lib) lib = dlopen((std::string(IDEM_CUDA_LIBRARY_DIR) + "/" + soname).c_str(),
                           RTLD_NOW | RTLD_LOCAL);
#endif
    if (!lib)
      fail("matmul", "cannot load ", soname, " for the cuBLAS path (", dlerror(),
           "); install cuBLAS or use the hand-written kernels (IDEM_GEMM=hand)");
    CublasApi a;
#define IDEM_RESOLVE(name)                                                                  \
  a.name = reinterpret_cast<decltype(a.name)>(dlsym(lib, IDEM_STRINGIFY(name)));           \
  if (!a.name) fail("matmul", "symbol ", IDEM_STRINGIFY(name), " not found in ", soname);
    IDEM_CUBLAS_FUNCTIONS(IDEM_RESOLVE)
#undef IDEM_RESOLVE
    return a;  // the library stays loaded for the life of the process
  }();
  return loaded;
}

[[noreturn]] void throw_cublas(const char* call, cublasStatus_t s) {
  fail("matmul", "cuBLAS error ", api().cublasGetStatusName(s), " (",
       api().cublasGetStatusString(s), ") in ", call);
}

#define IDEM_CUBLAS_CHECK(call)                                       \
  do {                                                                \
    cublasStatus_t idem_st_ = (call);                                 \
    if (idem_st_ != CUBLAS_STATUS_SUCCESS) throw_cublas(#call, idem_st_); \
  } while (0)

// One handle per device, created on first use and kept for the life of the process. Handles
// are deliberately never destroyed: at static-destruction time the CUDA context may already
// be gone, and cublasDestroy would then fail or crash.
//
// Each handle gets a fixed workspace from our allocator, so cuBLAS never allocates inside a
// call (a CUDA graph capture must not see a cudaMalloc).
constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what cuBLAS recommends for Hopper

cublasHandle_t handle_for(int device) {
  static std::mutex mu;
  static std::vector<cublasHandle_t> handles;  // indexed by device; never destroyed (above)
  std::lock_guard<std::mutex> lock(mu);
  if (device >= static_cast<int>(handles.size())) handles.resize(device + 1, nullptr);
  if (!handles[device]) {
    cublasHandle_t h = nullptr;
    IDEM_CUBLAS_CHECK(api().cublasCreate(&h));
    IDEM_CUBLAS_CHECK(api().cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    IDEM_CUBLAS_CHECK(api().cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    void* ws = alloc(kWorkspaceBytes, device);  // owned by the handle for the process lifetime
    IDEM_CUBLAS_CHECK(api().cublasSetWorkspace(h, ws, kWorkspaceBytes));
    handles[device] = h;
  }
  return handles[device];
}

}  // namespace

void matmul_cublas(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p) {
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  IDEM_CHECK(p.M <= INT_MAX && p.N <= INT_MAX && p.K <= INT_MAX && p.batch <= INT_MAX, "matmul",
             "extents M=", p.M, " N=", p.N, " K=", p.K, " batch=", p.batch, " on ",
             c.device().str(), " exceed cuBLAS's 32-bit range");
  const int device = c.device().index;
  set_device(device);
  cublasHandle_t h = handle_for(device);
  IDEM_CUBLAS_CHECK(api().cublasSetStream(h, current_stream()));

  const int M = static_cast<int>(p.M), N = static_cast<int>(p.N), K = static_cast<int>(p.K);
  // Column-major view: first operand is B (N x K after op), second is A (K x M after op).
  const cublasOperation_t op_b = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Leading dims are the row lengths of the stored row-major matrices; cuBLAS wants >= 1.
  const int ldb = std::max(1, p.trans_b ? K : N);
  const int lda = std::max(1, p.trans_a ? M : K);
  const int ldc = std::max(1, N);
  const float alpha = static_cast<float>(p.alpha), beta = static_cast<float>(p.beta);
  const float* A = a.data<float>();
  const float* B = b.data<float>();
  float* C = c.data<float>();

  if (p.batch == 1) {
    IDEM_CUBLAS_CHECK(
        api().cublasSgemm(h, op_b, op_a, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
    count_gpu_ops();  // one cuBLAS call; it may launch more than one kernel inside
  } else {
    // A batch stride of 0 shares one matrix across the batch; cuBLAS accepts that.
    IDEM_CUBLAS_CHECK(api().cublasSgemmStridedBatched(h, op_b, op_a, N, M, K, &alpha, B, ldb,
                                                p.stride_b, A, lda, p.stride_a, &beta, C, ldc,
                                                p.stride_c, static_cast<int>(p.batch)));
    count_gpu_ops();
  }
}

}  // namespace idem::cuda
