// CUDA fused ops (contract: core/kernels/fused.h; reference: core/cpu/fused.cpp).
//
// linear_act forward
//  - small shapes, hand GEMM backend: linear_act_fwd_tile_kernel / _warp_kernel compute what
//    matmul_hand's one-thread-per-output and one-warp-per-output kernels compute (the same fmaf
//    chain over k, the same shuffle tree, chosen by the same thresholds) with the bias add and
//    the activation in the store: one launch for the whole layer, and the same bits as
//    matmul + add + activation. The per-thread variant first stages the block's rows of x and W
//    in shared memory in one pass with many loads in flight: a chain that waits on one global
//    load per step costs ~in L2 round trips (measurements: docs/performance.md, "Kernel history
//    moved from source comments").
//  - otherwise, hand backend: one tiled GEMM launch whose store adds the bias and applies the
//    activation (matmul_hand_epilogue); cuBLAS: the GEMM into y, then
//    linear_act_epilogue_kernel in place.
// sage_linear forward: GEMM y = x·Wrᵀ, then GEMM y = a·Wlᵀ + y whose store adds the bias and
// applies the activation (hand backend; cuBLAS: a third launch, the epilogue kernel).
// linear_act backward
//  - small shapes, hand backend: linear_act_bwd_tile_kernel, one launch. Blocks [0, dx tiles)
//    own 16×16 tiles of dx = gz·W, the rest 16×16 tiles of dW = gzᵀ·x (and db = Σ_n gz in
//    double, in the blocks of the first column tile). The reduction dimension is walked in
//    chunks of 64 through shared memory, the next chunk's loads in flight while the current one
//    is summed; gz = g·act'(y) is formed as a chunk is loaded. Each output is still one
//    sequential fmaf chain over the reduction index (db a sequential double sum), so the bits
//    are those of a one-thread-per-output kernel, without its wait on a global load per step
//    (docs/performance.md).
//  - otherwise: linear_act_bwd_epilogue_kernel writes gz and the column sums db (32 columns ×
//    256 rows per block, 8 row groups, fixed-order combines; with several row chunks and db
//    wanted, a second small kernel combines the chunks' sums in a fixed order), then two GEMMs.
// distance (l1 / mse)
//  - forward: distance_fwd_kernel, one launch. Per-thread double sums over a fixed grid-stride
//    assignment, a fixed shuffle + shared-memory tree per block; with several blocks each writes
//    its partial, and the block that takes the last ticket of an integer counter combines the
//    partials in index order and resets the counter. The grid depends on n only, so results are
//    the same bits on every run and every card.
//  - backward: distance_bwd_kernel, one thread per element, g read from device memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <type_traits>

#include "core/kernels/fused.h"
#include "core/kernels/matmul.h"
#include "cuda/block_stage.cuh"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

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

// Tile geometry of the per-thread forward: a block owns tr rows × tc columns of y (one output a
// thread). tc follows `out` so a narrow last layer does not idle 31 of 32 threads.
struct FwdTile {
  int tr, tc, stride, col_blocks;
  int64_t blocks;
  size_t smem;
};

FwdTile fwd_tile(int64_t N, int64_t in, int64_t out) {
  FwdTile t{};
  t.tc = 1;
  while (t.tc < out && t.tc < 32) t.tc *= 2;
  t.tr = std::min(256 / t.tc, 64);
  // Odd stride: the lanes of a warp read rows r·stride + k, which then fall in distinct banks.
  t.stride = static_cast<int>(in % 2 == 0 ? in + 1 : in);
  t.col_blocks = static_cast<int>((out + t.tc - 1) / t.tc);
  t.blocks = ((N + t.tr - 1) / t.tr) * t.col_blocks;
  t.smem = static_cast<size_t>(t.tr + t.tc) * t.stride * sizeof(float);
  return t;
}

// One thread per output (matmul_fwd_small_kernel's chain, with trans_b), x and W rows staged in
// shared memory first, in one block_stage pass, with the bias load issued before it: about one
// memory round trip before the arithmetic. Only taken for in < 128, so the staged rows fit
// (fwd_tile: ≤ 35 KB).
template <int ACT>
__global__ void linear_act_fwd_tile_kernel(LinArgs g, int tr, int tc, int stride, int col_blocks) {
  extern __shared__ float tile[];
  float* xs = tile;                // tr rows of x
  float* ws = tile + tr * stride;  // tc rows of W
  const int n0 = static_cast<int>(blockIdx.x / col_blocks) * tr;
  const int o0 = static_cast<int>(blockIdx.x % col_blocks) * tc;
  const int rows = min(tr, g.N - n0), cols = min(tc, g.out - o0);
  const int r = static_cast<int>(threadIdx.x) / tc, c = static_cast<int>(threadIdx.x) % tc;
  const bool active = r < rows && c < cols;
  const float bias = active && g.b != nullptr ? __ldg(g.b + o0 + c) : 0.f;
  const float* __restrict__ xsrc = g.x + static_cast<int64_t>(n0) * g.in;
  const float* __restrict__ wsrc = g.w + static_cast<int64_t>(o0) * g.in;
  const int nx = rows * g.in;
  block_stage(
      nx + cols * g.in, [&](int i) { return i < nx ? __ldg(xsrc + i) : __ldg(wsrc + (i - nx)); },
      [&](int i, float v) {
        float* dst = i < nx ? xs : ws;
        const int j = i < nx ? i : i - nx;
        dst[(j / g.in) * stride + j % g.in] = v;
      });
  __syncthreads();
  if (!active) return;
  const float* xr = xs + r * stride;
  const float* wr = ws + c * stride;
  float s = 0.f;
#pragma unroll 4
  for (int k = 0; k < g.in; ++k) s = fmaf(xr[k], wr[k], s);
  // epilogue(): s + b (when there is a bias), then the activation.
  if (g.b != nullptr) s = s + bias;
  g.y[static_cast<int64_t>(n0 + r) * g.out + o0 + c] =
      math::fused_act(static_cast<FusedAct>(ACT), s, g.slope);
}

// One warp per output for a long K (matmul_fwd_warp_kernel): lanes split K, then a fixed xor
// shuffle tree.
template <int ACT>
__global__ void linear_act_fwd_warp_kernel(LinArgs g) {
  const int64_t total = static_cast<int64_t>(g.N) * g.out;
  const int lane = threadIdx.x % 32;
  for (const int64_t idx : grid_stride_warps(total)) {
    const int n = static_cast<int>(idx / g.out), o = static_cast<int>(idx % g.out);
    const float* __restrict__ xr = g.x + static_cast<int64_t>(n) * g.in;
    const float* __restrict__ wr = g.w + static_cast<int64_t>(o) * g.in;
    float s = 0.f;
    for (int k = lane; k < g.in; k += 32) s = fmaf(__ldg(xr + k), __ldg(wr + k), s);
    s = warp_sum(s);
    if (lane == 0) g.y[idx] = epilogue<ACT>(s, g.b, o, g.slope);
  }
}

// y = act(y + b) in place, after a general GEMM.
template <int ACT>
__global__ void linear_act_epilogue_kernel(float* __restrict__ y, const float* __restrict__ b,
                                           int64_t total, int out, float slope) {
  for (const int64_t i : grid_stride(total))
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
};

// Tiles of the small backward: kBwdTile × kBwdTile outputs a block (one a thread), the
// reduction dimension in chunks of kBwdChunk through shared memory.
constexpr int kBwdTile = 16, kBwdChunk = 64, kBwdThreads = kBwdTile * kBwdTile;
constexpr int kBwdLoads =
    kBwdTile * kBwdChunk / kBwdThreads;  // elements of A (and B) a thread loads

template <int ACT>
__device__ __forceinline__ float gz_at(const LinBwdArgs& a, int64_t i) {
  return math::fused_act_grad(static_cast<FusedAct>(ACT), __ldg(a.g + i), __ldg(a.y + i), a.slope);
}

// C[r, c] = Σ_k A(r, k)·B(k, c) over one tile, k in order. dx role: A(n, o) = gz[n, o],
// B(o, i) = W[o, i], k = o. dW role: A(o, n) = gz[n, o], B(n, i) = x[n, i], k = n, and db[o] =
// Σ_n A(o, n) in double. The element a thread loads is chosen so that neighbouring threads read
// neighbouring addresses: along o for gz in both roles, along i for W and x.
template <int ACT>
__global__ void __launch_bounds__(kBwdThreads)
    linear_act_bwd_tile_kernel(LinBwdArgs a, int dx_blocks, int dx_col_tiles, int dw_col_tiles) {
  __shared__ float As[kBwdTile][kBwdChunk + 1];
  __shared__ float Bs[kBwdChunk][kBwdTile + 1];
  const int tid = static_cast<int>(threadIdx.x);
  const bool dx_role = static_cast<int>(blockIdx.x) < dx_blocks;
  const int b = dx_role ? static_cast<int>(blockIdx.x) : static_cast<int>(blockIdx.x) - dx_blocks;
  const int col_tiles = dx_role ? dx_col_tiles : dw_col_tiles;
  const int r0 = (b / col_tiles) * kBwdTile, c0 = (b % col_tiles) * kBwdTile;
  const int R = dx_role ? a.N : a.out;  // rows of C: n (dx) or o (dW)
  const int K = dx_role ? a.out : a.N;  // reduction: o (dx) or n (dW)

  float av[kBwdLoads], bv[kBwdLoads];
  // Loads chunk k0 into registers; out-of-range elements are never summed (the loop below stops
  // at K), so their value does not matter.
  auto load = [&](int k0) {
#pragma unroll
    for (int u = 0; u < kBwdLoads; ++u) {
      const int e = tid + u * kBwdThreads;
      int r, k;
      if (dx_role) {  // gz[n0 + r, k0 + k]: k fastest
        r = e / kBwdChunk;
        k = e % kBwdChunk;
      } else {  // gz[k0 + k, o0 + r]: r fastest
        r = e % kBwdTile;
        k = e / kBwdTile;
      }
      const int row = r0 + r, kk = k0 + k;
      av[u] = row < R && kk < K ? gz_at<ACT>(a, dx_role ? static_cast<int64_t>(row) * a.out + kk
                                                        : static_cast<int64_t>(kk) * a.out + row)
                                : 0.f;
      const int bc = e % kBwdTile, bk = e / kBwdTile;  // B(k0 + bk, c0 + bc): c fastest
      const int col = c0 + bc, bkk = k0 + bk;
      bv[u] = col < a.in && bkk < K
                  ? __ldg((dx_role ? a.w : a.x) + static_cast<int64_t>(bkk) * a.in + col)
                  : 0.f;
    }
  };
  auto store = [&] {
#pragma unroll
    for (int u = 0; u < kBwdLoads; ++u) {
      const int e = tid + u * kBwdThreads;
      if (dx_role)
        As[e / kBwdChunk][e % kBwdChunk] = av[u];
      else
        As[e % kBwdTile][e / kBwdTile] = av[u];
      Bs[e / kBwdTile][e % kBwdTile] = bv[u];
    }
  };

  const int r = tid / kBwdTile, c = tid % kBwdTile;
  const bool want_db = !dx_role && a.db != nullptr && c0 == 0 && c == 0;
  float s = 0.f;
  double sb = 0.0;
  load(0);
  for (int k0 = 0; k0 < K; k0 += kBwdChunk) {
    store();
    __syncthreads();
    if (k0 + kBwdChunk < K) load(k0 + kBwdChunk);  // in flight while this chunk is summed
    const int kn = min(kBwdChunk, K - k0);
    for (int k = 0; k < kn; ++k) s = fmaf(As[r][k], Bs[k][c], s);
    if (want_db)
      for (int k = 0; k < kn; ++k) sb += static_cast<double>(As[r][k]);
    __syncthreads();  // the next store overwrites the tiles
  }

  const int row = r0 + r, col = c0 + c;
  if (row >= R) return;
  if (dx_role) {
    if (col < a.in) a.dx[static_cast<int64_t>(row) * a.in + col] = s;
  } else {
    if (a.dw != nullptr && col < a.in) a.dw[static_cast<int64_t>(row) * a.in + col] = s;
    if (want_db) a.db[row] = static_cast<float>(sb);
  }
}

constexpr int kColTile = 32, kRowGroups = 8;

// gz (optional) and db (optional) for the general path. Block (32, 8) covers 32 columns of one
// chunk of kEpilogueRows rows (blockIdx.y): row group ty takes rows ty, ty+8, ... of the chunk,
// and the 8 partial sums of a column are added in ty order. With one chunk the block writes
// db; with several, each writes its chunk's column sums to partial[chunk][col] and
// column_partials_sum_kernel combines them in a fixed order. Chunks, because one chunk for all
// rows leaves a tall gradient to a few blocks that each walk thousands of rows.
constexpr int kEpilogueRows = 256;

template <int ACT>
__global__ void linear_act_bwd_epilogue_kernel(float* __restrict__ gz, float* __restrict__ db,
                                               double* __restrict__ partial,
                                               const float* __restrict__ g,
                                               const float* __restrict__ y, int N, int out,
                                               float slope) {
  __shared__ double part[kRowGroups][kColTile];
  const int col = blockIdx.x * kColTile + threadIdx.x;
  // At least one chunk: with N = 0 the block still writes db = 0 (act_bias_grad's contract).
  const int chunks =
      max(1, static_cast<int>((static_cast<int64_t>(N) + kEpilogueRows - 1) / kEpilogueRows));
  // Chunks beyond gridDim.y (65 535) are taken in turns; every trip is block-uniform.
  for (int chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
    const int n_end = static_cast<int>(
        min(static_cast<int64_t>(N), (static_cast<int64_t>(chunk) + 1) * kEpilogueRows));
    double acc = 0.0;
    if (col < out) {
      for (int n = chunk * kEpilogueRows + threadIdx.y; n < n_end; n += kRowGroups) {
        const int64_t i = static_cast<int64_t>(n) * out + col;
        const float v =
            math::fused_act_grad(static_cast<FusedAct>(ACT), __ldg(g + i), __ldg(y + i), slope);
        if (gz != nullptr) gz[i] = v;
        acc += static_cast<double>(v);
      }
    }
    if (db == nullptr) continue;  // uniform across the block: no thread waits at the barrier
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < out) {
      double s = 0.0;
#pragma unroll
      for (int r = 0; r < kRowGroups; ++r) s += part[r][threadIdx.x];
      if (partial == nullptr)
        db[col] = static_cast<float>(s);
      else
        partial[static_cast<int64_t>(chunk) * out + col] = s;
    }
    __syncthreads();  // part is written again by the next chunk
  }
}

// db[col] = Σ_chunk partial[chunk][col]: one warp per column (columns beyond the grid taken in
// turns); lane l sums chunks l, l+32, ... in that order, then a fixed xor-shuffle tree combines
// the lanes. Deterministic; not the order of a sequential sum.
__global__ void column_partials_sum_kernel(float* __restrict__ db,
                                           const double* __restrict__ partial, int chunks,
                                           int out) {
  const int lane = threadIdx.x % 32;
  for (const int64_t col : grid_stride_warps(out)) {  // whole warps move together
    double s = 0.0;
    for (int c = lane; c < chunks; c += 32)
      s += __ldg(partial + static_cast<int64_t>(c) * out + col);
    s = warp_sum(s);
    if (lane == 0) db[col] = static_cast<float>(s);
  }
}

// gz = g·act'(y) (when gz_out) and db = Σ_rows gz (when db_out) for an (N, out) gradient: one
// launch, or two when N spans several chunks and db is wanted.
void launch_bwd_epilogue(float* gz_out, float* db_out, const Tensor& g, const Tensor& y, int64_t N,
                         int64_t out, FusedAct act, float slope, cudaStream_t st, const char* op) {
  const int64_t chunks = (N + kEpilogueRows - 1) / kEpilogueRows;
  Tensor partial;  // from the caching allocator, so safe inside a CUDA-graph capture
  if (db_out != nullptr && chunks > 1) partial = empty({chunks, out}, {DType::f64, g.device()});
  double* part = partial.defined() ? partial.data<double>() : nullptr;
  const dim3 block(kColTile, kRowGroups);
  const dim3 grid(static_cast<unsigned>((out + kColTile - 1) / kColTile),
                  static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(chunks, 1), 65535)));
  with_fused_act(act, op, [&](auto a) {
    linear_act_bwd_epilogue_kernel<static_cast<int>(decltype(a)::value)>
        <<<grid, block, 0, st>>>(gz_out, db_out, part, g.data<float>(), y.data<float>(),
                                 static_cast<int>(N), static_cast<int>(out), slope);
    IDEM_LAUNCH_CHECK(op);
  });
  if (part == nullptr) return;
  launch_grid_stride(IDEM_SITE(op), out * 32, kThreads, column_partials_sum_kernel, db_out, part,
                     static_cast<int>(chunks), static_cast<int>(out));
}

void check_extents(const LinearActParams& p, const char* op) {
  IDEM_CHECK(p.N < INT32_MAX && p.in < INT32_MAX && p.out < INT32_MAX, op, "extents N=", p.N,
             " in=", p.in, " out=", p.out, " exceed the 32-bit range of the CUDA kernels");
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

// Sums over the block go through block_sum (cuda/device_utils.cuh): xor shuffles within each
// warp, then the warps' sums in warp order.
template <int KIND>
__global__ void __launch_bounds__(kDistThreads)
    distance_fwd_kernel(float* __restrict__ out, const float* __restrict__ a,
                        const float* __restrict__ b, int64_t n, DistScratch* scratch) {
  constexpr DistanceKind kind = static_cast<DistanceKind>(KIND);
  __shared__ double block_scratch[32];
  double acc = 0.0;
  for (const int64_t i : grid_stride(n))
    acc += static_cast<double>(math::distance_term(kind, __ldg(a + i) - __ldg(b + i)));
  acc = block_sum(acc, block_scratch);
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
  s = block_sum(s, block_scratch);
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
  for (const int64_t i : grid_stride(n)) {
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
    with_fused_act(p.act, op, [&](auto act) {
      constexpr int A = static_cast<int>(decltype(act)::value);
      if (per_warp) {
        launch_grid_stride(IDEM_SITE(op), outputs * 32, kThreads, linear_act_fwd_warp_kernel<A>, g);
      } else {
        // The staged rows fit in shared memory because this path has in < 128 (see `small`
        // and `per_warp` above); a change of those thresholds must revisit fwd_tile.
        IDEM_CHECK(p.in < 128, op, "internal: the tiled forward needs in < 128, got ", p.in);
        const FwdTile t = fwd_tile(p.N, p.in, p.out);
        IDEM_CHECK(t.blocks <= 0x7fffffffLL, op, "too many blocks (", t.blocks, ") for N=", p.N);
        linear_act_fwd_tile_kernel<A><<<static_cast<unsigned>(t.blocks), t.tr * t.tc, t.smem, st>>>(
            g, t.tr, t.tc, t.stride, t.col_blocks);
        IDEM_LAUNCH_CHECK(op);
      }
    });
    return;
  }
  const MatmulParams mp = single_gemm(p.N, p.out, p.in, false, true);  // z = x·Wᵀ : (N,in)(out,in)ᵀ
  if (gemm_backend() == GemmBackend::hand) {
    // The bias and the activation in the GEMM's store, with the rounding order of this
    // function's cuBLAS branch: one launch.
    matmul_hand_epilogue(y, x, w, mp, p.bias ? b : Tensor(), p.act, p.slope);
    return;
  }
  matmul_fwd(y, x, w, mp);
  if (!p.bias && p.act == FusedAct::none) return;
  with_fused_act(p.act, op, [&](auto act) {
    constexpr int A = static_cast<int>(decltype(act)::value);
    launch_grid_stride(IDEM_SITE(op), outputs, kThreads, linear_act_epilogue_kernel<A>, g.y, g.b,
                       outputs, g.out, g.slope);
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
    auto tiles = [](int64_t n) { return static_cast<int>((n + kBwdTile - 1) / kBwdTile); };
    const int dx_col_tiles = tiles(p.in);
    const int dx_blocks = a.dx ? tiles(p.N) * dx_col_tiles : 0;
    const int dw_col_tiles = a.dw ? tiles(p.in) : 1;  // db alone: one column of tiles
    const int dw_blocks = (a.dw || a.db) ? tiles(p.out) * dw_col_tiles : 0;
    with_fused_act(p.act, op, [&](auto act) {
      linear_act_bwd_tile_kernel<static_cast<int>(decltype(act)::value)>
          <<<static_cast<unsigned>(dx_blocks + dw_blocks), kBwdThreads, 0, st>>>(
              a, dx_blocks, dx_col_tiles, dw_col_tiles);
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
  if (gz_out != nullptr || db.defined())
    launch_bwd_epilogue(gz_out, db.defined() ? db.data<float>() : nullptr, g, y, p.N, p.out, p.act,
                        slope, st, op);
  if (dx.defined())
    matmul_fwd(dx, gz, w, single_gemm(p.N, p.in, p.out, false, false));  // dx = gz·W
  if (dw.defined())
    matmul_fwd(dw, gz, x, single_gemm(p.out, p.in, p.N, true, false));  // dW = gzᵀ·x
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
  float* pda = da.defined() ? da.data<float>() : nullptr;
  float* pdb = db.defined() ? db.data<float>() : nullptr;
  with_kind(k, [&](auto kind) {
    launch_grid_stride(IDEM_SITE(op), n, kThreads, distance_bwd_kernel<decltype(kind)::value>, pda,
                       pdb, g.data<float>(), a.data<float>(), b.data<float>(), n);
  });
}

// ---- sage_linear's forward and the linear_act epilogues on their own (ops::sage_linear) -----

void sage_linear_fwd(const Tensor& y, const Tensor& a, const Tensor& wl, const Tensor& b,
                     const Tensor& x, const Tensor& wr, const LinearActParams& p) {
  if (p.N == 0 || p.out == 0) return;
  matmul_fwd(y, x, wr, single_gemm(p.N, p.out, x.size(1), false, true));  // y = x·Wrᵀ
  MatmulParams neigh = single_gemm(p.N, p.out, p.in, false, true);
  neigh.beta = 1.0;  // y = a·Wlᵀ + y
  if (gemm_backend() == GemmBackend::hand) {
    // bias + activation in the GEMM's store: no epilogue launch, no extra pass over y.
    matmul_hand_epilogue(y, a, wl, neigh, p.bias ? b : Tensor(), p.act, p.slope);
    return;
  }
  matmul_fwd(y, a, wl, neigh);
  bias_act(y, b, p);
}

void bias_act(const Tensor& y, const Tensor& b, const LinearActParams& p) {
  const char* op = "sage_linear";
  if (p.N == 0 || p.out == 0 || (!p.bias && p.act == FusedAct::none)) return;
  IDEM_CHECK(p.out < INT32_MAX, op, "out=", p.out, " exceeds the 32-bit range of the CUDA kernels");
  set_device(y.device().index);
  const int64_t outputs = p.N * p.out;
  float* py = y.data<float>();
  const float* pb = p.bias ? b.data<float>() : nullptr;
  with_fused_act(p.act, op, [&](auto act) {
    constexpr int A = static_cast<int>(decltype(act)::value);
    launch_grid_stride(IDEM_SITE(op), outputs, kThreads, linear_act_epilogue_kernel<A>, py, pb,
                       outputs, static_cast<int>(p.out), static_cast<float>(p.slope));
  });
}

void act_bias_grad(const Tensor& gz, const Tensor& db, const Tensor& g, const Tensor& y,
                   const LinearActParams& p) {
  const char* op = "sage_linear_backward";
  if (p.out == 0 || (!gz.defined() && !db.defined())) return;
  IDEM_CHECK(p.N < INT32_MAX && p.out < INT32_MAX, op, "extents N=", p.N, " out=", p.out,
             " exceed the 32-bit range of the CUDA kernels");
  set_device(g.device().index);
  const cudaStream_t st = current_stream();
  launch_bwd_epilogue(gz.defined() ? gz.data<float>() : nullptr,
                      db.defined() ? db.data<float>() : nullptr, g, y, p.N, p.out, p.act,
                      static_cast<float>(p.slope), st, op);
}

}  // namespace idem::cuda
