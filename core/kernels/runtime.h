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

// Device memory from the caching allocator (rules: cuda/allocator.h).
// requires: 0 <= device < device_count(); ensures: 256-byte aligned, uninitialised.
// Throws idem::Error when the device is out of memory even after the cache was emptied (the
// message gives the size, the allocator's and the device's figures and a hint; the process
// can carry on), or when a request inside a CUDA graph capture finds no cached block.
void* alloc(size_t nbytes, int device);
// Returns memory to the cache. Never throws (called from destructors).
void release(void* ptr, size_t nbytes, int device) noexcept;

// Copies between host and device memory on the current stream (kind: 0 host->device,
// 1 device->host, 2 device->device). Copies that touch host memory wait for the copy (so they
// throw idem::Error during a CUDA graph capture); device->device copies do not wait.
void memcpy(void* dst, const void* src, size_t nbytes, int kind, int device);

// Waits for all work on `device`.
// requires: no CUDA graph capture under way on `device` (core/kernels/cuda_graph.h); a wait
// inside a capture throws idem::Error instead of invalidating the capture.
void synchronize(int device);

// ---- launch accounting ----
// GPU operations idem has issued since start-up, over all devices and threads: each launch of a
// hand-written kernel (exact: every launch site is followed by one launch check, which counts),
// each cuBLAS, cuDNN or CUB call (one each; the library may launch more kernels inside it), each
// async copy or memset of the runtime and the allocator (host<->device copies included), and
// each CUDA graph replay (one; the kernels inside it are Graph::num_nodes()). Work recorded
// during a graph capture counts as issued, so the count over a capture equals the graph's
// num_nodes() when it holds only hand-written kernels, copies and memsets.
// A relaxed atomic counter: read it before and after the work; the difference is that work's
// cost in launches. Always 0 when idem was built without CUDA. Never throws.
uint64_t launch_count();

// The floor of one launch, for the host-time benchmarks (bench/host_overhead_bench.cpp):
// `n` launches of an empty one-thread kernel on `device`'s current stream, each made as an op
// makes it (set_device, current_stream, the launch, the launch check), or with `bare` the
// launch and its check alone (device and stream looked up once). Does not wait.
// requires: 0 <= device < device_count(), n >= 0.
void launch_noop(int device, int n, bool bare = false);

// ---- timing events (core/profiler.h) ----
// Records a CUDA event on `device`'s current stream; returns it as an opaque handle.
void* event_record(int device);
// Microseconds between two recorded events (waits for the later one).
double event_elapsed_us(void* start, void* end);
// Destroys an event from event_record. Never throws.
void event_destroy(void* event) noexcept;

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
// The allocator's rules (per-stream caches, CUDA graph pools, out-of-memory) are described at
// the top of cuda/allocator.h.
struct AllocatorStats {
  size_t bytes_in_use = 0;          // handed out by alloc() and not yet released
  size_t peak_bytes_in_use = 0;     // high-water mark of bytes_in_use since start-up
  size_t bytes_cached = 0;          // held in the free lists, ready for reuse
  size_t bytes_in_graph_pools = 0;  // free blocks kept by live CUDA graphs (not reusable)
  uint64_t num_alloc = 0;           // alloc() calls (nbytes > 0)
  uint64_t num_cache_hits = 0;      // alloc() calls served from the free lists or a graph pool
  uint64_t num_cuda_malloc = 0;     // successful cudaMalloc calls
  uint64_t num_cuda_free = 0;       // cudaFree calls
  uint64_t num_oom_retries = 0;     // cudaMalloc failures answered by emptying the cache
  uint64_t num_graph_pools = 0;     // CUDA graphs alive on this device (private pools)
};
// All zero when CUDA is unavailable or the device index is out of range. Never throws.
AllocatorStats allocator_stats(int device);
// Returns every cached (free) block of `device` to the driver; blocks in use and blocks kept by
// live CUDA graphs are untouched. Waits for the device first so no queued kernel still reads a
// freed block. requires: no CUDA graph capture under way on `device`.
void empty_cache(int device);
// Debug switch: fill every allocation with 0xFF bytes (NaN for f32) before returning it, so a
// kernel that leaves an output element unwritten fails parity. Without a set_poison_allocations
// call, the on/off switch IDEM_POISON_ALLOC (1|true|on, 0|false|off; core/env.h) decides, read at
// the first allocation or poison_allocations() and kept; another value throws there.
// set_poison_allocations overrides the variable, a bad value included.
void set_poison_allocations(bool on);
bool poison_allocations();

}  // namespace idem::cuda
