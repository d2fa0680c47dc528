// CUDA scaffolding shared by the kernel files (for .cu files only: device code), header-only:
//  - Vec<T, V>: V elements moved as one aligned vector (16-byte loads and stores);
//  - clamp64 and segment_range: indices clipped into range (CUDA tensors are not
//    value-validated, so a kernel never trusts an index it reads); lower_bound over sorted keys;
//  - grid_stride / grid_stride_groups / grid_stride_warps: the indices a thread (or a group of
//    threads) owns in a grid-stride loop;
//  - launch_grid_stride: a launch sized from n on the current stream, with the launch check of
//    cuda/common.cuh;
//  - warp_sum / warp_max / block_sum / block_max (and the generic warp_allreduce and
//    block_allreduce): reductions in one fixed order, so results are deterministic;
//  - segment_layout, segment_rows, lane_packs and gather_accumulate: the GNN segment kernels'
//    thread layout and their walk over a row's edges (cuda/kernels/segment.cu,
//    cuda/kernels/csr_aggregate.cu).
// Nothing here changes what a kernel computes: each piece is the code the kernels held before,
// with the same arithmetic in the same order.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda/common.cuh"

namespace idem::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// ---------------------------------------------------------------------------------------------
// Vector packs.

// V elements of T as one aligned unit: a load or store of a Vec is one 16-byte (or narrower)
// memory access. The pointer must be aligned to sizeof(Vec) (see is_aligned).
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
  __device__ __forceinline__ static Vec load(const T* p) {
    return *reinterpret_cast<const Vec*>(p);
  }
  __device__ __forceinline__ void store(T* p) const { *reinterpret_cast<Vec*>(p) = *this; }
};

__host__ __device__ __forceinline__ bool is_aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// ---------------------------------------------------------------------------------------------
// Indices.

__host__ __device__ __forceinline__ int64_t clamp64(int64_t x, int64_t lo, int64_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// Segment v of a CSR row pointer, clipped: 0 <= lo <= hi <= E whatever row_ptr holds.
struct SegmentRange {
  int64_t lo, hi;
};
__device__ __forceinline__ SegmentRange segment_range(const int64_t* __restrict__ row_ptr,
                                                      int64_t v, int64_t E) {
  const int64_t lo = clamp64(row_ptr[v], 0, E);
  return {lo, clamp64(row_ptr[v + 1], lo, E)};
}

// The first position q in [0, n) with sorted[q] >= key (n when there is none): a binary search
// over keys sorted in ascending order (unsigned keys, key >= 0).
template <typename K>
__device__ __forceinline__ int64_t lower_bound(const K* __restrict__ sorted, int64_t n,
                                               int64_t key) {
  static_assert(std::is_unsigned<K>::value, "unsigned keys");
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (static_cast<uint64_t>(sorted[mid]) < static_cast<uint64_t>(key))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// ---------------------------------------------------------------------------------------------
// Grid-stride loops: `for (const int64_t i : grid_stride(n))` visits i = first, first + step,
// ... < n, where first is the thread's (or group's) global index and step the number of threads
// (groups) in the grid. I is the index type (uint32_t where every index fits: cheaper
// arithmetic); the global index and the step are computed in I.

template <typename I>
class StrideRange {
 public:
  class Iter {
   public:
    __device__ __forceinline__ Iter(I i, I step) : i_(i), step_(step) {}
    __device__ __forceinline__ I operator*() const { return i_; }
    __device__ __forceinline__ Iter& operator++() {
      i_ += step_;
      return *this;
    }
    // Range-for compares against end() with !=: "not yet past the end".
    __device__ __forceinline__ bool operator!=(const Iter& end) const { return i_ < end.i_; }

   private:
    I i_, step_;
  };
  __device__ __forceinline__ StrideRange(I first, I end, I step)
      : first_(first), end_(end), step_(step) {}
  __device__ __forceinline__ Iter begin() const { return Iter(first_, step_); }
  __device__ __forceinline__ Iter end() const { return Iter(end_, step_); }

 private:
  I first_, end_, step_;
};

// One item a thread: begin + global thread index, then steps of the whole grid, up to end.
template <typename I>
__device__ __forceinline__ StrideRange<I> grid_stride(I begin, I end) {
  const I first = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) +
                  static_cast<I>(threadIdx.x);
  return StrideRange<I>(begin + first, end, static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x));
}
template <typename I>
__device__ __forceinline__ StrideRange<I> grid_stride(I n) {
  return grid_stride<I>(I(0), n);
}

// One item per group of `width` consecutive threads (blockDim.x a multiple of width): group
// threadIdx.x / width of block b takes items b · (blockDim.x / width) + that, then steps of all
// the grid's groups. Every thread of a group gets the same items.
__device__ __forceinline__ StrideRange<int64_t> grid_stride_groups(int64_t n, int width) {
  const int64_t per_block = static_cast<int64_t>(blockDim.x / width);
  return StrideRange<int64_t>(blockIdx.x * per_block + threadIdx.x / width, n,
                              static_cast<int64_t>(gridDim.x) * per_block);
}
// One item per warp.
__device__ __forceinline__ StrideRange<int64_t> grid_stride_warps(int64_t n) {
  return grid_stride_groups(n, 32);
}

// ---------------------------------------------------------------------------------------------
// Launch.

// Where a launch is made: the op name and the caller's file and line, for launch_check's error
// message. Write IDEM_SITE(op) at the call.
struct LaunchSite {
  const char* op;
  const char* file;
  int line;
};
#define IDEM_SITE(op) (::idem::cuda::LaunchSite{(op), __FILE__, __LINE__})

namespace detail {
template <typename T>
struct Same {
  using type = T;
};
}  // namespace detail

// kernel<<<grid_for(n, threads), threads, 0, current_stream()>>>(args...), then the launch check
// (which also counts the launch, cuda/common.cuh). For grid-stride kernels only: the grid is
// capped by grid_for, so the kernel must loop over its n items (n: threads wanted, e.g. items
// x 32 for a warp per item). The arguments convert to the kernel's parameter types here.
template <typename... Params>
void launch_grid_stride(const LaunchSite& at, int64_t n, int threads, void (*kernel)(Params...),
                        typename detail::Same<Params>::type... args) {
  kernel<<<grid_for(n, threads), threads, 0, current_stream()>>>(args...);
  IDEM_LAUNCH_CHECK_AT(at);
}

// ---------------------------------------------------------------------------------------------
// Fixed-order reductions.
//
// Warp: a butterfly. For d = 16, 8, 4, 2, 1 every lane sets v = op(v, v of lane ^ d), so every
// lane ends with the warp's total. For a lane l < d the partner l ^ d is l + d, and by induction
// over d the lanes below 2d hold the same values as in a __shfl_down tree (v = op(v, v of
// lane + d)): lane 0 combines the same operands in the same order in both, so the two trees give
// lane 0 the same bits (the down tree leaves the other lanes partial). The same holds within
// aligned groups of W lanes for d < W (reduce.cu's short rows).
//
// Block: every warp reduces its values, warp w's lane 0 stores them in scratch[k · 32 + w], then
// every warp reduces scratch[k · 32 + lane] (identity past the last warp) the same way. Every
// thread gets the totals. blockDim.x must be a multiple of 32 (at most 1024) and every thread of
// the block must call it; it begins with a barrier, so scratch may be reused call after call.

template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  static_assert(std::is_arithmetic<T>::value, "shfl_xor moves one arithmetic value");
  if constexpr (std::is_same<T, float>::value || std::is_same<T, double>::value)
    return __shfl_xor_sync(kFullMask, v, lane_mask);
  else if constexpr (sizeof(T) <= 4)
    return static_cast<T>(__shfl_xor_sync(kFullMask, static_cast<int>(v), lane_mask));
  else
    return static_cast<T>(__shfl_xor_sync(kFullMask, static_cast<long long>(v), lane_mask));
}

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};
// fmaxf: NaN is skipped, not propagated (softmax's max).
struct FmaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// shfl_xor is found by argument-dependent lookup too, so a kernel file can shuffle its own
// accumulator struct by declaring shfl_xor(Acc, int) next to it.
template <typename T, typename Op>
__device__ __forceinline__ T warp_allreduce(T v, Op op) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v = op(v, shfl_xor(v, d));
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  return warp_allreduce(v, SumOp{});
}
__device__ __forceinline__ float warp_max(float v) {
  return warp_allreduce(v, FmaxOp{});
}

// K values at once; scratch holds K * 32 values.
template <int K, typename T, typename Op>
__device__ __forceinline__ void block_allreduce(T (&v)[K], T* scratch, Op op, T identity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = warp_allreduce(v[k], op);
  __syncthreads();  // scratch may still be read by the previous call
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) scratch[k * 32 + warp] = v[k];
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < K; ++k)
    v[k] = warp_allreduce(lane < nwarps ? scratch[k * 32 + lane] : identity, op);
}

template <int K, typename T>
__device__ __forceinline__ void block_sum(T (&v)[K], T* scratch) {
  block_allreduce<K>(v, scratch, SumOp{}, T(0));
}
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  T a[1] = {v};
  block_sum<1>(a, scratch);
  return a[0];
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  float a[1] = {v};
  block_allreduce<1>(a, scratch, FmaxOp{}, -INFINITY);
  return a[0];
}

// ---------------------------------------------------------------------------------------------
// GNN segment gather (cuda/kernels/segment.cu, cuda/kernels/csr_aggregate.cu).
//
// Thread layout of the segment kernels: a group of G consecutive threads (G = the power of two
// >= F / VW, at most 32) owns one output row; lane l = threadIdx.x % G owns packs l, l + G, ...
// of the row's F / VW packs of VW floats (VW = 4: 16-byte loads when F % 4 == 0 and the
// pointers are 16-byte aligned; else 1).

struct SegmentLayout {
  int vw;     // 4 (16-byte packs) or 1
  int group;  // threads per row: power of two >= F / vw, at most 32
};

// The layout for rows of F floats at the given pointers (a null pointer counts as aligned).
inline SegmentLayout segment_layout(int64_t F, std::initializer_list<const void*> ptrs) {
  bool vec = F % 4 == 0;
  for (const void* p : ptrs) vec = vec && is_aligned(p, 16);
  SegmentLayout l;
  l.vw = vec ? 4 : 1;
  const int64_t packs = F / l.vw;
  l.group = 1;
  while (l.group < 32 && l.group < packs) l.group *= 2;
  return l;
}

// Row v of a segment kernel and its edges [lo, hi) (segment_range: clipped).
struct SegmentRow {
  int64_t v, lo, hi;
};

// `for (const SegmentRow r : segment_rows(row_ptr, V, E, G))`: the rows of [0, V) that this
// thread's group of G owns (grid_stride_groups), each with its clipped edge range.
class SegmentRows {
 public:
  class Iter {
   public:
    __device__ __forceinline__ Iter(StrideRange<int64_t>::Iter it, const int64_t* row_ptr,
                                    int64_t E)
        : it_(it), row_ptr_(row_ptr), E_(E) {}
    __device__ __forceinline__ SegmentRow operator*() const {
      const int64_t v = *it_;
      const SegmentRange r = segment_range(row_ptr_, v, E_);
      return {v, r.lo, r.hi};
    }
    __device__ __forceinline__ Iter& operator++() {
      ++it_;
      return *this;
    }
    __device__ __forceinline__ bool operator!=(const Iter& end) const { return it_ != end.it_; }

   private:
    StrideRange<int64_t>::Iter it_;
    const int64_t* row_ptr_;
    int64_t E_;
  };
  __device__ __forceinline__ SegmentRows(StrideRange<int64_t> rows, const int64_t* row_ptr,
                                         int64_t E)
      : rows_(rows), row_ptr_(row_ptr), E_(E) {}
  __device__ __forceinline__ Iter begin() const { return Iter(rows_.begin(), row_ptr_, E_); }
  __device__ __forceinline__ Iter end() const { return Iter(rows_.end(), row_ptr_, E_); }

 private:
  StrideRange<int64_t> rows_;
  const int64_t* row_ptr_;
  int64_t E_;
};
__device__ __forceinline__ SegmentRows segment_rows(const int64_t* __restrict__ row_ptr,
                                                    int64_t V, int64_t E, int G) {
  return SegmentRows(grid_stride_groups(V, G), row_ptr, E);
}

// The packs of a row that this thread owns as lane threadIdx.x % G of its group: lane, lane + G,
// ... < packs.
__device__ __forceinline__ StrideRange<int64_t> lane_packs(int64_t packs, int G) {
  return StrideRange<int64_t>(threadIdx.x % G, packs, G);
}

// What the gathered rows are multiplied by before they are added (see gather_accumulate): the
// plain sums take each value as it is.
struct Unweighted {};
struct UnweightedEdges {
  __device__ __forceinline__ Unweighted weight(int64_t) const { return {}; }
  __device__ __forceinline__ double term(float x, Unweighted) const {
    return static_cast<double>(x);
  }
};

// acc[j] += edges.term(x[j], w) for the VW floats x at base + row · F of every edge k = lo,
// lo + step, ... < hi, in that order, where row = edges.row(k) and w = edges.weight(row).
// Edges is a functor with row(k) (the source row of edge k, clipped into range), weight(row)
// (any per-row factor, loaded with the row) and term(x, w) (the value added, in double).
// kUnroll edges at a time first resolve their rows, then issue their weight and row loads, then
// add in edge order: the loads are in flight together and the sum is the sequential one, bit
// for bit. The remaining edges (fewer than kUnroll) are walked one at a time.
template <int VW, int kUnroll, typename Edges>
__device__ __forceinline__ void gather_accumulate(double (&acc)[VW], const float* base, int64_t F,
                                                  int64_t lo, int64_t hi, int64_t step,
                                                  const Edges& edges) {
  using P = Vec<float, VW>;
  using W = decltype(edges.weight(int64_t{0}));
  int64_t k = lo;
  for (; k + (kUnroll - 1) * step < hi; k += kUnroll * step) {
    int64_t row[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) row[u] = edges.row(k + u * step);
    W w[kUnroll];
    P a[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      w[u] = edges.weight(row[u]);
      a[u] = P::load(base + row[u] * F);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int j = 0; j < VW; ++j) acc[j] += edges.term(a[u].v[j], w[u]);
  }
  for (; k < hi; k += step) {
    const int64_t row = edges.row(k);
    const W w = edges.weight(row);
    const P a = P::load(base + row * F);
#pragma unroll
    for (int j = 0; j < VW; ++j) acc[j] += edges.term(a.v[j], w);
  }
}

}  // namespace idem::cuda
