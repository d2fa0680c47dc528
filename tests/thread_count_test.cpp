// The CPU kernels give the same bits at every thread count (core/parallel.h): shapes large
// enough that every threaded kernel really splits its work (elementwise, reductions, matmul
// tiles, convolution with several backward-weight blocks, batch norm, pooling, softmax,
// linear_act, graph aggregation, the optimizer step), computed at 1, 2 and 5 threads, and
// compared byte for byte.
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "autograd/csr_aggregate_function.h"
#include "autograd/functions.h"
#include "autograd/fused_functions.h"
#include "autograd/nn_functions.h"
#include "core/kernels/matmul.h"
#include "core/parallel.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/gnn.h"
#include "layers/linear.h"
#include "layers/containers.h"
#include "layers/flatten.h"
#include "layers/pool.h"
#include "layers/norm.h"
#include "layers/optim.h"
#include "tests/test_util.h"

namespace idem {
namespace {

// Raw bytes of a float tensor, for an exact comparison.
std::string bytes_of(const Tensor& t) {
  const Tensor c = t.to(Device::cpu());  // tensors are contiguous
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

// A CNN training run big enough to split every kernel: batch 40 (the 3×3 convolutions' samples
// in 20 and 4 chunks), 28×28 planes, two convolutions with batch norm, pooling, a linear head;
// Adam.
std::string cnn_run() {
  Sequential cnn;
  cnn.emplace<Conv2d>(1, 16, 3, Conv2dOptions{1, 1}, Options{}, 11);
  cnn.emplace<BatchNorm2d>(16);
  cnn.emplace<ReLU>();
  cnn.emplace<MaxPool2d>(2);
  cnn.emplace<Conv2d>(16, 32, 3, Conv2dOptions{1, 1}, Options{}, 12);
  cnn.emplace<BatchNorm2d>(32);
  cnn.emplace<ReLU>();
  cnn.emplace<AdaptiveAvgPool2d>(1);
  cnn.emplace<Flatten>();
  cnn.emplace<Linear>(32, 10, true, Options{}, 13);
  Adam adam(cnn.parameters(), AdamOptions{});
  std::string out;
  for (int step = 0; step < 3; ++step) {
    Tensor x = randn({40, 1, 28, 28}, 100 + uint64_t(step));
    Tensor y = ops::cast(mul(rand({40}, 200 + uint64_t(step)), 9.99), DType::i64);
    adam.zero_grad();
    Tensor loss = cross_entropy(softmax(cnn.forward(x), 1), y);
    loss.backward();
    adam.step();
    out += bytes_of(loss);
  }
  for (const auto& [name, t] : cnn.state_dict()) out += name + bytes_of(t);
  return out;
}

// The convolution's other paths: a 1×1 convolution (no unfolding, one sample per chunk), a
// grouped one with a 64×64 output (one sample per chunk, 41 chunks in 14 partial blocks of 3,
// the last one short), forward and both backward kernels.
std::string conv_paths_run() {
  std::string out;
  Tensor x1 = randn({41, 8, 20, 20}, 31).requires_grad_();
  Tensor w1 = randn({16, 8, 1, 1}, 32).requires_grad_();
  Tensor y1 = conv2d(x1, w1, randn({16}, 33));
  sum(mul(y1, randn({41, 16, 20, 20}, 34))).backward();
  out += bytes_of(y1) + bytes_of(x1.grad()) + bytes_of(w1.grad());

  Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  p.groups = 2;
  Tensor x2 = randn({41, 8, 64, 64}, 35).requires_grad_();
  Tensor w2 = randn({8, 4, 3, 3}, 36).requires_grad_();
  Tensor y2 = conv2d(x2, w2, Tensor(), p);
  sum(mul(y2, randn({41, 8, 64, 64}, 37))).backward();
  out += bytes_of(y2) + bytes_of(x2.grad()) + bytes_of(w2.grad());
  return out;
}

// Large direct products and reductions: every transpose case of a tiled matmul, a fused
// linear + activation forward and backward, a softmax, sums over each axis.
std::string ops_run() {
  std::string out;
  const Tensor a = randn({300, 500}, 1), b = randn({500, 400}, 2);
  const Tensor at = randn({500, 300}, 3), bt = randn({400, 500}, 4);
  out += bytes_of(matmul(a, b));
  out += bytes_of(matmul(at, b, true, false));
  out += bytes_of(matmul(a, bt, false, true));
  out += bytes_of(matmul(at, bt, true, true));

  Tensor x = randn({512, 256}, 5).requires_grad_();
  Tensor w = randn({256, 256}, 6).requires_grad_();
  Tensor bias = randn({256}, 7).requires_grad_();
  Tensor y = linear_act(x, w, bias, FusedAct::leaky_relu, 0.1);
  sum(mul(y, randn({512, 256}, 8))).backward();
  out += bytes_of(y) + bytes_of(x.grad()) + bytes_of(w.grad()) + bytes_of(bias.grad());

  const Tensor big = randn({64, 300, 70}, 9);
  out += bytes_of(softmax(big, 1)) + bytes_of(softmax(big, 2));
  out += bytes_of(sum(big, {0})) + bytes_of(sum(big, {1})) + bytes_of(sum(big, {2}));
  out += bytes_of(add(big, randn({300, 1}, 10)));  // a broadcast binary op
  return out;
}

// A GraphSAGE layer over 6 000 nodes with three in-edges each: the CSR mean aggregation and its
// backward, split over rows.
std::string graph_run() {
  std::vector<int64_t> src, dst;
  const int64_t V = 6000;
  for (int64_t v = 0; v < V; ++v)
    for (int64_t d : {1, 5, 17}) {
      src.push_back(v);
      dst.push_back((v + d) % V);
    }
  const Graph g = Graph::from_edges(V, src, dst, Device::cpu());
  SAGEConv conv(24, 32, true, true, {}, 21);
  Tensor x = randn({V, 24}, 22).requires_grad_();
  Tensor y = conv.forward(x, g);
  sum(mul(y, y)).backward();
  std::string out = bytes_of(y) + bytes_of(x.grad());
  for (const Tensor& p : conv.parameters()) out += bytes_of(p.grad());
  return out;
}

template <typename F>
void expect_same_bits_at_every_thread_count(F run, const char* what) {
  std::string one;
  {
    ThreadCountGuard guard(1);
    one = run();
  }
  ASSERT_FALSE(one.empty());
  for (int threads : {2, 5}) {
    ThreadCountGuard guard(threads);
    const uint64_t jobs_before = pool_jobs_run();
    const std::string many = run();
    EXPECT_GT(pool_jobs_run(), jobs_before) << what << ": nothing ran on the pool at " << threads << " threads";
    ASSERT_EQ(one.size(), many.size()) << what;
    size_t first = 0;
    while (first < one.size() && one[first] == many[first]) ++first;
    EXPECT_TRUE(one == many) << what << ": 1 thread and " << threads
                             << " threads differ, first at byte " << first << " of " << one.size();
  }
}

TEST(ThreadCount, CnnTrainingIsBitIdenticalAtOneTwoAndFiveThreads) {
  expect_same_bits_at_every_thread_count(cnn_run, "cnn training");
}

TEST(ThreadCount, PointwiseAndGroupedConvolutionsAreBitIdenticalAtOneTwoAndFiveThreads) {
  expect_same_bits_at_every_thread_count(conv_paths_run, "1x1 and grouped conv2d");
}

// Through Eigen (IDEM_CPU_GEMM=eigen; the default where the packed GEMM has no AVX-512).
TEST(ThreadCount, LargeOpsAreBitIdenticalAtOneTwoAndFiveThreads) {
  testing::CpuGemmGuard eigen(CpuGemm::eigen);
  expect_same_bits_at_every_thread_count(ops_run, "matmul / linear_act / softmax / sum");
}

// The same runs through the packed CPU GEMM (IDEM_CPU_GEMM=packed; the default with AVX-512).
TEST(ThreadCount, PackedGemmRunsAreBitIdenticalAtOneTwoAndFiveThreads) {
  if (!cpu::sgemm_packed_available()) GTEST_SKIP() << "built without IDEM_CPU_AVX2";
  testing::CpuGemmGuard packed(CpuGemm::packed);
  expect_same_bits_at_every_thread_count(ops_run, "matmul / linear_act (packed GEMM)");
  expect_same_bits_at_every_thread_count(cnn_run, "cnn training (packed GEMM)");
  expect_same_bits_at_every_thread_count(conv_paths_run, "1x1 and grouped conv2d (packed GEMM)");
}

// The packed GEMM called directly (AVX2 and AVX-512 kernels) on products that split into tiles
// over rows and over columns, batched with a shared operand, beta = 1 and alpha != 1, and
// K = 1 000 (four KC blocks).
std::string packed_gemm_run() {
  std::string out;
  if (!cpu::sgemm_packed_available()) return out;
  struct Case {
    bool ta, tb;
    int64_t batch, M, N, K, sa;
    double alpha, beta;
  };
  for (const Case& c : {Case{false, false, 1, 301, 97, 1000, 0, 1.0, 0.0},
                        Case{true, false, 1, 95, 333, 700, 0, 1.0, 0.0},
                        Case{false, true, 3, 131, 129, 257, 0, 0.5, 1.0},
                        Case{true, true, 2, 200, 50, 300, 200 * 300, 1.0, 2.0}}) {
    MatmulParams p;
    p.trans_a = c.ta, p.trans_b = c.tb, p.batch = c.batch, p.M = c.M, p.N = c.N, p.K = c.K;
    p.stride_a = c.sa, p.stride_b = c.K * c.N, p.stride_c = c.M * c.N;
    p.alpha = c.alpha, p.beta = c.beta;
    const Tensor a = randn({c.sa ? c.batch : 1, c.M * c.K}, 41);
    const Tensor b = randn({c.batch, c.K * c.N}, 42);
    // Both instruction sets, where available: each must be the same at every thread count.
    for (cpu::SgemmIsa isa : {cpu::SgemmIsa::avx2, cpu::SgemmIsa::avx512}) {
      if (isa == cpu::SgemmIsa::avx512 && !cpu::sgemm_packed_avx512_available()) continue;
      Tensor out_c = randn({c.batch, c.M * c.N}, 43);
      cpu::sgemm_packed(a.data<float>(), b.data<float>(), out_c.data<float>(), p, isa);
      out += bytes_of(out_c);
    }
  }
  return out;
}

TEST(ThreadCount, PackedGemmIsBitIdenticalAtOneTwoAndFiveThreads) {
  if (!cpu::sgemm_packed_available()) GTEST_SKIP() << "built without IDEM_CPU_AVX2";
  expect_same_bits_at_every_thread_count(packed_gemm_run, "cpu::sgemm_packed");
}

TEST(ThreadCount, GraphAggregationIsBitIdenticalAtOneTwoAndFiveThreads) {
  expect_same_bits_at_every_thread_count(graph_run, "SAGEConv");
}

// An Adam step over `n` parameters right after a parallel loop, with the pool's workers asleep
// (`idle`) or still spinning (a 1 s spin): whether it ran on the pool, and the parameters after.
std::pair<bool, std::string> adam_step_after_loop(int64_t n, bool idle) {
  Tensor w = randn({n}, 61).requires_grad_();
  sum(mul(w, randn({n}, 62))).backward();
  Adam adam({w}, AdamOptions{});
  testing::SpinGuard spin(idle ? pool_spin_us() : 1000000);
  parallel_for(64, 1, [](int64_t, int64_t) {});  // the workers exist (and, idle, fall asleep)
  if (idle) EXPECT_TRUE(testing::wait_for_sleeping_workers(num_threads() - 1)) << "the pool's workers never slept";
  const bool awake = pool_stats().sleeping == 0;
  const uint64_t jobs = pool_jobs_run();
  adam.step();
  const bool on_pool = pool_jobs_run() > jobs;
  if (!idle && !awake) return {true, bytes_of(w)};  // a worker slept within 1 s: nothing to check
  return {on_pool, bytes_of(w)};
}

// The optimizer step does not wake a sleeping worker for a mid-sized model (core/cpu/optim.cpp:
// waking one costs more than the step saves; mlp_256's 135 k parameters at batch 8), does for a
// large one, and splits a mid-sized one while the workers are awake; the bits are the same as
// at one thread every time.
TEST(ThreadCount, AdamWakesSleepingWorkersOnlyForLargeSteps) {
  struct Case {
    int64_t n;
    bool idle, splits;
  };
  for (const Case c : {Case{135000, true, false}, Case{int64_t(1) << 20, true, true}, Case{135000, false, true}}) {
    const std::string what = std::to_string(c.n) + " parameters, workers " + (c.idle ? "asleep" : "awake");
    std::string one;
    {
      ThreadCountGuard guard(1);
      one = adam_step_after_loop(c.n, c.idle).second;
    }
    ThreadCountGuard guard(2);
    const auto [on_pool, two] = adam_step_after_loop(c.n, c.idle);
    EXPECT_EQ(on_pool, c.splits) << what;
    EXPECT_TRUE(one == two) << what << ": 1 and 2 threads differ";
  }
}

}  // namespace
}  // namespace idem
