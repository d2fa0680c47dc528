// The CPU caching allocator (why and how: core/cpu_allocator.h).
#include "core/cpu_allocator.h"

#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace idem::cpu_alloc {

namespace {

constexpr size_t kPage = 4096;

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Under AddressSanitizer the cache is off by default: a reused block would hide a
// use-after-free from it.
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kDefaultMb = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr size_t kDefaultMb = 0;
#else
constexpr size_t kDefaultMb = 1024;
#endif
#else
constexpr size_t kDefaultMb = 1024;
#endif

size_t limit_from_env() {
  size_t mb = kDefaultMb;
  if (const char* env = std::getenv("IDEM_CPU_CACHE_MB"); env && *env) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    // An unreadable or absurd value keeps the default (this runs inside an allocation, where
    // throwing would be worse than ignoring a tuning knob).
    if (end && *end == '\0' && v <= (1ull << 24)) mb = size_t(v);
  }
  return mb << 20;
}

class BlockCache {
 public:
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= size;
    return p;
  }

  // Keeps p unless the cache is full; returns whether it did.
  bool keep(void* p, size_t size) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + size > limit_) return false;
    try {
      free_[size].push_back(p);
    } catch (...) {
      return false;  // no memory for the list entry: the caller frees the block
    }
    cached_ += size;
    return true;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_ = 0;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  size_t limit() const { return limit_; }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  const size_t limit_ = limit_from_env();
};

// Free lists of small blocks, one per 64-byte size (list k holds blocks of 64·(k+1) bytes).
class SmallCache {
 public:
  static constexpr size_t kSizes = kSmallMax / kAlign;

  void* take(size_t k) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (count_[k] == 0) return nullptr;
    return lists_[k][--count_[k]];
  }

  // Keeps p unless its list is full; returns whether it did.
  bool keep(void* p, size_t k) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (count_[k] == kSmallPerSize) return false;
    lists_[k][count_[k]++] = p;
    return true;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t k = 0; k < kSizes; ++k) {
      for (size_t i = 0; i < count_[k]; ++i) std::free(lists_[k][i]);
      count_[k] = 0;
    }
  }

  size_t blocks() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t n = 0;
    for (size_t c : count_) n += c;
    return n;
  }

 private:
  std::mutex mutex_;
  void* lists_[kSizes][kSmallPerSize] = {};  // fixed arrays: keep() never allocates
  size_t count_[kSizes] = {};
};

// Never destroyed: tensors held by other static objects may be freed during static destruction,
// after a destroyed cache could no longer take them. The blocks it holds stay reachable from
// this pointer, so leak checkers do not report them.
BlockCache& cache() {
  static BlockCache* c = new BlockCache();  // intentionally never deleted (see above)
  return *c;
}

// Same lifetime rule as cache().
SmallCache& small_cache() {
  static SmallCache* c = new SmallCache();  // intentionally never deleted (see cache())
  return *c;
}

// The small caches are off with the big one (a sanitizer build, IDEM_CPU_CACHE_MB=0).
bool small_on() {
  static const bool on = cache().limit() > 0;
  return on;
}

}  // namespace

void* allocate(size_t nbytes) {
  if (nbytes <= kSmallMax && small_on()) {
    const size_t size = round_up(nbytes, kAlign);
    if (void* p = small_cache().take(size / kAlign - 1)) return p;
    return std::aligned_alloc(kAlign, size);
  }
  if (nbytes < kCachedMin) return std::aligned_alloc(kAlign, round_up(nbytes, kAlign));
  const size_t size = round_up(nbytes, kPage);
  if (void* p = cache().take(size)) return p;
  if (void* p = std::aligned_alloc(kPage, size)) return p;
  // Out of memory while the cache may hold blocks of other sizes: give them back, try once more.
  cache().clear();
  return std::aligned_alloc(kPage, size);
}

void release(void* p, size_t nbytes) noexcept {
  if (!p) return;
  if (nbytes <= kSmallMax && small_on()) {
    if (!small_cache().keep(p, round_up(nbytes, kAlign) / kAlign - 1)) std::free(p);
    return;
  }
  if (nbytes < kCachedMin || !cache().keep(p, round_up(nbytes, kPage))) std::free(p);
}

size_t cached_bytes() { return cache().cached(); }
size_t cache_limit() { return cache().limit(); }
size_t small_cached_blocks() { return small_cache().blocks(); }
void empty_cache() {
  cache().clear();
  small_cache().clear();
}

}  // namespace idem::cpu_alloc
