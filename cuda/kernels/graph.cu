// CUDA graph kernels: CSR construction and segment reductions. Contract: core/kernels/graph.h;
// reference: core/cpu/graph.cpp.
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
// Unchecked integer values (CUDA tensors are not value-validated, see core/ops/graph.h): indices
// outside [0, V) sort into a sentinel bucket after row V-1 and are dropped; row_ptr is clipped
// to [0, E] and perm / argmax entries to [0, E), so nothing is read or written out of bounds.
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <initializer_list>

#include "core/kernels/graph.h"
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
