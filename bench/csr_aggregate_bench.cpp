// GraphSAGE mean aggregation at the IT³ `sage` benchmark's shape (Google Benchmark, CUDA
// events, manual time): 64 triangulated 32×32 meshes (it3::grid_mesh_batch: V = 65 536 nodes,
// ~6 in-edges each), F = 64, f32 on cuda:0. Unfused = the path layers/gnn.cpp mean_aggregate took
// before the fused op (index_select, segment sum, multiply by inv_in_degree; backward: multiply,
// segment expand, segment sum over the source groups: 3 launches each way, through an (E, F)
// edge tensor); fused = csr_mean_aggregate (1 launch each way, no edge tensor). Both give the
// same bits (tests/csr_aggregate_test.cpp). L1 ops are called directly (no autograd); the
// graph's CSR and groupings are built once, as the Graph cache does. Counters: median_us of the
// timed iterations and launches per call. No L2 flush: x (16 MB) stays L2-resident between the
// layers of a real adaptation too. Without a GPU every benchmark is skipped.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/kernels/runtime.h"
#include "core/ops/csr_aggregate.h"
#include "core/ops/elementwise.h"
#include "core/ops/index.h"
#include "core/ops/segment.h"
#include "it3/models.h"
#include "layers/graph_batch.h"

#ifdef IDEM_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/common.cuh"
#endif

namespace {

using idem::bench::keep;
using idem::bench::require_gpu;

using idem::Tensor;

constexpr int64_t kMeshes = 64;
constexpr int64_t kSide = 32;
constexpr int64_t kF = 64;

#ifdef IDEM_WITH_CUDA

// The mesh batch and everything the two paths read, built once per process on cuda:0.
struct SageData {
  std::shared_ptr<const idem::Graph> graph;
  Tensor x;    // (V, F) node features
  Tensor g;    // (V, F) upstream gradient
  Tensor inv;  // (V, 1) inv_in_degree
  idem::CsrAggregateIndex idx;
  int64_t V = 0, E = 0;
};

const SageData& sage() {
  static const SageData d = [] {
    idem::NoGradGuard ng;
    const idem::Device gpu = idem::Device::cuda(0);
    SageData r;
    r.graph = idem::it3::grid_mesh_batch(kMeshes, kSide, gpu).graph;
    const idem::Graph& g = *r.graph;
    r.V = g.num_nodes;
    r.E = g.num_edges();
    r.x = idem::randn({r.V, kF}, 1, {idem::DType::f32, gpu});
    r.g = idem::randn({r.V, kF}, 2, {idem::DType::f32, gpu});
    r.inv = g.inv_in_degree(idem::DType::f32);
    const idem::GraphCsr& c = g.csr();
    const idem::CsrIndex& s = g.src_groups();
    r.idx = {c.row_ptr, c.src_sorted, s.row_ptr, s.perm, c.perm, g.dst(), g.src_groups_dst()};
    idem::cuda::synchronize(0);
    return r;
  }();
  return d;
}

std::string gpu_name() {
  static const std::string name = idem::cuda::device_properties(0).name;
  return name;
}

// Times body() once per iteration with CUDA events; reports the median and the launches of one
// call.
template <typename Body>
void run_timed(benchmark::State& st, Body&& body) {
  idem::NoGradGuard ng;
  body();  // warm-up, then count the launches of one call
  const uint64_t l0 = idem::cuda::launch_count();
  body();
  const uint64_t launches = idem::cuda::launch_count() - l0;
  const std::vector<double> t = idem::bench::time_each_iteration(st, body);
  if (t.empty()) return;
  st.counters["median_us"] = t[t.size() / 2] * 1e6;
  st.counters["launches"] = static_cast<double>(launches);
  const SageData& d = sage();
  st.SetLabel(gpu_name() + " V=" + std::to_string(d.V) + " E=" + std::to_string(d.E) +
              " F=" + std::to_string(kF));
}

#endif  // IDEM_WITH_CUDA

// out = segment_sum(x[col]) · inv : three launches through an (E, F) tensor.
void BM_sage_mean_unfused_fwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const SageData& d = sage();
  run_timed(st, [&] {
    Tensor xj = idem::ops::index_select(d.x, 0, d.idx.col);
    Tensor s = idem::ops::segment_reduce(xj, d.idx.row_ptr, Tensor(), idem::SegmentOp::sum);
    keep(idem::ops::binary(s, d.inv, idem::BinaryOp::mul));
  });
#endif
}

void BM_sage_mean_fused_fwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const SageData& d = sage();
  run_timed(st, [&] { keep(idem::ops::csr_mean_aggregate(d.x, d.idx)); });
#endif
}

// dx = segment_sum over source groups of expand(g · inv) : three launches.
void BM_sage_mean_unfused_bwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const SageData& d = sage();
  run_timed(st, [&] {
    Tensor h = idem::ops::binary(d.g, d.inv, idem::BinaryOp::mul);
    Tensor he = idem::ops::segment_expand(h, d.idx.row_ptr, Tensor(), d.E, false);
    keep(idem::ops::segment_reduce(he, d.idx.src_ptr, d.idx.src_perm, idem::SegmentOp::sum));
  });
#endif
}

void BM_sage_mean_fused_bwd(benchmark::State& st) {
  if (!require_gpu(st)) return;
#ifdef IDEM_WITH_CUDA
  const SageData& d = sage();
  run_timed(st, [&] { keep(idem::ops::csr_mean_aggregate_backward(d.g, d.idx, d.V)); });
#endif
}

#define SAGE_BENCH(fn) BENCHMARK(fn)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2)

SAGE_BENCH(BM_sage_mean_unfused_fwd);
SAGE_BENCH(BM_sage_mean_fused_fwd);
SAGE_BENCH(BM_sage_mean_unfused_bwd);
SAGE_BENCH(BM_sage_mean_fused_bwd);

}  // namespace
