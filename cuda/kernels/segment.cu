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
//    keep loads in flight; the adds stay in edge order, so the sum is the CPU's, bit for bit
//    (gather_accumulate in cuda/device_utils.cuh, shared with cuda/kernels/csr_aggregate.cu).
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
#include <type_traits>

#include "core/kernels/segment.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // edges whose loads are in flight together

// Long-row path (segment sum/mean and their adjoint), see long_rows() below.
constexpr int64_t kLongMinAvgEdges = 64;  // E / V at or above which rows count as long
constexpr int kLongSliceEdges = 8;        // a forward slice gets at least this many edges (avg)
constexpr int kLongMaxThreads = 1024;     // forward block size cap (one row per block)
constexpr int kExpandEdgesPerThread = 4;  // adjoint: edges a thread writes per pack (avg)

// Source row of sorted position k (perm may be null = identity), clipped into [0, E).
__device__ __forceinline__ int64_t edge_at(const int64_t* __restrict__ perm, int64_t k, int64_t E) {
  return perm ? clamp64(perm[k], 0, E - 1) : k;
}

// The edges of a segment sum for gather_accumulate: position k reads source row edge_at(k).
struct PermEdges : UnweightedEdges {
  const int64_t* __restrict__ perm;
  int64_t E;
  __device__ __forceinline__ PermEdges(const int64_t* __restrict__ p, int64_t e) : perm(p), E(e) {}
  __device__ __forceinline__ int64_t row(int64_t k) const { return edge_at(perm, k, E); }
};

// ---------------------------------------------------------------------------------------------
// build_csr

// Out-of-range destinations get key V: after every real row, outside row_ptr's ranges.
__global__ void build_csr_keys_kernel(uint32_t* __restrict__ keys, int32_t* __restrict__ vals,
                                      const int64_t* __restrict__ index, int64_t E, int64_t V) {
  for (const int64_t e : grid_stride(E)) {
    const int64_t d = index[e];
    keys[e] = static_cast<uint32_t>(d >= 0 && d < V ? d : V);
    vals[e] = static_cast<int32_t>(e);
  }
}

// row_ptr[v] = first position q with sorted[q] >= v, for v in [0, V].
__global__ void build_csr_row_ptr_kernel(int64_t* __restrict__ row_ptr,
                                         const uint32_t* __restrict__ sorted, int64_t E,
                                         int64_t V) {
  for (const int64_t v : grid_stride(V + 1)) row_ptr[v] = lower_bound(sorted, E, v);
}

__global__ void build_csr_widen_kernel(int64_t* __restrict__ out, const int32_t* __restrict__ in,
                                       int64_t n) {
  for (const int64_t t : grid_stride(n)) out[t] = in[t];
}

int bits_for(uint64_t max_value) {
  int b = 1;
  while (b < 64 && (max_value >> b) != 0) ++b;
  return b;
}

// ---------------------------------------------------------------------------------------------
// Segment reductions. Thread layout (all segment kernels, cuda/device_utils.cuh): group =
// thread / G owns row v, lane = thread % G owns packs lane, lane + G, ... of the row (F / VW
// packs).

template <int VW, bool kMean>
__global__ void segment_sum_fwd_group_kernel(float* __restrict__ out, const float* __restrict__ src,
                                             const int64_t* __restrict__ row_ptr,
                                             const int64_t* __restrict__ perm, int64_t V, int64_t E,
                                             int64_t F, int G) {
  for (const SegmentRow r : segment_rows(row_ptr, V, E, G)) {
    for (const int64_t c : lane_packs(F / VW, G)) {
      double acc[VW] = {};
      gather_accumulate<VW, kUnroll>(acc, src + c * VW, F, r.lo, r.hi, 1, PermEdges(perm, E));
      const double count = static_cast<double>(r.hi - r.lo);
      Vec<float, VW> o;
#pragma unroll
      for (int j = 0; j < VW; ++j)
        o.v[j] = static_cast<float>(kMean && r.hi > r.lo ? acc[j] / count : acc[j]);
      o.store(out + r.v * F + c * VW);
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
  using P = Vec<float, VW>;
  for (const auto [v, lo, hi] : segment_rows(row_ptr, V, E, G)) {
    for (const int64_t c : lane_packs(F / VW, G)) {
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
        const P a = P::load(base + e * F);
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
      o.store(out + v * F + c * VW);
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
  using P = Vec<float, VW>;
  for (const auto [v, lo, hi] : segment_rows(row_ptr, V, E, G)) {
    if (lo == hi) continue;
    const double count = static_cast<double>(hi - lo);
    for (const int64_t c : lane_packs(F / VW, G)) {
      P val = P::load(g + v * F + c * VW);
      if (kMean) {
#pragma unroll
        for (int j = 0; j < VW; ++j)
          val.v[j] = static_cast<float>(static_cast<double>(val.v[j]) / count);
      }
      for (int64_t k = lo; k < hi; ++k) val.store(out + edge_at(perm, k, E) * F + c * VW);
    }
  }
}

// out[argmax[v, f], f] = g[v, f]: one thread per (v, f); distinct (v, f) hit distinct elements.
__global__ void segment_max_bwd_route_kernel(float* __restrict__ out, const float* __restrict__ g,
                                             const int64_t* __restrict__ argmax, int64_t VF,
                                             int64_t E, int64_t F) {
  for (const int64_t t : grid_stride(VF)) {
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
  using P = Vec<float, VW>;
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
    const auto [lo, hi] = segment_range(row_ptr, v, E);
    // Block-uniform loop (every thread reaches every __syncthreads); lanes past the last pack
    // contribute zeros.
    for (int64_t c0 = 0; c0 < packs; c0 += G) {
      const int64_t c = c0 + lane;
      double acc[VW] = {};
      if (c < packs)
        gather_accumulate<VW, kUnroll>(acc, src + c * VW, F, lo + s, hi, S, PermEdges(perm, E));
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
        o.store(out + v * F + c * VW);
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
  using P = Vec<float, VW>;
  const int64_t packs = F / VW;
  const int lane = threadIdx.x % G;
  const int64_t S = blockDim.x / G;
  const int64_t q = static_cast<int64_t>(blockIdx.y) * S + threadIdx.x / G;
  const int64_t Q = static_cast<int64_t>(gridDim.y) * S;
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    const auto [lo, hi] = segment_range(row_ptr, v, E);
    if (lo + q >= hi) continue;  // also skips empty rows
    const double count = static_cast<double>(hi - lo);
    for (int64_t c = lane; c < packs; c += G) {
      P val = P::load(g + v * F + c * VW);
      if (kMean) {
#pragma unroll
        for (int j = 0; j < VW; ++j)
          val.v[j] = static_cast<float>(static_cast<double>(val.v[j]) / count);
      }
      float* base = out + c * VW;
#pragma unroll 4
      for (int64_t k = lo + q; k < hi; k += Q) val.store(base + edge_at(perm, k, E) * F);
    }
  }
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

// What the segment kernels are given besides the shape: the output and the gathered tensor's
// data (`in` may be null when E = 0: it is never dereferenced then, and null is 16-byte
// aligned), the CSR (perm null when undefined) and the layout for rows at those pointers.
struct SegmentCall {
  float* out;
  const float* in;
  const int64_t* row_ptr;
  const int64_t* perm;
  SegmentLayout l;
};

// Makes out's device current and collects the call.
SegmentCall segment_call(const Tensor& out, const Tensor& in, const Tensor& row_ptr,
                         const Tensor& perm, int64_t F) {
  set_device(out.device().index);
  SegmentCall c;
  c.out = out.data<float>();
  c.in = in.data<float>();
  c.row_ptr = row_ptr.data<int64_t>();
  c.perm = perm.defined() ? perm.data<int64_t>() : nullptr;
  c.l = segment_layout(F, {c.out, c.in});
  return c;
}

// Calls f(std::integral_constant<int, VW>, std::bool_constant<kMean>) for vw (4 or 1) and mean.
template <typename Fn>
void with_vw_mean(int vw, bool mean, Fn&& f) {
  auto with_mean = [&](auto v) {
    if (mean)
      f(v, std::true_type{});
    else
      f(v, std::false_type{});
  };
  if (vw == 4)
    with_mean(std::integral_constant<int, 4>{});
  else
    with_mean(std::integral_constant<int, 1>{});
}

template <int VW, bool kMean>
void launch_sum_fwd_long(const SegmentCall& c, SegmentShape s, const char* name) {
  const int threads = c.l.group * long_slices(s.rows, s.edges, c.l.group);
  const size_t smem = sizeof(double) * VW * threads;
  segment_sum_fwd_long_kernel<VW, kMean><<<grid_for(s.rows, 1), threads, smem, current_stream()>>>(
      c.out, c.in, c.row_ptr, c.perm, s.rows, s.edges, s.features, c.l.group);
  IDEM_LAUNCH_CHECK(name);
}

// Adjoint: kThreads threads (S = kThreads / G slices) per block and C blocks per row, with C
// chosen so a thread writes about kExpandEdgesPerThread edges of an average row.
template <int VW, bool kMean>
void launch_expand_long(const SegmentCall& c, SegmentShape s, const char* name) {
  const int64_t per_block = static_cast<int64_t>(kThreads / c.l.group) * kExpandEdgesPerThread;
  const int64_t avg = s.edges / s.rows;
  const int64_t chunks =
      std::min<int64_t>(std::max<int64_t>((avg + per_block - 1) / per_block, 1), 65535);
  const dim3 grid(grid_for(s.rows, 1), static_cast<unsigned>(chunks));
  segment_expand_bwd_long_kernel<VW, kMean><<<grid, kThreads, 0, current_stream()>>>(
      c.out, c.in, c.row_ptr, c.perm, s.rows, s.edges, s.features, c.l.group);
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
    launch_grid_stride(IDEM_SITE(op), E, kThreads, build_csr_keys_kernel, k_in,
                       vals_in.data<int32_t>(), index.data<int64_t>(), E, V);
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
    launch_grid_stride(IDEM_SITE(op), E, kThreads, build_csr_widen_kernel, perm.data<int64_t>(),
                       vals_out.data<int32_t>(), E);
    sorted_keys = keys_out;
  }
  const uint32_t* sorted =
      E > 0 ? reinterpret_cast<const uint32_t*>(sorted_keys.data<int32_t>()) : nullptr;
  launch_grid_stride(IDEM_SITE(op), V + 1, kThreads, build_csr_row_ptr_kernel,
                     row_ptr.data<int64_t>(), sorted, E, V);
}

// ---- segment reductions ----------------------------------------------------------------------

void segment_reduce_fwd(const Tensor& out, const Tensor& argmax, const Tensor& src,
                        const Tensor& row_ptr, const Tensor& perm, SegmentShape s, SegmentOp op) {
  const char* name = segment_op_name(op);
  if (s.rows == 0 || s.features == 0) return;
  IDEM_CHECK(src.dtype() == DType::f32, name, "CUDA kernels are f32, got ",
             dtype_name(src.dtype()));
  const SegmentCall c = segment_call(out, src, row_ptr, perm, s.features);
  const int64_t V = s.rows, E = s.edges, F = s.features;
  if (op == SegmentOp::max) {
    const auto kernel =
        c.l.vw == 4 ? segment_max_fwd_group_kernel<4> : segment_max_fwd_group_kernel<1>;
    launch_grid_stride(IDEM_SITE(name), V * c.l.group, kThreads, kernel, c.out,
                       argmax.data<int64_t>(), c.in, c.row_ptr, c.perm, V, E, F, c.l.group);
    return;
  }
  with_vw_mean(c.l.vw, op == SegmentOp::mean, [&](auto vw, auto m) {
    constexpr int VW = decltype(vw)::value;
    constexpr bool kMean = decltype(m)::value;
    if (long_rows(V, E))  // few long rows: a block per row
      launch_sum_fwd_long<VW, kMean>(c, s, name);
    else
      launch_grid_stride(IDEM_SITE(name), V * c.l.group, kThreads,
                         segment_sum_fwd_group_kernel<VW, kMean>, c.out, c.in, c.row_ptr, c.perm,
                         V, E, F, c.l.group);
  });
}

void segment_expand(const Tensor& out, const Tensor& g, const Tensor& row_ptr, const Tensor& perm,
                    SegmentShape s, bool mean) {
  const char* op = mean ? "segment_mean_backward" : "segment_sum_backward";
  if (s.rows == 0 || s.edges == 0 || s.features == 0) return;
  IDEM_CHECK(g.dtype() == DType::f32, op, "CUDA kernels are f32, got ", dtype_name(g.dtype()));
  const SegmentCall c = segment_call(out, g, row_ptr, perm, s.features);
  const int64_t V = s.rows, E = s.edges, F = s.features;
  with_vw_mean(c.l.vw, mean, [&](auto vw, auto m) {
    constexpr int VW = decltype(vw)::value;
    constexpr bool kMean = decltype(m)::value;
    if (long_rows(V, E))  // few long rows: each row's writes spread over several blocks
      launch_expand_long<VW, kMean>(c, s, op);
    else
      launch_grid_stride(IDEM_SITE(op), V * c.l.group, kThreads,
                         segment_expand_bwd_group_kernel<VW, kMean>, c.out, c.in, c.row_ptr, c.perm,
                         V, E, F, c.l.group);
  });
}

void segment_max_bwd(const Tensor& out, const Tensor& g, const Tensor& argmax, SegmentShape s) {
  const char* op = "segment_max_backward";
  const int64_t VF = s.rows * s.features;
  if (VF == 0 || s.edges == 0) return;
  IDEM_CHECK(g.dtype() == DType::f32, op, "CUDA kernels are f32, got ", dtype_name(g.dtype()));
  set_device(out.device().index);
  launch_grid_stride(IDEM_SITE(op), VF, kThreads, segment_max_bwd_route_kernel, out.data<float>(),
                     g.data<float>(), argmax.data<int64_t>(), VF, s.edges, s.features);
}

}  // namespace idem::cuda
