// CUDA SAGEConv forward in one kernel (contract and rounding: core/kernels/sage_conv.h; the
// composed path it replaces: cuda/kernels/csr_aggregate.cu, then sage_linear's two GEMMs in
// cuda/kernels/fused.cu and matmul.cu).
//
// A block owns kRows = 64 consecutive nodes and all (<= 64) outputs of each. 256 threads, each
// 4 rows × 4 outputs (16 row groups × 16 column groups; a warp is 4 row groups × 8 column
// groups, so its shared-memory reads below are conflict-free). Two phases, one shared tile for
// the rows and one for a weight matrix (row stride 65 floats: a column read across the warp's
// rows and weight rows then falls in distinct banks), 33 KB in all:
//   1. rows ← x[v0 … v0+63], W ← Wr; r = x·Wrᵀ in registers (fmaf chains over k in order).
//   2. rows ← the mean of each node's in-neighbours (a group of 16 threads per node, each
//      feature summed in double over the edges in order, as csr_mean_aggregate's kernel), also
//      stored to `mean` when the caller keeps it; W ← Wl; l = mean·Wlᵀ.
//   Then y = act((l + r) + b), the order of the composed path's stores.
// Rows past V are zero in the tile and never stored. Nothing is atomic: the bits do not depend
// on the launch.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/kernels/sage_conv.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kRows = 64;             // nodes per block
constexpr int kThreads = 256;         // 16 × 16 threads of 4 rows × 4 outputs
constexpr int kLd = 65;               // padded row stride of both shared tiles
constexpr int kGroup = 16;            // threads per node in the mean's gather
constexpr int kPacks = 4;             // features per thread in the gather: 16 · 4 = 64 = max in
static_assert(kSageConvMaxIn <= kLd - 1 && kSageConvMaxOut <= kLd - 1, "tiles hold 64 columns");
static_assert(kGroup * kPacks >= kSageConvMaxIn, "the gather covers every feature");

struct SageConvArgs {
  const float* x;
  const int64_t* row_ptr;
  const int64_t* col;
  const float* wl;
  const float* wr;
  const float* bias;  // null: no bias
  float* y;
  float* mean;  // null: not kept
  int64_t V, E;
  int in, out;
  int act;  // a FusedAct
  float slope;
};

// tile[r][c] = src[r·cols + c] for r < rows (a contiguous row-major block: coalesced loads),
// 0 for rows <= r < kRows, so rows past the block's nodes (or past `out`) hold zeros.
__device__ __forceinline__ void load_tile(float (*tile)[kLd], const float* __restrict__ src,
                                          int rows, int cols) {
  for (int i = threadIdx.x; i < kRows * cols; i += kThreads) {
    const int r = i / cols, c = i - r * cols;
    tile[r][c] = r < rows ? __ldg(src + i) : 0.f;
  }
}

// acc[i][j] = Σ_k a[r0 + i][k] · w[c0 + j][k], one fmaf chain from 0 in k order per output.
__device__ __forceinline__ void tile_dots(float (&acc)[4][4], const float (*a)[kLd],
                                          const float (*w)[kLd], int r0, int c0, int in) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  for (int k = 0; k < in; ++k) {
    float av[4], wv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) av[i] = a[r0 + i][k];
#pragma unroll
    for (int j = 0; j < 4; ++j) wv[j] = w[c0 + j][k];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], wv[j], acc[i][j]);
  }
}

// rows[r] = mean over node v0 + r's in-edges of x[col[k]] (and mean[v0 + r] when kept), for
// r < nodes; csr_mean_aggregate's sum: double, edge order, one rounding, then · inv(v).
__device__ __forceinline__ void gather_means(float (*rows)[kLd], const SageConvArgs& p,
                                             int64_t v0, int nodes) {
  const int lane = threadIdx.x % kGroup;
  for (int r = threadIdx.x / kGroup; r < nodes; r += kThreads / kGroup) {
    const int64_t v = v0 + r;
    const SegmentRange e = segment_range(p.row_ptr, v, p.E);
    double acc[kPacks] = {};
    for (int64_t k = e.lo; k < e.hi; ++k) {
      const float* __restrict__ src = p.x + clamp64(p.col[k], 0, p.V - 1) * p.in;
#pragma unroll
      for (int q = 0; q < kPacks; ++q) {
        const int f = lane + q * kGroup;
        if (f < p.in) acc[q] += static_cast<double>(__ldg(src + f));
      }
    }
    // inv(v) as csr_mean_aggregate's inv_of: the degree rounded to f32, one correct division.
    const float inv = __fdiv_rn(1.0f, static_cast<float>(e.hi > e.lo ? e.hi - e.lo : int64_t{1}));
#pragma unroll
    for (int q = 0; q < kPacks; ++q) {
      const int f = lane + q * kGroup;
      if (f >= p.in) continue;
      const float m = __fmul_rn(static_cast<float>(acc[q]), inv);
      rows[r][f] = m;
      if (p.mean != nullptr) p.mean[v * p.in + f] = m;
    }
  }
}

__global__ void __launch_bounds__(kThreads) sage_conv_fwd_kernel(SageConvArgs p) {
  __shared__ float rows[kRows][kLd];  // x's tile, then the means' tile
  __shared__ float w[kRows][kLd];     // Wr, then Wl (row n = output n)

  const int64_t v0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int nodes = static_cast<int>(p.V - v0 < kRows ? p.V - v0 : kRows);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = 4 * ((warp / 2) * 4 + lane / 8);  // this thread's 4 rows
  const int c0 = 4 * ((warp % 2) * 8 + lane % 8);  // and 4 outputs

  // Phase 1: r = x·Wrᵀ.
  load_tile(rows, p.x + v0 * p.in, nodes, p.in);
  load_tile(w, p.wr, p.out, p.in);
  __syncthreads();
  float root[4][4];
  tile_dots(root, rows, w, r0, c0, p.in);
  __syncthreads();  // every thread is done with both tiles

  // Phase 2: l = mean·Wlᵀ. Rows past `nodes` keep phase 1's zeros.
  gather_means(rows, p, v0, nodes);
  load_tile(w, p.wl, p.out, p.in);
  __syncthreads();
  float neigh[4][4];
  tile_dots(neigh, rows, w, r0, c0, p.in);

  // y = act((l + r) + b): the second GEMM's beta = 1 store, then its epilogue (finish()).
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t v = v0 + r0 + i;
    if (r0 + i >= nodes) break;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = c0 + j;
      if (n >= p.out) break;
      float o = fmaf(1.0f, root[i][j], neigh[i][j]);
      if (p.bias != nullptr) o = o + __ldg(p.bias + n);
      if (p.act != 0) o = math::fused_act(static_cast<FusedAct>(p.act), o, p.slope);
      p.y[v * p.out + n] = o;
    }
  }
}

}  // namespace

void sage_conv_fwd(const Tensor& y, const Tensor& mean, const Tensor& x, const Tensor& row_ptr,
                   const Tensor& col, int64_t edges, const Tensor& wl, const Tensor& b,
                   const Tensor& wr, const LinearActParams& p) {
  const char* op = "sage_conv";
  if (p.N == 0) return;
  IDEM_CHECK(sage_conv_fused_fits(p.in, p.out), op, "internal: the fused kernel takes in and out up to ",
             kSageConvMaxIn, ", got in=", p.in, " out=", p.out, " on ", x.device().str());
  IDEM_CHECK(p.N <= INT32_MAX / kRows * kRows, op, "N=", p.N, " nodes exceed the grid of the CUDA kernel");
  set_device(x.device().index);
  SageConvArgs a{};
  a.x = x.data<float>();
  a.row_ptr = row_ptr.data<int64_t>();
  a.col = edges > 0 ? col.data<int64_t>() : nullptr;  // never read without edges
  a.wl = wl.data<float>();
  a.wr = wr.data<float>();
  a.bias = p.bias ? b.data<float>() : nullptr;
  a.y = y.data<float>();
  a.mean = mean.defined() ? mean.data<float>() : nullptr;
  a.V = p.N;
  a.E = edges;
  a.in = static_cast<int>(p.in);
  a.out = static_cast<int>(p.out);
  a.act = static_cast<int>(p.act);
  a.slope = static_cast<float>(p.slope);
  const unsigned blocks = static_cast<unsigned>((p.N + kRows - 1) / kRows);
  sage_conv_fwd_kernel<<<blocks, kThreads, 0, current_stream()>>>(a);
  IDEM_LAUNCH_CHECK(op);
}

}  // namespace idem::cuda
