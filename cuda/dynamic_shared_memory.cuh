// How much dynamic shared memory one block of a kernel may have on a device, raising the
// kernel's limit past the default 48 KB when asked: shared by every kernel that sizes its
// shared memory at run time (the fused MLP kernels, the fused IT³ head).
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "cuda/common.cuh"

namespace idem::cuda {

// Dynamic shared memory for one kernel: whether `bytes` fit one block on `device` (the device's
// opt-in limit less the kernel's static shared memory), raising the kernel's attribute to allow
// them when they do (cudaFuncSetAttribute acts on the current device, which must be `device`).
// Per device, under a mutex (host threads may share a device; the check and the raise stay
// together): the limit and the static size, asked once, and the largest size allowed so far.
class DynamicSharedMemory {
 public:
  explicit DynamicSharedMemory(const void* kernel) : kernel_(kernel) {}
  bool fits(int device, size_t bytes, const char* op) {
    std::lock_guard<std::mutex> lock(mu_);
    Limits uncached;  // a device past the cache's 64 asks every time
    Limits& lim = limits(device, uncached, op);
    if (int64_t(bytes) + lim.static_bytes > lim.optin) return false;
    raise(lim, int(bytes), op);
    return true;
  }
  // The most dynamic shared memory one block can have on `device`, the kernel's limit raised to it.
  size_t largest(int device, const char* op) {
    std::lock_guard<std::mutex> lock(mu_);
    Limits uncached;
    Limits& lim = limits(device, uncached, op);
    raise(lim, lim.optin - lim.static_bytes, op);
    return size_t(lim.optin - lim.static_bytes);
  }

 private:
  struct Limits {
    int optin = -1;  // -1: not asked yet
    int static_bytes = 0;
    int raised = 0;
  };
  Limits& limits(int device, Limits& uncached, const char* op) {
    Limits& lim = device >= 0 && device < 64 ? cache_[size_t(device)] : uncached;
    if (lim.optin < 0) {
      int optin = 0;
      IDEM_CUDA_CHECK(op, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
      cudaFuncAttributes fa{};
      IDEM_CUDA_CHECK(op, cudaFuncGetAttributes(&fa, kernel_));
      lim.static_bytes = int(fa.sharedSizeBytes);
      lim.optin = optin;
    }
    return lim;
  }
  void raise(Limits& lim, int bytes, const char* op) {
    if (bytes <= lim.raised) return;
    IDEM_CUDA_CHECK(op, cudaFuncSetAttribute(kernel_, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    lim.raised = bytes;
  }
  const void* kernel_;
  std::mutex mu_;
  std::array<Limits, 64> cache_;
};

}  // namespace idem::cuda
