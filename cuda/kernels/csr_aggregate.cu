// CUDA CSR mean aggregation, forward and backward, one launch each, no (E, F) intermediate.
// Contract: core/kernels/csr_aggregate.h; reference: core/cpu/csr_aggregate.cpp.
//
// Thread layout (both kernels), the segment kernels' of cuda/kernels/segment.cu (see
// cuda/device_utils.cuh, which holds the walk over a row's edges both files share): a group of G
// consecutive threads (G = the power of two >= F / VW, at most 32) owns one output row; lane
// l owns packs l, l + G, ... of the row, VW = 4 consecutive floats per pack through 16-byte
// loads when F % 4 == 0 and the pointers are 16-byte aligned, else VW = 1. With F = 64 a group
// is 16 threads and a warp serves two rows.
//  - forward: the group of destination row v walks k over [row_ptr[v], row_ptr[v+1]), reads
//    col[k] (one address for the whole group: a broadcast) and the x row col[k] directly;
//  - backward: the group of source row u walks j over its group [src_ptr[u], src_ptr[u+1]),
//    finds the destination v = group_dst[j] (one load, the graph's cached array; the same
//    address for the whole group) — or, when the index has no group_dst, through the
//    dependent chain dst[perm[src_perm[j]]] — then loads inv(v)'s row_ptr pair and the g row v
//    together: like the forward, a chain of two loads per edge (index -> row).
// kUnroll edges' index loads, then their row loads, are issued before their adds, to keep
// loads in flight; the adds stay in edge order. The remaining deg % kUnroll edges of a row are
// walked one at a time, each its own index -> row chain (with ~6 edges a row, 2 of its 3 chain
// latencies; a predicated last block would overlap them — not done, not measured).
// Sums accumulate in double in the CPU's order and round once, the multiply by inv(v) is one
// f32 multiply, so the result is the CPU reference's (and the unfused gather + segment_sum +
// multiply path's) bit for bit. The multiplies are __fmul_rn: a product rounded to f32 before
// it is widened and added, never contracted into a (double) FMA, because the unfused path
// stores it to memory in f32 first. No atomics.
//
// Rows are walked serially by their group, like the segment group kernels: right for GNN
// neighbourhoods (degree ~ 2..30). A graph with a few huge in- or out-degrees (a hub, or
// E >= 64 V) still gives exact results, just with less parallelism per row.
#include <cstdint>

#include "core/kernels/csr_aggregate.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // edges whose loads are in flight together

// inv = 1 / max(hi - lo, 1) in f32, exactly Graph::inv_in_degree's value: the degree converted
// to float (round to nearest), then one correctly rounded division (__fdiv_rn: the same value
// whatever -prec-div / --use_fast_math say).
__device__ __forceinline__ float inv_of(SegmentRange r) {
  return __fdiv_rn(1.0f, static_cast<float>(r.hi > r.lo ? r.hi - r.lo : int64_t{1}));
}

// Destination row of the j-th entry of the source groups, every index clipped into range
// (callers guarantee E >= 1 and V >= 1 when there is an entry). kCached: one load of
// group_dst[j]; else the three dependent loads dst[perm[src_perm[j]]] (perm null: identity).
template <bool kCached>
__device__ __forceinline__ int64_t dst_of(const int64_t* __restrict__ group_dst,
                                          const int64_t* __restrict__ src_perm,
                                          const int64_t* __restrict__ perm,
                                          const int64_t* __restrict__ dst, int64_t j, int64_t E,
                                          int64_t V) {
  if (kCached) return clamp64(group_dst[j], 0, V - 1);
  const int64_t k = clamp64(src_perm[j], 0, E - 1);
  const int64_t e = perm ? clamp64(perm[k], 0, E - 1) : k;
  return clamp64(dst[e], 0, V - 1);
}

// The forward's edges for gather_accumulate: position k reads source row col[k].
struct ColEdges : UnweightedEdges {
  const int64_t* __restrict__ col;
  int64_t U;
  __device__ __forceinline__ ColEdges(const int64_t* __restrict__ c, int64_t u) : col(c), U(u) {}
  __device__ __forceinline__ int64_t row(int64_t k) const { return clamp64(col[k], 0, U - 1); }
};

// The backward's edges: the j-th entry of the source groups reads g row v = dst_of(j) and
// multiplies it by inv(v), the product rounded to f32 before it is widened and added.
template <bool kCached>
struct GroupDstEdges {
  const int64_t* __restrict__ row_ptr;
  const int64_t* __restrict__ group_dst;
  const int64_t* __restrict__ src_perm;
  const int64_t* __restrict__ perm;
  const int64_t* __restrict__ dst;
  int64_t E, V;
  __device__ __forceinline__ int64_t row(int64_t j) const {
    return dst_of<kCached>(group_dst, src_perm, perm, dst, j, E, V);
  }
  __device__ __forceinline__ float weight(int64_t v) const {
    return inv_of(segment_range(row_ptr, v, E));  // clipped as the forward clips it
  }
  __device__ __forceinline__ double term(float x, float inv) const {
    return static_cast<double>(__fmul_rn(x, inv));
  }
};

// out[v] = f32(Σ_k x[col[k]]) · inv(v) : (U,F) -> (V,F)
template <int VW>
__global__ void csr_mean_aggregate_fwd_group_kernel(float* __restrict__ out,
                                                    const float* __restrict__ x,
                                                    const int64_t* __restrict__ row_ptr,
                                                    const int64_t* __restrict__ col, int64_t V,
                                                    int64_t U, int64_t E, int64_t F, int G) {
  for (const SegmentRow r : segment_rows(row_ptr, V, E, G)) {
    const float inv = inv_of({r.lo, r.hi});
    for (const int64_t c : lane_packs(F / VW, G)) {
      double acc[VW] = {};
      gather_accumulate<VW, kUnroll>(acc, x + c * VW, F, r.lo, r.hi, 1, ColEdges(col, U));
      Vec<float, VW> o;
#pragma unroll
      for (int j = 0; j < VW; ++j) o.v[j] = __fmul_rn(static_cast<float>(acc[j]), inv);
      o.store(out + r.v * F + c * VW);
    }
  }
}

// dx[u] = f32(Σ_{j in group u} f32(g[v_j] · inv(v_j))) : (V,F) -> (U,F), plus add[u] when add is
// not null (one f32 add after the rounding: the separate add's bits).
// kCached: group_dst is given (null otherwise: src_perm, perm, dst are). Two instantiations
// rather than a branch per edge, so the cached path's loads are scheduled as plainly as the
// forward's.
template <int VW, bool kCached>
__global__ void csr_mean_aggregate_bwd_group_kernel(
    float* __restrict__ dx, const float* __restrict__ g, const float* __restrict__ add,
    const int64_t* __restrict__ row_ptr,
    const int64_t* __restrict__ src_ptr, const int64_t* __restrict__ group_dst,
    const int64_t* __restrict__ src_perm, const int64_t* __restrict__ perm,
    const int64_t* __restrict__ dst, int64_t V, int64_t U, int64_t E, int64_t F, int G) {
  const GroupDstEdges<kCached> edges{row_ptr, group_dst, src_perm, perm, dst, E, V};
  for (const SegmentRow r : segment_rows(src_ptr, U, E, G)) {  // r.v: source row u
    for (const int64_t c : lane_packs(F / VW, G)) {
      double acc[VW] = {};
      gather_accumulate<VW, kUnroll>(acc, g + c * VW, F, r.lo, r.hi, 1, edges);
      Vec<float, VW> o;
#pragma unroll
      for (int j = 0; j < VW; ++j) o.v[j] = static_cast<float>(acc[j]);
      if (add != nullptr) {
        const Vec<float, VW> a = Vec<float, VW>::load(add + r.v * F + c * VW);
#pragma unroll
        for (int j = 0; j < VW; ++j) o.v[j] = __fadd_rn(a.v[j], o.v[j]);
      }
      o.store(dx + r.v * F + c * VW);
    }
  }
}

void check_f32(const Tensor& t, const char* op) {
  IDEM_CHECK(t.dtype() == DType::f32, op, "CUDA kernels are f32, got ", dtype_name(t.dtype()));
}

}  // namespace

void csr_mean_aggregate_fwd(const Tensor& out, const Tensor& x, const CsrAggregateIndex& idx,
                            CsrAggregateShape s) {
  const char* op = "csr_mean_aggregate";
  if (s.rows == 0 || s.features == 0) return;
  check_f32(x, op);
  set_device(out.device().index);
  float* y = out.data<float>();
  const float* xp = x.data<float>();  // null when U = 0; never read then (E = 0)
  const int64_t* rp = idx.row_ptr.data<int64_t>();
  const int64_t* col = idx.col.data<int64_t>();
  const SegmentLayout l = segment_layout(s.features, {y, xp});
  const int64_t V = s.rows, U = s.sources, E = s.edges, F = s.features;
  launch_grid_stride(IDEM_SITE(op), V * l.group, kThreads,
                     l.vw == 4 ? csr_mean_aggregate_fwd_group_kernel<4>
                               : csr_mean_aggregate_fwd_group_kernel<1>,
                     y, xp, rp, col, V, U, E, F, l.group);
}

void csr_mean_aggregate_bwd(const Tensor& dx, const Tensor& g, const CsrAggregateIndex& idx,
                            CsrAggregateShape s, const Tensor& add) {
  const char* op = "csr_mean_aggregate_backward";
  if (s.sources == 0 || s.features == 0) return;
  check_f32(g, op);
  set_device(dx.device().index);
  float* y = dx.data<float>();
  const float* gp = g.data<float>();  // null when V = 0; never read then (E = 0)
  const float* ap = add.defined() ? add.data<float>() : nullptr;
  const int64_t* rp = idx.row_ptr.data<int64_t>();
  const int64_t* sp = idx.src_ptr.data<int64_t>();
  // The cached destinations when given; else the chain src_perm -> perm -> dst.
  const bool cached = idx.group_dst.defined();
  const int64_t* gdst = cached ? idx.group_dst.data<int64_t>() : nullptr;
  const int64_t* sperm = cached ? nullptr : idx.src_perm.data<int64_t>();
  const int64_t* pm = !cached && idx.perm.defined() ? idx.perm.data<int64_t>() : nullptr;
  const int64_t* dst = cached ? nullptr : idx.dst.data<int64_t>();
  const SegmentLayout l = segment_layout(s.features, {y, gp, ap});
  const int64_t V = s.rows, U = s.sources, E = s.edges, F = s.features;
  const auto kernel = l.vw == 4 ? (cached ? csr_mean_aggregate_bwd_group_kernel<4, true>
                                          : csr_mean_aggregate_bwd_group_kernel<4, false>)
                                : (cached ? csr_mean_aggregate_bwd_group_kernel<1, true>
                                          : csr_mean_aggregate_bwd_group_kernel<1, false>);
  launch_grid_stride(IDEM_SITE(op), U * l.group, kThreads, kernel, y, gp, ap, rp, sp, gdst, sperm, pm,
                     dst, V, U, E, F, l.group);
}

}  // namespace idem::cuda
