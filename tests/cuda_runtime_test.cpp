// The CUDA backend's machinery: device queries, errors, the caching allocator (statistics,
// steady state without cudaMalloc, empty_cache, poisoning), Philox CPU == GPU, the reduce and
// elementwise kernel shapes against the CPU kernels, and a bandwidth report for the reductions.
// Everything that needs a GPU skips without one.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/reduce.h"
#include "core/kernels/runtime.h"
#include "tests/test_util.h"

#ifdef IDEM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace idem {
namespace {

const Device kGpu = Device::cuda(0);

TEST(CudaRuntime, QueriesNeverThrow) {
  bool avail = false;
  int count = -1;
  std::string summary;
  EXPECT_NO_THROW(avail = cuda::available());
  EXPECT_NO_THROW(count = cuda::device_count());
  EXPECT_NO_THROW(summary = cuda::device_summary());
  EXPECT_EQ(avail, count > 0);
  EXPECT_FALSE(summary.empty());
  if (!avail) {
    // Asking for CUDA memory anyway is a clear idem::Error, never a crash.
    try {
      cuda::alloc(16, 0);
      ADD_FAILURE() << "cuda::alloc succeeded without a usable GPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
    }
    EXPECT_THROW(zeros({4}, {DType::f32, kGpu}), Error);
    EXPECT_EQ(cuda::allocator_stats(0).num_cuda_malloc, 0u);
  }
}

TEST(CudaRuntime, DeviceQuery) {
  IDEM_REQUIRE_GPU();
  const cuda::DeviceProperties p = cuda::device_properties(0);
  EXPECT_FALSE(p.name.empty());
  EXPECT_GT(p.sm_count, 0);
  EXPECT_GT(p.total_memory, size_t(1) << 30);
  EXPECT_GE(p.cc_major, 5);
  EXPECT_GT(p.driver_version, 0);
  EXPECT_GT(p.runtime_version, 0);
  const std::string s = cuda::device_summary();
  EXPECT_NE(s.find(p.name), std::string::npos) << s;
  std::printf("[device] %s\n", s.c_str());
  EXPECT_THROW(cuda::device_properties(cuda::device_count()), Error);
}

TEST(CudaRuntime, ClearErrorForMissingDevice) {
  IDEM_REQUIRE_GPU();
  try {
    zeros({4}, {DType::f32, Device::cuda(99)});
    ADD_FAILURE() << "a tensor on cuda:99 was created";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:99"), std::string::npos) << e.what();
  }
  try {
    cuda::alloc(16, 99);
    ADD_FAILURE() << "cuda::alloc on device 99 succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cuda:99"), std::string::npos) << m;
    EXPECT_NE(m.find("visible"), std::string::npos) << m;
  }
}

TEST(CudaRuntime, AllocatorStatistics) {
  IDEM_REQUIRE_GPU();
  cuda::synchronize(0);
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  {
    Tensor t = empty({1000}, {DType::f32, kGpu});
    const cuda::AllocatorStats s1 = cuda::allocator_stats(0);
    EXPECT_EQ(s1.num_alloc, s0.num_alloc + 1);
    EXPECT_GE(s1.bytes_in_use, s0.bytes_in_use + 4000);
    EXPECT_LE(s1.bytes_in_use, s0.bytes_in_use + 4096 + 512);  // rounded to its size class
    EXPECT_GE(s1.peak_bytes_in_use, s1.bytes_in_use);
  }
  const cuda::AllocatorStats s2 = cuda::allocator_stats(0);
  EXPECT_EQ(s2.bytes_in_use, s0.bytes_in_use);
  EXPECT_GT(s2.bytes_cached, 0u);
  {
    // The same size again comes from the cache: no new cudaMalloc.
    Tensor t = empty({1000}, {DType::f32, kGpu});
    const cuda::AllocatorStats s3 = cuda::allocator_stats(0);
    EXPECT_EQ(s3.num_cuda_malloc, s2.num_cuda_malloc);
    EXPECT_EQ(s3.num_cache_hits, s2.num_cache_hits + 1);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 256, 0u);
  }
}

// A few ops with autograd, as a training step would run them.
double step(const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor h = tanh(add(matmul(x, w), b));
  Tensor y = mul(exp(neg(square(h))), sigmoid(h));
  Tensor loss = add(sum(mul(y, y)), mean(max(h, {1})));
  loss.backward();
  return loss.item();
}

TEST(CudaRuntime, SteadyStateMakesNoCudaMalloc) {
  IDEM_REQUIRE_GPU();
  Tensor x = randn({64, 96}, 1, {DType::f32, kGpu});
  Tensor w = randn({96, 48}, 2, {DType::f32, kGpu}).requires_grad_();
  Tensor b = randn({48}, 3, {DType::f32, kGpu}).requires_grad_();
  step(x, w, b);  // the first iteration fills the cache
  w.zero_grad();
  b.zero_grad();
  cuda::synchronize(0);
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  for (int it = 0; it < 100; ++it) {
    step(x, w, b);
    w.zero_grad();
    b.zero_grad();
  }
  cuda::synchronize(0);
  const cuda::AllocatorStats s1 = cuda::allocator_stats(0);
  EXPECT_EQ(s1.num_cuda_malloc, s0.num_cuda_malloc)
      << "cudaMalloc calls after the first iteration: " << s1.num_cuda_malloc - s0.num_cuda_malloc;
  EXPECT_EQ(s1.num_cuda_free, s0.num_cuda_free);
  EXPECT_EQ(s1.bytes_in_use, s0.bytes_in_use);
  EXPECT_GT(s1.num_alloc, s0.num_alloc + 100);
}

TEST(CudaRuntime, EmptyCacheReleasesCachedBlocks) {
  IDEM_REQUIRE_GPU();
  { Tensor t = empty({1 << 20}, {DType::f32, kGpu}); }
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  ASSERT_GT(s0.bytes_cached, 0u);
  cuda::empty_cache(0);
  const cuda::AllocatorStats s1 = cuda::allocator_stats(0);
  EXPECT_EQ(s1.bytes_cached, 0u);
  EXPECT_GT(s1.num_cuda_free, s0.num_cuda_free);
  EXPECT_EQ(s1.bytes_in_use, s0.bytes_in_use);
  // Still usable afterwards.
  Tensor t = full({3}, 2.5, {DType::f32, kGpu});
  EXPECT_EQ(t.to_vector<float>(), std::vector<float>({2.5f, 2.5f, 2.5f}));
}

TEST(CudaRuntime, PoisonFillsNewAllocationsWithNaN) {
  IDEM_REQUIRE_GPU();
  const bool before = cuda::poison_allocations();
  cuda::set_poison_allocations(true);
  Tensor t = empty({1000}, {DType::f32, kGpu});
  std::vector<float> v = t.to_vector<float>();
  cuda::set_poison_allocations(before);
  EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](float f) { return std::isnan(f); }));
}

// Philox: the same (seed, offset) gives the same tensor on both devices.
TEST(CudaRuntime, PhiloxCpuEqualsGpu) {
  IDEM_REQUIRE_GPU();
  const Options cpu{DType::f32, Device::cpu()}, gpu{DType::f32, kGpu};
  for (uint64_t seed : {0ull, 42ull, (1ull << 40) + 3}) {
    for (uint64_t offset : {0ull, 12345ull, (1ull << 35) + 1}) {
      SCOPED_TRACE("seed " + std::to_string(seed) + ", offset " + std::to_string(offset));
      const Shape shape{100003};
      EXPECT_EQ(rand(shape, seed, cpu, offset).to_vector<float>(),
                rand(shape, seed, gpu, offset).to_vector<float>());
      EXPECT_EQ(uniform(shape, -3.0, 5.0, seed, cpu, offset).to_vector<float>(),
                uniform(shape, -3.0, 5.0, seed, gpu, offset).to_vector<float>());
      // Normals are computed in double on both sides and rounded once; glibc's and CUDA's
      // double log/cos may still differ in the last double bit, which flips the float
      // rounding only rarely: require near-total exact agreement and bound the rest.
      const std::vector<float> c = randn(shape, seed, cpu, offset).to_vector<float>();
      const std::vector<float> g = randn(shape, seed, gpu, offset).to_vector<float>();
      size_t exact = 0, bad = 0;
      for (size_t i = 0; i < c.size(); ++i) {
        if (c[i] == g[i]) {
          ++exact;
          continue;
        }
        const float ulp = std::nextafter(std::fabs(c[i]), INFINITY) - std::fabs(c[i]);
        if (std::fabs(c[i] - g[i]) > 4 * ulp + 1e-7f && ++bad <= 5)
          ADD_FAILURE() << "randn element " << i << ": CPU " << c[i] << ", GPU " << g[i];
      }
      std::printf("[philox] seed %llu offset %llu: randn exact on %zu of %zu elements\n",
                  static_cast<unsigned long long>(seed), static_cast<unsigned long long>(offset),
                  exact, c.size());
      EXPECT_GE(exact * 1000, c.size() * 999) << "randn: fewer than 99.9% exact matches";
    }
  }
}

// ---- the reduce kernel shapes (warp rows, split block rows, split columns) against the CPU ----

// Small integers (as `dt`) so max/argmax see many ties and sums are exact on both devices.
Tensor tie_heavy(const Shape& shape, uint64_t seed, DType dt) {
  Tensor z = randn(shape, seed, {DType::f32, Device::cpu()});
  std::vector<float> v = z.to_vector<float>();
  for (float& f : v) f = std::floor(f * 2.0f);
  Tensor t = from_vector<float>(v, shape);
  if (dt == DType::f32) return t;
  return t.to(DType::i32).to(dt);  // u8 wraps negatives, the same on both devices
}

TEST(CudaReduce, KernelShapesMatchCpu) {
  IDEM_REQUIRE_GPU();
  const ReduceShape shapes[] = {
      {5, 1, 17},    {3, 0, 4},      {2, 0, 1},       {7, 31, 1},      {1000, 1024, 1},
      {3, 1025, 1},  {2, 100003, 1}, {1, 3000001, 1}, {600, 4096, 1},  {1, 100000, 3},
      {7, 5000, 33}, {4, 3, 1001},   {1, 4096, 4096}, {1, 2, 1 << 20}, {70000, 3, 2},
      {1000, 4, 1},  {999, 8, 1},    {333, 10, 1},    {50, 3, 1},      {4097, 64, 1},
  };
  const ReduceOp ops[] = {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::argmax};
  uint64_t seed = 100;
  for (const ReduceShape& s : shapes) {
    for (DType dt : {DType::f32, DType::i32, DType::i64, DType::u8}) {
      // An empty reduction's max/min is ±inf, which integer dtypes cannot hold.
      if (s.reduce == 0 && dt != DType::f32) continue;
      Tensor in = tie_heavy({s.outer, s.reduce, s.inner}, ++seed, dt);
      if (dt == DType::f32 && in.numel() > 10) {
        // A NaN in one row: max/min/argmax must propagate it the CPU's way.
        std::vector<float> v = in.to_vector<float>();
        v[v.size() / 2] = NAN;
        in = from_vector<float>(v, in.shape());
      }
      // The same values at a 4-byte offset (no 16-byte vector loads) for f32.
      const bool shifted = dt == DType::f32 && (seed % 2 == 0);
      const Tensor in_g = testing::shifted_copy(in, kGpu, shifted ? 1 : 0);
      for (ReduceOp op : ops) {
        if (dt == DType::u8 && op == ReduceOp::sum) continue;  // overflows u8 on both sides
        SCOPED_TRACE(std::string(reduce_name(op)) + " " + dtype_name(dt) + " (" +
                     std::to_string(s.outer) + ", " + std::to_string(s.reduce) + ", " +
                     std::to_string(s.inner) + "), seed " + std::to_string(seed) +
                     (shifted ? ", input at a 4-byte offset" : ""));
        const DType odt = op == ReduceOp::argmax ? DType::i64 : dt;
        Tensor oc = empty({s.outer, s.inner}, {odt, Device::cpu()});
        Tensor og = empty({s.outer, s.inner}, {odt, kGpu});
        cpu::reduce_fwd(oc, in, s, op);
        cuda::reduce_fwd(og, in_g, s, op);
        const std::vector<double> c = oc.to_vector<double>(), g = og.to_vector<double>();
        ASSERT_EQ(c.size(), g.size());
        int bad = 0;
        for (size_t i = 0; i < c.size() && bad < 5; ++i) {
          const bool ok = std::isnan(c[i]) ? std::isnan(g[i])
                          : (op == ReduceOp::sum && dt == DType::f32)
                              ? std::fabs(c[i] - g[i]) <= 1e-6 * (1 + std::fabs(c[i]))
                              : c[i] == g[i];
          if (!ok) {
            ++bad;
            ADD_FAILURE() << "output " << i << ": CPU " << c[i] << ", CUDA " << g[i];
          }
        }
      }
    }
  }
}

TEST(CudaReduce, Deterministic) {
  IDEM_REQUIRE_GPU();
  for (ReduceShape s : {ReduceShape{1, 5000001, 1}, ReduceShape{3, 20000, 129}}) {
    Tensor in = randn({s.outer, s.reduce, s.inner}, 9, {DType::f32, kGpu});
    Tensor a = empty({s.outer, s.inner}, {DType::f32, kGpu});
    Tensor b = empty({s.outer, s.inner}, {DType::f32, kGpu});
    cuda::reduce_fwd(a, in, s, ReduceOp::sum);
    cuda::reduce_fwd(b, in, s, ReduceOp::sum);
    EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  }
}

// ---- elementwise paths: vectorized (aligned), scalar (misaligned views), broadcast ----

TEST(CudaElementwise, AlignedMisalignedAndBroadcastPathsMatchCpu) {
  IDEM_REQUIRE_GPU();
  const Options cpu{DType::f32, Device::cpu()};
  Tensor a = randn({1003}, 5, cpu), b = randn({1003}, 6, cpu);
  struct Pair {
    Tensor a, b;
  };
  // Offsets of 0, 1 and 3 elements: 16-byte aligned or not; lengths with and without a tail.
  const Pair pairs[] = {{a.slice0(0, 1000), b.slice0(0, 1000)},
                        {a.slice0(1, 1001), b.slice0(0, 1000)},
                        {a.slice0(3, 1002), b.slice0(3, 1002)},
                        {a.slice0(0, 1003), b.slice0(0, 1003)}};
  for (const Pair& p : pairs) {
    for (BinaryOp op : {BinaryOp::add, BinaryOp::mul, BinaryOp::maximum, BinaryOp::lt}) {
      const DType odt = is_comparison(op) ? DType::u8 : DType::f32;
      Tensor oc = empty(p.a.shape(), {odt, Device::cpu()});
      Tensor og = empty(p.a.shape(), {odt, kGpu});
      cpu::binary_fwd(oc, p.a, p.b, op);
      // Device copies keep the misalignment: slice the same way on the GPU.
      Tensor ga = a.to(kGpu), gb = b.to(kGpu);
      const int64_t ao = (static_cast<const float*>(p.a.raw_data()) - a.data<float>());
      const int64_t bo = (static_cast<const float*>(p.b.raw_data()) - b.data<float>());
      cuda::binary_fwd(og, ga.slice0(ao, ao + p.a.numel()), gb.slice0(bo, bo + p.b.numel()), op);
      EXPECT_EQ(oc.to_vector<double>(), og.to_vector<double>())
          << binary_name(op) << " offsets " << ao << ", " << bo;
    }
  }
  // Broadcast shapes, including ones that collapse to one dim and a 0-dim operand.
  const std::pair<Shape, Shape> shapes[] = {{{4, 5, 6}, {6}},
                                            {{4, 1, 6}, {1, 5, 1}},
                                            {{2, 3, 4, 5}, {3, 1, 5}},
                                            {{7, 9}, {}},
                                            {{1}, {3, 1, 2}}};
  for (const auto& [sa, sb] : shapes) {
    Tensor x = randn(sa, 7, cpu), y = randn(sb, 8, cpu);
    Shape so = broadcast_shapes(sa, sb, "test");
    Tensor oc = empty(so, cpu), og = empty(so, {DType::f32, kGpu});
    cpu::binary_fwd(oc, x, y, BinaryOp::sub);
    cuda::binary_fwd(og, x.to(kGpu), y.to(kGpu), BinaryOp::sub);
    EXPECT_EQ(oc.to_vector<float>(), og.to_vector<float>())
        << shape_str(sa) << " - " << shape_str(sb);
  }
  // Casts between every pair of CUDA dtypes.
  Tensor src = from_vector<float>({0.f, 1.f, 2.7f, -3.2f, 200.f, 7.f}, {6});
  for (DType from : {DType::f32, DType::i32, DType::i64, DType::u8}) {
    Tensor s = ops::cast(src.to(DType::i32).to(from), from);
    if (from == DType::f32) s = src;
    for (DType to : {DType::f32, DType::i32, DType::i64, DType::u8}) {
      Tensor oc = empty({6}, {to, Device::cpu()}), og = empty({6}, {to, kGpu});
      cpu::cast(oc, s);
      cuda::cast(og, s.to(kGpu));
      EXPECT_EQ(oc.to_vector<double>(), og.to_vector<double>())
          << dtype_name(from) << " -> " << dtype_name(to);
    }
  }
}

// ---- bandwidth report (prints; asserts only the values) ----

#ifdef IDEM_WITH_CUDA
// Median time in microseconds of `reps` runs of f, after two warm-ups, with CUDA events.
template <typename F>
double median_us(F&& f, int reps = 15) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  f();
  f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(e0, 0);
    f();
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms * 1e3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
#endif

TEST(CudaReduce, BandwidthReport) {
  IDEM_REQUIRE_GPU();
#ifdef IDEM_WITH_CUDA
  const int64_t n = int64_t(64) << 20;  // 64M floats = 256 MiB
  const double bytes = static_cast<double>(n) * 4;
  const std::string gpu = cuda::device_properties(0).name;
  Tensor ones_t = full({n}, 1.0, {DType::f32, kGpu});
  Tensor copy_dst = empty({n}, {DType::f32, kGpu});
  const double copy_us = median_us([&] {
    cudaMemcpyAsync(copy_dst.raw_data(), ones_t.raw_data(), n * 4, cudaMemcpyDeviceToDevice, 0);
  });
  const double copy_gbs = 2 * bytes / copy_us * 1e-3;  // read + write
  std::printf("[bench] %s: D2D copy 256 MiB: %.1f us, %.0f GB/s (read+write)\n", gpu.c_str(),
              copy_us, copy_gbs);
  struct Case {
    const char* name;
    ReduceShape s;
  };
  const Case cases[] = {{"sum all (1, 64M, 1)", {1, n, 1}},
                        {"sum rows (8192, 8192, 1)", {8192, 8192, 1}},
                        {"sum cols (1, 8192, 8192)", {1, 8192, 8192}},
                        {"sum mid (64, 1024, 1024)", {64, 1024, 1024}},
                        {"sum short rows (1M, 64, 1)", {1 << 20, 64, 1}},
                        {"sum short rows (4M, 16, 1)", {1 << 22, 16, 1}},
                        {"sum short rows (16M, 4, 1)", {1 << 24, 4, 1}},
                        {"argmax rows (8192, 8192, 1)", {8192, 8192, 1}}};
  for (const Case& c : cases) {
    const bool arg = std::strstr(c.name, "argmax") != nullptr;
    Tensor out = empty({c.s.outer, c.s.inner}, {arg ? DType::i64 : DType::f32, kGpu});
    const ReduceOp op = arg ? ReduceOp::argmax : ReduceOp::sum;
    const double us = median_us([&] { cuda::reduce_fwd(out, ones_t, c.s, op); });
    const double gbs = bytes / us * 1e-3;
    std::printf("[bench] %s: reduce %s: %.1f us, %.0f GB/s read, %.0f%% of D2D copy\n", gpu.c_str(),
                c.name, us, gbs, 100.0 * gbs / copy_gbs);
    std::vector<double> v = out.to_vector<double>();
    const double want = arg ? 0.0 : static_cast<double>(c.s.reduce);
    EXPECT_TRUE(std::all_of(v.begin(), v.end(), [&](double x) { return x == want; })) << c.name;
  }
#endif
}

}  // namespace
}  // namespace idem
