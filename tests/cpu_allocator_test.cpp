// The CPU caching allocator (core/cpu_allocator.h): big blocks are reused, small ones go to
// bounded free lists that cached_bytes does not count, mid-sized ones are not cached, the limit
// holds, and empty_cache gives everything back.
#include "core/cpu_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "core/tensor.h"

namespace idem {
namespace {

TEST(CpuAllocator, BigBlocksAreReusedAndAligned) {
  if (cpu_alloc::cache_limit() < (size_t(8) << 20)) GTEST_SKIP() << "cache off (IDEM_CPU_CACHE_MB or a sanitizer build)";
  cpu_alloc::empty_cache();
  const size_t n = size_t(3) << 20;
  void* a = cpu_alloc::allocate(n);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % cpu_alloc::kAlign, 0u);
  std::memset(a, 1, n);
  cpu_alloc::release(a, n);
  EXPECT_GE(cpu_alloc::cached_bytes(), n);
  void* b = cpu_alloc::allocate(n - 100);  // the same 4 KiB-rounded size class
  EXPECT_EQ(a, b) << "the freed block is handed out again";
  EXPECT_EQ(cpu_alloc::cached_bytes(), 0u);
  cpu_alloc::release(b, n - 100);
  cpu_alloc::empty_cache();
  EXPECT_EQ(cpu_alloc::cached_bytes(), 0u);
}

TEST(CpuAllocator, SmallBlocksAreReusedFromBoundedListsAndMidSizedOnesAreNotCached) {
  cpu_alloc::empty_cache();
  void* p = cpu_alloc::allocate(1000);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % cpu_alloc::kAlign, 0u);
  cpu_alloc::release(p, 1000);
  EXPECT_EQ(cpu_alloc::cached_bytes(), 0u) << "small blocks are not counted against the limit";
  void* mid = cpu_alloc::allocate(5000);  // between kSmallMax and kCachedMin: never cached
  ASSERT_NE(mid, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mid) % cpu_alloc::kAlign, 0u);
  cpu_alloc::release(mid, 5000);
  EXPECT_EQ(cpu_alloc::cached_bytes(), 0u);
  if (cpu_alloc::cache_limit() == 0) {  // a sanitizer build: the small lists are off too
    EXPECT_EQ(cpu_alloc::small_cached_blocks(), 0u);
    return;
  }
  EXPECT_EQ(cpu_alloc::small_cached_blocks(), 1u);
  void* q = cpu_alloc::allocate(970);  // the same 64-byte-rounded size (1024)
  EXPECT_EQ(q, p) << "the freed 1000-byte block is handed out again";
  EXPECT_EQ(cpu_alloc::small_cached_blocks(), 0u);
  cpu_alloc::release(q, 970);
  // Each size keeps at most kSmallPerSize blocks; the rest go back to the C library.
  std::vector<void*> many;
  for (size_t i = 0; i < 3 * cpu_alloc::kSmallPerSize; ++i) {
    many.push_back(cpu_alloc::allocate(4));
    ASSERT_NE(many.back(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(many.back()) % cpu_alloc::kAlign, 0u);
  }
  for (void* b : many) cpu_alloc::release(b, 4);
  EXPECT_EQ(cpu_alloc::small_cached_blocks(), 1 + cpu_alloc::kSmallPerSize);
  cpu_alloc::empty_cache();
  EXPECT_EQ(cpu_alloc::small_cached_blocks(), 0u);
}

TEST(CpuAllocator, TensorsReuseTheirBuffersAndTheCacheStaysUnderItsLimit) {
  cpu_alloc::empty_cache();
  for (int i = 0; i < 50; ++i) {
    Tensor t = empty({1024, 1024});  // 4 MiB
    t.data<float>()[0] = float(i);
  }
  EXPECT_LE(cpu_alloc::cached_bytes(), cpu_alloc::cache_limit());
  if (cpu_alloc::cache_limit() >= (size_t(4) << 20)) EXPECT_EQ(cpu_alloc::cached_bytes(), size_t(4) << 20);
  cpu_alloc::empty_cache();
}

TEST(CpuAllocator, ConcurrentAllocateAndReleaseKeepBlocksApart) {
  // Four threads take and give back blocks of a few sizes at once; each writes its own pattern
  // and checks it, so two threads handed the same block would see each other's bytes.
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &bad] {
      for (int i = 0; i < 200; ++i) {
        // Big (cached) sizes and small (free-list) sizes, taken and given back at once.
        const size_t n = i % 2 ? (size_t(64) << 10) * size_t(1 + (i + t) % 4) : size_t(8 + 100 * ((i + t) % 10));
        auto* p = static_cast<unsigned char*>(cpu_alloc::allocate(n));
        if (!p) {
          ++bad[size_t(t)];
          continue;
        }
        std::memset(p, t + 1, n);
        for (size_t k = 0; k < n; k += (n < 4096 ? 1 : 4096)) bad[size_t(t)] += p[k] != t + 1;
        cpu_alloc::release(p, n);
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(bad[size_t(t)], 0) << "thread " << t;
  EXPECT_LE(cpu_alloc::cached_bytes(), cpu_alloc::cache_limit());
  cpu_alloc::empty_cache();
}

}  // namespace
}  // namespace idem
