// CUDA CSR mean aggregation, forward and backward, one launch each, no (E, F) intermediate.
// Contract: core/kernels/csr_aggregate.h; reference: core/cpu/csr_aggregate.cpp.
//
// Thread layout (both kernels), the segment kernels' of cuda/kernels/segment.cu: a group of G
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
#include <initializer_list>

#include "core/kernels/csr_aggregate.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // edges whose loads are in flight together

template <int VW>
struct alignas(sizeof(float) * VW) Pack {
  float v[VW];
};

__device__ __forceinline__ int64_t clamp64(int64_t x, int64_t lo, int64_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// inv = 1 / max(hi - lo, 1) in f32, exactly Graph::inv_in_degree's value: the degree converted
// to float (round to nearest), then one correctly rounded division (__fdiv_rn: the same value
// whatever -prec-div / --use_fast_math say).
__device__ __forceinline__ float inv_of(int64_t lo, int64_t hi) {
  return __fdiv_rn(1.0f, static_cast<float>(hi > lo ? hi - lo : int64_t{1}));
}

// inv(v) for row v of row_ptr, clipped as the forward clips it.
__device__ __forceinline__ float inv_degree(const int64_t* __restrict__ row_ptr, int64_t v,
                                            int64_t E) {
  const int64_t lo = clamp64(row_ptr[v], 0, E);
  return inv_of(lo, clamp64(row_ptr[v + 1], lo, E));
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

// out[v] = f32(Σ_k x[col[k]]) · inv(v) : (U,F) -> (V,F)
template <int VW>
__global__ void csr_mean_aggregate_fwd_group_kernel(float* __restrict__ out,
                                                    const float* __restrict__ x,
                                                    const int64_t* __restrict__ row_ptr,
                                                    const int64_t* __restrict__ col, int64_t V,
                                                    int64_t U, int64_t E, int64_t F, int G) {
  using P = Pack<VW>;
  const int64_t packs = F / VW;
  const int lane = threadIdx.x % G;
  const int64_t groups_per_block = blockDim.x / G;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * groups_per_block;
  for (int64_t v = blockIdx.x * groups_per_block + threadIdx.x / G; v < V; v += stride) {
    const int64_t lo = clamp64(row_ptr[v], 0, E);
    const int64_t hi = clamp64(row_ptr[v + 1], lo, E);
    const float inv = inv_of(lo, hi);
    for (int64_t c = lane; c < packs; c += G) {
      const float* base = x + c * VW;
      double acc[VW];
#pragma unroll
      for (int j = 0; j < VW; ++j) acc[j] = 0.0;
      int64_t k = lo;
      for (; k + kUnroll <= hi; k += kUnroll) {
        int64_t u[kUnroll];
#pragma unroll
        for (int i = 0; i < kUnroll; ++i) u[i] = clamp64(col[k + i], 0, U - 1);
        P a[kUnroll];
#pragma unroll
        for (int i = 0; i < kUnroll; ++i) a[i] = *reinterpret_cast<const P*>(base + u[i] * F);
#pragma unroll
        for (int i = 0; i < kUnroll; ++i)
#pragma unroll
          for (int j = 0; j < VW; ++j) acc[j] += static_cast<double>(a[i].v[j]);
      }
      for (; k < hi; ++k) {
        const P a = *reinterpret_cast<const P*>(base + clamp64(col[k], 0, U - 1) * F);
#pragma unroll
        for (int j = 0; j < VW; ++j) acc[j] += static_cast<double>(a.v[j]);
      }
      P o;
#pragma unroll
      for (int j = 0; j < VW; ++j) o.v[j] = __fmul_rn(static_cast<float>(acc[j]), inv);
      *reinterpret_cast<P*>(out + v * F + c * VW) = o;
    }
  }
}

// dx[u] = f32(Σ_{j in group u} f32(g[v_j] · inv(v_j))) : (V,F) -> (U,F)
// kCached: group_dst is given (null otherwise: src_perm, perm, dst are). Two instantiations
// rather than a branch per edge, so the cached path's loads are scheduled as plainly as the
// forward's.
template <int VW, bool kCached>
__global__ void csr_mean_aggregate_bwd_group_kernel(
    float* __restrict__ dx, const float* __restrict__ g, const int64_t* __restrict__ row_ptr,
    const int64_t* __restrict__ src_ptr, const int64_t* __restrict__ group_dst,
    const int64_t* __restrict__ src_perm, const int64_t* __restrict__ perm,
    const int64_t* __restrict__ dst, int64_t V, int64_t U, int64_t E, int64_t F, int G) {
  using P = Pack<VW>;
  const int64_t packs = F / VW;
  const int lane = threadIdx.x % G;
  const int64_t groups_per_block = blockDim.x / G;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * groups_per_block;
  for (int64_t u = blockIdx.x * groups_per_block + threadIdx.x / G; u < U; u += stride) {
    const int64_t lo = clamp64(src_ptr[u], 0, E);
    const int64_t hi = clamp64(src_ptr[u + 1], lo, E);
    for (int64_t c = lane; c < packs; c += G) {
      const float* base = g + c * VW;
      double acc[VW];
#pragma unroll
      for (int j = 0; j < VW; ++j) acc[j] = 0.0;
      int64_t q = lo;
      for (; q + kUnroll <= hi; q += kUnroll) {
        int64_t v[kUnroll];
#pragma unroll
        for (int i = 0; i < kUnroll; ++i)
          v[i] = dst_of<kCached>(group_dst, src_perm, perm, dst, q + i, E, V);
        float inv[kUnroll];
        P a[kUnroll];
#pragma unroll
        for (int i = 0; i < kUnroll; ++i) {
          inv[i] = inv_degree(row_ptr, v[i], E);
          a[i] = *reinterpret_cast<const P*>(base + v[i] * F);
        }
#pragma unroll
        for (int i = 0; i < kUnroll; ++i)
#pragma unroll
          for (int j = 0; j < VW; ++j) {
            acc[j] += static_cast<double>(__fmul_rn(a[i].v[j], inv[i]));
          }
      }
      for (; q < hi; ++q) {
        const int64_t v = dst_of<kCached>(group_dst, src_perm, perm, dst, q, E, V);
        const float inv = inv_degree(row_ptr, v, E);
        const P a = *reinterpret_cast<const P*>(base + v * F);
#pragma unroll
        for (int j = 0; j < VW; ++j) {
          acc[j] += static_cast<double>(__fmul_rn(a.v[j], inv));
        }
      }
      P o;
#pragma unroll
      for (int j = 0; j < VW; ++j) o.v[j] = static_cast<float>(acc[j]);
      *reinterpret_cast<P*>(dx + u * F + c * VW) = o;
    }
  }
}

// Launch geometry: as segment.cu's row_launch.
struct RowLaunch {
  int vw;     // 4 (16-byte packs) or 1
  int group;  // threads per row: power of two >= F / vw, at most 32
  unsigned grid;
};

RowLaunch row_launch(int64_t rows, int64_t F, std::initializer_list<const void*> ptrs) {
  bool vec = F % 4 == 0;
  for (const void* p : ptrs) vec = vec && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  RowLaunch l;
  l.vw = vec ? 4 : 1;
  const int64_t packs = F / l.vw;
  l.group = 1;
  while (l.group < 32 && l.group < packs) l.group *= 2;
  l.grid = grid_for(rows * l.group, kThreads);
  return l;
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
  const cudaStream_t st = current_stream();
  float* y = out.data<float>();
  const float* xp = x.data<float>();  // null when U = 0; never read then (E = 0)
  const int64_t* rp = idx.row_ptr.data<int64_t>();
  const int64_t* col = idx.col.data<int64_t>();
  const RowLaunch l = row_launch(s.rows, s.features, {y, xp});
  const int64_t V = s.rows, U = s.sources, E = s.edges, F = s.features;
  if (l.vw == 4) {
    csr_mean_aggregate_fwd_group_kernel<4>
        <<<l.grid, kThreads, 0, st>>>(y, xp, rp, col, V, U, E, F, l.group);
    IDEM_LAUNCH_CHECK(op);
  } else {
    csr_mean_aggregate_fwd_group_kernel<1>
        <<<l.grid, kThreads, 0, st>>>(y, xp, rp, col, V, U, E, F, l.group);
    IDEM_LAUNCH_CHECK(op);
  }
}

void csr_mean_aggregate_bwd(const Tensor& dx, const Tensor& g, const CsrAggregateIndex& idx,
                            CsrAggregateShape s) {
  const char* op = "csr_mean_aggregate_backward";
  if (s.sources == 0 || s.features == 0) return;
  check_f32(g, op);
  set_device(dx.device().index);
  const cudaStream_t st = current_stream();
  float* y = dx.data<float>();
  const float* gp = g.data<float>();  // null when V = 0; never read then (E = 0)
  const int64_t* rp = idx.row_ptr.data<int64_t>();
  const int64_t* sp = idx.src_ptr.data<int64_t>();
  // The cached destinations when given; else the chain src_perm -> perm -> dst.
  const bool cached = idx.group_dst.defined();
  const int64_t* gdst = cached ? idx.group_dst.data<int64_t>() : nullptr;
  const int64_t* sperm = cached ? nullptr : idx.src_perm.data<int64_t>();
  const int64_t* pm = !cached && idx.perm.defined() ? idx.perm.data<int64_t>() : nullptr;
  const int64_t* dst = cached ? nullptr : idx.dst.data<int64_t>();
  const RowLaunch l = row_launch(s.sources, s.features, {y, gp});
  const int64_t V = s.rows, U = s.sources, E = s.edges, F = s.features;
  auto launch = [&](auto kernel) {
    kernel<<<l.grid, kThreads, 0, st>>>(y, gp, rp, sp, gdst, sperm, pm, dst, V, U, E, F, l.group);
    IDEM_LAUNCH_CHECK(op);
  };
  if (l.vw == 4 && cached) {
    launch(csr_mean_aggregate_bwd_group_kernel<4, true>);
  } else if (l.vw == 4) {
    launch(csr_mean_aggregate_bwd_group_kernel<4, false>);
  } else if (cached) {
    launch(csr_mean_aggregate_bwd_group_kernel<1, true>);
  } else {
    launch(csr_mean_aggregate_bwd_group_kernel<1, false>);
  }
}

}  // namespace idem::cuda
