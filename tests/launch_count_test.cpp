// cuda::launch_count(): exact for hand-written kernels (every launch site is followed by one
// launch check, which counts), one per cuBLAS call, one per copy. Each expectation below says
// why it is that number. GPU tests skip without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/node.h"
#include "core/kernels/cuda_graph.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "layers/mlp.h"
#include "tests/test_util.h"

namespace idem {
namespace {

const Device kGpu = Device::cuda(0);
const Options kGpuF32{DType::f32, kGpu};

// Poisoning adds a memset per allocation and the cuBLAS backend changes what a matmul costs:
// pin both for the duration of a test.
class LaunchCount : public ::testing::Test {
 protected:
  void SetUp() override {
    poison_ = cuda::poison_allocations();
    cuda::set_poison_allocations(false);
    gemm_ = gemm_backend();
    set_gemm_backend(GemmBackend::hand);
  }
  void TearDown() override {
    cuda::set_poison_allocations(poison_);
    set_gemm_backend(gemm_);
  }

  // Launches issued by f.
  template <typename F>
  static uint64_t count(F&& f) {
    const uint64_t before = cuda::launch_count();
    f();
    return cuda::launch_count() - before;
  }

 private:
  bool poison_ = false;
  GemmBackend gemm_ = GemmBackend::hand;
};

// `text` with every comment replaced by spaces (offsets and newlines kept).
std::string blank_comments(std::string text) {
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] == '/' && text[i + 1] == '/') {
      for (; i < text.size() && text[i] != '\n'; ++i) text[i] = ' ';
    } else if (text[i] == '/' && text[i + 1] == '*') {
      for (; i + 1 < text.size() && !(text[i] == '*' && text[i + 1] == '/'); ++i)
        if (text[i] != '\n') text[i] = ' ';
      if (i + 1 < text.size()) text[i] = text[i + 1] = ' ';
    }
  }
  return text;
}

size_t skip_space(const std::string& s, size_t i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// The counting rule behind launch_count() (cuda/common.cuh): every `<<<...>>>(...);` statement
// in cuda/ is followed directly by one IDEM_LAUNCH_CHECK (IDEM_LAUNCH_CHECK_AT in a helper that
// launches for its caller, such as launch_grid_stride in cuda/device_utils.cuh), and there is no
// other launch check (a check after two launches would count one; a check after none would
// count a phantom). Calls of launch_grid_stride count as launch sites too.
TEST_F(LaunchCount, EveryLaunchSiteIsFollowedByExactlyOneLaunchCheck) {
  namespace fs = std::filesystem;
  const fs::path cuda_dir = fs::path(__FILE__).parent_path().parent_path() / "cuda";
  if (!fs::is_directory(cuda_dir)) GTEST_SKIP() << "no source tree at " << cuda_dir;
  const std::vector<std::string> kChecks = {"IDEM_LAUNCH_CHECK(", "IDEM_LAUNCH_CHECK_AT("};
  auto check_at = [&](const std::string& s, size_t i) {
    for (const std::string& c : kChecks)
      if (s.compare(i, c.size(), c) == 0) return true;
    return false;
  };
  int sites = 0;
  for (const auto& e : fs::recursive_directory_iterator(cuda_dir)) {
    if (e.path().extension() != ".cu" && e.path().extension() != ".cuh") continue;
    const std::string s = blank_comments(testing::read_bytes(e.path().string()));
    auto where = [&](size_t pos) {
      return e.path().filename().string() + ":" +
             std::to_string(1 + std::count(s.begin(), s.begin() + pos, '\n'));
    };
    std::vector<size_t> checked;  // offsets of the checks that follow a launch
    for (size_t at = s.find("<<<"); at != std::string::npos; at = s.find("<<<", at + 3)) {
      ++sites;
      size_t i = s.find(">>>", at);
      ASSERT_NE(i, std::string::npos) << where(at);
      i = skip_space(s, i + 3);
      ASSERT_TRUE(i < s.size() && s[i] == '(') << where(at) << ": no argument list";
      for (int depth = 0; i < s.size(); ++i) {
        if (s[i] == '(') ++depth;
        if (s[i] == ')' && --depth == 0) break;
      }
      i = skip_space(s, i + 1);
      ASSERT_TRUE(i < s.size() && s[i] == ';') << where(at) << ": launch is not a statement";
      i = skip_space(s, i + 1);
      if (check_at(s, i))
        checked.push_back(i);
      else
        ADD_FAILURE() << where(at) << ": launch not followed directly by IDEM_LAUNCH_CHECK";
    }
    // A cooperative or cluster launch (cuda/kernels/fused_mlp_adapt.cu) is a runtime call, not
    // `<<<>>>`: its statement, up to the first ';', must be followed directly by the check too.
    for (const std::string call : {"cudaLaunchCooperativeKernel(", "cudaLaunchKernelEx("}) {
      for (size_t at = s.find(call); at != std::string::npos; at = s.find(call, at + 1)) {
        ++sites;
        size_t i = s.find(';', at);
        ASSERT_NE(i, std::string::npos) << where(at);
        i = skip_space(s, i + 1);
        if (check_at(s, i))
          checked.push_back(i);
        else
          ADD_FAILURE() << where(at) << ": " << call << ") not followed directly by IDEM_LAUNCH_CHECK";
      }
    }
    for (const std::string& check : kChecks) {
      for (size_t at = s.find(check); at != std::string::npos; at = s.find(check, at + 1)) {
        const size_t line_start = s.rfind('\n', at) == std::string::npos ? 0 : s.rfind('\n', at);
        if (s.find("#define", line_start) < at) continue;  // a macro definition
        if (std::find(checked.begin(), checked.end(), at) == checked.end())
          ADD_FAILURE() << where(at) << ": " << check << ") that follows no launch";
      }
    }
    const std::string kHelper = "launch_grid_stride(IDEM_SITE(";
    for (size_t at = s.find(kHelper); at != std::string::npos; at = s.find(kHelper, at + 1))
      ++sites;
  }
  EXPECT_GT(sites, 50) << "launch sites found under " << cuda_dir;
}

TEST_F(LaunchCount, CpuWorkCountsNothing) {
  const uint64_t before = cuda::launch_count();
  Tensor a = randn({64, 32}, 1), b = randn({32, 16}, 2);
  Tensor c = relu(add(matmul(a, b), 1.0));
  EXPECT_EQ(c.shape(), Shape({64, 16}));
  EXPECT_EQ(cuda::launch_count(), before);
  if (!cuda::compiled()) {
    EXPECT_EQ(cuda::launch_count(), 0u);
  }
}

TEST_F(LaunchCount, ElementwiseAddIsOneLaunch) {
  IDEM_REQUIRE_GPU();
  Tensor a = randn({1000}, 1, kGpuF32), b = randn({1000}, 2, kGpuF32);
  // Same shapes: the allocation of the output issues nothing, the add is one map kernel.
  Tensor c;
  EXPECT_EQ(count([&] { c = add(a, b); }), 1u);
  // Broadcast: one broadcast kernel. A scalar operand: one unary kernel.
  Tensor row = randn({1000}, 3, kGpuF32), m = randn({4, 1000}, 4, kGpuF32);
  EXPECT_EQ(count([&] { c = add(m, row); }), 1u);
  EXPECT_EQ(count([&] { c = mul(m, 2.0); }), 1u);
  // A chain of n elementwise ops is n launches (no fusion).
  EXPECT_EQ(count([&] { c = tanh(exp(neg(a))); }), 3u);
}

TEST_F(LaunchCount, MatmulIsOneLaunch) {
  IDEM_REQUIRE_GPU();
  Tensor a = randn({128, 96}, 1, kGpuF32), b = randn({96, 64}, 2, kGpuF32);
  Tensor c;
  // The hand-written SGEMM: one kernel per product (per 65535 batch entries); the output is
  // written whole (beta = 0), so no fill precedes it.
  EXPECT_EQ(count([&] { c = matmul(a, b); }), 1u);
  EXPECT_EQ(count([&] { c = matmul(a, a, false, true); }), 1u);  // transposed operand: still 1
  Tensor ab = randn({5, 128, 96}, 3, kGpuF32), bb = randn({5, 96, 64}, 4, kGpuF32);
  EXPECT_EQ(count([&] { c = matmul(ab, bb); }), 1u);  // batched: one launch, gridDim.z = 5
#ifdef IDEM_WITH_CUBLAS
  // cuBLAS: one counted call per product; what cuBLAS runs inside it shows in a graph.
  set_gemm_backend(GemmBackend::cublas);
  try {
    c = matmul(a, b);  // first call: loads libcublas and creates the handle
  } catch (const Error& e) {
    GTEST_SKIP() << "cuBLAS unavailable here: " << e.what();
  }
  EXPECT_EQ(count([&] { c = matmul(a, b); }), 1u);
  cuda::CaptureStream stream(0);
  c = matmul(a, b);  // warm-up on the capture stream, twice: c is kept between runs
  c = matmul(a, b);
  cuda::Graph g = cuda::Graph::capture([&] { c = matmul(a, b); }, stream);
  std::printf("[launch count] one cuBLAS SGEMM (128x96)(96x64) = %zu kernel node(s) in a graph\n",
              g.num_kernel_nodes());
  EXPECT_GE(g.num_kernel_nodes(), 1u);
#endif
}

TEST_F(LaunchCount, ReductionsAndCopies) {
  IDEM_REQUIRE_GPU();
  Tensor x = randn({64, 48}, 1, kGpuF32);
  Tensor s;
  // Rows of 48 elements: one warp-per-row kernel.
  EXPECT_EQ(count([&] { s = sum(x, {1}); }), 1u);
  // mean = sum kernel + one scaling kernel.
  EXPECT_EQ(count([&] { s = mean(x, {1}); }), 2u);
  // A full reduction of 4M elements is split over blocks: partial sums + one combine kernel.
  Tensor big = full({int64_t(1) << 22}, 1.0, kGpuF32);
  EXPECT_EQ(count([&] { s = sum(big); }), 2u);
  // Copies: host->device one memcpy, device->host one memcpy, device->device one memcpy.
  Tensor h = randn({256}, 2);
  Tensor d;
  EXPECT_EQ(count([&] { d = h.to(kGpu); }), 1u);
  std::vector<float> back;
  EXPECT_EQ(count([&] { back = d.to_vector<float>(); }), 1u);
  EXPECT_EQ(back, h.to_vector<float>());
  Tensor d2 = empty({256}, kGpuF32);
  EXPECT_EQ(count([&] { d2.copy_(d); }), 1u);
}

TEST_F(LaunchCount, SmallMlpForward) {
  IDEM_REQUIRE_GPU();
  // The IT³ tabular reference network 14→30→20→10→1 written out with unfused ops (the MLP
  // module may fuse; this test pins what the plain ops cost): each layer is x·Wᵀ (one SGEMM)
  // plus the bias (one broadcast add), and the 3 hidden layers add a ReLU (one unary kernel):
  // 4 × 2 + 3 = 11. Recording autograd history launches nothing (saved tensors are aliases),
  // so with or without gradients it is 11.
  const std::vector<int64_t> sizes{14, 30, 20, 10, 1};
  std::vector<Tensor> w, b;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    w.push_back(randn({sizes[i + 1], sizes[i]}, 10 + i, kGpuF32).requires_grad_());
    b.push_back(randn({sizes[i + 1]}, 20 + i, kGpuF32).requires_grad_());
  }
  auto forward = [&](const Tensor& x) {
    Tensor h = x;
    for (size_t i = 0; i < w.size(); ++i) {
      h = add(matmul(h, w[i], false, true), b[i]);
      if (i + 1 < w.size()) h = relu(h);
    }
    return h;
  };
  Tensor x = randn({8, 14}, 1, kGpuF32);
  Tensor y;
  EXPECT_EQ(count([&] { y = forward(x); }), 11u);
  {
    NoGradGuard no_grad;
    EXPECT_EQ(count([&] { y = forward(x); }), 11u);
  }
  EXPECT_EQ(y.shape(), Shape({8, 1}));
  // The MLP module: at most the unfused count (a fused Linear+activation is one launch).
  MLP mlp(sizes, {}, {}, 7);
  mlp.to(kGpu);
  const uint64_t module_launches = count([&] { y = mlp.forward(x); });
  std::printf("[launch count] MLP 14-30-20-10-1 forward, batch 8: %llu launches (unfused: 11)\n",
              static_cast<unsigned long long>(module_launches));
  EXPECT_GE(module_launches, 4u);  // at least one per layer
  EXPECT_LE(module_launches, 11u);
}

}  // namespace
}  // namespace idem
