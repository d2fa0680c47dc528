// Op-case benchmarks: the op-case table (tests/op_cases/op_cases.h) drives timings too, as
// ggml's test-backend-ops does in its perf mode. Every row of all_op_cases() becomes
//
//   op_case/<device>/<family>/<row>/fwd        the L2 call, out = row.fn(inputs)
//   op_case/<device>/<family>/<row>/fwd_bwd    the same call, then out.backward(g)
//
// <device> is `cpu` (f32, always registered) and `cuda` (f32, registered only when a GPU is
// usable when idem_bench starts). fwd_bwd exists for rows with a gradient (row.gradcheck or
// row.grad_parity, and at least one differentiable floating input); g is one fixed random
// upstream gradient, so the backward is exactly the op's own (no extra loss op), and the
// inputs' gradients are dropped (zero_grad, a host-only call) before each backward so nothing
// accumulates.
//
// Select with Google Benchmark's filter, e.g.
//   idem_bench --benchmark_filter='^op_case/cpu/softmax/' --benchmark_min_time=0.01
// (Google Benchmark appends /min_time:0.050 and /manual_time to the names: filter on the prefix.
// Without --benchmark_min_time each line runs for at least 0.05 s.)
//
// What is timed: the whole L2 call as a user makes it (validation, allocation from the caching
// allocator, autograd recording, the kernels), not the kernel alone; bench/kernel_bench.cpp
// times kernels alone. Each iteration is `reps` back-to-back calls (1 on the CPU, 20 on CUDA)
// and, on CUDA, one synchronization, timed with a steady host clock (manual time) and divided by
// reps: the Time column is per call. One untimed warm-up call first. The op-case shapes are the
// small ones the gradient checks use, so on a GPU these lines measure what a launch-bound IT³
// step pays per op (host work plus launch), not bandwidth.
//
// Counters:
//   bytes_per_second  a lower bound on the memory traffic: fwd counts every input read once and
//                     the output written once; fwd_bwd adds the upstream gradient read once and
//                     every input gradient written once
//   launches          (CUDA) kernels and vendor calls per call, from cuda::launch_count()
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/kernels/runtime.h"
#include "tests/op_cases/op_cases.h"

namespace idem::bench {

namespace {

using testing::OpCase;

constexpr uint64_t kSeed = 20261205;
constexpr int kGpuReps = 20;

int64_t bytes_of(const Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(dtype_size(t.dtype())) : 0;
}

// True when the row's forward+backward makes sense: a gradient and a differentiable input.
bool has_backward(const OpCase& c) {
  if (!c.gradcheck && !c.grad_parity) return false;
  for (const auto& in : c.inputs)
    if (in.differentiable && in.kind != testing::InputKind::index &&
        in.kind != testing::InputKind::mask)
      return true;
  return false;
}

void bm_op_case(benchmark::State& st, const OpCase& c, Device device, bool backward) {
  const bool gpu = device.is_cuda();
  const int reps = gpu ? kGpuReps : 1;
  std::vector<Tensor> in;
  Tensor g;
  int64_t bytes = 0;
  uint64_t launches = 0;
  std::vector<Tensor> leaves;  // the inputs whose gradients backward writes
  auto call = [&] {
    Tensor out = c.fn(in);
    if (backward) {
      for (const Tensor& t : leaves) t.zero_grad();
      out.backward(g);
    }
    keep(out);
  };
  try {
    in = testing::make_inputs(c, kSeed, DType::f32, device);
    for (size_t i = 0; i < in.size(); ++i)
      if (backward && c.inputs[i].differentiable && is_floating(in[i].dtype())) {
        in[i].requires_grad_();
        leaves.push_back(in[i]);
      }
    Tensor out = c.fn(in);
    for (const Tensor& t : in) bytes += bytes_of(t);
    bytes += bytes_of(out);
    if (backward) {
      if (!is_floating(out.dtype()) || !out.requires_grad()) {
        st.SkipWithError("the output does not require grad");
        return;
      }
      g = randn(out.shape(), kSeed + 1, {DType::f32, device});
      bytes += bytes_of(g);
      for (const Tensor& t : leaves) bytes += bytes_of(t);
    }
    call();  // warm-up: the allocator's cache, module load, first-use setup
    if (gpu) {
      cuda::synchronize(device.index);
      const uint64_t before = cuda::launch_count();
      call();
      launches = cuda::launch_count() - before;
      cuda::synchronize(device.index);
    }
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  using clock = std::chrono::steady_clock;
  for (auto _ : st) {
    const auto t0 = clock::now();
    for (int r = 0; r < reps; ++r) call();
    if (gpu) cuda::synchronize(device.index);
    const std::chrono::duration<double> dt = clock::now() - t0;
    st.SetIterationTime(dt.count() / reps);
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * bytes);
  if (gpu) st.counters["launches"] = static_cast<double>(launches);
  st.SetLabel(gpu ? gpu_name() : "cpu");
}

}  // namespace

void register_op_case_benchmarks(bool gpu, bool user_min_time) {
  std::vector<Device> devices = {Device::cpu()};
  if (gpu) devices.push_back(Device::cuda(0));
  for (const Device& d : devices)
    for (const OpCase& c : testing::all_op_cases())
      for (bool backward : {false, true}) {
        if (backward && !has_backward(c)) continue;
        const std::string name = std::string("op_case/") + (d.is_cuda() ? "cuda" : "cpu") + "/" +
                                 c.family + "/" + c.name + "/" + (backward ? "fwd_bwd" : "fwd");
        // all_op_cases() lives for the whole process, so the row can be captured by reference.
        auto* b = benchmark::RegisterBenchmark(
            name.c_str(),
            [&c, d, backward](benchmark::State& st) { bm_op_case(st, c, d, backward); });
        b->UseManualTime()->Unit(benchmark::kMicrosecond);
        // Hundreds of lines: a short default, unless --benchmark_min_time says otherwise.
        if (!user_min_time) b->MinTime(0.05);
      }
}

}  // namespace idem::bench
