// The CPU caching allocator (core/cpu_allocator.h): big blocks are reused, small ones are not
// cached, the limit holds, and empty_cache gives everything back.
#include "core/cpu_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

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

TEST(CpuAllocator, SmallBlocksAreNotCached) {
  cpu_alloc::empty_cache();
  void* p = cpu_alloc::allocate(1000);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % cpu_alloc::kAlign, 0u);
  cpu_alloc::release(p, 1000);
  EXPECT_EQ(cpu_alloc::cached_bytes(), 0u);
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

}  // namespace
}  // namespace idem
