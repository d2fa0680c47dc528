// Shared helpers of the kernel benchmarks (bench/kernel_bench.cpp, bench/kernel_checks.cpp):
// CUDA-event timing with manual time, an L2 flush, and the registration hooks that main() calls.
#pragma once
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace idem::bench {

// True when a CUDA GPU is usable (idem built with CUDA and a device visible).
bool gpu_available();
// "NVIDIA H100 80GB HBM3" or "none".
std::string gpu_name();
// gpu_available(), and when it is false the benchmark is marked skipped with the reason.
bool require_gpu(benchmark::State& st);
// Holds on to a result until the timed region ends (the GPU work is queued either way).
inline void keep(Tensor t) {
  benchmark::DoNotOptimize(t);
}

// Registration hooks called from main() in kernel_bench.cpp; `gpu` says whether the CUDA
// benchmarks will run (without a GPU they are registered once each, and skip).
void register_kernel_benchmarks(bool gpu);
void register_kernel_checks(bool gpu);
// bench/op_case_bench.cpp: one benchmark per op-case row, device and direction (CUDA rows only
// when `gpu`); `user_min_time`: --benchmark_min_time was given, so no built-in MinTime.
void register_op_case_benchmarks(bool gpu, bool user_min_time);
// bench/cpu_gemm_bench.cpp: the packed CPU SGEMM against Eigen, interleaved, on the CPU models'
// products at 1 and 2 threads.
void register_cpu_gemm_benchmarks(bool user_min_time);
// bench/host_overhead_bench.cpp: host time per eager op (a chain of one-element ops), on the CPU
// and on CUDA (which skips without a GPU).
void register_host_overhead_benchmarks();

// Work counted per launch, reported as a rate counter:
//   flops -> "TFLOP/s", bytes -> "GB/s".
struct Work {
  double flops = 0;
  double bytes = 0;
};

#ifdef IDEM_WITH_CUDA
// Times `launch` with CUDA events on the current stream: one untimed warm-up call, then per
// benchmark iteration an optional L2 flush (outside the events) and `reps` back-to-back launches
// between two events. The iteration time is the whole elapsed time (so Google Benchmark's
// min-time logic counts what really ran); the counters are per launch: "us/launch", and
// "TFLOP/s" or "GB/s" from it (means over iterations; with repetitions, read the _median line).
// For kernels shorter than the host's launch cost, back-to-back launches measure that cost.
// Any idem::Error from the warm-up turns into SkipWithError.
template <typename F>
void time_gpu(benchmark::State& state, F&& launch, int reps, bool flush, Work work);
#endif

}  // namespace idem::bench

#ifdef IDEM_WITH_CUDA
#include <cuda_runtime.h>

#include "core/kernels/matmul.h"  // cuda::matmul_hand_variant
#include "cuda/common.cuh"

namespace idem::bench {

// Writes a buffer twice the size of L2 so the next kernel starts with cold caches.
void flush_l2();
// Synchronizes the current stream; throws idem::Error on a CUDA error.
void sync_stream();

// Times body() once per benchmark iteration with CUDA events on the current stream (manual
// time), after three untimed calls that warm the caching allocator and the caches. Returns the
// iteration times in seconds, sorted (empty when Google Benchmark ran no iteration), for the
// caller's median and rate counters.
template <typename Body>
std::vector<double> time_each_iteration(benchmark::State& st, Body&& body) {
  const cudaStream_t s = cuda::current_stream();
  for (int i = 0; i < 3; ++i) body();
  IDEM_CUDA_CHECK("bench", cudaStreamSynchronize(s));
  cudaEvent_t a = nullptr, b = nullptr;
  IDEM_CUDA_CHECK("bench", cudaEventCreate(&a));
  IDEM_CUDA_CHECK("bench", cudaEventCreate(&b));
  std::vector<double> t;
  for (auto _ : st) {
    IDEM_CUDA_CHECK("bench", cudaEventRecord(a, s));
    body();
    IDEM_CUDA_CHECK("bench", cudaEventRecord(b, s));
    IDEM_CUDA_CHECK("bench", cudaEventSynchronize(b));
    float ms = 0;
    IDEM_CUDA_CHECK("bench", cudaEventElapsedTime(&ms, a, b));
    st.SetIterationTime(ms * 1e-3);
    t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t;
}

template <typename F>
void time_gpu(benchmark::State& state, F&& launch, int reps, bool flush, Work work) {
  if (!gpu_available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  cudaEvent_t start = nullptr, stop = nullptr;
  try {
    launch();  // warm-up: module load, handle creation, allocator caching
    sync_stream();
    IDEM_CUDA_CHECK("bench", cudaEventCreate(&start));
    IDEM_CUDA_CHECK("bench", cudaEventCreate(&stop));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const cudaStream_t st = cuda::current_stream();
  double total = 0;
  for (auto _ : state) {
    if (flush) flush_l2();
    cudaEventRecord(start, st);
    for (int r = 0; r < reps; ++r) launch();
    cudaEventRecord(stop, st);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3 / reps;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    state.SkipWithError(cudaGetErrorString(err));
    return;
  }
  const double per = total / static_cast<double>(state.iterations());  // seconds per launch
  state.counters["us/launch"] = per * 1e6;
  if (work.flops > 0) state.counters["TFLOP/s"] = work.flops / per * 1e-12;
  if (work.bytes > 0) state.counters["GB/s"] = work.bytes / per * 1e-9;
}

}  // namespace idem::bench
#endif
