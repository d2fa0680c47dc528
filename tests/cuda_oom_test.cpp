// GPU out of memory (cuda/allocator.h rule 3): a request the device cannot hold is an
// idem::Error with the size, the allocator's and the device's figures and a hint; the cache is
// emptied and the request retried once before giving up; afterwards the process carries on.
// GPU tests skip without a GPU.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

const Device kGpu = Device::cuda(0);
const Options kGpuF32{DType::f32, kGpu};

// A kernel and a read-back still work.
void expect_gpu_works() {
  Tensor a = full({1000}, 2.0, kGpuF32);
  Tensor b = add(a, a);
  EXPECT_EQ(b.to_vector<float>(), std::vector<float>(1000, 4.0f));
}

TEST(CudaOom, HugeAllocationIsAClearErrorAndTheProcessCarriesOn) {
  IDEM_REQUIRE_GPU();
  const size_t total = cuda::device_properties(0).total_memory;
  const int64_t n = static_cast<int64_t>(total);  // f32 elements: 4 x the device's memory
  const size_t nbytes = static_cast<size_t>(n) * 4;
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  try {
    Tensor t = empty({n}, kGpuF32);
    ADD_FAILURE() << "allocated " << nbytes << " bytes on a device of " << total;
  } catch (const Error& e) {
    const std::string m = e.what();
    std::printf("[oom] %s\n", m.c_str());
    for (const std::string& part :
         {std::string("[cuda alloc]"), std::string("out of memory on cuda:0"),
          std::to_string(nbytes) + " bytes", std::string("in use"), std::string("cached"),
          std::string("peak"), std::string("device: total "), std::string(", free "),
          std::string("reduce the batch size"), std::string("idem::cuda::empty_cache")})
      EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in: " << m;
  }
  const cuda::AllocatorStats s1 = cuda::allocator_stats(0);
  EXPECT_EQ(s1.num_oom_retries, s0.num_oom_retries + 1) << "the cache was emptied and retried";
  EXPECT_EQ(s1.bytes_cached, 0u) << "the retry emptied the cache";
  EXPECT_EQ(s1.bytes_in_use, s0.bytes_in_use);
  // The same through the raw allocator entry point, then normal work.
  testing::expect_error([&] { cuda::alloc(nbytes, 0); }, "cuda alloc", "out of memory");
  expect_gpu_works();
}

// Fills the whole device, which would starve GPU tests running beside it in other processes
// (ctest -j): runs only when IDEM_TEST_EXCLUSIVE_GPU=1 says this process has the GPU alone.
TEST(CudaOom, FillingTheDeviceThenReleasingRecovers) {
  IDEM_REQUIRE_GPU();
  const char* env = std::getenv("IDEM_TEST_EXCLUSIVE_GPU");
  if (!env || std::strcmp(env, "1") != 0)
    GTEST_SKIP() << "fills the GPU; set IDEM_TEST_EXCLUSIVE_GPU=1 when no other process uses it";
  cuda::empty_cache(0);
  const size_t total = cuda::device_properties(0).total_memory;
  const int64_t kBlock = int64_t(1) << 28;  // f32 elements: 1 GiB, an exact size class
  std::vector<Tensor> blocks;
  std::string message;
  const size_t limit = total / (size_t(1) << 30) + 8;
  for (size_t i = 0; i < limit && message.empty(); ++i) {
    try {
      blocks.push_back(empty({kBlock}, kGpuF32));
    } catch (const Error& e) {
      message = e.what();
    }
  }
  ASSERT_FALSE(message.empty()) << "no OOM after " << blocks.size() << " GiB";
  std::printf("[oom] filled %zu GiB of %.1f GiB, then: %s\n", blocks.size(),
              static_cast<double>(total) / (1 << 30), message.c_str());
  EXPECT_NE(message.find("out of memory"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(kBlock * 4) + " bytes"), std::string::npos) << message;
  EXPECT_GT(blocks.size(), 0u);
  const size_t held = blocks.size();
  blocks.clear();  // back to the cache: the device is still full, but of cached blocks
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  EXPECT_GE(s0.bytes_cached, held << 30);
  // A size that is not cached needs cudaMalloc, which fails on the full device; the allocator
  // then frees its cache and retries, and the request succeeds.
  Tensor big = full({3 * kBlock}, 1.0, kGpuF32);
  const cuda::AllocatorStats s1 = cuda::allocator_stats(0);
  EXPECT_EQ(s1.num_oom_retries, s0.num_oom_retries + 1);
  EXPECT_EQ(sum(big).item(), 3.0 * static_cast<double>(kBlock));
  big = Tensor();
  expect_gpu_works();
  cuda::empty_cache(0);
}

}  // namespace
}  // namespace idem
