// Host time per eager op: what the framework itself costs around a kernel (issue 15, item 5).
//
// A chain of N ops on one-element tensors, y ← relu(mul(add(y, c), m)) repeated (c = 1e-3,
// m = 0.999: y stays positive and bounded), so the kernels do almost nothing and the time is the
// dispatch path: validation, shape and broadcast checks, the allocation of each output (Tensor,
// TensorImpl, Storage, the allocator), the autograd node and its edges, and for backward the
// engine's graph walk and gradient accumulation.
//
//   host_op/<device>/nograd       the chain under NoGradGuard: the L1 op path alone
//   host_op/<device>/record       the chain with x.requires_grad: L1 plus autograd recording
//   host_op/<device>/record_bwd   the recorded chain, then y.backward(): one forward and one
//                                  backward per op
//
// The us/op counter is the iteration time divided by N (= 96 ops: 32 each of add, mul, relu).
// <device> is cpu (always runs) and cuda (skips without a GPU; on a GPU the iteration ends with
// one synchronization, so us/op is the host time per op when the host is the bottleneck, as it
// is for one-element kernels).
//
// Where a CUDA op's host time goes (GPU only; each times 96 of its unit per iteration):
//   host_op/cuda/nograd_enqueue   the nograd chain, timing only the host's enqueue (the clock
//                                 stops before the synchronization): host time, not GPU time
//   host_launch/cuda/noop         an empty kernel launched as an op launches it (set_device,
//                                 current stream, <<<>>>, launch check), then one synchronization
//   host_launch/cuda/noop_enqueue the same, enqueue only: one launch as idem makes it
//   host_launch/cuda/bare_enqueue the `<<<>>>` and its launch check alone (device and stream
//                                 looked up once): the runtime's own floor on this host
//   host_alloc/cuda               a 4-byte block from the caching allocator and back
//   build-cpu/idem_bench --benchmark_filter='^host_op/cpu/' --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

#include "autograd/functions.h"
#include "bench/bench_common.h"
#include "core/kernels/runtime.h"

namespace idem::bench {

namespace {

constexpr int kRounds = 32;           // rounds of (add, mul, relu)
constexpr int kOps = 3 * kRounds;

enum class Mode { nograd, record, record_bwd };

// The us/op counter: the iteration time over the kOps units of work it ran.
void set_us_per_op(benchmark::State& st) {
  st.counters["us/op"] = benchmark::Counter(double(kOps) * 1e-6,
                                            benchmark::Counter::kIsIterationInvariantRate |
                                                benchmark::Counter::kInvert);
}

Tensor chain(const Tensor& x, const Tensor& c, const Tensor& m) {
  Tensor y = x;
  for (int r = 0; r < kRounds; ++r) y = relu(mul(add(y, c), m));
  return y;
}

void bm_host_op(benchmark::State& st, bool on_gpu, Mode mode) {
  if (on_gpu && !require_gpu(st)) return;
  const Device dev = on_gpu ? Device::cuda(0) : Device::cpu();
  try {
    const Tensor x = full({1}, 0.5, {DType::f32, dev});
    const Tensor c = full({1}, 1e-3, {DType::f32, dev});
    const Tensor m = full({1}, 0.999, {DType::f32, dev});
    x.requires_grad_(mode != Mode::nograd);
    auto once = [&] {
      if (mode == Mode::nograd) {
        NoGradGuard no_grad;
        keep(chain(x, c, m));
      } else {
        Tensor y = chain(x, c, m);
        if (mode == Mode::record_bwd) {
          x.zero_grad();
          y.backward();
        }
        keep(y);
      }
      if (on_gpu) cuda::synchronize(0);
    };
    once();  // warms the allocator caches
    for (auto _ : st) once();
    set_us_per_op(st);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

// Times `enqueue` (96 units of work) by the host clock, then waits for the GPU outside the
// timed span: the host's cost alone.
template <class F>
void time_enqueue(benchmark::State& st, F&& enqueue) {
  enqueue();  // warms the allocator caches and the kernel's module
  cuda::synchronize(0);
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    enqueue();
    const auto t1 = std::chrono::steady_clock::now();
    cuda::synchronize(0);
    st.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  set_us_per_op(st);
}

void bm_nograd_enqueue(benchmark::State& st) {
  if (!require_gpu(st)) return;
  try {
    const Options o{DType::f32, Device::cuda(0)};
    const Tensor x = full({1}, 0.5, o), c = full({1}, 1e-3, o), m = full({1}, 0.999, o);
    NoGradGuard no_grad;
    time_enqueue(st, [&] { keep(chain(x, c, m)); });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

void bm_noop_launch(benchmark::State& st, bool enqueue_only, bool bare = false) {
  if (!require_gpu(st)) return;
  try {
    if (enqueue_only) {
      time_enqueue(st, [bare] { cuda::launch_noop(0, kOps, bare); });
      return;
    }
    cuda::launch_noop(0, kOps);
    cuda::synchronize(0);
    for (auto _ : st) {
      cuda::launch_noop(0, kOps);
      cuda::synchronize(0);
    }
    set_us_per_op(st);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

void bm_alloc(benchmark::State& st) {
  if (!require_gpu(st)) return;
  try {
    time_enqueue(st, [] {
      for (int i = 0; i < kOps; ++i) cuda::release(cuda::alloc(4, 0), 4, 0);
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

}  // namespace

void register_host_overhead_benchmarks() {
  benchmark::RegisterBenchmark("host_op/cuda/nograd_enqueue", bm_nograd_enqueue)
      ->Unit(benchmark::kMicrosecond)
      ->UseManualTime();
  benchmark::RegisterBenchmark("host_launch/cuda/noop",
                               [](benchmark::State& st) { bm_noop_launch(st, false); })
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("host_launch/cuda/noop_enqueue",
                               [](benchmark::State& st) { bm_noop_launch(st, true); })
      ->Unit(benchmark::kMicrosecond)
      ->UseManualTime();
  benchmark::RegisterBenchmark("host_launch/cuda/bare_enqueue",
                               [](benchmark::State& st) { bm_noop_launch(st, true, true); })
      ->Unit(benchmark::kMicrosecond)
      ->UseManualTime();
  benchmark::RegisterBenchmark("host_alloc/cuda", bm_alloc)
      ->Unit(benchmark::kMicrosecond)
      ->UseManualTime();
  for (bool gpu : {false, true})
    for (Mode mode : {Mode::nograd, Mode::record, Mode::record_bwd}) {
      const std::string name = std::string("host_op/") + (gpu ? "cuda/" : "cpu/") +
                               (mode == Mode::nograd   ? "nograd"
                                : mode == Mode::record ? "record"
                                                       : "record_bwd");
      benchmark::RegisterBenchmark(name.c_str(),
                                   [gpu, mode](benchmark::State& st) { bm_host_op(st, gpu, mode); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
}

}  // namespace idem::bench
