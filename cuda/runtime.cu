// The CUDA runtime services of core/kernels/runtime.h and cuda/common.cuh: device discovery,
// checked calls, launch checks and launch accounting, the current stream, copies and device
// queries. The caching allocator lives in cuda/allocator.cu, CUDA graphs in cuda/cuda_graph.cu.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iomanip>
#include <sstream>
#include <string>

#include "core/env.h"
#include "core/kernels/runtime.h"
#include "cuda/allocator.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

constexpr int kMaxStreams = 64;

// The result of the first cudaGetDeviceCount, kept with its error so that every later
// "CUDA is unusable" message can name the cause (no driver, no device, driver too old...).
struct Discovery {
  int count = 0;
  cudaError_t err = cudaSuccess;
};

const Discovery& discovery() {
  static const Discovery d = [] {
    Discovery r;
    int n = 0;
    r.err = cudaGetDeviceCount(&n);
    if (r.err != cudaSuccess) {
      (void)cudaGetLastError();
      n = 0;
    }
    r.count = n;
    return r;
  }();
  return d;
}

// IDEM_CUDA_SYNC, an on/off switch (core/env.h), read at the first launch check and kept. A bad
// value throws there, as an idem::Error that names the variable, and is not kept: a function
// static whose initialiser throws is initialised again by the next call.
bool sync_debug() {
  static const bool on = env_flag("IDEM_CUDA_SYNC");
  return on;
}

// One current stream per device, process-wide (not per thread): a CUDA-graph capture sets it
// once and every op issued from any thread then lands on the capture stream.
std::atomic<cudaStream_t>& stream_slot(int device) {
  static std::atomic<cudaStream_t> slots[kMaxStreams] = {};
  return slots[(device >= 0 && device < kMaxStreams) ? device : 0];
}

// Process-wide on purpose: launch_count() answers "how many GPU operations did this work
// cost", whichever thread or device issued them. Relaxed: a tally, not a synchronization.
std::atomic<uint64_t>& launch_counter() {
  static std::atomic<uint64_t> n{0};
  return n;
}

const char* base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

std::string version_str(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace

namespace detail {

void require_device(int device, const char* op) {
  const Discovery& d = discovery();
  if (d.count == 0) {
    if (d.err != cudaSuccess)
      fail(op, "cuda:", device, " was requested but CUDA is unusable: ", cudaGetErrorName(d.err),
           " (", cudaGetErrorString(d.err), ")");
    fail(op, "cuda:", device, " was requested but no CUDA device is visible");
  }
  if (device < 0 || device >= d.count)
    fail(op, "device cuda:", device, " was requested but only ", d.count,
         " CUDA device(s) are visible (cuda:0", d.count > 1 ? " .. cuda:" : "",
         d.count > 1 ? std::to_string(d.count - 1) : std::string(), ")");
}

}  // namespace detail

// ---- common.cuh ----

void throw_cuda_error(const char* op, cudaError_t err, const char* file, int line) {
  (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  fail(op, "CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") at ",
       base_name(file), ":", line);
}

void count_gpu_ops(uint64_t n) noexcept {
  launch_counter().fetch_add(n, std::memory_order_relaxed);
}

void launch_check(const char* op, const char* file, int line) {
  launch_counter().fetch_add(1, std::memory_order_relaxed);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(op, err, file, line);
  if (!sync_debug()) return;
  cudaStream_t s = current_stream();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &st) != cudaSuccess) {
    (void)cudaGetLastError();
    return;  // a capture elsewhere forbids synchronizing this stream
  }
  if (st != cudaStreamCaptureStatusNone) return;  // cannot synchronize inside a capture
  err = cudaStreamSynchronize(s);
  if (err != cudaSuccess) throw_cuda_error(op, err, file, line);
}

cudaStream_t current_stream() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    dev = 0;
  }
  return stream_slot(dev).load(std::memory_order_relaxed);
}

void set_current_stream(cudaStream_t s) {
  int dev = 0;
  IDEM_CUDA_CHECK("cuda set_current_stream", cudaGetDevice(&dev));
  IDEM_CHECK(dev < kMaxStreams, "cuda set_current_stream", "device cuda:", dev, " is beyond the ",
             kMaxStreams, " devices idem supports");
  stream_slot(dev).store(s, std::memory_order_relaxed);
}

void set_device(int device) {
  int cur = -1;
  IDEM_CUDA_CHECK("cuda set_device", cudaGetDevice(&cur));
  if (cur != device) IDEM_CUDA_CHECK("cuda set_device", cudaSetDevice(device));
}

// ---- runtime.h ----

bool compiled() {
  return true;
}

uint64_t launch_count() {
  return launch_counter().load(std::memory_order_relaxed);
}

namespace {
__global__ void noop_kernel() {}
}  // namespace

void launch_noop(int device, int n, bool bare) {
  detail::require_device(device, "cuda launch_noop");
  if (bare) {
    set_device(device);
    const cudaStream_t s = current_stream();
    for (int i = 0; i < n; ++i) {
      noop_kernel<<<1, 1, 0, s>>>();
      IDEM_LAUNCH_CHECK("cuda launch_noop");
    }
    return;
  }
  for (int i = 0; i < n; ++i) {
    set_device(device);
    noop_kernel<<<1, 1, 0, current_stream()>>>();
    IDEM_LAUNCH_CHECK("cuda launch_noop");
  }
}

void* event_record(int device) {
  set_device(device);
  cudaEvent_t e = nullptr;
  IDEM_CUDA_CHECK("cuda event_record", cudaEventCreate(&e));
  IDEM_CUDA_CHECK("cuda event_record", cudaEventRecord(e, current_stream()));
  return e;
}

double event_elapsed_us(void* start, void* end) {
  IDEM_CUDA_CHECK("cuda event_elapsed_us", cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  float ms = 0;
  IDEM_CUDA_CHECK("cuda event_elapsed_us",
                  cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return double(ms) * 1000.0;
}

void event_destroy(void* event) noexcept {
  if (event) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

bool available() {
  try {
    return discovery().count > 0;
  } catch (...) {
    return false;
  }
}

int device_count() {
  try {
    return discovery().count;
  } catch (...) {
    return 0;
  }
}

void memcpy(void* dst, const void* src, size_t nbytes, int kind, int device) {
  if (nbytes == 0) return;
  detail::require_device(device, "cuda memcpy");
  set_device(device);
  IDEM_CHECK(kind >= 0 && kind <= 2, "cuda memcpy", "unknown copy kind ", kind);
  const cudaMemcpyKind k = kind == 0   ? cudaMemcpyHostToDevice
                           : kind == 1 ? cudaMemcpyDeviceToHost
                                       : cudaMemcpyDeviceToDevice;
  if (k != cudaMemcpyDeviceToDevice && detail::capture_active(device))
    fail("cuda memcpy", kind == 0 ? "a host->device" : "a device->host", " copy of ", nbytes,
         " bytes on cuda:", device,
         " during a CUDA graph capture: copies that touch host memory wait for the GPU, which a "
         "capture forbids (Tensor::item, to_vector, to(cpu), printing and tensors built from "
         "host data all copy); copy new inputs into the graph's input tensors before replay() "
         "and read its outputs after it");
  cudaStream_t s = current_stream();
  IDEM_CUDA_CHECK("cuda memcpy", cudaMemcpyAsync(dst, src, nbytes, k, s));
  count_gpu_ops();
  // Device-to-device copies are ordered with the kernels on the same stream, so the host need
  // not wait (a wait here would also break CUDA-graph capture of a step that copies, such as
  // an IT³ reset or BatchNorm's counter). Copies that touch host memory wait, because the
  // caller may read or free the host buffer as soon as we return.
  if (k != cudaMemcpyDeviceToDevice) IDEM_CUDA_CHECK("cuda memcpy", cudaStreamSynchronize(s));
}

void synchronize(int device) {
  detail::require_device(device, "cuda synchronize");
  IDEM_CHECK(!detail::capture_active(device), "cuda synchronize",
             "waiting for cuda:", device,
             " during a CUDA graph capture (a host synchronization is illegal inside a capture; "
             "synchronize after replay() instead)");
  set_device(device);
  IDEM_CUDA_CHECK("cuda synchronize", cudaDeviceSynchronize());
}

DeviceProperties device_properties(int device) {
  detail::require_device(device, "cuda device_properties");
  cudaDeviceProp prop;
  IDEM_CUDA_CHECK("cuda device_properties", cudaGetDeviceProperties(&prop, device));
  DeviceProperties p;
  p.name = prop.name;
  p.sm_count = prop.multiProcessorCount;
  p.total_memory = prop.totalGlobalMem;
  p.l2_cache_bytes = static_cast<size_t>(prop.l2CacheSize);
  p.cc_major = prop.major;
  p.cc_minor = prop.minor;
  IDEM_CUDA_CHECK("cuda device_properties", cudaDriverGetVersion(&p.driver_version));
  IDEM_CUDA_CHECK("cuda device_properties", cudaRuntimeGetVersion(&p.runtime_version));
  return p;
}

std::string device_summary() {
  try {
    const Discovery& d = discovery();
    if (d.count == 0) {
      if (d.err != cudaSuccess)
        return std::string("CUDA unavailable: ") + cudaGetErrorName(d.err) + " (" +
               cudaGetErrorString(d.err) + ")";
      return "CUDA unavailable: no CUDA device is visible";
    }
    std::ostringstream os;
    for (int i = 0; i < d.count; ++i) {
      DeviceProperties p = device_properties(i);
      if (i) os << "\n";
      os << "cuda:" << i << " " << p.name << " (sm_" << p.cc_major << p.cc_minor << ", "
         << p.sm_count << " SMs, " << std::fixed << std::setprecision(1)
         << (static_cast<double>(p.total_memory) / (1 << 30)) << " GiB, driver "
         << version_str(p.driver_version) << ", runtime " << version_str(p.runtime_version) << ")";
    }
    return os.str();
  } catch (const std::exception& e) {
    return std::string("CUDA query failed: ") + e.what();
  }
}

}  // namespace idem::cuda
