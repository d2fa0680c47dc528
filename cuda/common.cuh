// Shared helpers for the CUDA backend: checked calls, launch checks, the current stream.
// Every CUDA call is checked; every launch is followed by IDEM_LAUNCH_CHECK(op). Setting the
// environment variable IDEM_CUDA_SYNC=1 synchronizes after each launch so an asynchronous
// fault is reported at the launch that caused it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "core/tensor.h"

namespace idem::cuda {

// Throws idem::Error "[op] CUDA error cudaErrorX (message) at file:line".
[[noreturn]] void throw_cuda_error(const char* op, cudaError_t err, const char* file, int line);
// Checks cudaGetLastError() and, in sync-debug mode, synchronizes and checks again.
void launch_check(const char* op, const char* file, int line);
// The stream all idem kernels are issued on (per device; default: the legacy stream 0 until
// set_current_stream is called).
cudaStream_t current_stream();
void set_current_stream(cudaStream_t s);
// Makes `device` current for the calling thread (cheap when it already is).
void set_device(int device);

// Grid size for n elements at `threads` per block, capped for grid-stride loops.
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535 * 8) {
  int64_t g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned>(g);
}

}  // namespace idem::cuda

#define IDEM_CUDA_CHECK(op, expr)                                                   \
  do {                                                                              \
    cudaError_t idem_err_ = (expr);                                                 \
    if (idem_err_ != cudaSuccess)                                                   \
      ::idem::cuda::throw_cuda_error(op, idem_err_, __FILE__, __LINE__);            \
  } while (0)

#define IDEM_LAUNCH_CHECK(op) ::idem::cuda::launch_check(op, __FILE__, __LINE__)
