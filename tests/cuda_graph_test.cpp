// CUDA graph capture and replay (core/kernels/cuda_graph.h) and the allocator's rules under
// capture (cuda/allocator.h rule 4): replays match eager runs with new inputs, replays never
// touch memory handed out after the capture, a cache miss / host sync / exception inside a
// capture is a clear error that leaves the stream and the allocator usable, and destroying a
// graph returns its private pool. GPU tests skip without a GPU.
#include "core/kernels/cuda_graph.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "layers/optim.h"
#include "tests/test_util.h"

#ifdef IDEM_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/common.cuh"  // current_stream(), to check that captures restore it
#endif

namespace idem {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::expect_near_all;

const Device kGpu = Device::cuda(0);
const Options kGpuF32{DType::f32, kGpu};
const Options kCpuF32{DType::f32, Device::cpu()};

// The hand-written GEMM is one kernel per product, so node counts below are exact.
class HandGemm {
 public:
  HandGemm() : prev_(gemm_backend()) { set_gemm_backend(GemmBackend::hand); }
  ~HandGemm() { set_gemm_backend(prev_); }

 private:
  GemmBackend prev_;
};

// An elementwise chain, a matmul and a reduction — 7 kernels:
// matmul, + b, tanh, ·2, sigmoid, ·, row sum: (64,96)(96,48) -> (64,48) -> (64).
Tensor chain_step(const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor h = tanh(add(matmul(x, w), b));
  Tensor y = mul(h, sigmoid(mul(h, 2.0)));
  return sum(y, {1});
}
constexpr size_t kChainKernels = 7;

struct ChainInputs {
  Tensor x = randn({64, 96}, 1, kGpuF32);
  Tensor w = mul(randn({96, 48}, 2, kGpuF32), 0.1);
  Tensor b = randn({48}, 3, kGpuF32);
  Tensor y;  // the step's output; rewritten by every replay
  void run() { y = chain_step(x, w, b); }
  // Two runs: the capture allocates a new y while the old y still holds a block, so the cache
  // must hold two blocks of y's size (cuda/allocator.h rule 4a).
  void warm_up() {
    run();
    run();
  }
};

// How far a replayed step may be from the eager one, elementwise.
constexpr double kStepTol = 1e-4;

TEST(CudaGraph, ReplayMatchesEagerWithNewInputs) {
  IDEM_REQUIRE_GPU();
  HandGemm hand;
  ChainInputs in;
  cuda::CaptureStream stream(0);
  in.warm_up();  // on the capture stream: fills its cache with the step's sizes
  const uint64_t before = cuda::launch_count();
  cuda::Graph g = cuda::Graph::capture([&] { in.run(); }, stream);
  const uint64_t recorded = cuda::launch_count() - before;
  EXPECT_TRUE(g.valid());
  EXPECT_EQ(g.num_kernel_nodes(), kChainKernels);
  // Hand kernels (and poisoning memsets, when on) only: what was counted is what was recorded.
  EXPECT_EQ(g.num_nodes(), recorded);
  for (int it = 0; it < 3; ++it) {
    const uint64_t seed = 100 + static_cast<uint64_t>(it);
    Tensor xn = randn({64, 96}, seed, kCpuF32);
    in.x.copy_(xn);  // new values into the static input, same storage
    const uint64_t l0 = cuda::launch_count();
    g.replay();
    EXPECT_EQ(cuda::launch_count() - l0, 1u) << "a replay is one launch";
    // Eager on the same stream after the replay; reading y waits for both.
    Tensor want = chain_step(xn.to(kGpu), in.w, in.b);
    expect_close(in.y, want, kStepTol, 0.0, "replay " + std::to_string(it), seed);
  }
}

TEST(CudaGraph, ReplaysLeaveTensorsAllocatedAfterCaptureAlone) {
  IDEM_REQUIRE_GPU();
  ChainInputs in;
  cuda::CaptureStream stream(0);
  in.warm_up();
  cuda::Graph g = cuda::Graph::capture([&] { in.run(); }, stream);
  const size_t pool_bytes = cuda::allocator_stats(0).bytes_in_graph_pools;
  EXPECT_GT(pool_bytes, 0u) << "the step's temporaries stay in the graph's pool";
  // Tensors of exactly the sizes of the graph's temporaries and output, filled with markers.
  std::vector<Tensor> later;
  std::vector<double> marker;
  for (int i = 0; i < 8; ++i) {
    later.push_back(full({64, 48}, 1000.0 + i, kGpuF32));
    marker.push_back(1000.0 + i);
    later.push_back(full({64}, -5.0 - i, kGpuF32));
    marker.push_back(-5.0 - i);
  }
  EXPECT_EQ(cuda::allocator_stats(0).bytes_in_graph_pools, pool_bytes)
      << "no block of the graph's pool was handed out";
  for (int r = 0; r < 5; ++r) {
    in.x.copy_(randn({64, 96}, 200 + static_cast<uint64_t>(r), kGpuF32));
    g.replay();
  }
  for (size_t i = 0; i < later.size(); ++i) {
    const std::vector<double> v = later[i].to_vector<double>();
    int bad = 0;
    for (size_t k = 0; k < v.size() && bad < 3; ++k)
      if (v[k] != marker[i]) {
        ++bad;
        ADD_FAILURE() << "tensor " << i << " element " << k << " was overwritten: " << v[k]
                      << " instead of " << marker[i];
      }
  }
  // And the graph still computes the right thing.
  Tensor want = chain_step(in.x, in.w, in.b);
  expect_close(in.y, want, kStepTol, 0.0, "after the replays");
}

#ifdef IDEM_WITH_CUDA
TEST(CudaGraph, CaptureOnItsOwnStreamRestoresTheCurrentStream) {
  IDEM_REQUIRE_GPU();
  ChainInputs in;
  in.warm_up();  // eager, on the default stream: its cached blocks serve the capture too
  const cudaStream_t before = cuda::current_stream();
  const uint64_t mallocs = cuda::allocator_stats(0).num_cuda_malloc;
  cuda::Graph g = cuda::Graph::capture([&] { in.run(); }, 0);
  EXPECT_EQ(cuda::current_stream(), before);
  EXPECT_EQ(cuda::allocator_stats(0).num_cuda_malloc, mallocs) << "cudaMalloc during capture";
  Tensor xn = randn({64, 96}, 7, kCpuF32);
  in.x.copy_(xn);
  g.replay();  // on the restored current stream
  expect_close(in.y, chain_step(xn.to(kGpu), in.w, in.b), kStepTol, 0.0,
               "replay on the default stream");
}
#endif

TEST(CudaGraph, CacheMissDuringCaptureIsAClearError) {
  IDEM_REQUIRE_GPU();
  Tensor x = full({16}, 1.0, kGpuF32);
  cuda::empty_cache(0);  // nothing cached: the request below must miss
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  const int64_t n = 1234567;  // 4938268 bytes
  try {
    cuda::Graph g = cuda::Graph::capture([&] { Tensor t = empty({n}, kGpuF32); }, 0);
    ADD_FAILURE() << "a capture allocated a block that was never cached";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("[cuda graph capture]"), std::string::npos) << m;
    EXPECT_NE(m.find("allocation of " + std::to_string(n * 4) + " bytes"), std::string::npos) << m;
    EXPECT_NE(m.find("during CUDA graph capture missed the cache"), std::string::npos) << m;
    EXPECT_NE(m.find("run the same work once on the capture stream"), std::string::npos) << m;
  }
  const cuda::AllocatorStats s1 = cuda::allocator_stats(0);
  EXPECT_EQ(s1.num_cuda_malloc, s0.num_cuda_malloc);
  EXPECT_EQ(s1.num_graph_pools, s0.num_graph_pools);
  EXPECT_EQ(s1.bytes_in_graph_pools, s0.bytes_in_graph_pools);
  // Everything still works: the same allocation eagerly, kernels, a read-back...
  Tensor t = full({n}, 3.0, kGpuF32);
  EXPECT_EQ(sum(t).item(), 3.0 * static_cast<double>(n));
  EXPECT_EQ(add(x, x).to_vector<float>(), std::vector<float>(16, 2.0f));
  // ...and, after a warm-up on the capture stream, the same capture succeeds.
  cuda::CaptureStream stream(0);
  Tensor out;
  auto fn = [&] { out = mul(full({n}, 1.0, kGpuF32), 2.0); };
  fn();
  fn();
  cuda::Graph g = cuda::Graph::capture(fn, stream);
  g.replay();
  EXPECT_EQ(sum(out).item(), 2.0 * static_cast<double>(n));
}

TEST(CudaGraph, HostSynchronizationInsideCaptureIsAClearError) {
  IDEM_REQUIRE_GPU();
  Tensor x = randn({16}, 1, kGpuF32);
  cuda::CaptureStream stream(0);
  { Tensor warm = sum(mul(x, 2.0)); }  // warm-up; nothing kept, so one run suffices
  expect_error([&] { cuda::Graph::capture([&] { (void)sum(mul(x, 2.0)).item(); }, stream); },
               "cuda graph capture", "[cuda memcpy] a device->host copy");
  expect_error([&] { cuda::Graph::capture([&] { (void)x.to(Device::cpu()); }, stream); },
               "cuda graph capture", "during a CUDA graph capture");
  expect_error([&] { cuda::Graph::capture([&] { cuda::synchronize(0); }, stream); },
               "cuda graph capture", "[cuda synchronize]");
  expect_error([&] { cuda::Graph::capture([&] { cuda::empty_cache(0); }, stream); },
               "cuda graph capture", "[cuda empty_cache]");
#ifdef IDEM_WITH_CUDA
  // A raw CUDA synchronization invalidates the capture: reported when the capture ends.
  expect_error(
      [&] {
        cuda::Graph::capture([&] { (void)cudaStreamSynchronize(cuda::current_stream()); }, stream);
      },
      "cuda graph capture", "not capturable");
  EXPECT_EQ(cuda::current_stream(), static_cast<cudaStream_t>(stream.handle()));
#endif
  // The stream carries on.
  Tensor z = mul(x, 2.0);
  std::vector<float> xv = x.to_vector<float>(), zv = z.to_vector<float>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(zv[i], 2.0f * xv[i]);
}

TEST(CudaGraph, ExceptionInsideCaptureLeavesStreamAndAllocatorUsable) {
  IDEM_REQUIRE_GPU();
  ChainInputs in;
  cuda::CaptureStream stream(0);
  in.warm_up();
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  expect_error(
      [&] {
        cuda::Graph::capture(
            [&] {
              in.run();
              fail("user step", "boom at step 3");
            },
            stream);
      },
      "cuda graph capture", "[user step] boom at step 3");
  EXPECT_THROW(cuda::Graph::capture(
                   [&] {
                     in.run();
                     throw std::runtime_error("not an idem error");
                   },
                   stream),
               std::runtime_error);
#ifdef IDEM_WITH_CUDA
  EXPECT_EQ(cuda::current_stream(), static_cast<cudaStream_t>(stream.handle()));
#endif
  const cuda::AllocatorStats s1 = cuda::allocator_stats(0);
  EXPECT_EQ(s1.num_graph_pools, s0.num_graph_pools);
  EXPECT_EQ(s1.bytes_in_graph_pools, s0.bytes_in_graph_pools);
  EXPECT_EQ(s1.num_cuda_malloc, s0.num_cuda_malloc);
  // Eager work and a new capture both work afterwards.
  in.warm_up();
  Tensor eager = in.y;
  cuda::Graph g = cuda::Graph::capture([&] { in.run(); }, stream);
  g.replay();
  expect_close(in.y, eager, kStepTol, 0.0, "capture after failed captures");
}

TEST(CudaGraph, DestroyingAGraphReturnsItsPool) {
  IDEM_REQUIRE_GPU();
  ChainInputs in;
  cuda::CaptureStream stream(0);
  in.warm_up();
  const cuda::AllocatorStats s0 = cuda::allocator_stats(0);
  cuda::AllocatorStats s1;
  Tensor out;
  {
    cuda::Graph g = cuda::Graph::capture([&] { in.run(); }, stream);
    s1 = cuda::allocator_stats(0);
    EXPECT_EQ(s1.num_graph_pools, s0.num_graph_pools + 1);
    EXPECT_GT(s1.bytes_in_graph_pools, s0.bytes_in_graph_pools);
    EXPECT_EQ(s1.num_cuda_malloc, s0.num_cuda_malloc) << "a capture never calls cudaMalloc";
    g.replay();
    out = in.y;  // allocated inside the capture: keeps its block after the graph is gone
  }
  const cuda::AllocatorStats s2 = cuda::allocator_stats(0);
  EXPECT_EQ(s2.num_graph_pools, s0.num_graph_pools);
  EXPECT_EQ(s2.bytes_in_graph_pools, s0.bytes_in_graph_pools);
  EXPECT_EQ(s2.bytes_cached, s1.bytes_cached + (s1.bytes_in_graph_pools - s0.bytes_in_graph_pools))
      << "the pool's free blocks went back to the cache";
  EXPECT_EQ(s2.bytes_in_use, s1.bytes_in_use);
  EXPECT_EQ(s2.num_cuda_free, s1.num_cuda_free);
  expect_close(out, chain_step(in.x, in.w, in.b), kStepTol, 0.0,
               "output read after the graph was destroyed");
  // The returned blocks serve eager work again: no cudaMalloc.
  const uint64_t mallocs = cuda::allocator_stats(0).num_cuda_malloc;
  in.run();
  EXPECT_EQ(cuda::allocator_stats(0).num_cuda_malloc, mallocs);
}

TEST(CudaGraph, EmptyAndMovedFromGraphsRefuseToReplay) {
  cuda::Graph empty_graph;
  EXPECT_FALSE(empty_graph.valid());
  EXPECT_THROW(empty_graph.replay(), Error);
  if (!cuda::available()) {
    // Without a GPU (or without CUDA) capturing is a clear error, never a crash.
    EXPECT_THROW(cuda::Graph::capture([] {}, 0), Error);
    return;
  }
  Tensor x = full({8}, 1.0, kGpuF32), y;
  cuda::CaptureStream stream(0);
  y = add(x, 1.0);
  y = add(x, 1.0);
  cuda::Graph a = cuda::Graph::capture([&] { y = add(x, 1.0); }, stream);
  cuda::Graph b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_THROW(a.replay(), Error);
  x.copy_(full({8}, 41.0, kGpuF32));
  b.replay();
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>(8, 42.0f));
  a = std::move(b);
  EXPECT_EQ(a.num_kernel_nodes(), 1u);
}

// A 14→30→20→10→1 ReLU MLP written with plain ops (independent of how the MLP module fuses).
struct PlainMlp {
  std::vector<Tensor> params;  // w0, b0, w1, b1, ...
  explicit PlainMlp(uint64_t seed) {
    const std::vector<int64_t> sizes{14, 30, 20, 10, 1};
    for (size_t i = 0; i + 1 < sizes.size(); ++i) {
      const double scale = 1.0 / std::sqrt(static_cast<double>(sizes[i]));
      Tensor w = mul(randn({sizes[i + 1], sizes[i]}, seed + 2 * i, kGpuF32), scale);
      Tensor b = mul(randn({sizes[i + 1]}, seed + 2 * i + 1, kGpuF32), 0.1);
      params.push_back(w.detach().requires_grad_());
      params.push_back(b.detach().requires_grad_());
    }
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = x;
    for (size_t i = 0; i < params.size(); i += 2) {
      h = add(matmul(h, params[i], false, true), params[i + 1]);
      if (i + 2 < params.size()) h = relu(h);
    }
    return h;
  }
};

TEST(CudaGraph, TrainingStepMatchesEager) {
  IDEM_REQUIRE_GPU();
  HandGemm hand;
  // Two identical models: A is trained by replaying one captured step, B eagerly. Plain SGD has
  // no step-dependent kernel arguments, so every replay is exactly one more step.
  PlainMlp a(7), b(7);
  SGDOptions so;
  so.lr = 0.05;
  SGD opt_a(a.params, so), opt_b(b.params, so);
  Tensor x = randn({8, 14}, 1, kGpuF32), t = randn({8, 1}, 2, kGpuF32);
  auto train = [&x, &t](const PlainMlp& m, Optimizer& o) {
    o.zero_grad();
    Tensor loss = mse_loss(m.forward(x), t);
    loss.backward();
    o.step();
    return loss;
  };
  cuda::CaptureStream stream(0);
  // Steps 1 and 2: the warm-up (B takes the same steps eagerly).
  Tensor loss_a = train(a, opt_a), loss_b = train(b, opt_b);
  const double first_loss = loss_b.item();
  loss_a = train(a, opt_a);
  loss_b = train(b, opt_b);
  cuda::Graph g = cuda::Graph::capture([&] { loss_a = train(a, opt_a); }, stream);
  std::printf(
      "[cuda graph] SGD training step of MLP 14-30-20-10-1, batch 8: %zu kernels, %zu "
      "nodes in one replay\n",
      g.num_kernel_nodes(), g.num_nodes());
  for (int step = 3; step <= 6; ++step) {
    g.replay();
    loss_b = train(b, opt_b);
    EXPECT_NEAR(loss_a.item(), loss_b.item(), 1e-6 * (1 + std::abs(loss_b.item())))
        << "step " << step;
  }
  const std::vector<Tensor>& pa = a.params;
  const std::vector<Tensor>& pb = b.params;
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    expect_near_all(pa[i], pb[i].to_vector<double>(), 1e-6, "parameter " + std::to_string(i));
  EXPECT_LT(loss_a.item(), first_loss) << "the replayed steps did not train";
}

}  // namespace
}  // namespace idem
