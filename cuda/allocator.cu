// The caching device allocator behind cuda::alloc / cuda::release, and the private pools of
// CUDA graphs. Its rules (per-stream caches, steady state, out of memory, graph capture) are
// written out at the top of cuda/allocator.h.
//
// Why: cudaMalloc and cudaFree synchronize the device and cost tens of microseconds; a training
// or adaptation step allocates the same sizes every iteration, so after the first iteration every
// request must be served from a free list (no cudaMalloc/cudaFree in steady state:
// docs/design.md#cuda-rules).
//
// How: one cache per device; each holds free lists keyed by (stream, size class), the blocks in
// use, and the private pools of live CUDA graphs. Blocks are never split or merged: exact size
// classes keep the bookkeeping to a few maps.
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/env.h"
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
  size_t size = 0;                // the size class actually allocated
  cudaStream_t stream = nullptr;  // whose free list takes it back
  uint64_t pool = 0;              // the live graph pool that owns it; 0: the global cache
};

// A CUDA graph's private pool (allocator.h rule 4): its free blocks, by size class.
struct GraphPool {
  std::map<size_t, std::vector<void*>> free;
  cudaStream_t home = nullptr;  // whose free lists take the blocks when the pool is destroyed
};

struct DeviceCache {
  std::mutex mutex;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<void*>> free_lists;
  std::unordered_map<void*, Block> in_use;
  std::unordered_map<uint64_t, GraphPool> pools;
  uint64_t capturing = 0;  // the pool of the capture under way; 0 when none
  cudaStream_t capture_stream = nullptr;
  std::atomic<bool> capture_flag{false};  // capturing != 0, readable without the mutex
  AllocatorStats stats;
};

class CachingAllocator {
 public:
  DeviceCache& cache(int device) { return caches_[static_cast<size_t>(device)]; }
  uint64_t next_pool_id() { return next_pool_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::array<DeviceCache, kMaxDevices> caches_;
  std::atomic<uint64_t> next_pool_{1};  // pool ids are never reused, so a stale id finds nothing
};

// Leaked on purpose: tensors held in static storage may be released after static destructors
// have run, and their release must still find a live allocator. The driver reclaims device
// memory at process exit.
CachingAllocator& allocator() {
  static CachingAllocator* const inst = std::make_unique<CachingAllocator>().release();
  return *inst;
}

// IDEM_POISON_ALLOC (an on/off switch, core/env.h) unless set_poison_allocations came first,
// which overrides it, a bad value included. Atomic inside: set_poison_allocations may run while
// other threads allocate.
bool read_poison_env() { return env_flag("IDEM_POISON_ALLOC"); }
EnvSetting<bool>& poison_flag() {
  static EnvSetting<bool> on{read_poison_env};
  return on;
}

// "123456789 bytes (117.7 MiB)": exact for tests and scripts, readable for people.
std::string bytes_str(size_t n) {
  char buf[64];
  const double v = static_cast<double>(n);
  if (n >= (size_t(1) << 30))
    std::snprintf(buf, sizeof buf, " (%.2f GiB)", v / (1 << 30));
  else if (n >= (size_t(1) << 20))
    std::snprintf(buf, sizeof buf, " (%.1f MiB)", v / (1 << 20));
  else
    buf[0] = '\0';
  return std::to_string(n) + " bytes" + buf;
}

// Pops a block from `list` (nullptr when empty).
void* pop(std::vector<void*>& list) {
  if (list.empty()) return nullptr;
  void* p = list.back();
  list.pop_back();
  return p;
}

// Frees every block of the global free lists. Caller holds c.mutex and has synchronized the
// device. Graph pools are private (rule 4b) and stay.
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

// A request during a capture (rule 4a): the graph's pool, the capture stream's list, then any
// stream's list of the same class; never the driver.
void* take_during_capture_locked(DeviceCache& c, size_t size, size_t nbytes, int device) {
  GraphPool& pool = c.pools[c.capturing];
  auto pit = pool.free.find(size);
  if (pit != pool.free.end()) {
    if (void* p = pop(pit->second)) {
      c.stats.bytes_in_graph_pools -= size;
      return p;
    }
  }
  auto own = c.free_lists.find({c.capture_stream, size});
  if (own != c.free_lists.end()) {
    if (void* p = pop(own->second)) {
      c.stats.bytes_cached -= size;
      return p;
    }
  }
  for (auto& kv : c.free_lists) {
    if (kv.first.second != size) continue;
    if (void* p = pop(kv.second)) {
      c.stats.bytes_cached -= size;
      return p;
    }
  }
  fail("cuda alloc", "allocation of ", nbytes, " bytes (size class ", size, ") on cuda:", device,
       " during CUDA graph capture missed the cache; run the same work once on the capture "
       "stream before capturing (twice when the step's outputs stay alive between runs, as in "
       "y = step(): the capture needs blocks for the new outputs while the old ones are held; "
       "a capture never calls cudaMalloc)");
}

// cudaMalloc with the out-of-memory policy of rule 3. Caller holds c.mutex; no capture.
void* malloc_locked(DeviceCache& c, size_t size, size_t nbytes, int device) {
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, size);
  if (err == cudaErrorMemoryAllocation) {
    // Give the cached blocks back to the driver and try once more. The wait is needed because
    // a cached block may still be read by queued kernels of the tensor that released it.
    (void)cudaGetLastError();
    c.stats.num_oom_retries += 1;
    (void)cudaDeviceSynchronize();
    free_cached_locked(c);
    err = cudaMalloc(&ptr, size);
  }
  if (err == cudaSuccess) {
    c.stats.num_cuda_malloc += 1;
    return ptr;
  }
  (void)cudaGetLastError();  // not sticky: clear it so the next CUDA call starts clean
  size_t dev_free = 0, dev_total = 0;
  if (cudaMemGetInfo(&dev_free, &dev_total) != cudaSuccess) (void)cudaGetLastError();
  const AllocatorStats& s = c.stats;
  const std::string rounded =
      size == nbytes ? std::string() : " (rounded to " + std::to_string(size) + ")";
  if (err == cudaErrorMemoryAllocation)
    fail("cuda alloc", "out of memory on cuda:", device, ": cannot allocate ", bytes_str(nbytes),
         rounded, " even after emptying the cache; allocator: in use ", bytes_str(s.bytes_in_use),
         ", cached ", bytes_str(s.bytes_cached), ", peak in use ", bytes_str(s.peak_bytes_in_use),
         ", kept by CUDA graphs ", bytes_str(s.bytes_in_graph_pools), "; device: total ",
         bytes_str(dev_total), ", free ", bytes_str(dev_free),
         ". Hint: reduce the batch size, free tensors, or call idem::cuda::empty_cache");
  fail("cuda alloc", "cudaMalloc of ", bytes_str(size), " (for ", nbytes,
       " bytes requested) on cuda:", device, " failed: ", cudaGetErrorName(err), " (",
       cudaGetErrorString(err), "); in use ", bytes_str(s.bytes_in_use), ", cached ",
       bytes_str(s.bytes_cached), "; device: total ", bytes_str(dev_total), ", free ",
       bytes_str(dev_free));
}

}  // namespace

void set_poison_allocations(bool on) {
  poison_flag().set(on);
}
bool poison_allocations() {
  return poison_flag().get();
}

void* alloc(size_t nbytes, int device) {
  if (nbytes == 0) return nullptr;
  // Read before taking a block, so that a bad IDEM_POISON_ALLOC throws without leaking one.
  const bool poison = poison_flag().get();
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
    Block b{size, stream, 0};
    if (c.capturing != 0) {
      ptr = take_during_capture_locked(c, size, nbytes, device);
      c.stats.num_cache_hits += 1;
      b.stream = c.capture_stream;
      b.pool = c.capturing;
    } else {
      auto it = c.free_lists.find({stream, size});
      if (it != c.free_lists.end()) ptr = pop(it->second);
      if (ptr) {
        c.stats.bytes_cached -= size;
        c.stats.num_cache_hits += 1;
      } else {
        ptr = malloc_locked(c, size, nbytes, device);
      }
    }
    c.in_use.emplace(ptr, b);
    c.stats.bytes_in_use += size;
    if (c.stats.bytes_in_use > c.stats.peak_bytes_in_use)
      c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
  }
  if (poison) {
    // 0xFF bytes: NaN as f32/f64, -1 as signed integers, 255 as u8.
    cudaError_t err = cudaMemsetAsync(ptr, 0xFF, size, stream);
    if (err != cudaSuccess) {
      release(ptr, nbytes, device);
      throw_cuda_error("cuda alloc (poison)", err, __FILE__, __LINE__);
    }
    count_gpu_ops();
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
    c.stats.bytes_in_use -= b.size;
    // A block of a live graph's pool goes back to that pool; during a capture every released
    // block joins the capture's pool (allocator.h rule 4b): replays may still use it.
    uint64_t pool = b.pool;
    if (pool == 0 || c.pools.find(pool) == c.pools.end()) pool = c.capturing;
    if (pool != 0) {
      c.pools[pool].free[b.size].push_back(ptr);
      c.stats.bytes_in_graph_pools += b.size;
      return;
    }
    c.free_lists[{b.stream, b.size}].push_back(ptr);
    c.stats.bytes_cached += b.size;
  } catch (...) {
    // Bookkeeping failed (out of host memory): leak the block rather than throw.
  }
}

AllocatorStats allocator_stats(int device) {
  if (device < 0 || device >= kMaxDevices) return {};
  DeviceCache& c = allocator().cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  AllocatorStats s = c.stats;
  s.num_graph_pools = c.pools.size();
  return s;
}

void empty_cache(int device) {
  detail::require_device(device, "cuda empty_cache");
  if (device >= kMaxDevices) return;
  IDEM_CHECK(!detail::capture_active(device), "cuda empty_cache",
             "called during a CUDA graph capture on cuda:", device,
             " (it waits for the device and frees memory, both illegal inside a capture)");
  set_device(device);
  // A cached block may still be read by queued kernels of the tensor that released it.
  IDEM_CUDA_CHECK("cuda empty_cache", cudaDeviceSynchronize());
  DeviceCache& c = allocator().cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  free_cached_locked(c);
}

// ---- CUDA graph support ----

namespace detail {

bool capture_active(int device) noexcept {
  if (device < 0 || device >= kMaxDevices) return false;
  return allocator().cache(device).capture_flag.load(std::memory_order_acquire);
}

uint64_t begin_capture(int device, cudaStream_t capture_stream) {
  IDEM_CHECK(device >= 0 && device < kMaxDevices, "cuda graph capture", "device cuda:", device,
             " is beyond the ", kMaxDevices, " devices the allocator supports");
  DeviceCache& c = allocator().cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  IDEM_CHECK(c.capturing == 0, "cuda graph capture",
             "a capture is already under way on cuda:", device,
             "; captures on one device cannot nest or overlap");
  const uint64_t id = allocator().next_pool_id();
  c.pools[id].home = capture_stream;
  c.capturing = id;
  c.capture_stream = capture_stream;
  c.capture_flag.store(true, std::memory_order_release);
  return id;
}

void end_capture(int device, cudaStream_t home) noexcept {
  if (device < 0 || device >= kMaxDevices) return;
  DeviceCache& c = allocator().cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.pools.find(c.capturing);
  if (it != c.pools.end()) it->second.home = home;
  c.capturing = 0;
  c.capture_stream = nullptr;
  c.capture_flag.store(false, std::memory_order_release);
}

void destroy_pool(int device, uint64_t pool) noexcept {
  if (device < 0 || device >= kMaxDevices || pool == 0) return;
  try {
    DeviceCache& c = allocator().cache(device);
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.pools.find(pool);
    if (it == c.pools.end()) return;
    const cudaStream_t home = it->second.home;
    for (auto& kv : it->second.free) {
      std::vector<void*>& dst = c.free_lists[{home, kv.first}];
      for (void* p : kv.second) {
        dst.push_back(p);
        c.stats.bytes_in_graph_pools -= kv.first;
        c.stats.bytes_cached += kv.first;
      }
    }
    for (auto& kv : c.in_use) {
      if (kv.second.pool != pool) continue;
      kv.second.pool = 0;
      kv.second.stream = home;
    }
    c.pools.erase(it);
    if (c.capturing == pool) {  // a capture that failed: stop routing to the dead pool
      c.capturing = 0;
      c.capture_stream = nullptr;
      c.capture_flag.store(false, std::memory_order_release);
    }
  } catch (...) {
    // Out of host memory while moving lists: the blocks stay where they are (leaked).
  }
}

void retarget_stream(int device, cudaStream_t from, cudaStream_t to) noexcept {
  if (device < 0 || device >= kMaxDevices || from == to) return;
  try {
    DeviceCache& c = allocator().cache(device);
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto it = c.free_lists.begin(); it != c.free_lists.end();) {
      if (it->first.first != from) {
        ++it;
        continue;
      }
      std::vector<void*>& dst = c.free_lists[{to, it->first.second}];
      dst.insert(dst.end(), it->second.begin(), it->second.end());
      it = c.free_lists.erase(it);
    }
    for (auto& kv : c.in_use)
      if (kv.second.stream == from) kv.second.stream = to;
    for (auto& kv : c.pools)
      if (kv.second.home == from) kv.second.home = to;
  } catch (...) {
    // Out of host memory: blocks left under `from` are never handed out again (leaked).
  }
}

}  // namespace detail

}  // namespace idem::cuda
