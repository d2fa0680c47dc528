// The caching device allocator behind cuda::alloc / cuda::release.
//
// Why: cudaMalloc and cudaFree synchronize the device and cost tens of microseconds; a training
// or adaptation step allocates the same sizes every iteration, so after the first iteration every
// request must be served from a free list (DESIGN 1.4: no cudaMalloc/cudaFree in steady state).
//
// How: one cache per device; each holds free lists keyed by (stream, size class). A block
// released by a tensor goes back to the list of the stream it was allocated on, and is handed out
// again only to a request on that same stream. Work on one stream runs in order, so a kernel that
// later writes the reused block is queued after every kernel that read the old tensor: no events
// are needed. (Handing a block to another stream would need an event per block; no caller does.)
// Blocks are never split or merged: exact size classes keep the bookkeeping to two maps.
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/kernels/runtime.h"
#include "cuda/allocator.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace detail {

size_t size_class(size_t nbytes) {
  constexpr size_t kMin = 512, kSmall = 4096, kMaxStep = size_t(2) << 20;
  if (nbytes <= kMin) return kMin;
  size_t n = (nbytes + kMin - 1) / kMin * kMin;
  if (n <= kSmall) return n;
  // Highest power of two <= n; four classes per octave.
  size_t p = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(n)));
  size_t step = p / 4;
  if (step > kMaxStep) step = kMaxStep;
  return (n + step - 1) / step * step;
}

}  // namespace detail

namespace {

constexpr int kMaxDevices = 64;

struct Block {
  size_t size = 0;  // the size class actually allocated
  cudaStream_t stream = nullptr;
};

struct DeviceCache {
  std::mutex mutex;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<void*>> free_lists;
  std::unordered_map<void*, Block> in_use;
  AllocatorStats stats;
};

class CachingAllocator {
 public:
  DeviceCache& cache(int device) { return caches_[static_cast<size_t>(device)]; }

 private:
  std::array<DeviceCache, kMaxDevices> caches_;
};

// Leaked on purpose: tensors held in static storage may be released after static destructors
// have run, and their release must still find a live allocator. The driver reclaims device
// memory at process exit.
CachingAllocator& allocator() {
  static CachingAllocator* const inst = std::make_unique<CachingAllocator>().release();
  return *inst;
}

// Atomic: set_poison_allocations may run while other threads allocate.
std::atomic<bool>& poison_flag() {
  static std::atomic<bool> on = [] {
    const char* env = std::getenv("IDEM_POISON_ALLOC");
    return env && std::strcmp(env, "1") == 0;
  }();
  return on;
}

// True when `s` is capturing a CUDA graph. Never leaves a sticky error behind.
bool stream_capturing(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  cudaError_t err = cudaStreamIsCapturing(s, &st);
  if (err != cudaSuccess) {
    // Querying the legacy stream while another stream captures in global mode is itself an
    // error (cudaErrorStreamCaptureImplicit): that means a capture is in progress.
    (void)cudaGetLastError();
    return err == cudaErrorStreamCaptureImplicit;
  }
  return st == cudaStreamCaptureStatusActive;
}

// Frees every cached block of `c`. Caller holds c.mutex and has synchronized the device.
void free_cached_locked(DeviceCache& c) {
  for (auto& kv : c.free_lists) {
    for (void* p : kv.second) {
      cudaFree(p);  // errors ignored: the block is gone either way, and this runs on OOM paths
      c.stats.num_cuda_free += 1;
      c.stats.bytes_cached -= kv.first.second;
    }
  }
  c.free_lists.clear();
  (void)cudaGetLastError();
}

}  // namespace

void set_poison_allocations(bool on) {
  poison_flag() = on;
}
bool poison_allocations() {
  return poison_flag();
}

void* alloc(size_t nbytes, int device) {
  if (nbytes == 0) return nullptr;
  detail::require_device(device, "cuda alloc");
  if (device >= kMaxDevices)
    fail("cuda alloc", "device cuda:", device, " is beyond the ", kMaxDevices,
         " devices the allocator supports");
  set_device(device);
  cudaStream_t stream = current_stream();
  const size_t size = detail::size_class(nbytes);
  DeviceCache& c = allocator().cache(device);

  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.num_alloc += 1;
    auto it = c.free_lists.find({stream, size});
    if (it != c.free_lists.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
      c.stats.bytes_cached -= size;
      c.stats.num_cache_hits += 1;
    } else {
      // Under CUDA-graph capture cudaMalloc is illegal (and would not be replayed): a captured
      // step must find every block it needs in the cache, i.e. the step ran once eagerly on the
      // same stream before the capture. The graph work builds on this rule.
      if (stream_capturing(stream))
        fail("cuda alloc", "no cached block of ", size, " bytes (for ", nbytes,
             " requested) on cuda:", device,
             " while the stream is capturing a CUDA graph; allocations inside a capture are "
             "served from the cache only: run the step once on the capture stream before "
             "capturing");
      cudaError_t err = cudaMalloc(&ptr, size);
      if (err == cudaErrorMemoryAllocation) {
        // Give the cached blocks back to the driver and try once more.
        (void)cudaGetLastError();
        cudaDeviceSynchronize();
        free_cached_locked(c);
        err = cudaMalloc(&ptr, size);
      }
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        fail("cuda alloc", "cudaMalloc of ", size, " bytes (for ", nbytes,
             " requested) on cuda:", device, " failed: ", cudaGetErrorName(err), " (",
             cudaGetErrorString(err), "); in use ", c.stats.bytes_in_use, " bytes, cached ",
             c.stats.bytes_cached, " bytes");
      }
      c.stats.num_cuda_malloc += 1;
    }
    c.in_use.emplace(ptr, Block{size, stream});
    c.stats.bytes_in_use += size;
    if (c.stats.bytes_in_use > c.stats.peak_bytes_in_use)
      c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
  }
  if (poison_flag()) {
    // 0xFF bytes: NaN as f32/f64, -1 as signed integers, 255 as u8.
    cudaError_t err = cudaMemsetAsync(ptr, 0xFF, size, stream);
    if (err != cudaSuccess) {
      release(ptr, nbytes, device);
      throw_cuda_error("cuda alloc (poison)", err, __FILE__, __LINE__);
    }
  }
  return ptr;
}

void release(void* ptr, size_t /*nbytes*/, int device) noexcept {
  if (!ptr || device < 0 || device >= kMaxDevices) return;
  try {
    DeviceCache& c = allocator().cache(device);
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.in_use.find(ptr);
    if (it == c.in_use.end()) return;  // not ours (a bug elsewhere); never free twice
    const Block b = it->second;
    c.in_use.erase(it);
    c.free_lists[{b.stream, b.size}].push_back(ptr);
    c.stats.bytes_in_use -= b.size;
    c.stats.bytes_cached += b.size;
  } catch (...) {
    // Bookkeeping failed (out of host memory): leak the block rather than throw.
  }
}

AllocatorStats allocator_stats(int device) {
  if (device < 0 || device >= kMaxDevices) return {};
  DeviceCache& c = allocator().cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void empty_cache(int device) {
  detail::require_device(device, "cuda empty_cache");
  if (device >= kMaxDevices) return;
  set_device(device);
  // A cached block may still be read by queued kernels of the tensor that released it.
  IDEM_CUDA_CHECK("cuda empty_cache", cudaDeviceSynchronize());
  DeviceCache& c = allocator().cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  free_cached_locked(c);
}

}  // namespace idem::cuda
