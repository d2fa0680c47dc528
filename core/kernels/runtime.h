// Kernel contract: the CUDA runtime services that core/ needs (memory, copies, devices).
// Implemented in cuda/runtime.cu; cuda/no_cuda.cpp provides stubs that throw a clear
// idem::Error when the library was built without CUDA (they never return).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace idem::cuda {

// True when idem was built with CUDA support (IDEM_CUDA=ON).
bool compiled();
// True when compiled() and at least one usable GPU is present. Never throws.
bool available();
// Number of visible GPUs (0 when unavailable). Never throws.
int device_count();

// Device memory from the caching allocator.
// requires: 0 <= device < device_count(); ensures: 256-byte aligned, uninitialised.
void* alloc(size_t nbytes, int device);
// Returns memory to the cache. Never throws (called from destructors).
void release(void* ptr, size_t nbytes, int device) noexcept;

// Copies between host and device memory on the current stream, then waits for it
// (kind: 0 host->device, 1 device->host, 2 device->device).
void memcpy(void* dst, const void* src, size_t nbytes, int kind, int device);

// Waits for all work on `device`.
void synchronize(int device);

// ---- device queries ----
struct DeviceProperties {
  std::string name;
  int sm_count = 0;
  size_t total_memory = 0;  // bytes
  size_t l2_cache_bytes = 0;
  int cc_major = 0, cc_minor = 0;  // compute capability
  int driver_version = 0;          // as cudaDriverGetVersion: 13000 = 13.0
  int runtime_version = 0;         // as cudaRuntimeGetVersion
};
// requires: 0 <= device < device_count(); throws idem::Error otherwise.
DeviceProperties device_properties(int device);
// One line per visible GPU ("cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.2 GiB, driver
// 13.0, runtime 13.0)"), or why CUDA is unavailable. Never throws.
std::string device_summary();

// ---- the caching allocator ----
// Counters of one device's caching allocator. Byte counts are of rounded (size-class) blocks.
struct AllocatorStats {
  size_t bytes_in_use = 0;       // handed out by alloc() and not yet released
  size_t peak_bytes_in_use = 0;  // high-water mark of bytes_in_use since start-up
  size_t bytes_cached = 0;       // held in free lists, ready for reuse
  uint64_t num_alloc = 0;        // alloc() calls (nbytes > 0)
  uint64_t num_cache_hits = 0;   // alloc() calls served from the free lists
  uint64_t num_cuda_malloc = 0;  // cudaMalloc calls
  uint64_t num_cuda_free = 0;    // cudaFree calls
};
// All zero when CUDA is unavailable or the device index is out of range. Never throws.
AllocatorStats allocator_stats(int device);
// Returns every cached (free) block of `device` to the driver; blocks in use are untouched.
// Waits for the device first so no queued kernel still reads a freed block.
void empty_cache(int device);
// Debug switch: fill every allocation with 0xFF bytes (NaN for f32) before returning it, so a
// kernel that leaves an output element unwritten fails parity. Also on when the environment
// variable IDEM_POISON_ALLOC=1 is set at start-up.
void set_poison_allocations(bool on);
bool poison_allocations();

}  // namespace idem::cuda
