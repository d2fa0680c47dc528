// Shared helpers for the CUDA backend: checked calls, launch checks, launch accounting, the
// current stream.
// Every CUDA call is checked; every `<<<...>>>` launch statement is followed directly by exactly
// one IDEM_LAUNCH_CHECK(op) (a kernel in each branch of an if/else gets its own check), because
// the check is also what counts the launch in launch_count() (core/kernels/runtime.h). A helper
// that launches for its caller (launch_grid_stride in cuda/device_utils.cuh) checks with
// IDEM_LAUNCH_CHECK_AT(site), which reports the caller's op, file and line. Setting
// the environment variable IDEM_CUDA_SYNC=1 (an on/off switch: 1|true|on, core/env.h; a value
// outside 1|true|on|0|false|off throws at the first launch check) synchronizes after each launch
// so an asynchronous fault is reported at the launch that caused it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "core/tensor.h"

namespace idem::cuda {

// Throws idem::Error "[op] CUDA error cudaErrorX (message) at file:line".
[[noreturn]] void throw_cuda_error(const char* op, cudaError_t err, const char* file, int line);
// Counts one launch (launch_count()), checks cudaGetLastError() and, in sync-debug mode,
// synchronizes and checks again.
void launch_check(const char* op, const char* file, int line);
// Adds n to launch_count() for GPU work issued without a launch check: one per cuBLAS, cuDNN
// or CUB call (whatever it launches inside) and one per async copy or memset. Call it right
// after the call succeeded.
void count_gpu_ops(uint64_t n = 1) noexcept;
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
// The same for a launch made on behalf of the code at `site` (a LaunchSite: op, file, line).
#define IDEM_LAUNCH_CHECK_AT(site) ::idem::cuda::launch_check((site).op, (site).file, (site).line)
