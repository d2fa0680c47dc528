// CUDA data movement: slice copies, concat, index_select / index_add, gather / scatter_add,
// one_hot, permute. Contract: core/kernels/index.h; reference: core/cpu/index.cpp.
//
// Pure copies (slice_copy, concat, index_select, gather, permute) move raw bytes, so one kernel
// serves every dtype of that width; slice_copy, concat and index_select also widen to 8 or 16
// bytes per thread when sizes and pointers allow.
//
// The adjoints (index_add, scatter_add) are deterministic and use no atomics: one thread owns
// one output element and adds its contributions in increasing j, starting from the value already
// there, so the result is bit-identical to the CPU loop. Which j hit an output is found either by
// scanning all j (few indices) or from a stable radix sort of the indices (cub), whose runs list
// each output's j in increasing order.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/kernels/index.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;

// Calls f(T{}) with an unsigned type of `bytes` bytes (1, 2, 4, 8, 16).
template <typename F>
void with_width(size_t bytes, F&& f) {
  switch (bytes) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint64_t{}); break;
    case 16: f(uint4{}); break;
    default: fail("index", "unsupported element width ", bytes);
  }
}

// The widest unit (<= 16 bytes) that divides every byte quantity in `sizes`, given an element
// size `es`. Pointers and offsets go in `sizes` too (as integers).
size_t widest_unit(size_t es, std::initializer_list<uint64_t> sizes) {
  for (size_t w = 16; w > es; w /= 2) {
    bool ok = true;
    for (uint64_t s : sizes) ok = ok && (s % w == 0);
    if (ok) return w;
  }
  return es;
}

// The same for a list of byte quantities only known at run time (concat's inputs).
size_t widest_unit(size_t es, const std::vector<uint64_t>& sizes) {
  for (size_t w = 16; w > es; w /= 2) {
    bool ok = true;
    for (uint64_t s : sizes) ok = ok && (s % w == 0);
    if (ok) return w;
  }
  return es;
}

uint64_t addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

// ---------------------------------------------------------------------------------------------
// slice_copy: `outer` blocks of `block` units, at dst + o*dst_row and src + o*src_row.

template <typename T>
__global__ void slice_copy_kernel(T* __restrict__ dst, const T* __restrict__ src, int64_t outer,
                                  int64_t block, int64_t dst_row, int64_t src_row) {
  const int64_t total = outer * block;
  for (const int64_t t : grid_stride(total)) {
    const int64_t o = t / block, r = t - o * block;
    dst[o * dst_row + r] = src[o * src_row + r];
  }
}

// ---------------------------------------------------------------------------------------------
// concat: up to kConcatMaxInputs inputs copied side by side into rows of the output, in ONE
// launch. Everything is in units of T. The output region of this launch is `outer` rows of
// `cols` units at dst + o*dst_row; input k fills columns [col_begin[k], col_begin[k+1]) of it
// and is itself dense, (outer, col_begin[k+1] - col_begin[k]). Entries of col_begin past the
// last input hold INT64_MAX, so the owner search needs no count. Every output unit is written
// by exactly one thread with the unit of the input it comes from: the same bytes as one
// slice_copy per input.

struct ConcatArgs {
  const void* src[kConcatMaxInputs];
  int64_t col_begin[kConcatMaxInputs + 1];
};

template <typename T>
__global__ void concat_kernel(T* __restrict__ dst, int64_t outer, int64_t dst_row, int64_t cols,
                              const ConcatArgs a) {
  const int64_t total = outer * cols;
  for (const int64_t t : grid_stride(total)) {
    const int64_t o = t / cols, r = t - o * cols;
    // Owner = number of later inputs starting at or before column r (unrolled over constant
    // indices: compares against the argument bank, no dependent load).
    int k = 0;
#pragma unroll
    for (int j = 1; j < kConcatMaxInputs; ++j) k += r >= a.col_begin[j] ? 1 : 0;
    const int64_t c0 = a.col_begin[k], width = a.col_begin[k + 1] - c0;
    dst[o * dst_row + r] = static_cast<const T*>(a.src[k])[o * width + (r - c0)];
  }
}

// ---------------------------------------------------------------------------------------------
// index_select: out[o, j, i] = in[o, index[j], i], in units of T (inner already scaled).

template <typename T>
__global__ void index_select_fwd_kernel(T* __restrict__ out, const T* __restrict__ in,
                                        const int64_t* __restrict__ index, int64_t outer,
                                        int64_t n_index, int64_t in_dim, int64_t inner) {
  const int64_t total = outer * n_index * inner;
  for (const int64_t t : grid_stride(total)) {
    const int64_t i = t % inner, oj = t / inner;
    const int64_t j = oj % n_index, o = oj / n_index;
    out[t] = in[(o * in_dim + __ldg(index + j)) * inner + i];
  }
}

// gather: out[o, j, i] = in[o, index[o, j, i], i].
template <typename T>
__global__ void gather_fwd_kernel(T* __restrict__ out, const T* __restrict__ in,
                                  const int64_t* __restrict__ index, int64_t outer,
                                  int64_t idx_dim, int64_t in_dim, int64_t inner) {
  const int64_t total = outer * idx_dim * inner;
  for (const int64_t t : grid_stride(total)) {
    const int64_t i = t % inner, o = t / (idx_dim * inner);
    out[t] = in[(o * in_dim + __ldg(index + t)) * inner + i];
  }
}

// ---------------------------------------------------------------------------------------------
// index_add: out[o, index[j], i] += src[o, j, i].

// Few indices: each output element scans all of them.
template <typename T>
__global__ void index_add_scan_kernel(T* __restrict__ out, const T* __restrict__ src,
                                      const int64_t* __restrict__ index, int64_t outer,
                                      int64_t n_index, int64_t in_dim, int64_t inner) {
  const int64_t total = outer * in_dim * inner;
  for (const int64_t t : grid_stride(total)) {
    const int64_t i = t % inner, od = t / inner;
    const int64_t d = od % in_dim, o = od / in_dim;
    T acc = out[t];
    for (int64_t j = 0; j < n_index; ++j)
      if (__ldg(index + j) == d) acc += src[(o * n_index + j) * inner + i];
    out[t] = acc;
  }
}

// Many indices: perm lists j grouped by index value (increasing j inside a group) and
// offsets[d]..offsets[d+1] is the group of value d.
template <typename T>
__global__ void index_add_sorted_kernel(T* __restrict__ out, const T* __restrict__ src,
                                        const int32_t* __restrict__ perm,
                                        const int32_t* __restrict__ offsets, int64_t outer,
                                        int64_t n_index, int64_t in_dim, int64_t inner) {
  const int64_t total = outer * in_dim * inner;
  for (const int64_t t : grid_stride(total)) {
    const int64_t i = t % inner, od = t / inner;
    const int64_t d = od % in_dim, o = od / in_dim;
    const int32_t lo = __ldg(offsets + d), hi = __ldg(offsets + d + 1);
    if (lo == hi) continue;
    T acc = out[t];
    for (int32_t q = lo; q < hi; ++q) acc += src[(o * n_index + __ldg(perm + q)) * inner + i];
    out[t] = acc;
  }
}

// ---------------------------------------------------------------------------------------------
// scatter_add: out[o, index[o, j, i], i] += src[o, j, i].

template <typename T>
__global__ void scatter_add_scan_kernel(T* __restrict__ out, const T* __restrict__ src,
                                        const int64_t* __restrict__ index, int64_t outer,
                                        int64_t idx_dim, int64_t in_dim, int64_t inner) {
  const int64_t total = outer * in_dim * inner;
  for (const int64_t t : grid_stride(total)) {
    const int64_t i = t % inner, od = t / inner;
    const int64_t d = od % in_dim, o = od / in_dim;
    T acc = out[t];
    for (int64_t j = 0; j < idx_dim; ++j) {
      const int64_t p = (o * idx_dim + j) * inner + i;
      if (__ldg(index + p) == d) acc += src[p];
    }
    out[t] = acc;
  }
}

// Key of source position p = (o, j, i): the output element it lands on, numbered
// (o, i, d) so that one output's sources form one run of the sorted keys.
__global__ void scatter_keys_kernel(uint64_t* __restrict__ keys, int32_t* __restrict__ vals,
                                    const int64_t* __restrict__ index, int64_t outer,
                                    int64_t idx_dim, int64_t in_dim, int64_t inner) {
  const int64_t total = outer * idx_dim * inner;
  for (const int64_t p : grid_stride(total)) {
    const int64_t i = p % inner, o = p / (idx_dim * inner);
    keys[p] = static_cast<uint64_t>((o * inner + i) * in_dim + __ldg(index + p));
    vals[p] = static_cast<int32_t>(p);
  }
}

template <typename T>
__global__ void scatter_add_sorted_kernel(T* __restrict__ out, const T* __restrict__ src,
                                          const int32_t* __restrict__ perm,
                                          const int32_t* __restrict__ offsets, int64_t outer,
                                          int64_t in_dim, int64_t inner) {
  const int64_t total = outer * in_dim * inner;
  for (const int64_t t : grid_stride(total)) {
    const int64_t i = t % inner, od = t / inner;
    const int64_t d = od % in_dim, o = od / in_dim;
    const int64_t key = (o * inner + i) * in_dim + d;
    const int32_t lo = __ldg(offsets + key), hi = __ldg(offsets + key + 1);
    if (lo == hi) continue;
    T acc = out[t];
    for (int32_t q = lo; q < hi; ++q) acc += src[__ldg(perm + q)];
    out[t] = acc;
  }
}

// ---------------------------------------------------------------------------------------------
// Sorting support: stable radix sort of (key, value) pairs, then run offsets per key value.

__global__ void iota_kernel(int32_t* __restrict__ v, int64_t n) {
  for (const int64_t t : grid_stride(n)) v[t] = static_cast<int32_t>(t);
}

// offsets[k] = first position q with sorted[q] >= k, for k in [0, n_keys].
__global__ void run_offsets_kernel(int32_t* __restrict__ offsets,
                                   const uint64_t* __restrict__ sorted, int64_t n,
                                   int64_t n_keys) {
  for (const int64_t k : grid_stride(n_keys + 1))
    offsets[k] = static_cast<int32_t>(lower_bound(sorted, n, k));
}

int bits_for(uint64_t max_value) {
  int b = 1;
  while (b < 64 && (max_value >> b) != 0) ++b;
  return b;
}

// Device scratch tensors for one sort; they go back to the (stream-ordered) cache on return,
// which is safe because every later user of those blocks is queued behind our kernels.
struct SortedRuns {
  Tensor perm;     // i32 (n): values in key order, stable
  Tensor offsets;  // i32 (n_keys + 1)
};

// keys_in: n keys in [0, n_keys); vals_in: n values. Both are consumed (cub may use them as
// double buffers).
SortedRuns sorted_runs(const uint64_t* keys_in, const int32_t* vals_in, int64_t n, int64_t n_keys,
                       Device dev, cudaStream_t st, const char* op) {
  IDEM_CHECK(n < INT32_MAX && n_keys < INT32_MAX, op, "too many elements (", n,
             ") for the deterministic sorted path");
  const Options i32{DType::i32, dev};
  Tensor keys_out = empty({n}, {DType::i64, dev});
  SortedRuns r{empty({n}, i32), empty({n_keys + 1}, i32)};
  auto* k_out = reinterpret_cast<uint64_t*>(keys_out.data<int64_t>());
  int32_t* v_out = r.perm.data<int32_t>();
  const int end_bit = bits_for(static_cast<uint64_t>(n_keys));
  size_t temp_bytes = 0;
  IDEM_CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, k_out,
                                                      vals_in, v_out, static_cast<int>(n), 0,
                                                      end_bit, st));
  Tensor temp = empty({static_cast<int64_t>(temp_bytes) + 1}, {DType::u8, dev});
  IDEM_CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, keys_in, k_out,
                                                      vals_in, v_out, static_cast<int>(n), 0,
                                                      end_bit, st));
  count_gpu_ops();  // one CUB sort (several kernels inside; the size query above runs none)
  launch_grid_stride(IDEM_SITE(op), n_keys + 1, kThreads, run_offsets_kernel,
                     r.offsets.data<int32_t>(), k_out, n, n_keys);
  return r;
}

// Index lists at most this long are scanned by every output element instead of sorted.
constexpr int64_t kScanMaxIndices = 32;

// ---------------------------------------------------------------------------------------------
// one_hot

template <typename T>
__global__ void one_hot_kernel(T* __restrict__ out, const int64_t* __restrict__ index, int64_t n,
                               int64_t classes) {
  const int64_t total = n * classes;
  for (const int64_t t : grid_stride(total)) {
    const int64_t r = t / classes, c = t - r * classes;
    out[t] = __ldg(index + r) == c ? T(1) : T(0);
  }
}

// ---------------------------------------------------------------------------------------------
// permute

constexpr int kMaxDims = 8;

struct PermuteArgs {
  int nd;
  int64_t size[kMaxDims];       // output extents
  int64_t in_stride[kMaxDims];  // input step when output dim k advances by one
};

template <typename T, typename I>
__global__ void permute_kernel(T* __restrict__ out, const T* __restrict__ in, PermuteArgs a,
                               int64_t total) {
  for (const I t : grid_stride(static_cast<I>(total))) {
    I rem = t, src = 0;
#pragma unroll
    for (int k = kMaxDims - 1; k >= 0; --k) {
      if (k >= a.nd) continue;
      const I sz = static_cast<I>(a.size[k]);
      const I c = rem % sz;
      rem /= sz;
      src += c * static_cast<I>(a.in_stride[k]);
    }
    out[t] = in[src];
  }
}

// (batch, R, C) -> (batch, C, R) through a 32x32 shared tile, so both the reads and the writes
// are coalesced. Block 32x8; each thread moves 4 elements.
template <typename T>
__global__ void transpose_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t R,
                                 int64_t C) {
  __shared__ T tile[32][33];  // +1 column: the column reads hit 32 different banks
  const int64_t b = blockIdx.z;
  const T* src = in + b * R * C;
  T* dst = out + b * R * C;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * 32, c0 = static_cast<int64_t>(blockIdx.x) * 32;
#pragma unroll
  for (int k = 0; k < 32; k += 8) {
    const int64_t r = r0 + threadIdx.y + k, c = c0 + threadIdx.x;
    if (r < R && c < C) tile[threadIdx.y + k][threadIdx.x] = src[r * C + c];
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < 32; k += 8) {
    const int64_t c = c0 + threadIdx.y + k, r = r0 + threadIdx.x;
    if (r < R && c < C) dst[c * R + r] = tile[threadIdx.x][threadIdx.y + k];
  }
}

}  // namespace

// ---- slice_copy ------------------------------------------------------------------------------

void slice_copy(const Tensor& dst, const Tensor& src, SliceCopy s) {
  const char* op = "slice_copy";
  if (s.outer == 0 || s.count == 0 || s.inner == 0) return;
  set_device(dst.device().index);
  const size_t es = dtype_size(src.dtype());
  auto* d = static_cast<char*>(dst.raw_data()) + s.dst_start * s.inner * es;
  const auto* x = static_cast<const char*>(src.raw_data()) + s.src_start * s.inner * es;
  const uint64_t block = s.count * s.inner * es, drow = s.dst_dim * s.inner * es,
                 srow = s.src_dim * s.inner * es;
  const size_t w = widest_unit(es, {block, drow, srow, addr(d), addr(x)});
  with_width(w, [&](auto unit) {
    using T = decltype(unit);
    const int64_t blk = block / w;
    launch_grid_stride(IDEM_SITE(op), s.outer * blk, kThreads, slice_copy_kernel<T>,
                       reinterpret_cast<T*>(d), reinterpret_cast<const T*>(x), s.outer, blk,
                       drow / w, srow / w);
  });
}

void concat(const Tensor& out, const std::vector<Tensor>& xs, ConcatShape s) {
  const char* op = "concat";
  if (s.outer == 0 || s.inner == 0 || s.total == 0) return;
  set_device(out.device().index);
  const size_t es = dtype_size(out.dtype());
  const uint64_t slab = static_cast<uint64_t>(s.outer * s.inner);  // elements per unit of n_k
  const uint64_t out_row = s.total * s.inner * es;                 // bytes
  uint64_t sum_n = 0;  // checked before anything is launched: the kernel trusts the layout
  for (const Tensor& x : xs) sum_n += static_cast<uint64_t>(x.numel()) / slab;
  IDEM_CHECK(sum_n == static_cast<uint64_t>(s.total), op, "inputs add up to ", sum_n,
             " along the concatenated dim, but the output ", shape_str(out.shape()), " has ",
             s.total);
  char* const out_base = static_cast<char*>(out.raw_data());
  uint64_t col = 0;  // bytes: where the next input starts in an output row
  size_t k = 0;
  while (k < xs.size()) {
    // One launch: the next kConcatMaxInputs non-empty inputs (empty ones are passed over).
    std::vector<const Tensor*> group;
    const uint64_t group_col = col;
    for (; k < xs.size() && static_cast<int>(group.size()) < kConcatMaxInputs; ++k) {
      const uint64_t n = static_cast<uint64_t>(xs[k].numel()) / slab;
      if (n == 0) continue;
      group.push_back(&xs[k]);
      col += n * s.inner * es;
    }
    if (group.empty()) break;  // only empty inputs were left
    char* const d = out_base + group_col;
    std::vector<uint64_t> sizes = {out_row, col - group_col, addr(d)};
    for (const Tensor* x : group) {
      sizes.push_back(static_cast<uint64_t>(x->numel()) / s.outer * es);  // row bytes
      sizes.push_back(addr(x->raw_data()));
    }
    const size_t w = widest_unit(es, sizes);
    ConcatArgs a{};
    int64_t c = 0;  // units
    for (int j = 0; j <= kConcatMaxInputs; ++j) {
      if (j < static_cast<int>(group.size())) {
        a.src[j] = group[j]->raw_data();
        a.col_begin[j] = c;
        c += static_cast<int64_t>(static_cast<uint64_t>(group[j]->numel()) / s.outer * es / w);
      } else {
        a.col_begin[j] = j == static_cast<int>(group.size()) ? c : INT64_MAX;
      }
    }
    with_width(w, [&](auto unit) {
      using T = decltype(unit);
      launch_grid_stride(IDEM_SITE(op), s.outer * c, kThreads, concat_kernel<T>,
                         reinterpret_cast<T*>(d), s.outer, static_cast<int64_t>(out_row / w), c, a);
    });
  }
}

// ---- index_select / index_add ----------------------------------------------------------------

void index_select_fwd(const Tensor& out, const Tensor& in, const Tensor& index, IndexShape s) {
  const char* op = "index_select";
  if (out.numel() == 0) return;
  set_device(out.device().index);
  const size_t es = dtype_size(in.dtype());
  const uint64_t row = s.inner * es;
  const size_t w = widest_unit(es, {row, addr(out.raw_data()), addr(in.raw_data())});
  with_width(w, [&](auto unit) {
    using T = decltype(unit);
    const int64_t inner = row / w;
    launch_grid_stride(IDEM_SITE(op), s.outer * s.n_index * inner, kThreads,
                       index_select_fwd_kernel<T>, static_cast<T*>(out.raw_data()),
                       static_cast<const T*>(in.raw_data()), index.data<int64_t>(), s.outer,
                       s.n_index, s.in_dim, inner);
  });
}

void index_add(const Tensor& out, const Tensor& src, const Tensor& index, IndexShape s) {
  const char* op = "index_add";
  const int64_t total = s.outer * s.in_dim * s.inner;
  if (total == 0 || s.n_index == 0) return;
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  const int64_t* idx = index.data<int64_t>();
  if (s.n_index <= kScanMaxIndices) {
    IDEM_DISPATCH_ALL(out.dtype(), op, [&] {
      launch_grid_stride(IDEM_SITE(op), total, kThreads, index_add_scan_kernel<scalar_t>,
                         out.data<scalar_t>(), src.data<scalar_t>(), idx, s.outer, s.n_index,
                         s.in_dim, s.inner);
    });
    return;
  }
  // The i64 indices are already valid keys in [0, in_dim): sort them as unsigned words.
  Tensor vals = empty({s.n_index}, {DType::i32, out.device()});
  launch_grid_stride(IDEM_SITE(op), s.n_index, kThreads, iota_kernel, vals.data<int32_t>(),
                     s.n_index);
  const SortedRuns runs = sorted_runs(reinterpret_cast<const uint64_t*>(idx),
                                      vals.data<int32_t>(), s.n_index, s.in_dim, out.device(),
                                      st, op);
  IDEM_DISPATCH_ALL(out.dtype(), op, [&] {
    launch_grid_stride(IDEM_SITE(op), total, kThreads, index_add_sorted_kernel<scalar_t>,
                       out.data<scalar_t>(), src.data<scalar_t>(), runs.perm.data<int32_t>(),
                       runs.offsets.data<int32_t>(), s.outer, s.n_index, s.in_dim, s.inner);
  });
}

// ---- gather / scatter_add --------------------------------------------------------------------

void gather_fwd(const Tensor& out, const Tensor& in, const Tensor& index, GatherShape s) {
  const char* op = "gather";
  if (out.numel() == 0) return;
  set_device(out.device().index);
  with_width(dtype_size(in.dtype()), [&](auto unit) {
    using T = decltype(unit);
    launch_grid_stride(IDEM_SITE(op), out.numel(), kThreads, gather_fwd_kernel<T>,
                       static_cast<T*>(out.raw_data()), static_cast<const T*>(in.raw_data()),
                       index.data<int64_t>(), s.outer, s.idx_dim, s.in_dim, s.inner);
  });
}

void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index, GatherShape s) {
  const char* op = "scatter_add";
  const int64_t total = s.outer * s.in_dim * s.inner;
  const int64_t n = s.outer * s.idx_dim * s.inner;
  if (total == 0 || n == 0) return;
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  const int64_t* idx = index.data<int64_t>();
  if (s.idx_dim <= kScanMaxIndices || n >= INT32_MAX || total >= INT32_MAX) {
    IDEM_DISPATCH_ALL(out.dtype(), op, [&] {
      launch_grid_stride(IDEM_SITE(op), total, kThreads, scatter_add_scan_kernel<scalar_t>,
                         out.data<scalar_t>(), src.data<scalar_t>(), idx, s.outer, s.idx_dim,
                         s.in_dim, s.inner);
    });
    return;
  }
  Tensor keys = empty({n}, {DType::i64, out.device()});
  Tensor vals = empty({n}, {DType::i32, out.device()});
  auto* k = reinterpret_cast<uint64_t*>(keys.data<int64_t>());
  launch_grid_stride(IDEM_SITE(op), n, kThreads, scatter_keys_kernel, k, vals.data<int32_t>(), idx,
                     s.outer, s.idx_dim, s.in_dim, s.inner);
  const SortedRuns runs = sorted_runs(k, vals.data<int32_t>(), n, total, out.device(), st, op);
  IDEM_DISPATCH_ALL(out.dtype(), op, [&] {
    launch_grid_stride(IDEM_SITE(op), total, kThreads, scatter_add_sorted_kernel<scalar_t>,
                       out.data<scalar_t>(), src.data<scalar_t>(), runs.perm.data<int32_t>(),
                       runs.offsets.data<int32_t>(), s.outer, s.in_dim, s.inner);
  });
}

// ---- one_hot ---------------------------------------------------------------------------------

void one_hot(const Tensor& out, const Tensor& index, int64_t num_classes) {
  const char* op = "one_hot";
  if (out.numel() == 0) return;
  set_device(out.device().index);
  const int64_t n = index.numel();
  IDEM_DISPATCH_ALL(out.dtype(), op, [&] {
    launch_grid_stride(IDEM_SITE(op), n * num_classes, kThreads, one_hot_kernel<scalar_t>,
                       out.data<scalar_t>(), index.data<int64_t>(), n, num_classes);
  });
}

// ---- permute ---------------------------------------------------------------------------------

void permute(const Tensor& out, const Tensor& in, const std::vector<int64_t>& perm) {
  const char* op = "permute";
  const int64_t total = out.numel();
  if (total == 0) return;
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  const size_t es = dtype_size(in.dtype());

  // Simplify: drop extent-1 dims, then merge runs of output dims that are consecutive input
  // dims in the same order. Each merged dim keeps the input stride of its innermost member
  // (dropping extent-1 dims leaves the contiguous strides of the others unchanged). What is
  // left is the smallest equivalent permutation; one dim left means a plain copy.
  const Shape& ishape = in.shape();
  const std::vector<int64_t> istride = contiguous_strides(ishape);
  std::vector<int64_t> sizes, strides;  // per merged output dim
  int64_t prev = -2;                    // input dim of the previous kept output dim
  for (const int64_t d : perm) {
    if (ishape[d] == 1) continue;
    bool adjacent = prev >= 0 && d > prev;
    for (int64_t e = prev + 1; adjacent && e < d; ++e) adjacent = ishape[e] == 1;
    if (adjacent) {
      sizes.back() *= ishape[d];
      strides.back() = istride[d];
    } else {
      sizes.push_back(ishape[d]);
      strides.push_back(istride[d]);
    }
    prev = d;
  }
  const int64_t m = static_cast<int64_t>(sizes.size());
  if (m <= 1) {
    IDEM_CUDA_CHECK(op, cudaMemcpyAsync(out.raw_data(), in.raw_data(), total * es,
                                        cudaMemcpyDeviceToDevice, st));
    count_gpu_ops();
    return;
  }

  // (R, C) -> (C, R) or (B, R, C) -> (B, C, R): tiled transpose.
  const bool t2 = m == 2 && strides[0] == 1 && strides[1] == sizes[0];
  const bool t3 = m == 3 && strides[0] == sizes[1] * sizes[2] && strides[1] == 1 &&
                  strides[2] == sizes[1];
  if (t2 || t3) {
    const int64_t batch = t3 ? sizes[0] : 1;
    const int64_t C = t3 ? sizes[1] : sizes[0];  // input columns = output rows
    const int64_t R = t3 ? sizes[2] : sizes[1];  // input rows = output columns
    if (batch <= 65535 && (R + 31) / 32 <= 65535 && (C + 31) / 32 <= INT32_MAX) {
      const dim3 grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>((R + 31) / 32),
                      static_cast<unsigned>(batch));
      with_width(es, [&](auto unit) {
        using T = decltype(unit);
        transpose_kernel<T><<<grid, dim3(32, 8), 0, st>>>(
            static_cast<T*>(out.raw_data()), static_cast<const T*>(in.raw_data()), R, C);
        IDEM_LAUNCH_CHECK(op);
      });
      return;
    }
  }

  IDEM_CHECK(m <= kMaxDims, op, "at most ", kMaxDims, " non-mergeable dims are supported, got ",
             m, " for input shape ", shape_str(ishape));
  PermuteArgs a{};
  a.nd = static_cast<int>(m);
  for (int64_t k = 0; k < m; ++k) {
    a.size[k] = sizes[k];
    a.in_stride[k] = strides[k];
  }
  with_width(es, [&](auto unit) {
    using T = decltype(unit);
    auto* o = static_cast<T*>(out.raw_data());
    const auto* x = static_cast<const T*>(in.raw_data());
    // 32-bit index math is cheaper; keep t + grid stride below 2^31.
    if (total < INT32_MAX / 2) {
      launch_grid_stride(IDEM_SITE(op), total, kThreads, permute_kernel<T, int32_t>, o, x, a,
                         total);
    } else {
      launch_grid_stride(IDEM_SITE(op), total, kThreads, permute_kernel<T, int64_t>, o, x, a,
                         total);
    }
  });
}

}  // namespace idem::cuda
