// Segment family benchmarks (Google Benchmark, CUDA events, manual time): scatter / segment
// aggregation on a random graph with E = 2^20 edges, V = 100 000 nodes, F = 64 (f32), forward
// and backward, plus build_csr and a device-to-device copy of the same size as the reference.
//
// Bandwidth counts the bytes that must move (each edge row read once, each node row written
// once, the integer arrays once), not what the kernel happens to move:
//   scatter/segment forward  E·F·4 + V·F·4 + index bytes (E·8 for an index, (V+1)·8 for row_ptr)
//   backward (expand/gather) V·F·4 + E·F·4 + index bytes
// The copy reference counts read + write (2·N), the same convention. Every line reports GB/s
// from the median iteration, the fraction of the copy bandwidth measured in the same process
// (frac_of_copy; the target is >= 0.5), and the GPU's name. The working set (256 MiB of edge
// rows) is far larger than L2, so no flush is needed. Without a GPU every benchmark is skipped.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/segment_functions.h"
#include "bench/bench_common.h"
#include "core/kernels/runtime.h"
#include "core/ops/index.h"
#include "core/ops/segment.h"

#ifdef IDEM_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/common.cuh"
#endif

namespace {

using idem::bench::keep;
using idem::bench::require_gpu;

using idem::Tensor;

constexpr int64_t kE = int64_t{1} << 20;
constexpr int64_t kV = 100000;
constexpr int64_t kF = 64;

constexpr double kRowBytes = 4.0 * kF;
constexpr double kForwardBytes = kE * kRowBytes + kV * kRowBytes;  // + index bytes per case

#ifdef IDEM_WITH_CUDA

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) idem::fail("segment_bench", what, ": ", cudaGetErrorString(e));
}

// The graph, built once per process on cuda:0.
struct GraphData {
  Tensor x;         // (E, F) edge messages
  Tensor dst;       // (E) random destinations in [0, V)
  Tensor row_ptr;   // (V+1) CSR of dst
  Tensor perm;      // (E) stable sort of dst
  Tensor x_sorted;  // (E, F) messages already in row order (a fixed, pre-sorted graph)
  Tensor g;         // (V, F) upstream gradient
  Tensor argmax;    // (V, F) from scatter_max, for its backward
};

const GraphData& graph() {
  static const GraphData d = [] {
    idem::NoGradGuard ng;
    const idem::Device gpu = idem::Device::cuda(0);
    GraphData r;
    const std::vector<double> u = idem::rand({kE}, 1234, {idem::DType::f64}).to_vector<double>();
    std::vector<int64_t> dst(kE);
    for (int64_t e = 0; e < kE; ++e)
      dst[e] = std::min<int64_t>(kV - 1, static_cast<int64_t>(u[e] * kV));
    r.dst = idem::from_vector<int64_t>(dst, {kE}, gpu);
    r.x = idem::randn({kE, kF}, 1, {idem::DType::f32, gpu});
    r.g = idem::randn({kV, kF}, 2, {idem::DType::f32, gpu});
    idem::ops::Csr c = idem::ops::build_csr(r.dst, kV);
    r.row_ptr = c.row_ptr;
    r.perm = c.perm;
    r.x_sorted = idem::ops::index_select(r.x, 0, r.perm);
    idem::ops::scatter_rows(r.x, r.dst, kV, idem::SegmentOp::max, &r.argmax);
    idem::cuda::synchronize(0);
    return r;
  }();
  return d;
}

std::string gpu_name() {
  static const std::string name = idem::cuda::device_properties(0).name;
  return name;
}

// Median seconds of `reps` timed runs of body() (after warm-up), CUDA events on the idem stream.
template <typename Body>
double median_seconds(int reps, Body&& body) {
  const cudaStream_t s = idem::cuda::current_stream();
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  for (int i = 0; i < 3; ++i) body();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(a, s), "cudaEventRecord");
    body();
    check(cudaEventRecord(b, s), "cudaEventRecord");
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// One D2D copy of the edge-message size: the bandwidth every graph line is compared against.
struct CopyBuffers {
  Tensor src = idem::randn({kE, kF}, 3, {idem::DType::f32, idem::Device::cuda(0)});
  Tensor dst = idem::empty({kE, kF}, {idem::DType::f32, idem::Device::cuda(0)});
  void run() const {
    check(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(), cudaMemcpyDeviceToDevice,
                          idem::cuda::current_stream()),
          "cudaMemcpyAsync");
  }
};

const CopyBuffers& copy_buffers() {
  static const CopyBuffers c;
  return c;
}

double copy_gbps() {
  static const double gbps = [] {
    const CopyBuffers& c = copy_buffers();
    const double s = median_seconds(51, [&] { c.run(); });
    return 2.0 * static_cast<double>(c.src.nbytes()) / s / 1e9;
  }();
  return gbps;
}

// Times body() once per benchmark iteration with CUDA events (manual time) and reports GB/s of
// the median iteration against the copy reference.
template <typename Body>
void run_timed(benchmark::State& st, double bytes, Body&& body) {
  idem::NoGradGuard ng;
  const double copy = copy_gbps();
  const std::vector<double> t = idem::bench::time_each_iteration(st, body);
  if (t.empty()) return;
  const double med = t[t.size() / 2];
  const double gbps = bytes / med / 1e9;
  st.counters["median_us"] = med * 1e6;
  st.counters["GB/s"] = gbps;
  st.counters["copy_GB/s"] = copy;
  st.counters["frac_of_copy"] = gbps / copy;
  st.SetLabel(gpu_name() + " E=" + std::to_string(kE) + " V=" + std::to_string(kV) +
              " F=" + std::to_string(kF));
}

#endif  // IDEM_WITH_CUDA

void BM_graph_copy_reference(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const CopyBuffers& c = copy_buffers();
  run_timed(st, 2.0 * static_cast<double>(c.src.nbytes()), [&] { c.run(); });
#endif
}

// Pre-sorted fixed graph: no perm, the edge rows stream in order.
void BM_graph_segment_sum_csr_fwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + (kV + 1) * 8.0,
            [&] { keep(idem::segment_sum_csr(d.x_sorted, d.row_ptr)); });
#endif
}

// Fixed graph with a prebuilt CSR over unsorted edges: rows gathered through perm.
void BM_graph_segment_sum_perm_fwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + (kV + 1) * 8.0 + kE * 8.0,
            [&] { keep(idem::ops::segment_reduce(d.x, d.row_ptr, d.perm, idem::SegmentOp::sum)); });
#endif
}

// The full scatter: build_csr (sort) + segment sum, every call.
void BM_graph_scatter_add_rows_fwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + kE * 8.0, [&] { keep(idem::scatter_add_rows(d.x, d.dst, kV)); });
#endif
}

void BM_graph_scatter_mean_rows_fwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + kE * 8.0, [&] { keep(idem::scatter_mean_rows(d.x, d.dst, kV)); });
#endif
}

// Also writes the (V, F) i64 argmax.
void BM_graph_scatter_max_rows_fwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + kE * 8.0 + kV * kF * 8.0,
            [&] { keep(idem::scatter_max_rows(d.x, d.dst, kV)); });
#endif
}

void BM_graph_build_csr(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kE * 8.0 + kE * 8.0 + (kV + 1) * 8.0,
            [&] { keep(idem::ops::build_csr(d.dst, kV).perm); });
#endif
}

// Backward of segment_sum_csr: g's rows repeated per edge.
void BM_graph_segment_sum_csr_bwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + (kV + 1) * 8.0,
            [&] { keep(idem::ops::segment_expand(d.g, d.row_ptr, Tensor(), kE, false)); });
#endif
}

// Backward of scatter_mean_rows: expand through perm, divided by the counts.
void BM_graph_scatter_mean_rows_bwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + (kV + 1) * 8.0 + kE * 8.0,
            [&] { keep(idem::ops::segment_expand(d.g, d.row_ptr, d.perm, kE, true)); });
#endif
}

// Backward of scatter_add_rows: index_select(g, 0, dst).
void BM_graph_scatter_add_rows_bwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + kE * 8.0, [&] { keep(idem::ops::index_select(d.g, 0, d.dst)); });
#endif
}

// Backward of scatter_max_rows: zero fill (E·F·4) plus routing g through argmax (V·F·(4+8)).
void BM_graph_scatter_max_rows_bwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const GraphData& d = graph();
  run_timed(st, kForwardBytes + kV * kF * 8.0,
            [&] { keep(idem::ops::segment_max_backward(d.g, d.argmax, kE)); });
#endif
}

#define GRAPH_BENCH(fn) BENCHMARK(fn)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2)

GRAPH_BENCH(BM_graph_copy_reference);
GRAPH_BENCH(BM_graph_segment_sum_csr_fwd);
GRAPH_BENCH(BM_graph_segment_sum_perm_fwd);
GRAPH_BENCH(BM_graph_scatter_add_rows_fwd);
GRAPH_BENCH(BM_graph_scatter_mean_rows_fwd);
GRAPH_BENCH(BM_graph_scatter_max_rows_fwd);
GRAPH_BENCH(BM_graph_build_csr);
GRAPH_BENCH(BM_graph_segment_sum_csr_bwd);
GRAPH_BENCH(BM_graph_scatter_mean_rows_bwd);
GRAPH_BENCH(BM_graph_scatter_add_rows_bwd);
GRAPH_BENCH(BM_graph_scatter_max_rows_bwd);

}  // namespace
