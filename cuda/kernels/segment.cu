// CUDA segment kernels: CSR construction and segment reductions. Contract: core/kernels/segment.h;
// reference: core/cpu/segment.cpp.
//
// Determinism without float atomics:
//  - build_csr: keys = destination (u32), values = edge id (i32), sorted by cub's stable LSD radix
//    sort; row_ptr[v] = lower_bound(v) in the sorted keys (one thread per v, a binary search).
//    No atomics of any kind, so row_ptr and perm are the same on every run; stability makes each
//    row list its edges in increasing id, the order the CPU reference sums in.
//  - segment kernels: a group of G consecutive threads (G = the power of two >= F/VW, at most
//    32) owns one output row; each thread owns VW consecutive features (VW = 4 through 16-byte
//    loads when F % 4 == 0 and the pointers allow) and walks the row's edges in sorted order,
//    accumulating in double like the CPU. Four edges' loads are issued before they are added, to
//    keep loads in flight; the adds stay in edge order, so the sum is the CPU's, bit for bit.
//  - long rows (E >= 64 V: global pooling), sum/mean and their adjoint: a block per row, its
//    edges split into fixed slices whose double partials meet in a fixed shared-memory tree
//    (segment_sum_fwd_long_kernel). Same bits on every run, but not the CPU's order: rarely
//    the last bit differs from the CPU's. The adjoint stays bit-exact.
// Unchecked integer values (CUDA tensors are not value-validated, see core/ops/segment.h): indices
// outside [0, V) sort into a sentinel bucket after row V-1 and are dropped; row_ptr is clipped
// to [0, E] and perm / argmax entries to [0, E), so nothing is read or written out of bounds.
#include <algorithm>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <initializer_list>

#include "core/kernels/segment.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // edges whose loads are in flight together

// Long-row path (segment sum/mean and their adjoint), see long_rows() below.
constexpr int64_t kLongMinAvgEdges = 64;  // E / V at or above which rows count as long
constexpr int kLongSliceEdges = 8;        // a forward slice gets at least this many edges (avg)
constexpr int kLongMaxThreads = 1024;     // forward block size cap (one row per block)
constexpr int kExpandEdgesPerThread = 4;  // adjoint: edges a thread writes per pack (avg)

template <int VW>
struct alignas(sizeof(float) * VW) Pack {
  float v[VW];
};

__device__ __forceinline__ int64_t clamp64(int64_t x, int64_t lo, int64_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// Source row of sorted position k (perm may be null = identity), clipped into [0, E).
__device__ __forceinline__ int64_t edge_at(const int64_t* __restrict__ perm, int64_t k, int64_t E) {
  return perm ? clamp64(perm[k], 0, E - 1) : k;
}

// ---------------------------------------------------------------------------------------------
// build_csr

// Out-of-range destinations get key V: after every real row, outside row_ptr's ranges.
__global__ void build_csr_keys_kernel(uint32_t* __restrict__ keys, int32_t* __restrict__ vals,
                                      const int64_t* __restrict__ index, int64_t E, int64_t V) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < E;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = index[e];
    keys[e] = static_cast<uint32_t>(d >= 0 && d < V ? d : V);
    vals[e] = static_cast<int32_t>(e);
  }
}

// row_ptr[v] = first position q with sorted[q] >= v, for v in [0, V].
__global__ void build_csr_row_ptr_kernel(int64_t* __restrict__ row_ptr,
                                         const uint32_t* __restrict__ sorted, int64_t E,
                                         int64_t V) {
  for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v <= V;
       v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = E;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (static_cast<int64_t>(sorted[mid]) < v)
        lo = mid + 1;
      else
        hi = mid;
    }
    row_ptr[v] = lo;
  }
}

__global__ void build_csr_widen_kernel(int64_t* __restrict__ out, const int32_t* __restrict__ in,
                                       int64_t n) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[t] = in[t];
}

int bits_for(uint64_t max_value) {
  int b = 1;
  while (b < 64 && (max_value >> b) != 0) ++b;
  return b;
}

// ---------------------------------------------------------------------------------------------
// Segment reductions. Thread layout (all segment kernels): group = thread / G owns row v,
// lane = thread % G owns packs lane, lane + G, ... of the row (F / VW packs).

template <int VW, bool kMean>
__global__ void segment_sum_fwd_group_kernel(float* __restrict__ out, const float* __restrict__ src,
                                             const int64_t* __restrict__ row_ptr,
                                             const int64_t* __restrict__ perm, int64_t V, int64_t E,
                                             int64_t F, int G) {
  using P = Pack<VW>;
  const int64_t packs = F / VW;
  const int lane = threadIdx.x % G;
  const int64_t groups_per_block = blockDim.x / G;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * groups_per_block;
  for (int64_t v = blockIdx.x * groups_per_block + threadIdx.x / G; v < V; v += stride) {
    const int64_t lo = clamp64(row_ptr[v], 0, E);
    const int64_t hi = clamp64(row_ptr[v + 1], lo, E);
    for (int64_t c = lane; c < packs; c += G) {
      const float* base = src + c * VW;
      double acc[VW];
#pragma unroll
      for (int j = 0; j < VW; ++j) acc[j] = 0.0;
      int64_t k = lo;
      for (; k + kUnroll <= hi; k += kUnroll) {
        P a[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          a[u] = *reinterpret_cast<const P*>(base + edge_at(perm, k + u, E) * F);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
#pragma unroll
          for (int j = 0; j < VW; ++j) acc[j] += static_cast<double>(a[u].v[j]);
      }
      for (; k < hi; ++k) {
        const P a = *reinterpret_cast<const P*>(base + edge_at(perm, k, E) * F);
#pragma unroll
        for (int j = 0; j < VW; ++j) acc[j] += static_cast<double>(a.v[j]);
      }
      const double count = static_cast<double>(hi - lo);
      P o;
#pragma unroll
      for (int j = 0; j < VW; ++j)
        o.v[j] = static_cast<float>(kMean && hi > lo ? acc[j] / count : acc[j]);
      *reinterpret_cast<P*>(out + v * F + c * VW) = o;
    }
  }
}

// First edge always taken; later ones replace a non-NaN best when larger or NaN: the first
// maximum wins and NaN propagates, exactly as the CPU reference.
template <int VW>
__global__ void segment_max_fwd_group_kernel(float* __restrict__ out, int64_t* __restrict__ argmax,
                                             const float* __restrict__ src,
                                             const int64_t* __restrict__ row_ptr,
                                             const int64_t* __restrict__ perm, int64_t V, int64_t E,
                                             int64_t F, int G) {
  using P = Pack<VW>;
  const int64_t packs = F / VW;
  const int lane = threadIdx.x % G;
  const int64_t groups_per_block = blockDim.x / G;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * groups_per_block;
  for (int64_t v = blockIdx.x * groups_per_block + threadIdx.x / G; v < V; v += stride) {
    const int64_t lo = clamp64(row_ptr[v], 0, E);
    const int64_t hi = clamp64(row_ptr[v + 1], lo, E);
    for (int64_t c = lane; c < packs; c += G) {
      const float* base = src + c * VW;
      float best[VW];
      int64_t arg[VW];
#pragma unroll
      for (int j = 0; j < VW; ++j) {
        best[j] = 0.0f;  // an empty row gives 0 ...
        arg[j] = -1;     // ... and routes no gradient
      }
      for (int64_t k = lo; k < hi; ++k) {
        const int64_t e = edge_at(perm, k, E);
        const P a = *reinterpret_cast<const P*>(base + e * F);
#pragma unroll
        for (int j = 0; j < VW; ++j) {
          const float x = a.v[j];
          if (k == lo || (best[j] == best[j] && (x > best[j] || x != x))) {
            best[j] = x;
            arg[j] = e;
          }
        }
      }
      P o;
#pragma unroll
      for (int j = 0; j < VW; ++j) o.v[j] = best[j];
      *reinterpret_cast<P*>(out + v * F + c * VW) = o;
      int64_t* am = argmax + v * F + c * VW;
#pragma unroll
      for (int j = 0; j < VW; ++j) am[j] = arg[j];
    }
  }
}

// out[p(k)] = g[v] (mean: / count) for every k of row v: each output row is written by one
// thread group, exactly once on valid input.
template <int VW, bool kMean>
__global__ void segment_expand_bwd_group_kernel(float* __restrict__ out,
                                                const float* __restrict__ g,
                                                const int64_t* __restrict__ row_ptr,
                                                const int64_t* __restrict__ perm, int64_t V,
                                                int64_t E, int64_t F, int G) {
  using P = Pack<VW>;
  const int64_t packs = F / VW;
  const int lane = threadIdx.x % G;
  const int64_t groups_per_block = blockDim.x / G;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * groups_per_block;
  for (int64_t v = blockIdx.x * groups_per_block + threadIdx.x / G; v < V; v += stride) {
    const int64_t lo = clamp64(row_ptr[v], 0, E);
    const int64_t hi = clamp64(row_ptr[v + 1], lo, E);
    if (lo == hi) continue;
    const double count = static_cast<double>(hi - lo);
    for (int64_t c = lane; c < packs; c += G) {
      P val = *reinterpret_cast<const P*>(g + v * F + c * VW);
      if (kMean) {
#pragma unroll
        for (int j = 0; j < VW; ++j)
          val.v[j] = static_cast<float>(static_cast<double>(val.v[j]) / count);
      }
      for (int64_t k = lo; k < hi; ++k)
        *reinterpret_cast<P*>(out + edge_at(perm, k, E) * F + c * VW) = val;
    }
  }
}

// out[argmax[v, f], f] = g[v, f]: one thread per (v, f); distinct (v, f) hit distinct elements.
__global__ void segment_max_bwd_route_kernel(float* __restrict__ out, const float* __restrict__ g,
                                             const int64_t* __restrict__ argmax, int64_t VF,
                                             int64_t E, int64_t F) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < VF;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = argmax[t];
    if (e >= 0 && e < E) out[e * F + t % F] = g[t];
  }
}

// ---------------------------------------------------------------------------------------------
// Long rows: few output rows, many edges each (global pooling of big graphs; the IT³ `sage`
// benchmark pools 65 536 nodes into 64 graphs). The group kernels above would run one G-thread
// group per row walking 1 024 edges serially: 64 small groups on a 132-SM GPU. Here a row gets
// a whole block. Taken when long_rows(V, E) (see there); the layout depends on (V, E, F) and on
// whether the rows allow 16-byte loads (the lane count G, as in the group kernels).

// Forward sum/mean, one block per row (grid-stride over rows), T = G lanes x S slices threads:
// thread t owns pack c0 + t % G of the current pack tile and slice s = t / G. Slice s sums the
// row's edges lo + s, lo + s + S, lo + s + 2S, ... in double (strided, so the 32/G slices of a
// warp read neighbouring source rows); then the S partials of each feature are combined by a
// fixed binary tree in shared memory (level d adds partial s + S/2^d into s, for s < S/2^d).
// Deterministic: which edges a slice sums, the order it sums them in and the tree's shape
// depend only on (V, E, F), the row's range and the vector width (16-byte loads when F % 4 == 0
// and the pointers are aligned, so an unaligned view of the same data may take another tree),
// never on timing or on the device, and there are no atomics; so every run gives the same bits. It is NOT the CPU's sequential order: both
// accumulate in double and round once to float, so the two differ at most by a rounding of the
// double sum (almost always the same float; parity is within 1e-6 relative).
template <int VW, bool kMean>
__global__ void __launch_bounds__(kLongMaxThreads)
    segment_sum_fwd_long_kernel(float* __restrict__ out, const float* __restrict__ src,
                                const int64_t* __restrict__ row_ptr,
                                const int64_t* __restrict__ perm, int64_t V, int64_t E, int64_t F,
                                int G) {
  using P = Pack<VW>;
  // part[j * T + t]: thread t's partial of feature j of its pack (this layout keeps the
  // shared-memory accesses of a warp on distinct banks). VW * T doubles, sized at launch (at
  // most 32 KB) so blocks of few threads leave room for more blocks per SM.
  extern __shared__ double part[];
  const int T = blockDim.x;
  const int t = threadIdx.x;
  const int S = T / G;
  const int lane = t % G;
  const int s = t / G;
  const int64_t packs = F / VW;
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    const int64_t lo = clamp64(row_ptr[v], 0, E);
    const int64_t hi = clamp64(row_ptr[v + 1], lo, E);
    // Block-uniform loop (every thread reaches every __syncthreads); lanes past the last pack
    // contribute zeros.
    for (int64_t c0 = 0; c0 < packs; c0 += G) {
      const int64_t c = c0 + lane;
      double acc[VW];
#pragma unroll
      for (int j = 0; j < VW; ++j) acc[j] = 0.0;
      if (c < packs) {
        const float* base = src + c * VW;
        const int64_t step = static_cast<int64_t>(S);
        int64_t k = lo + s;
        for (; k + (kUnroll - 1) * step < hi; k += kUnroll * step) {
          P a[kUnroll];
#pragma unroll
          for (int u = 0; u < kUnroll; ++u)
            a[u] = *reinterpret_cast<const P*>(base + edge_at(perm, k + u * step, E) * F);
#pragma unroll
          for (int u = 0; u < kUnroll; ++u)
#pragma unroll
            for (int j = 0; j < VW; ++j) acc[j] += static_cast<double>(a[u].v[j]);
        }
        for (; k < hi; k += step) {
          const P a = *reinterpret_cast<const P*>(base + edge_at(perm, k, E) * F);
#pragma unroll
          for (int j = 0; j < VW; ++j) acc[j] += static_cast<double>(a.v[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < VW; ++j) part[j * T + t] = acc[j];
      __syncthreads();
      // Each level reads only slots >= stride and writes only slots < stride, and ends with a
      // barrier, so no slot is read while it is written; the last barrier also protects the
      // slots before the next tile overwrites them.
      for (int stride = S / 2; stride > 0; stride /= 2) {
        if (s < stride) {
#pragma unroll
          for (int j = 0; j < VW; ++j) {
            acc[j] += part[j * T + t + stride * G];
            part[j * T + t] = acc[j];
          }
        }
        __syncthreads();
      }
      if (s == 0 && c < packs) {
        const double count = static_cast<double>(hi - lo);
        P o;
#pragma unroll
        for (int j = 0; j < VW; ++j)
          o.v[j] = static_cast<float>(kMean && hi > lo ? acc[j] / count : acc[j]);
        *reinterpret_cast<P*>(out + v * F + c * VW) = o;
      }
    }
  }
}

// The adjoint for long rows: grid (rows, C chunks), block = G lanes x S slices. Slice q =
// chunk * S + s of Q = C * S writes edges lo + q, lo + q + Q, ... of the row, so one row's
// writes are spread over C blocks. A pure broadcast: each element gets g[v] (mean: g[v] / count
// computed as the CPU does), so the result is the CPU's bit for bit whatever the order.
template <int VW, bool kMean>
__global__ void segment_expand_bwd_long_kernel(float* __restrict__ out, const float* __restrict__ g,
                                               const int64_t* __restrict__ row_ptr,
                                               const int64_t* __restrict__ perm, int64_t V,
                                               int64_t E, int64_t F, int G) {
  using P = Pack<VW>;
  const int64_t packs = F / VW;
  const int lane = threadIdx.x % G;
  const int64_t S = blockDim.x / G;
  const int64_t q = static_cast<int64_t>(blockIdx.y) * S + threadIdx.x / G;
  const int64_t Q = static_cast<int64_t>(gridDim.y) * S;
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    const int64_t lo = clamp64(row_ptr[v], 0, E);
    const int64_t hi = clamp64(row_ptr[v + 1], lo, E);
    if (lo + q >= hi) continue;  // also skips empty rows
    const double count = static_cast<double>(hi - lo);
    for (int64_t c = lane; c < packs; c += G) {
      P val = *reinterpret_cast<const P*>(g + v * F + c * VW);
      if (kMean) {
#pragma unroll
        for (int j = 0; j < VW; ++j)
          val.v[j] = static_cast<float>(static_cast<double>(val.v[j]) / count);
      }
      float* base = out + c * VW;
#pragma unroll 4
      for (int64_t k = lo + q; k < hi; k += Q)
        *reinterpret_cast<P*>(base + edge_at(perm, k, E) * F) = val;
    }
  }
}

// Launch geometry shared by the row-group kernels.
struct RowLaunch {
  int vw;     // 4 (16-byte packs) or 1
  int group;  // threads per row: power of two >= F / vw, at most 32
  unsigned grid;
};

RowLaunch row_launch(int64_t V, int64_t F, std::initializer_list<const void*> ptrs) {
  bool vec = F % 4 == 0;
  for (const void* p : ptrs) vec = vec && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  RowLaunch l;
  l.vw = vec ? 4 : 1;
  const int64_t packs = F / l.vw;
  l.group = 1;
  while (l.group < 32 && l.group < packs) l.group *= 2;
  l.grid = grid_for(V * l.group, kThreads);
  return l;
}

// The long-row rule: at least kLongMinAvgEdges = 64 edges per output row on average.
//  - It reads only the shapes (row_ptr's values stay on the device), so a given (V, E, F) and
//    pointer alignment always take the same path with the same slicing: the same bits on every
//    run and every GPU.
//  - The group path is fast when there are many rows (one group per row fills the GPU, and each
//    thread's serial walk is short); it keeps the CPU's exact order. GNN neighbour aggregation
//    (average degree ~6) stays there; pooling and the backward of broadcasting a per-graph
//    value to its nodes (index_select_grouped by batch_groups) take the long path.
//  - At 64 edges per row or more, a block gets >= 8 slices of >= 8 edges each (so every thread
//    keeps several loads in flight) and its fixed cost, a log2(S)-level shared-memory tree, is
//    small next to streaming >= 64 source rows; with few rows (pooling: 64 graphs of 1 024
//    nodes) it is the only way to use more than V x G threads. With many long rows it is still
//    one streaming pass over src.
bool long_rows(int64_t V, int64_t E) {
  return V > 0 && E >= kLongMinAvgEdges * V;
}

// Forward slices per row: the largest power of two giving each slice >= kLongSliceEdges edges on
// average within kLongMaxThreads threads, raised to a full warp (G x S >= 32) when G is small.
int long_slices(int64_t V, int64_t E, int group) {
  const int64_t avg = E / V;
  int s = 1;
  while (group * s * 2 <= kLongMaxThreads && static_cast<int64_t>(s) * 2 * kLongSliceEdges <= avg)
    s *= 2;
  while (group * s < 32) s *= 2;
  return s;
}

template <int VW, bool kMean>
void launch_sum_fwd_long(float* y, const float* x, const int64_t* rp, const int64_t* pm,
                         SegmentShape s, int group, cudaStream_t st, const char* name) {
  const int threads = group * long_slices(s.rows, s.edges, group);
  const size_t smem = sizeof(double) * VW * threads;
  segment_sum_fwd_long_kernel<VW, kMean><<<grid_for(s.rows, 1), threads, smem, st>>>(
      y, x, rp, pm, s.rows, s.edges, s.features, group);
  IDEM_LAUNCH_CHECK(name);
}

// Adjoint: kThreads threads (S = kThreads / G slices) per block and C blocks per row, with C
// chosen so a thread writes about kExpandEdgesPerThread edges of an average row.
template <int VW, bool kMean>
void launch_expand_long(float* y, const float* gv, const int64_t* rp, const int64_t* pm,
                        SegmentShape s, int group, cudaStream_t st, const char* name) {
  const int64_t per_block = static_cast<int64_t>(kThreads / group) * kExpandEdgesPerThread;
  const int64_t avg = s.edges / s.rows;
  const int64_t chunks =
      std::min<int64_t>(std::max<int64_t>((avg + per_block - 1) / per_block, 1), 65535);
  const dim3 grid(grid_for(s.rows, 1), static_cast<unsigned>(chunks));
  segment_expand_bwd_long_kernel<VW, kMean>
      <<<grid, kThreads, 0, st>>>(y, gv, rp, pm, s.rows, s.edges, s.features, group);
  IDEM_LAUNCH_CHECK(name);
}

}  // namespace

// ---- build_csr -------------------------------------------------------------------------------

void build_csr(const Tensor& row_ptr, const Tensor& perm, const Tensor& index, SegmentShape s) {
  const char* op = "build_csr";
  set_device(row_ptr.device().index);
  const cudaStream_t st = current_stream();
  const Device dev = row_ptr.device();
  const int64_t E = s.edges, V = s.rows;
  IDEM_CHECK(E < INT32_MAX && static_cast<uint64_t>(V) <= UINT32_MAX, op, "E = ", E, ", V = ", V,
             " too large for the CUDA sort");
  Tensor sorted_keys;
  if (E > 0) {
    // Scratch from the stream-ordered caching allocator: blocks freed on return are only reused
    // by work queued behind these kernels.
    const Options i32{DType::i32, dev};
    Tensor keys_in = empty({E}, i32), keys_out = empty({E}, i32);
    Tensor vals_in = empty({E}, i32), vals_out = empty({E}, i32);
    auto* k_in = reinterpret_cast<uint32_t*>(keys_in.data<int32_t>());
    auto* k_out = reinterpret_cast<uint32_t*>(keys_out.data<int32_t>());
    build_csr_keys_kernel<<<grid_for(E, kThreads), kThreads, 0, st>>>(k_in, vals_in.data<int32_t>(),
                                                                      index.data<int64_t>(), E, V);
    IDEM_LAUNCH_CHECK(op);
    const int end_bit = bits_for(static_cast<uint64_t>(V));  // keys are in [0, V]
    size_t temp_bytes = 0;
    IDEM_CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(
                            nullptr, temp_bytes, k_in, k_out, vals_in.data<int32_t>(),
                            vals_out.data<int32_t>(), static_cast<int>(E), 0, end_bit, st));
    Tensor temp = empty({static_cast<int64_t>(temp_bytes) + 1}, {DType::u8, dev});
    IDEM_CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(
                            temp.raw_data(), temp_bytes, k_in, k_out, vals_in.data<int32_t>(),
                            vals_out.data<int32_t>(), static_cast<int>(E), 0, end_bit, st));
    count_gpu_ops();  // one CUB sort (several kernels inside; the size query above runs none)
    build_csr_widen_kernel<<<grid_for(E, kThreads), kThreads, 0, st>>>(perm.data<int64_t>(),
                                                                       vals_out.data<int32_t>(), E);
    IDEM_LAUNCH_CHECK(op);
    sorted_keys = keys_out;
  }
  const uint32_t* sorted =
      E > 0 ? reinterpret_cast<const uint32_t*>(sorted_keys.data<int32_t>()) : nullptr;
  build_csr_row_ptr_kernel<<<grid_for(V + 1, kThreads), kThreads, 0, st>>>(row_ptr.data<int64_t>(),
                                                                           sorted, E, V);
  IDEM_LAUNCH_CHECK(op);
}

// ---- segment reductions ----------------------------------------------------------------------

void segment_reduce_fwd(const Tensor& out, const Tensor& argmax, const Tensor& src,
                        const Tensor& row_ptr, const Tensor& perm, SegmentShape s, SegmentOp op) {
  const char* name = segment_op_name(op);
  if (s.rows == 0 || s.features == 0) return;
  IDEM_CHECK(src.dtype() == DType::f32, name, "CUDA kernels are f32, got ",
             dtype_name(src.dtype()));
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  float* y = out.data<float>();
  const float* x = src.data<float>();
  const int64_t* rp = row_ptr.data<int64_t>();
  const int64_t* pm = perm.defined() ? perm.data<int64_t>() : nullptr;
  // src may be null when E = 0; it is never dereferenced then, and null is 16-byte aligned.
  const RowLaunch l = row_launch(s.rows, s.features, {y, x});
  const int64_t V = s.rows, E = s.edges, F = s.features;
  if (op != SegmentOp::max && long_rows(V, E)) {  // few long rows: a block per row
    const bool mean = op == SegmentOp::mean;
    if (l.vw == 4 && mean)
      launch_sum_fwd_long<4, true>(y, x, rp, pm, s, l.group, st, name);
    else if (l.vw == 4)
      launch_sum_fwd_long<4, false>(y, x, rp, pm, s, l.group, st, name);
    else if (mean)
      launch_sum_fwd_long<1, true>(y, x, rp, pm, s, l.group, st, name);
    else
      launch_sum_fwd_long<1, false>(y, x, rp, pm, s, l.group, st, name);
    return;
  }
  switch (op) {
    case SegmentOp::sum:
      if (l.vw == 4) {
        segment_sum_fwd_group_kernel<4, false>
            <<<l.grid, kThreads, 0, st>>>(y, x, rp, pm, V, E, F, l.group);
        IDEM_LAUNCH_CHECK(name);
      } else {
        segment_sum_fwd_group_kernel<1, false>
            <<<l.grid, kThreads, 0, st>>>(y, x, rp, pm, V, E, F, l.group);
        IDEM_LAUNCH_CHECK(name);
      }
      break;
    case SegmentOp::mean:
      if (l.vw == 4) {
        segment_sum_fwd_group_kernel<4, true>
            <<<l.grid, kThreads, 0, st>>>(y, x, rp, pm, V, E, F, l.group);
        IDEM_LAUNCH_CHECK(name);
      } else {
        segment_sum_fwd_group_kernel<1, true>
            <<<l.grid, kThreads, 0, st>>>(y, x, rp, pm, V, E, F, l.group);
        IDEM_LAUNCH_CHECK(name);
      }
      break;
    case SegmentOp::max: {
      int64_t* am = argmax.data<int64_t>();
      if (l.vw == 4) {
        segment_max_fwd_group_kernel<4>
            <<<l.grid, kThreads, 0, st>>>(y, am, x, rp, pm, V, E, F, l.group);
        IDEM_LAUNCH_CHECK(name);
      } else {
        segment_max_fwd_group_kernel<1>
            <<<l.grid, kThreads, 0, st>>>(y, am, x, rp, pm, V, E, F, l.group);
        IDEM_LAUNCH_CHECK(name);
      }
      break;
    }
  }
}

void segment_expand(const Tensor& out, const Tensor& g, const Tensor& row_ptr, const Tensor& perm,
                    SegmentShape s, bool mean) {
  const char* op = mean ? "segment_mean_backward" : "segment_sum_backward";
  if (s.rows == 0 || s.edges == 0 || s.features == 0) return;
  IDEM_CHECK(g.dtype() == DType::f32, op, "CUDA kernels are f32, got ", dtype_name(g.dtype()));
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  float* y = out.data<float>();
  const float* gv = g.data<float>();
  const int64_t* rp = row_ptr.data<int64_t>();
  const int64_t* pm = perm.defined() ? perm.data<int64_t>() : nullptr;
  const RowLaunch l = row_launch(s.rows, s.features, {y, gv});
  const int64_t V = s.rows, E = s.edges, F = s.features;
  if (long_rows(V, E)) {  // few long rows: each row's writes spread over several blocks
    if (l.vw == 4 && mean)
      launch_expand_long<4, true>(y, gv, rp, pm, s, l.group, st, op);
    else if (l.vw == 4)
      launch_expand_long<4, false>(y, gv, rp, pm, s, l.group, st, op);
    else if (mean)
      launch_expand_long<1, true>(y, gv, rp, pm, s, l.group, st, op);
    else
      launch_expand_long<1, false>(y, gv, rp, pm, s, l.group, st, op);
    return;
  }
  if (l.vw == 4) {
    if (mean) {
      segment_expand_bwd_group_kernel<4, true>
          <<<l.grid, kThreads, 0, st>>>(y, gv, rp, pm, V, E, F, l.group);
      IDEM_LAUNCH_CHECK(op);
    } else {
      segment_expand_bwd_group_kernel<4, false>
          <<<l.grid, kThreads, 0, st>>>(y, gv, rp, pm, V, E, F, l.group);
      IDEM_LAUNCH_CHECK(op);
    }
  } else {
    if (mean) {
      segment_expand_bwd_group_kernel<1, true>
          <<<l.grid, kThreads, 0, st>>>(y, gv, rp, pm, V, E, F, l.group);
      IDEM_LAUNCH_CHECK(op);
    } else {
      segment_expand_bwd_group_kernel<1, false>
          <<<l.grid, kThreads, 0, st>>>(y, gv, rp, pm, V, E, F, l.group);
      IDEM_LAUNCH_CHECK(op);
    }
  }
}

void segment_max_bwd(const Tensor& out, const Tensor& g, const Tensor& argmax, SegmentShape s) {
  const char* op = "segment_max_backward";
  const int64_t VF = s.rows * s.features;
  if (VF == 0 || s.edges == 0) return;
  IDEM_CHECK(g.dtype() == DType::f32, op, "CUDA kernels are f32, got ", dtype_name(g.dtype()));
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  segment_max_bwd_route_kernel<<<grid_for(VF, kThreads), kThreads, 0, st>>>(
      out.data<float>(), g.data<float>(), argmax.data<int64_t>(), VF, s.edges, s.features);
  IDEM_LAUNCH_CHECK(op);
}

}  // namespace idem::cuda
