// CUDA reductions over (outer, R, inner) -> (outer, inner): sum, max, min, argmax.
//
// Deterministic: no atomics. Every output is a fixed tree over its R inputs — a sequential run
// per thread, then warp shuffles and a shared-memory tree in a fixed order — and the launch
// configuration (threads, chunking, number of partials, vector width) depends only on the sizes
// and on whether the input is 16-byte aligned, never on the GPU, so the same input gives the
// same bits on every run and every card.
//
// Kernel shapes:
//  - inner == 1, R <= 1024: a group of W <= 32 lanes per row, 32/W rows per warp
//    (reduce_fwd_warp_kernel);
//  - inner == 1, R > 1024: one block per row chunk, 16-byte vector loads, several in flight per
//    thread (reduce_fwd_row_kernel); long rows with few outputs are split into at most 1024
//    chunks whose partials a second (warp) pass combines;
//  - inner > 1: threads across inner (coalesced, up to 4 elements per thread through vector
//    loads), blockDim.y threads stacked along R, each looping over its slice of R, then a
//    shared-memory tree over the stack (reduce_fwd_col_kernel); few outputs with long R are
//    split along R into partials and combined by a second pass of the same kernel.
// Sums accumulate in double (integers in int64), as the CPU reference does, and round once.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/kernels/reduce.h"
#include "core/kernels/runtime.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kWarpRowThreads = 256;  // 8 rows per block
constexpr int kRowThreads = 512;
constexpr int kColThreads = 256;
constexpr int kUnroll = 4;  // loads in flight per thread
constexpr int64_t kWarpRowMax = 1024;
// Long reductions with few outputs are split until about this many blocks exist. A constant,
// not a multiple of the SM count, so the summation tree is the same on every GPU.
constexpr int64_t kTargetBlocks = 1024;

template <typename T>
struct ArgAcc {
  T v;
  int64_t i;
};

// The warp shuffle of an argmax accumulator, for the shared trees (cuda/device_utils.cuh finds
// it by argument-dependent lookup). The using-declaration keeps the arithmetic shfl_xor visible
// next to it in this namespace.
using ::idem::cuda::shfl_xor;
template <typename T>
__device__ __forceinline__ ArgAcc<T> shfl_xor(ArgAcc<T> a, int lane_mask) {
  return {shfl_xor(a.v, lane_mask), shfl_xor(a.i, lane_mask)};
}

template <typename T>
__device__ __forceinline__ bool is_nan(T v) {
  return v != v;  // false for integers
}

template <typename T>
__device__ __forceinline__ T lowest() {
  if constexpr (std::is_floating_point<T>::value)
    return -std::numeric_limits<T>::infinity();
  else
    return std::numeric_limits<T>::lowest();
}

template <typename T>
__device__ __forceinline__ T highest() {
  if constexpr (std::is_floating_point<T>::value)
    return std::numeric_limits<T>::infinity();
  else
    return std::numeric_limits<T>::max();
}

// ---- the four reductions: an accumulator, its identity, a combine and the final write ----

template <typename T, ReduceOp OP>
struct Red;

template <typename T>
struct Red<T, ReduceOp::sum> {
  using Acc = std::conditional_t<std::is_floating_point<T>::value, double, int64_t>;
  using Out = T;
  __device__ static Acc identity() { return Acc(0); }
  __device__ static Acc make(T v, int64_t) { return static_cast<Acc>(v); }
  __device__ static Acc combine(Acc a, Acc b) { return a + b; }
  __device__ static Out finalize(Acc a) { return static_cast<Out>(a); }
};

// max/min: NaN propagates (torch.amax), matching the CPU kernel.
template <typename T>
struct Red<T, ReduceOp::max> {
  using Acc = T;
  using Out = T;
  __device__ static Acc identity() { return lowest<T>(); }
  __device__ static Acc make(T v, int64_t) { return v; }
  __device__ static Acc combine(Acc a, Acc b) {
    if (is_nan(a)) return a;
    if (is_nan(b)) return b;
    return b > a ? b : a;
  }
  __device__ static Out finalize(Acc a) { return a; }
};

template <typename T>
struct Red<T, ReduceOp::min> {
  using Acc = T;
  using Out = T;
  __device__ static Acc identity() { return highest<T>(); }
  __device__ static Acc make(T v, int64_t) { return v; }
  __device__ static Acc combine(Acc a, Acc b) {
    if (is_nan(a)) return a;
    if (is_nan(b)) return b;
    return b < a ? b : a;
  }
  __device__ static Out finalize(Acc a) { return a; }
};

// argmax: a total order (NaN above everything, ties to the smaller index) makes the result the
// first maximum whatever the tree, as the CPU kernel's sequential scan gives.
template <typename T>
struct Red<T, ReduceOp::argmax> {
  using Acc = ArgAcc<T>;
  using Out = int64_t;
  __device__ static Acc identity() { return {lowest<T>(), std::numeric_limits<int64_t>::max()}; }
  __device__ static Acc make(T v, int64_t i) { return {v, i}; }
  __device__ static Acc combine(Acc a, Acc b) {
    const bool an = is_nan(a.v), bn = is_nan(b.v);
    if (an != bn) return an ? a : b;
    if (!an && a.v != b.v) return a.v > b.v ? a : b;
    return a.i <= b.i ? a : b;
  }
  __device__ static Out finalize(Acc a) {
    return a.i == std::numeric_limits<int64_t>::max() ? 0 : a.i;  // R == 0
  }
};

// Element `off` of the input: a raw value at reduce position r, or (second pass) a partial.
template <typename Rd, typename T, bool PART>
__device__ __forceinline__ typename Rd::Acc load_acc(const void* in, int64_t off, int64_t r) {
  if constexpr (PART)
    return static_cast<const typename Rd::Acc*>(in)[off];
  else
    return Rd::make(static_cast<const T*>(in)[off], r);
}

// Rd::combine as a functor.
template <typename Rd>
struct CombineOp {
  __device__ __forceinline__ typename Rd::Acc operator()(typename Rd::Acc a,
                                                         typename Rd::Acc b) const {
    return Rd::combine(a, b);
  }
};

// The block's total in every thread (block_allreduce: a fixed tree). `smem` holds 32 Acc.
template <typename Rd>
__device__ __forceinline__ typename Rd::Acc block_reduce(typename Rd::Acc a,
                                                         typename Rd::Acc* smem) {
  typename Rd::Acc v[1] = {a};
  block_allreduce<1>(v, smem, CombineOp<Rd>{}, Rd::identity());
  return v[0];
}

// ---- inner == 1, short rows: W lanes per row (W a power of two <= 32, 32/W rows per warp) ----
// Lane l of a group reads vectors l, l + W, ... of its row (VW elements each, 16-byte loads when
// VW > 1), then the group folds itself with shuffles. Short rows thus still fill whole warps
// with coalesced loads (W = 1: one lane per row, consecutive rows). A warp keeps RU row sets and
// U vectors per row in flight: RU = 4 when a row fits in one pass of its group, else U = 4.
// Either way each lane combines its vectors in ascending order, so the result is the same.
template <typename T, ReduceOp OP, bool PART, int VW, int RU, int U>
__global__ void reduce_fwd_warp_kernel(typename Red<T, OP>::Out* __restrict__ out,
                                       const void* __restrict__ in, int64_t rows, int64_t len,
                                       int W) {
  using Rd = Red<T, OP>;
  using Acc = typename Rd::Acc;
  static_assert(!PART || VW == 1, "partials are read one at a time");
  const int lane = threadIdx.x & 31;
  const int group = lane / W, gl = lane % W;
  const int64_t rows_per_warp = 32 / W;
  const int64_t step_rows = rows_per_warp * RU;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const int64_t nv = len / VW;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  for (int64_t first = warp_id * step_rows; first < rows; first += warps * step_rows) {
    Acc acc[RU];
#pragma unroll
    for (int ru = 0; ru < RU; ++ru) acc[ru] = Rd::identity();
    for (int64_t j = gl; j < nv; j += static_cast<int64_t>(W) * U) {
      if constexpr (PART) {
        Acc buf[RU][U];
#pragma unroll
        for (int ru = 0; ru < RU; ++ru) {
          const int64_t row = first + ru * rows_per_warp + group;
#pragma unroll
          for (int u = 0; u < U; ++u)
            if (row < rows && j + u * W < nv)
              buf[ru][u] = static_cast<const Acc*>(in)[row * len + j + u * W];
        }
#pragma unroll
        for (int ru = 0; ru < RU; ++ru) {
          const int64_t row = first + ru * rows_per_warp + group;
#pragma unroll
          for (int u = 0; u < U; ++u)
            if (row < rows && j + u * W < nv) acc[ru] = Rd::combine(acc[ru], buf[ru][u]);
        }
      } else {
        Vec<T, VW> buf[RU][U];
#pragma unroll
        for (int ru = 0; ru < RU; ++ru) {
          const int64_t row = first + ru * rows_per_warp + group;
          const Vec<T, VW>* p =
              reinterpret_cast<const Vec<T, VW>*>(static_cast<const T*>(in) + row * len);
#pragma unroll
          for (int u = 0; u < U; ++u)
            if (row < rows && j + u * W < nv) buf[ru][u] = p[j + u * W];
        }
#pragma unroll
        for (int ru = 0; ru < RU; ++ru) {
          const int64_t row = first + ru * rows_per_warp + group;
#pragma unroll
          for (int u = 0; u < U; ++u) {
            if (row < rows && j + u * W < nv) {
#pragma unroll
              for (int k = 0; k < VW; ++k)
                acc[ru] = Rd::combine(acc[ru], Rd::make(buf[ru][u].v[k], (j + u * W) * VW + k));
            }
          }
        }
      }
    }
    // A butterfly within each group of W lanes (xor d < W stays inside the group), the fixed
    // tree of warp_allreduce (cuda/device_utils.cuh): every lane ends with its group's value.
    for (int d = W / 2; d > 0; d >>= 1) {
#pragma unroll
      for (int ru = 0; ru < RU; ++ru) acc[ru] = Rd::combine(acc[ru], shfl_xor(acc[ru], d));
    }
    if (gl == 0) {
#pragma unroll
      for (int ru = 0; ru < RU; ++ru) {
        const int64_t row = first + ru * rows_per_warp + group;
        if (row < rows) out[row] = Rd::finalize(acc[ru]);
      }
    }
  }
}

// ---- inner == 1, long rows: one block per (row, chunk) ----
// The chunk [lo, hi) of each row starts at a multiple of VW elements and, when VW > 1, the
// host has checked that row starts are 16-byte aligned. With G == 1 the result goes to `out`,
// otherwise the block's partial goes to part[row * G + chunk].
template <typename T, ReduceOp OP, int VW>
__global__ void __launch_bounds__(kRowThreads)
    reduce_fwd_row_kernel(typename Red<T, OP>::Out* __restrict__ out,
                          typename Red<T, OP>::Acc* __restrict__ part, const T* __restrict__ in,
                          int64_t rows, int64_t len, int64_t chunk) {
  using Rd = Red<T, OP>;
  using Acc = typename Rd::Acc;
  __shared__ Acc smem[32];
  const int G = gridDim.x;
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t hi = lo + chunk < len ? lo + chunk : len;
  const int64_t nvec = hi > lo ? (hi - lo) / VW : 0;
  const int B = blockDim.x;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const T* p = in + row * len;
    const Vec<T, VW>* pv = reinterpret_cast<const Vec<T, VW>*>(p + lo);
    Acc acc = Rd::identity();
    for (int64_t j = threadIdx.x; j < nvec; j += static_cast<int64_t>(B) * kUnroll) {
      Vec<T, VW> buf[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (j + u * B < nvec) buf[u] = pv[j + u * B];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (j + u * B < nvec) {
#pragma unroll
          for (int k = 0; k < VW; ++k)
            acc = Rd::combine(acc, Rd::make(buf[u].v[k], lo + (j + u * B) * VW + k));
        }
      }
    }
    for (int64_t r = lo + nvec * VW + threadIdx.x; r < hi; r += B)
      acc = Rd::combine(acc, Rd::make(p[r], r));
    acc = block_reduce<Rd>(acc, smem);
    if (threadIdx.x == 0) {
      if (G == 1)
        out[row] = Rd::finalize(acc);
      else
        part[row * G + blockIdx.x] = acc;
    }
  }
}

// ---- inner > 1: threads across inner, a stack of blockDim.y threads along R ----
// Thread (tx, ty) owns inner elements [iv*VW, iv*VW + VW) and reduce positions
// r_lo + ty, r_lo + ty + by, ... of its chunk; the stack is then folded by a shared-memory tree.
// With gridDim.z == 1 results go to `out`, otherwise partials to part[(o*G + g)*inner + i].
template <typename T, ReduceOp OP, int VW, bool PART>
__global__ void __launch_bounds__(kColThreads)
    reduce_fwd_col_kernel(typename Red<T, OP>::Out* __restrict__ out,
                          typename Red<T, OP>::Acc* __restrict__ part, const void* __restrict__ in,
                          int64_t outer, int64_t R, int64_t inner, int64_t chunk) {
  using Rd = Red<T, OP>;
  using Acc = typename Rd::Acc;
  static_assert(!PART || VW == 1, "partials are read one at a time");
  __shared__ Acc smem[kColThreads * VW];
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  const int G = gridDim.z;
  const int64_t iv = static_cast<int64_t>(blockIdx.x) * bx + tx;
  const bool active = iv * VW < inner;
  const int64_t r_lo = static_cast<int64_t>(blockIdx.z) * chunk;
  const int64_t r_hi = r_lo + chunk < R ? r_lo + chunk : R;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    Acc acc[VW];
#pragma unroll
    for (int k = 0; k < VW; ++k) acc[k] = Rd::identity();
    if (active) {
      const int64_t base = o * R * inner + iv * VW;
      for (int64_t r = r_lo + ty; r < r_hi; r += static_cast<int64_t>(by) * kUnroll) {
        if constexpr (VW > 1) {
          Vec<T, VW> buf[kUnroll];
#pragma unroll
          for (int u = 0; u < kUnroll; ++u)
            if (r + u * by < r_hi)
              buf[u] = *reinterpret_cast<const Vec<T, VW>*>(static_cast<const T*>(in) + base +
                                                            (r + u * by) * inner);
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) {
            if (r + u * by < r_hi) {
#pragma unroll
              for (int k = 0; k < VW; ++k)
                acc[k] = Rd::combine(acc[k], Rd::make(buf[u].v[k], r + u * by));
            }
          }
        } else {
          Acc buf[kUnroll];
#pragma unroll
          for (int u = 0; u < kUnroll; ++u)
            if (r + u * by < r_hi)
              buf[u] = load_acc<Rd, T, PART>(in, base + (r + u * by) * inner, r + u * by);
#pragma unroll
          for (int u = 0; u < kUnroll; ++u)
            if (r + u * by < r_hi) acc[0] = Rd::combine(acc[0], buf[u]);
        }
      }
    }
    const int row_w = bx * VW;
#pragma unroll
    for (int k = 0; k < VW; ++k) smem[ty * row_w + tx * VW + k] = acc[k];
    __syncthreads();
    for (int s = by / 2; s > 0; s >>= 1) {
      if (ty < s) {
#pragma unroll
        for (int k = 0; k < VW; ++k) {
          const int a = ty * row_w + tx * VW + k;
          smem[a] = Rd::combine(smem[a], smem[a + s * row_w]);
        }
      }
      __syncthreads();
    }
    if (ty == 0 && active) {
#pragma unroll
      for (int k = 0; k < VW; ++k) {
        const Acc v = smem[tx * VW + k];
        if (G == 1)
          out[o * inner + iv * VW + k] = Rd::finalize(v);
        else
          part[(o * G + blockIdx.z) * inner + iv * VW + k] = v;
      }
    }
    __syncthreads();  // smem is rewritten for the next o
  }
}

// ---- host side ----

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

// Scratch for partials from the caching allocator; released (back to the current stream's
// cache) once the second pass is queued, which stream order makes safe.
class Scratch {
 public:
  Scratch(size_t nbytes, int device) : nbytes_(nbytes), device_(device) {
    ptr_ = alloc(nbytes, device);
  }
  ~Scratch() { release(ptr_, nbytes_, device_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t nbytes_;
  int device_;
};

// Short rows: picks the vector width (16-byte loads when rows are aligned), the lanes per row
// and the rows in flight, then launches reduce_fwd_warp_kernel.
template <typename T, ReduceOp OP, bool PART, int VW>
void launch_warp_rows_as(typename Red<T, OP>::Out* out, const void* in, int64_t rows, int64_t len,
                         int64_t nv, cudaStream_t s) {
  int W = 1;
  while (W < 32 && W < nv) W *= 2;
  const bool one_pass = nv <= W;
  const int64_t rows_per_block = (kWarpRowThreads / 32) * (32 / W) * (one_pass ? 4 : 1);
  const unsigned grid = static_cast<unsigned>(min64(ceil_div(rows, rows_per_block), 65535 * 16));
  if (one_pass) {
    reduce_fwd_warp_kernel<T, OP, PART, VW, 4, 1>
        <<<grid, kWarpRowThreads, 0, s>>>(out, in, rows, len, W);
    IDEM_LAUNCH_CHECK(reduce_name(OP));
  } else {
    reduce_fwd_warp_kernel<T, OP, PART, VW, 1, kUnroll>
        <<<grid, kWarpRowThreads, 0, s>>>(out, in, rows, len, W);
    IDEM_LAUNCH_CHECK(reduce_name(OP));
  }
}

template <typename T, ReduceOp OP>
void launch_warp_rows(typename Red<T, OP>::Out* out, const void* in, int64_t rows, int64_t len,
                      bool from_partials, cudaStream_t s) {
  constexpr int V = static_cast<int>(16 / sizeof(T));
  const bool vec = !from_partials && is_aligned(in, 16) && len % V == 0 && len > 0;
  if (from_partials)
    launch_warp_rows_as<T, OP, true, 1>(out, in, rows, len, len, s);
  else if (vec)
    launch_warp_rows_as<T, OP, false, V>(out, in, rows, len, len / V, s);
  else
    launch_warp_rows_as<T, OP, false, 1>(out, in, rows, len, len, s);
}

template <typename T, ReduceOp OP, int VW>
void launch_rows(typename Red<T, OP>::Out* out, typename Red<T, OP>::Acc* part, const T* in,
                 int64_t rows, int64_t len, int64_t chunk, int64_t G, cudaStream_t s) {
  dim3 grid(static_cast<unsigned>(G), static_cast<unsigned>(min64(rows, 65535)));
  reduce_fwd_row_kernel<T, OP, VW><<<grid, kRowThreads, 0, s>>>(out, part, in, rows, len, chunk);
  IDEM_LAUNCH_CHECK(reduce_name(OP));
}

// Threads of one column-kernel block: bx across inner (a power of two up to 32), by along R.
dim3 col_block(int64_t nvec) {
  int bx = 1;
  while (bx < 32 && bx < nvec) bx *= 2;
  return dim3(static_cast<unsigned>(bx), static_cast<unsigned>(kColThreads / bx));
}

template <typename T, ReduceOp OP, int VW, bool PART>
void launch_cols(typename Red<T, OP>::Out* out, typename Red<T, OP>::Acc* part, const void* in,
                 ReduceShape sh, int64_t chunk, int64_t G, cudaStream_t s) {
  const int64_t nvec = ceil_div(sh.inner, VW);
  const dim3 block = col_block(nvec);
  dim3 grid(static_cast<unsigned>(ceil_div(nvec, block.x)),
            static_cast<unsigned>(min64(sh.outer, 65535)), static_cast<unsigned>(G));
  reduce_fwd_col_kernel<T, OP, VW, PART>
      <<<grid, block, 0, s>>>(out, part, in, sh.outer, sh.reduce, sh.inner, chunk);
  IDEM_LAUNCH_CHECK(reduce_name(OP));
}

template <typename T, ReduceOp OP>
void run_reduce(const Tensor& out_t, const Tensor& in_t, ReduceShape sh) {
  using Rd = Red<T, OP>;
  using Acc = typename Rd::Acc;
  using Out = typename Rd::Out;
  // Every launch_* helper checks its launch under reduce_name(OP).
  Out* out = static_cast<Out*>(out_t.raw_data());
  const T* in = static_cast<const T*>(in_t.raw_data());
  const int device = in_t.device().index;
  cudaStream_t s = current_stream();
  const int64_t R = sh.reduce;

  if (sh.inner == 1) {
    if (R <= kWarpRowMax) {
      launch_warp_rows<T, OP>(out, in, sh.outer, R, false, s);
      return;
    }
    constexpr int V = static_cast<int>(16 / sizeof(T));
    const bool vec = is_aligned(in, 16) && R % V == 0;
    const int vw = vec ? V : 1;
    int64_t G = 1;
    if (sh.outer < kTargetBlocks / 2)
      G = max64(1, min64(ceil_div(kTargetBlocks, sh.outer), ceil_div(R, 4096)));
    const int64_t chunk = ceil_div(ceil_div(R, G), vw) * vw;
    G = ceil_div(R, chunk);
    auto launch = [&](Out* o, Acc* p) {
      if (vec)
        launch_rows<T, OP, V>(o, p, in, sh.outer, R, chunk, G, s);
      else
        launch_rows<T, OP, 1>(o, p, in, sh.outer, R, chunk, G, s);
    };
    if (G == 1) {
      launch(out, nullptr);
      return;
    }
    Scratch part(static_cast<size_t>(sh.outer * G) * sizeof(Acc), device);
    launch(nullptr, static_cast<Acc*>(part.get()));
    launch_warp_rows<T, OP>(out, part.get(), sh.outer, G, true, s);
    return;
  }

  constexpr int V = static_cast<int>(16 / sizeof(T)) < 4 ? static_cast<int>(16 / sizeof(T)) : 4;
  const bool vec = is_aligned(in, sizeof(T) * V) && sh.inner % V == 0;
  const int64_t nvec = ceil_div(sh.inner, vec ? V : 1);
  const dim3 block = col_block(nvec);
  const int64_t base_blocks = ceil_div(nvec, block.x) * sh.outer;
  int64_t G = 1;
  if (base_blocks < kTargetBlocks / 2)
    G = max64(1, min64(ceil_div(kTargetBlocks, base_blocks), ceil_div(R, int64_t(block.y) * 64)));
  const int64_t chunk = max64(1, ceil_div(R, G));
  G = R > 0 ? ceil_div(R, chunk) : 1;
  auto launch = [&](Out* o, Acc* p) {
    if (vec)
      launch_cols<T, OP, V, false>(o, p, in, sh, chunk, G, s);
    else
      launch_cols<T, OP, 1, false>(o, p, in, sh, chunk, G, s);
  };
  if (G == 1) {
    launch(out, nullptr);
    return;
  }
  Scratch part(static_cast<size_t>(sh.outer * G * sh.inner) * sizeof(Acc), device);
  launch(nullptr, static_cast<Acc*>(part.get()));
  const ReduceShape sh2{sh.outer, G, sh.inner};
  launch_cols<T, OP, 1, true>(out, nullptr, part.get(), sh2, G, 1, s);
}

template <typename T>
void run_reduce_op(const Tensor& out, const Tensor& in, ReduceShape s, ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return run_reduce<T, ReduceOp::sum>(out, in, s);
    case ReduceOp::max:
      return run_reduce<T, ReduceOp::max>(out, in, s);
    case ReduceOp::min:
      return run_reduce<T, ReduceOp::min>(out, in, s);
    case ReduceOp::argmax:
      return run_reduce<T, ReduceOp::argmax>(out, in, s);
  }
  fail("reduce", "unknown reduce op ", static_cast<int>(op));
}

}  // namespace

void reduce_fwd(const Tensor& out, const Tensor& in, ReduceShape s, ReduceOp op) {
  const char* name = reduce_name(op);
  IDEM_CHECK(s.outer >= 0 && s.reduce >= 0 && s.inner >= 0 &&
                 s.outer * s.reduce * s.inner == in.numel() && s.outer * s.inner == out.numel(),
             name, "reduce shape (", s.outer, ", ", s.reduce, ", ", s.inner,
             ") does not match input ", shape_str(in.shape()), " and output ",
             shape_str(out.shape()));
  if (s.outer * s.inner == 0) return;
  IDEM_CHECK(op != ReduceOp::argmax || out.dtype() == DType::i64, name,
             "argmax writes i64, got an output of ", dtype_name(out.dtype()));
  IDEM_CHECK(op == ReduceOp::argmax || out.dtype() == in.dtype(), name, "output dtype ",
             dtype_name(out.dtype()), " differs from input dtype ", dtype_name(in.dtype()));
  set_device(in.device().index);
  switch (in.dtype()) {
    case DType::f32:
      return run_reduce_op<float>(out, in, s, op);
    case DType::i32:
      return run_reduce_op<int32_t>(out, in, s, op);
    case DType::i64:
      return run_reduce_op<int64_t>(out, in, s, op);
    case DType::u8:
      return run_reduce_op<uint8_t>(out, in, s, op);
    default:
      fail(name, "the CUDA kernel takes f32, i32, i64 or u8, got ", dtype_name(in.dtype()), " ",
           shape_str(in.shape()));
  }
}

}  // namespace idem::cuda
