// CUDA fused ops (contract: core/kernels/fused.h; reference: core/cpu/fused.cpp).
//
// linear_act forward
//  - small shapes, hand GEMM backend: linear_act_fwd_small_kernel / _warp_kernel are
//    matmul_hand's one-thread-per-output and one-warp-per-output kernels (the same loads, the
//    same fmaf chain, the same shuffle tree, chosen by the same thresholds) with the bias add and
//    the activation in the store: one launch for the whole layer, and the same bits as
//    matmul + add + activation.
//  - otherwise: the GEMM of gemm_backend() into y, then linear_act_epilogue_kernel in place.
// linear_act backward
//  - small shapes, hand backend: linear_act_bwd_small_kernel, one thread per requested output
//    element of dx, dW and db (in that order over the flat index), gz = g·act'(y) recomputed
//    where it is read; sequential fmaf chains (dx, dW) and a double sum (db). One launch.
//  - otherwise: linear_act_bwd_epilogue_kernel writes gz and the column sums db (32 columns per
//    block, 8 row groups, a fixed-order combine), then two GEMMs.
// distance (l1 / mse)
//  - forward: distance_fwd_kernel, one launch. Per-thread double sums over a fixed grid-stride
//    assignment, a fixed shuffle + shared-memory tree per block; with several blocks each writes
//    its partial, and the block that takes the last ticket of an integer counter combines the
//    partials in index order and resets the counter. The grid depends on n only, so results are
//    the same bits on every run and every card.
//  - backward: distance_bwd_kernel, one thread per element, g read from device memory.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <type_traits>

#include "core/kernels/fused.h"
#include "core/kernels/matmul.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------
// linear_act

struct LinArgs {
  const float* x;  // (N,in)
  const float* w;  // (out,in)
  const float* b;  // (out) or null
  float* y;        // (N,out)
  int N, in, out;
  float slope;
};

template <int ACT>
__device__ __forceinline__ float epilogue(float s, const float* __restrict__ b, int o,
                                          float slope) {
  // matmul_hand stores alpha·s with alpha = 1 (exact), then add, then the activation.
  if (b != nullptr) s = s + __ldg(b + o);
  return math::fused_act(static_cast<FusedAct>(ACT), s, slope);
}

// One thread per output; neighbouring threads take neighbouring o (matmul_fwd_small_kernel
// with trans_b).
template <int ACT>
__global__ void linear_act_fwd_small_kernel(LinArgs g) {
  const int64_t total = static_cast<int64_t>(g.N) * g.out;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(idx / g.out), o = static_cast<int>(idx % g.out);
    const float* __restrict__ xr = g.x + static_cast<int64_t>(n) * g.in;
    const float* __restrict__ wr = g.w + static_cast<int64_t>(o) * g.in;
    float s = 0.f;
#pragma unroll 4
    for (int k = 0; k < g.in; ++k) s = fmaf(__ldg(xr + k), __ldg(wr + k), s);
    g.y[idx] = epilogue<ACT>(s, g.b, o, g.slope);
  }
}

// One warp per output for a long K (matmul_fwd_warp_kernel): lanes split K, then a fixed xor
// shuffle tree.
template <int ACT>
__global__ void linear_act_fwd_warp_kernel(LinArgs g) {
  const int64_t total = static_cast<int64_t>(g.N) * g.out;
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
       idx < total; idx += warps) {
    const int n = static_cast<int>(idx / g.out), o = static_cast<int>(idx % g.out);
    const float* __restrict__ xr = g.x + static_cast<int64_t>(n) * g.in;
    const float* __restrict__ wr = g.w + static_cast<int64_t>(o) * g.in;
    float s = 0.f;
    for (int k = lane; k < g.in; k += 32) s = fmaf(__ldg(xr + k), __ldg(wr + k), s);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(kFullMask, s, off);
    if (lane == 0) g.y[idx] = epilogue<ACT>(s, g.b, o, g.slope);
  }
}

// y = act(y + b) in place, after a general GEMM.
template <int ACT>
__global__ void linear_act_epilogue_kernel(float* __restrict__ y, const float* __restrict__ b,
                                           int64_t total, int out, float slope) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = epilogue<ACT>(y[i], b, static_cast<int>(i % out), slope);
}

struct LinBwdArgs {
  const float* g;  // (N,out)
  const float* y;  // (N,out)
  const float* x;  // (N,in)
  const float* w;  // (out,in)
  float* dx;       // (N,in) or null
  float* dw;       // (out,in) or null
  float* db;       // (out) or null
  int N, in, out;
  float slope;
  int64_t n_dx, n_dw, n_db;  // elements of each requested output (0 when not requested)
};

template <int ACT>
__device__ __forceinline__ float gz_at(const LinBwdArgs& a, int64_t i) {
  return math::fused_act_grad(static_cast<FusedAct>(ACT), __ldg(a.g + i), __ldg(a.y + i), a.slope);
}

// One thread per element of [dx | dW | db]. Reads: dx walks W down a column (neighbouring
// threads, neighbouring i: coalesced), dW walks x down a column (the same), db walks gz down a
// column (neighbouring o); g and y are broadcast across a warp.
template <int ACT>
__global__ void linear_act_bwd_small_kernel(LinBwdArgs a) {
  const int64_t total = a.n_dx + a.n_dw + a.n_db;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (idx < a.n_dx) {
      // dx[n,i] = Σ_o gz[n,o]·W[o,i]
      const int n = static_cast<int>(idx / a.in), i = static_cast<int>(idx % a.in);
      const int64_t row = static_cast<int64_t>(n) * a.out;
      float s = 0.f;
      for (int o = 0; o < a.out; ++o)
        s = fmaf(gz_at<ACT>(a, row + o), __ldg(a.w + static_cast<int64_t>(o) * a.in + i), s);
      a.dx[idx] = s;
    } else if (idx < a.n_dx + a.n_dw) {
      // dW[o,i] = Σ_n gz[n,o]·x[n,i]
      const int64_t j = idx - a.n_dx;
      const int o = static_cast<int>(j / a.in), i = static_cast<int>(j % a.in);
      float s = 0.f;
      for (int n = 0; n < a.N; ++n)
        s = fmaf(gz_at<ACT>(a, static_cast<int64_t>(n) * a.out + o),
                 __ldg(a.x + static_cast<int64_t>(n) * a.in + i), s);
      a.dw[j] = s;
    } else {
      // db[o] = Σ_n gz[n,o], in double as the reduce kernels
      const int o = static_cast<int>(idx - a.n_dx - a.n_dw);
      double s = 0.0;
      for (int n = 0; n < a.N; ++n)
        s += static_cast<double>(gz_at<ACT>(a, static_cast<int64_t>(n) * a.out + o));
      a.db[o] = static_cast<float>(s);
    }
  }
}

constexpr int kColTile = 32, kRowGroups = 8;

// gz (optional) and db (optional) for the general path: block (32, 8) covers 32 columns; row
// group ty takes rows ty, ty+8, ...; the 8 partial sums of a column are added in ty order.
template <int ACT>
__global__ void linear_act_bwd_epilogue_kernel(float* __restrict__ gz, float* __restrict__ db,
                                               const float* __restrict__ g,
                                               const float* __restrict__ y, int N, int out,
                                               float slope) {
  __shared__ double part[kRowGroups][kColTile];
  const int col = blockIdx.x * kColTile + threadIdx.x;
  double acc = 0.0;
  if (col < out) {
    for (int n = threadIdx.y; n < N; n += kRowGroups) {
      const int64_t i = static_cast<int64_t>(n) * out + col;
      const float v = math::fused_act_grad(static_cast<FusedAct>(ACT), g[i], y[i], slope);
      if (gz != nullptr) gz[i] = v;
      acc += static_cast<double>(v);
    }
  }
  if (db == nullptr) return;  // uniform across the block: no thread waits at the barrier
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < out) {
    double s = 0.0;
#pragma unroll
    for (int r = 0; r < kRowGroups; ++r) s += part[r][threadIdx.x];
    db[col] = static_cast<float>(s);
  }
}

// Calls f(std::integral_constant<int, act>) so kernels template on the activation.
template <typename F>
void with_act(FusedAct act, F&& f) {
  switch (act) {
    case FusedAct::relu:
      f(std::integral_constant<int, static_cast<int>(FusedAct::relu)>());
      break;
    case FusedAct::leaky_relu:
      f(std::integral_constant<int, static_cast<int>(FusedAct::leaky_relu)>());
      break;
    default:
      f(std::integral_constant<int, static_cast<int>(FusedAct::none)>());
      break;
  }
}

void check_extents(const LinearActParams& p, const char* op) {
  IDEM_CHECK(p.N < INT32_MAX && p.in < INT32_MAX && p.out < INT32_MAX, op, "extents N=", p.N,
             " in=", p.in, " out=", p.out, " exceed the 32-bit range of the CUDA kernels");
}

MatmulParams gemm(int64_t M, int64_t N, int64_t K, bool ta, bool tb) {
  MatmulParams p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.trans_a = ta;
  p.trans_b = tb;
  p.stride_c = M * N;
  return p;
}

// ---------------------------------------------------------------------------------------------
// distance

constexpr int kDistThreads = 512;
constexpr int64_t kDistSingleBlockMax = 16384;  // up to here one block (32 elements a thread)
constexpr int64_t kDistElemsPerBlock = 4096;    // above it, one block per 4096 elements...
constexpr int kDistMaxBlocks = 1024;            // ...up to this many

// Where the blocks of a multi-block forward leave their partial sums; `counter` is 0 between
// launches (the last block resets it).
struct DistScratch {
  unsigned int counter;
  unsigned int pad;
  double partial[kDistMaxBlocks];
};

// Sum over the block in a fixed order: xor shuffles within each warp, then warp 0 adds the
// warps' sums in warp order. Every thread gets the result in lane 0 of warp 0 only.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kDistThreads / 32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  double s = 0.0;
  if (warp == 0) {
    s = lane < static_cast<int>(blockDim.x / 32) ? warp_sums[lane] : 0.0;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(kFullMask, s, off);
  }
  __syncthreads();  // warp_sums may be reused by a second block_sum
  return s;
}

template <int KIND>
__global__ void __launch_bounds__(kDistThreads)
    distance_fwd_kernel(float* __restrict__ out, const float* __restrict__ a,
                        const float* __restrict__ b, int64_t n, DistScratch* scratch) {
  constexpr DistanceKind kind = static_cast<DistanceKind>(KIND);
  double acc = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    acc += static_cast<double>(math::distance_term(kind, __ldg(a + i) - __ldg(b + i)));
  acc = block_sum(acc);
  if (gridDim.x == 1) {
    if (threadIdx.x == 0) out[0] = static_cast<float>(acc / static_cast<double>(n));
    return;
  }
  __shared__ bool is_last;
  if (threadIdx.x == 0) {
    scratch->partial[blockIdx.x] = acc;
    __threadfence();  // the partial is visible device-wide before the ticket is taken
    // An integer ticket: which block sums the partials, never the order they are summed in.
    const unsigned ticket = atomicAdd(&scratch->counter, 1u);  // deterministic: integer
    is_last = ticket == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  double s = 0.0;
  for (int j = threadIdx.x; j < static_cast<int>(gridDim.x); j += blockDim.x)
    s += __ldcg(&scratch->partial[j]);  // L2, not a stale L1 line
  s = block_sum(s);
  if (threadIdx.x == 0) {
    out[0] = static_cast<float>(s / static_cast<double>(n));
    scratch->counter = 0u;  // ready for the next launch on this stream
  }
}

template <int KIND>
__global__ void distance_bwd_kernel(float* __restrict__ da, float* __restrict__ db,
                                    const float* __restrict__ g, const float* __restrict__ a,
                                    const float* __restrict__ b, int64_t n) {
  constexpr DistanceKind kind = static_cast<DistanceKind>(KIND);
  // g/n in f32, as the CPU reference.
  const float scale = __ldg(g) / static_cast<float>(n);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = math::distance_grad_factor(kind, __ldg(a + i) - __ldg(b + i)) * scale;
    if (da != nullptr) da[i] = v;
    if (db != nullptr) db[i] = -v;
  }
}

// The per-device scratch of the multi-block forward. A process-lifetime global on purpose:
// the launch must not allocate (CUDA graphs) and the counter must start at 0 without a memset
// launch; it is created once per device (cudaMalloc + cudaMemset, synchronous) and never freed.
DistScratch* dist_scratch(int device) {
  static std::mutex mu;
  static DistScratch* slots[64] = {};
  IDEM_CHECK(device >= 0 && device < 64, "distance", "device cuda:", device,
             " is beyond the 64 devices idem supports");
  std::lock_guard<std::mutex> lock(mu);
  if (slots[device] == nullptr) {
    void* p = nullptr;
    IDEM_CUDA_CHECK("distance", cudaMalloc(&p, sizeof(DistScratch)));
    IDEM_CUDA_CHECK("distance", cudaMemset(p, 0, sizeof(DistScratch)));
    IDEM_CUDA_CHECK("distance", cudaDeviceSynchronize());
    slots[device] = static_cast<DistScratch*>(p);
  }
  return slots[device];
}

template <typename F>
void with_kind(DistanceKind k, F&& f) {
  if (k == DistanceKind::mse)
    f(std::integral_constant<int, static_cast<int>(DistanceKind::mse)>());
  else
    f(std::integral_constant<int, static_cast<int>(DistanceKind::l1)>());
}

}  // namespace

// ---- linear_act ----------------------------------------------------------------------------

void linear_act_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b,
                    const LinearActParams& p) {
  const char* op = "linear_act";
  if (p.N == 0 || p.out == 0 || p.in == 0) return;  // the L1 op rejects in == 0
  check_extents(p, op);
  set_device(y.device().index);
  const cudaStream_t st = current_stream();
  LinArgs g{};
  g.x = x.data<float>();
  g.w = w.data<float>();
  g.b = p.bias ? b.data<float>() : nullptr;
  g.y = y.data<float>();
  g.N = static_cast<int>(p.N);
  g.in = static_cast<int>(p.in);
  g.out = static_cast<int>(p.out);
  g.slope = static_cast<float>(p.slope);
  const int64_t outputs = p.N * p.out;

  // matmul_hand's small-shape rule (cuda/kernels/matmul.cu), so the bits match it.
  const bool small = p.in <= 16 || outputs <= 8192;
  if (gemm_backend() == GemmBackend::hand && small) {
    const bool per_warp = p.in >= 128 && outputs <= 65536;
    with_act(p.act, [&](auto act) {
      constexpr int A = decltype(act)::value;
      if (per_warp) {
        linear_act_fwd_warp_kernel<A><<<grid_for(outputs * 32, kThreads), kThreads, 0, st>>>(g);
        IDEM_LAUNCH_CHECK(op);
      } else {
        linear_act_fwd_small_kernel<A><<<grid_for(outputs, kThreads), kThreads, 0, st>>>(g);
        IDEM_LAUNCH_CHECK(op);
      }
    });
    return;
  }
  matmul_fwd(y, x, w, gemm(p.N, p.out, p.in, false, true));  // z = x·Wᵀ : (N,in)(out,in)ᵀ
  if (!p.bias && p.act == FusedAct::none) return;
  with_act(p.act, [&](auto act) {
    linear_act_epilogue_kernel<decltype(act)::value>
        <<<grid_for(outputs, kThreads), kThreads, 0, st>>>(g.y, g.b, outputs, g.out, g.slope);
    IDEM_LAUNCH_CHECK(op);
  });
}

void linear_act_bwd(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& g,
                    const Tensor& y, const Tensor& x, const Tensor& w, const LinearActParams& p) {
  const char* op = "linear_act_backward";
  if (p.N == 0 || p.out == 0 || p.in == 0) return;  // the L1 op fills the empty cases
  if (!dx.defined() && !dw.defined() && !db.defined()) return;
  check_extents(p, op);
  set_device(g.device().index);
  const cudaStream_t st = current_stream();
  const float slope = static_cast<float>(p.slope);

  const bool small = p.N * p.in * p.out <= (int64_t{1} << 20) && p.N <= 1024 && p.out <= 1024;
  if (gemm_backend() == GemmBackend::hand && small) {
    LinBwdArgs a{};
    a.g = g.data<float>();
    a.y = y.data<float>();
    a.x = x.data<float>();
    a.w = w.data<float>();
    a.dx = dx.defined() ? dx.data<float>() : nullptr;
    a.dw = dw.defined() ? dw.data<float>() : nullptr;
    a.db = db.defined() ? db.data<float>() : nullptr;
    a.N = static_cast<int>(p.N);
    a.in = static_cast<int>(p.in);
    a.out = static_cast<int>(p.out);
    a.slope = slope;
    a.n_dx = a.dx ? p.N * p.in : 0;
    a.n_dw = a.dw ? p.out * p.in : 0;
    a.n_db = a.db ? p.out : 0;
    const int64_t total = a.n_dx + a.n_dw + a.n_db;
    with_act(p.act, [&](auto act) {
      linear_act_bwd_small_kernel<decltype(act)::value>
          <<<grid_for(total, kThreads), kThreads, 0, st>>>(a);
      IDEM_LAUNCH_CHECK(op);
    });
    return;
  }

  // General path: gz (when an activation needs it) and db in one launch, then the two GEMMs.
  const bool need_gemm = dx.defined() || dw.defined();
  Tensor gz = g;
  float* gz_out = nullptr;
  if (p.act != FusedAct::none && need_gemm) {
    gz = empty(g.shape(), g.options());  // from the caching allocator
    gz_out = gz.data<float>();
  }
  if (gz_out != nullptr || db.defined()) {
    const dim3 block(kColTile, kRowGroups);
    const unsigned grid = static_cast<unsigned>((p.out + kColTile - 1) / kColTile);
    float* db_out = db.defined() ? db.data<float>() : nullptr;
    with_act(p.act, [&](auto act) {
      linear_act_bwd_epilogue_kernel<decltype(act)::value>
          <<<grid, block, 0, st>>>(gz_out, db_out, g.data<float>(), y.data<float>(),
                                   static_cast<int>(p.N), static_cast<int>(p.out), slope);
      IDEM_LAUNCH_CHECK(op);
    });
  }
  if (dx.defined()) matmul_fwd(dx, gz, w, gemm(p.N, p.in, p.out, false, false));  // dx = gz·W
  if (dw.defined()) matmul_fwd(dw, gz, x, gemm(p.out, p.in, p.N, true, false));   // dW = gzᵀ·x
}

// ---- distance ------------------------------------------------------------------------------

void distance_fwd(const Tensor& out, const Tensor& a, const Tensor& b, DistanceKind k) {
  const char* op = distance_name(k);
  const int64_t n = a.numel();
  if (n == 0) return;
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  int64_t blocks = 1;
  DistScratch* scratch = nullptr;
  if (n > kDistSingleBlockMax) {
    blocks = (n + kDistElemsPerBlock - 1) / kDistElemsPerBlock;
    if (blocks > kDistMaxBlocks) blocks = kDistMaxBlocks;
    scratch = dist_scratch(out.device().index);
  }
  with_kind(k, [&](auto kind) {
    distance_fwd_kernel<decltype(kind)::value>
        <<<static_cast<unsigned>(blocks), kDistThreads, 0, st>>>(out.data<float>(), a.data<float>(),
                                                                 b.data<float>(), n, scratch);
    IDEM_LAUNCH_CHECK(op);
  });
}

void distance_bwd(const Tensor& da, const Tensor& db, const Tensor& g, const Tensor& a,
                  const Tensor& b, DistanceKind k) {
  const char* op = distance_name(k);
  const int64_t n = a.numel();
  if (n == 0 || (!da.defined() && !db.defined())) return;
  set_device(a.device().index);
  const cudaStream_t st = current_stream();
  float* pda = da.defined() ? da.data<float>() : nullptr;
  float* pdb = db.defined() ? db.data<float>() : nullptr;
  with_kind(k, [&](auto kind) {
    distance_bwd_kernel<decltype(kind)::value><<<grid_for(n, kThreads), kThreads, 0, st>>>(
        pda, pdb, g.data<float>(), a.data<float>(), b.data<float>(), n);
    IDEM_LAUNCH_CHECK(op);
  });
}

}  // namespace idem::cuda
