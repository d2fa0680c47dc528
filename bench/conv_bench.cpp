// Convolution benchmarks (Google Benchmark, CUDA events, manual time): the hand-written
// kernels (cuda::conv2d_hand) against cuDNN (cuda::conv2d_cudnn, FP32 FMA math, no TF32) on the
// fmnist CNN's two layers at batch 256 (tiled kernels) and the bn_cnn demo's two big layers at
// batch 128, padding 1 (implicit GEMM in all three directions; fmnist2's bwd_weight too):
//   fmnist1:     x (256,1,28,28)  * w (10,1,5,5)   -> (256,10,24,24)
//   fmnist2:     x (256,10,12,12) * w (20,10,5,5)  -> (256,20,8,8)
//   bn_cnn2:     x (128,32,14,14) * w (64,32,3,3)  -> (128,64,14,14)
//   bn_cnn_head: x (128,64,7,7)   * w (64,64,3,3)  -> (128,64,7,7)
// and the bench `cnn`'s two layers at batch 8, where an IT³ adaptation at small batch spends
// its convolution time (few images, so few blocks):
//   cnn8_1:      x (8,1,28,28)    * w (10,1,5,5)   -> (8,10,24,24)
//   cnn8_2:      x (8,10,12,12)   * w (20,10,5,5)  -> (8,20,8,8)
// and its two layers at batch 64, and bn_cnn's first layer (bwd_weight per image, as fmnist1's):
//   cnn64_1:     x (64,1,28,28)   * w (10,1,5,5)   -> (64,10,24,24)
//   cnn64_2:     x (64,10,12,12)  * w (20,10,5,5)  -> (64,20,8,8)
//   bn_cnn1:     x (128,1,28,28)  * w (32,1,3,3)   -> (128,32,28,28), padding 1
// for fwd (with bias), bwd_data, bwd_weight and bwd (= bwd_data + bwd_weight, what a training
// step runs for a layer whose input needs a gradient). bwd_weight has a third line,
// hand_two_pass: the two-pass kernels the implicit GEMM and the per-image kernel replaced (cuda::
// conv2d_bwd_weight_two_pass), timed in the same process for the before / after.
//
// Timing: the kernel functions are called directly (no validation or autograd). One untimed
// warm-up call (module load, cuDNN handle and algorithm choice, allocator caching). Each
// iteration flushes L2 (the operands fit in it), then holds the stream with a host function
// while the call is enqueued, so the events measure GPU time only — not the host cost of
// enqueueing (cuDNN builds descriptors per call; idem allocates bwd_weight's workspace). Time is
// microseconds per call; GFLOP/s = 2·N·O·P·Q·(C/G)·R·S per direction (bwd: twice that) / time.
// hand lines also report hand_over_cudnn (time ratio against the cuDNN line of the same case,
// measured just before in the same process; the target is <= 3) and max_abs_diff, the largest
// difference between the two backends' outputs. Read the _median lines. Without a GPU (or
// without cuDNN for the cudnn lines) every benchmark skips with a message.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_common.h"
#include "core/kernels/conv.h"
#include "core/kernels/runtime.h"
#include "core/ops/conv.h"

#ifdef IDEM_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/common.cuh"
#endif

namespace {

using idem::ConvDir;
using idem::ConvShape;
using idem::Tensor;

struct Layer {
  const char* name;
  idem::Shape x, w;
  int64_t pad = 0;  // both axes; stride and dilation 1
};
const Layer kLayers[] = {
    {"fmnist1", {256, 1, 28, 28}, {10, 1, 5, 5}},
    {"fmnist2", {256, 10, 12, 12}, {20, 10, 5, 5}},
    // The bn_cnn demo's two layers that take the implicit GEMM.
    {"bn_cnn2", {128, 32, 14, 14}, {64, 32, 3, 3}, 1},
    {"bn_cnn_head", {128, 64, 7, 7}, {64, 64, 3, 3}, 1},
    // The bench cnn at batch 8 (a small-batch adaptation).
    {"cnn8_1", {8, 1, 28, 28}, {10, 1, 5, 5}},
    {"cnn8_2", {8, 10, 12, 12}, {20, 10, 5, 5}},
    // The bench cnn's layers at batch 64 and bn_cnn's first layer (bwd_weight per image).
    {"cnn64_1", {64, 1, 28, 28}, {10, 1, 5, 5}},
    {"cnn64_2", {64, 10, 12, 12}, {20, 10, 5, 5}},
    {"bn_cnn1", {128, 1, 28, 28}, {32, 1, 3, 3}, 1},
};

enum class Dir { fwd, bwd_data, bwd_weight, bwd };
// hand_two_pass: conv2d_hand, except bwd_weight forced onto the two-pass kernels.
enum class Impl { cudnn, hand, hand_two_pass };
const char* impl_name(Impl i) {
  return i == Impl::cudnn ? "cudnn" : i == Impl::hand ? "hand" : "hand_two_pass";
}
const char* dir_name(Dir d) {
  switch (d) {
    case Dir::fwd:
      return "fwd";
    case Dir::bwd_data:
      return "bwd_data";
    case Dir::bwd_weight:
      return "bwd_weight";
    case Dir::bwd:
      return "bwd";
  }
  return "?";
}

#ifdef IDEM_WITH_CUDA

// cuDNN per-repetition times (seconds per call), by "layer/dir", for the hand lines' ratio.
std::mutex g_mu;
std::map<std::string, std::vector<double>> g_cudnn_times;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Operands of one layer on cuda:0, made once per process.
struct Operands {
  ConvShape s;
  Tensor x, w, b, y, dy, dx, dw;
};

const Operands& operands(const Layer& l) {
  static std::map<std::string, Operands> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(l.name);
  if (it != cache.end()) return it->second;
  const idem::Options gpu{idem::DType::f32, idem::Device::cuda(0)};
  Operands o;
  idem::ConvParams p;
  p.pad_h = p.pad_w = l.pad;
  o.s = idem::ops::conv2d_shape(l.x, l.w, p, "conv_bench");
  o.x = idem::randn(l.x, 1, gpu);
  o.w = idem::randn(l.w, 2, gpu);
  o.b = idem::randn({o.s.O}, 3, gpu);
  o.y = idem::empty({o.s.N, o.s.O, o.s.P, o.s.Q}, gpu);
  o.dy = idem::randn({o.s.N, o.s.O, o.s.P, o.s.Q}, 4, gpu);
  o.dx = idem::empty(l.x, gpu);
  o.dw = idem::empty(l.w, gpu);
  return cache.emplace(l.name, std::move(o)).first->second;
}

// One call of `dir` with implementation `impl`.
void run(const Operands& o, Dir dir, Impl impl) {
  auto call = [&](ConvDir d, const Tensor& out, const Tensor& a, const Tensor& b,
                  const Tensor& bias) {
    if (impl == Impl::cudnn)
      idem::cuda::conv2d_cudnn(d, out, a, b, bias, o.s);
    else if (impl == Impl::hand_two_pass && d == ConvDir::bwd_weight)
      idem::cuda::conv2d_bwd_weight_two_pass(out, a, b, o.s);
    else
      idem::cuda::conv2d_hand(d, out, a, b, bias, o.s);
  };
  switch (dir) {
    case Dir::fwd:
      call(ConvDir::fwd, o.y, o.x, o.w, o.b);
      break;
    case Dir::bwd_data:
      call(ConvDir::bwd_data, o.dx, o.dy, o.w, Tensor());
      break;
    case Dir::bwd_weight:
      call(ConvDir::bwd_weight, o.dw, o.dy, o.x, Tensor());
      break;
    case Dir::bwd:
      call(ConvDir::bwd_data, o.dx, o.dy, o.w, Tensor());
      call(ConvDir::bwd_weight, o.dw, o.dy, o.x, Tensor());
      break;
  }
}

// Blocks the stream until the host has enqueued the timed work (or 1 s passes, so a call that
// unexpectedly waits on the stream cannot deadlock: its time would then show as ~1 s).
void CUDART_CB hold_stream(void* flag) {
  auto* go = static_cast<std::atomic<int>*>(flag);
  const auto t0 = std::chrono::steady_clock::now();
  while (go->load(std::memory_order_acquire) == 0 &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1))
    std::this_thread::yield();
}

// Largest |impl − cuDNN| over the outputs of `dir` (0 when cuDNN is unavailable).
double diff_vs_cudnn(const Operands& o, Dir dir, Impl impl) {
  auto outputs = [&]() -> std::vector<float> {
    std::vector<float> v;
    auto add = [&](const Tensor& t) {
      const auto h = t.to_vector<float>();
      v.insert(v.end(), h.begin(), h.end());
    };
    if (dir == Dir::fwd) add(o.y);
    if (dir == Dir::bwd_data || dir == Dir::bwd) add(o.dx);
    if (dir == Dir::bwd_weight || dir == Dir::bwd) add(o.dw);
    return v;
  };
  run(o, dir, impl);
  const auto hand = outputs();
  try {
    run(o, dir, Impl::cudnn);
  } catch (const idem::Error&) {
    return 0;
  }
  const auto ref = outputs();
  double worst = 0;
  for (size_t i = 0; i < hand.size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(hand[i]) - ref[i]));
  return worst;
}

#endif  // IDEM_WITH_CUDA

void bm_conv(benchmark::State& state, const Layer& layer, Dir dir, Impl impl) {
#ifdef IDEM_WITH_CUDA
  const bool cudnn = impl == Impl::cudnn;
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const Operands* op = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  try {
    op = &operands(layer);
    run(*op, dir, impl);  // warm-up; a missing cuDNN build throws here
    idem::bench::sync_stream();
    IDEM_CUDA_CHECK("conv_bench", cudaEventCreate(&start));
    IDEM_CUDA_CHECK("conv_bench", cudaEventCreate(&stop));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const ConvShape& s = op->s;
  double flops = 2.0 * s.N * s.O * s.P * s.Q * s.Cg() * s.R * s.S;
  if (dir == Dir::bwd) flops *= 2;
  const cudaStream_t st = idem::cuda::current_stream();
  double total = 0;
  for (auto _ : state) {
    idem::bench::flush_l2();
    std::atomic<int> go{0};
    cudaLaunchHostFunc(st, hold_stream, &go);
    cudaEventRecord(start, st);
    run(*op, dir, impl);
    cudaEventRecord(stop, st);
    go.store(1, std::memory_order_release);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    state.SkipWithError(cudaGetErrorString(err));
    return;
  }
  const double per = total / static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = flops / per * 1e-9;
  const std::string key = std::string(layer.name) + "/" + dir_name(dir);
  if (cudnn) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_cudnn_times[key].push_back(per);
  } else {
    double ref = 0;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      ref = median(g_cudnn_times[key]);
    }
    if (ref > 0) state.counters["hand_over_cudnn"] = per / ref;
    state.counters["max_abs_diff"] = diff_vs_cudnn(*op, dir, impl);
  }
  state.SetLabel(idem::bench::gpu_name());
#else
  (void)layer;
  (void)dir;
  (void)impl;
  state.SkipWithError("idem was built without CUDA");
#endif
}

// cuDNN first, so every hand line can quote the ratio against it. Without a GPU each line is
// registered with one iteration and no repetitions, so it skips once.
const bool g_registered = [] {
  const bool gpu = idem::cuda::available();
  for (const Layer& l : kLayers)
    for (Dir d : {Dir::fwd, Dir::bwd_data, Dir::bwd_weight, Dir::bwd})
      for (Impl impl : {Impl::cudnn, Impl::hand, Impl::hand_two_pass}) {
        if (impl == Impl::hand_two_pass && d != Dir::bwd_weight) continue;
        const std::string name =
            std::string("conv2d/") + l.name + "/" + dir_name(d) + "/" + impl_name(impl);
        auto* b = benchmark::RegisterBenchmark(
            name.c_str(), [&l, d, impl](benchmark::State& st) { bm_conv(st, l, d, impl); });
        b->UseManualTime()->Unit(benchmark::kMicrosecond);
        if (gpu)
          b->MinTime(0.1)->Repetitions(5)->ReportAggregatesOnly(true);
        else
          b->Iterations(1);
      }
  return true;
}();

}  // namespace
