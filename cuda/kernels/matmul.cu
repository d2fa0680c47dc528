// CUDA matmul: the hand-written SGEMM (cuda::matmul_hand) and the run-time switch between it and
// cuBLAS (cuda::matmul_fwd). Contract: core/kernels/matmul.h (row-major, transpose flags,
// batch strides with 0 = shared, alpha/beta, beta = 0 never reads C).
//
// Paths, chosen per call by shape:
//  - tiled: shared-memory tiles of op(A) and op(B) stored k-major (a transposed operand is
//    transposed while it is written to shared memory, so the inner loop is the same for all four
//    flag combinations), register blocking with 4x4 sub-tiles per thread read as float4,
//    16-byte global loads when the contiguous dim is a multiple of 4 and the base is aligned,
//    and double buffering (the next tile's global loads are in flight during this tile's math).
//    Tile sizes: 128x128x8 (8x8 per thread), 64x64x16 and 32x32x16 (4x4 per thread); the
//    largest one that still gives every SM a block is used. (128x128x16 is compiled for the
//    benchmark's comparison only.) Tall-skinny products — N <= 64 with many rows, the GNN
//    layers' (V, F)·(F, F) with V in the tens of thousands — take 128x64x8 (8x8 per thread,
//    128 threads): a 128-wide tile would compute and store padding for half its columns.
//    Every tile config computes each output as one fmaf chain over k = 0..K-1 in order (the
//    zero padding past K adds 0·0, which can only turn an all-zero -0 sum into +0), as the
//    one-thread-per-output small kernel does: the tile choice does not change the bits (except
//    that sign of an all-zero sum). The exception is the cluster split-K below (more than 64
//    columns in at most 64 32x32 tiles), whose outputs are a fixed-order sum of 2, 4 or 8 chains.
//  - small: IT³ multiplies tiny matrices (8x14·14x30) where a 128x128 tile would leave the GPU
//    empty: one thread per output, or one warp per output when K is long.
//  - narrow: one product with N <= 4 and many rows (a layer's input gradient when it has 1-4
//    inputs): one thread a row, its own file (cuda/kernels/matmul_narrow.cu), the same bits.
//  - split-K: Aᵀ·B with few outputs and a long K (a weight gradient over many rows), below.
//  - cluster split-K: one product of few 32x32 tiles and a moderate K (the wide MLP's layers),
//    its K chunks summed by the blocks of a thread-block cluster, below.
// For op(A)·Bᵀ (a Linear's x·Wᵀ) the tiled and small kernels' stores can also add a bias and
// apply a fused activation (matmul_hand_epilogue: the second GEMM of sage_linear's forward ends
// the layer in its own store).
#include <cooperative_groups.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "core/bool_str.h"
#include "core/env.h"
#include "core/kernels/fused.h"  // math::fused_act: the epilogue of matmul_hand_epilogue
#include "core/kernels/matmul.h"
#include "cuda/cluster.cuh"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"
#include "cuda/kernels/matmul_narrow.h"

namespace idem::cuda {

namespace {

struct GemmArgs {
  const float* a;
  const float* b;
  float* c;
  int M, N, K;
  int64_t stride_a, stride_b, stride_c;
  float alpha, beta;
  // The epilogue of matmul_hand_epilogue, after alpha·acc + beta·C: + bias[n] (when non-null),
  // then the activation `act` (a FusedAct; 0 = none). Plain GEMMs leave both off.
  const float* bias;
  int act;
  float slope;
  // The cluster split-K (SPLIT instantiations): rows of K a chunk, a multiple of the tile depth.
  int split_kc;
};

// An output's last steps: o + bias[col], then the activation, in the order of the separate
// bias_act pass (cuda/kernels/fused.cu), so folding it into the store keeps the bits.
__device__ __forceinline__ float finish(const GemmArgs& g, float o, int col) {
  if (g.bias != nullptr) o = o + __ldg(g.bias + col);
  if (g.act != 0) o = math::fused_act(static_cast<FusedAct>(g.act), o, g.slope);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Tiled kernel.
//   BM x BN block tile, BK deep; each thread owns TM x TN outputs as (TM/4) x (TN/4) sub-tiles
//   of 4x4. A warp is WTM x WTN threads; sub-tile i of a thread starts WTM*4 rows after sub-tile
//   i-1, so one float4 shared-memory read per sub-tile serves 4 rows and a warp's reads of one
//   k row are contiguous (no bank conflicts).

// Four consecutive elements along the contiguous dim of a row-major (rows x cols) matrix,
// zero outside it. VEC: cols % 4 == 0 and the rows are 16-byte aligned, so a float4 is either
// all inside or all outside.
template <bool VEC>
__device__ __forceinline__ float4 load4(const float* __restrict__ base, int row, int col, int rows,
                                        int cols, int ld) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (row >= rows) return v;
  const float* p = base + static_cast<int64_t>(row) * ld + col;
  if (VEC) {
    if (col < cols) v = __ldg(reinterpret_cast<const float4*>(p));
  } else {
    if (col + 0 < cols) v.x = __ldg(p + 0);
    if (col + 1 < cols) v.y = __ldg(p + 1);
    if (col + 2 < cols) v.z = __ldg(p + 2);
    if (col + 3 < cols) v.w = __ldg(p + 3);
  }
  return v;
}

// The end of a cluster split-K block (SPLIT in the tiled kernel below): its partial tile `acc`
// (the thread's TM x TN outputs, laid out as the tiled kernel's) goes to shared memory; after
// the cluster barrier the block of rank q finishes rows [q·BM/S, (q+1)·BM/S) of the tile, each
// output alpha·((p_0 + p_1) + … + p_{S−1}) (+ beta·C, then finish() when EPI) over the S
// blocks' partials in rank (= chunk) order, read through distributed shared memory; a second
// barrier keeps every block's partial alive until all have read it. The order of the sum
// depends on the plan (M, N, K) only, so the result is the same on every run and on every card
// that takes the split.
template <int BM, int BN, int TM, int TN, int WTM, int WTN, int NT, bool EPI>
__device__ __forceinline__ void split_finish(const GemmArgs& g, const float (&acc)[TM][TN], int row_s,
                                             int col_s, int m0, int n0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  __shared__ __align__(16) float part[BM][BN];
#pragma unroll
  for (int i = 0; i < TM / 4; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        const float* v = &acc[i * 4 + r][j * 4];
        *reinterpret_cast<float4*>(&part[row_s + i * WTM * 4 + r][col_s + j * WTN * 4]) =
            make_float4(v[0], v[1], v[2], v[3]);
      }
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every block's partial is in its shared memory
  const int S = int(cluster.num_blocks());
  const int rows = BM / S;  // S is 2, 4 or 8 (the plan), so it divides BM = 32
  const int first = int(cluster.block_rank()) * rows;
  for (int e = threadIdx.x; e < rows * BN; e += NT) {
    const int lr = first + e / BN, lc = e % BN;
    float s = *cluster.map_shared_rank(&part[lr][lc], 0);
    for (int q = 1; q < S; ++q) s += *cluster.map_shared_rank(&part[lr][lc], q);
    const int row = m0 + lr, col = n0 + lc;
    if (row < g.M && col < g.N) {
      float* cp = g.c + static_cast<int64_t>(row) * g.N + col;
      float o = g.alpha * s;
      if (g.beta != 0.f) o = fmaf(g.beta, *cp, o);
      *cp = EPI ? finish(g, o, col) : o;
    }
  }
  cluster.sync();  // no block leaves while another still reads its partial
#else
  // Never launched: the host takes this path only where has_cluster_code() says sm_90 code exists.
  (void)g, (void)acc, (void)row_s, (void)col_s, (void)m0, (void)n0;
  __trap();
#endif
}

// EPI: the store applies finish() (bias, activation). A template flag, not a run-time test: the
// extra epilogue code makes ptxas spill in the 128-register configs, so only the instantiations
// that matmul_hand_epilogue launches (!TA, TB) carry it.
// SPLIT: the cluster split-K ("Cluster split-K" below; 32x32x16 only). blockIdx.z is then the
// K chunk of one product, not a batch entry, and the S blocks of a (1, 1, S) cluster share the
// output tile: each sums its chunk into shared memory, and after the cluster barrier each
// finishes BM / S rows of the tile from the S partials, read in chunk order.
template <int BM, int BN, int BK, int TM, int TN, int WTM, int WTN, int MIN_BLOCKS, bool TA,
          bool TB, bool VEC_A, bool VEC_B, bool EPI = false, bool SPLIT = false>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), MIN_BLOCKS)
    matmul_fwd_tiled_kernel(GemmArgs g) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int WARP_M = WTM * TM, WARP_N = WTN * TN;
  constexpr int WARPS_N = BN / WARP_N;
  static_assert(WTM * WTN == 32, "a warp is 32 threads");
  static_assert((BM / WARP_M) * (BN / WARP_N) * 32 == NT, "warps must tile the block");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "4x4 sub-tiles");
  constexpr int A_VECS = BM * BK / 4 / NT, B_VECS = BN * BK / 4 / NT;
  static_assert(A_VECS >= 1 && A_VECS * 4 * NT == BM * BK, "A tile must split into float4s");
  static_assert(B_VECS >= 1 && B_VECS * 4 * NT == BN * BK, "B tile must split into float4s");
  // +4 floats per k row: the transposing scalar stores of a non-transposed operand would
  // otherwise hit one bank twice; 4 keeps rows 16-byte aligned for the float4 reads.
  constexpr int LDA_S = BM + 4, LDB_S = BN + 4;
  __shared__ __align__(16) float As[2][BK][LDA_S];
  __shared__ __align__(16) float Bs[2][BK][LDB_S];

  const int M = g.M, N = g.N, K = g.K;
  const int64_t entry = SPLIT ? 0 : blockIdx.z;  // the batch entry
  const float* __restrict__ A = g.a + entry * g.stride_a;
  const float* __restrict__ B = g.b + entry * g.stride_b;
  float* __restrict__ C = g.c + entry * g.stride_c;
  // This block's rows of K: all of them, or chunk blockIdx.z. A chunk is a whole number of
  // BK-deep tiles, so a tile never reads the next chunk's rows; past K the loads give zeros.
  const int k_begin = SPLIT ? int(blockIdx.z) * g.split_kc : 0;
  const int k_end = SPLIT ? min(K, k_begin + g.split_kc) : K;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int tid = threadIdx.x;

  float4 ra[A_VECS], rb[B_VECS];

  // Global -> registers for the tile starting at k0. op(A) tile is BM x BK, op(B) is BK x BN.
  auto load_tile = [&](int k0) {
#pragma unroll
    for (int l = 0; l < A_VECS; ++l) {
      const int f = tid + l * NT;
      if (!TA) {  // A (M,K): 4 along k
        const int r = f / (BK / 4), kq = (f % (BK / 4)) * 4;
        ra[l] = load4<VEC_A>(A, m0 + r, k0 + kq, M, K, K);
      } else {  // A (K,M): 4 along m
        const int kr = f / (BM / 4), mq = (f % (BM / 4)) * 4;
        ra[l] = load4<VEC_A>(A, k0 + kr, m0 + mq, K, M, M);
      }
    }
#pragma unroll
    for (int l = 0; l < B_VECS; ++l) {
      const int f = tid + l * NT;
      if (!TB) {  // B (K,N): 4 along n
        const int kr = f / (BN / 4), nq = (f % (BN / 4)) * 4;
        rb[l] = load4<VEC_B>(B, k0 + kr, n0 + nq, K, N, N);
      } else {  // B (N,K): 4 along k
        const int r = f / (BK / 4), kq = (f % (BK / 4)) * 4;
        rb[l] = load4<VEC_B>(B, n0 + r, k0 + kq, N, K, K);
      }
    }
  };
  // Registers -> shared buffer `buf`, k-major.
  auto store_tile = [&](int buf) {
#pragma unroll
    for (int l = 0; l < A_VECS; ++l) {
      const int f = tid + l * NT;
      if (!TA) {
        const int r = f / (BK / 4), kq = (f % (BK / 4)) * 4;
        As[buf][kq + 0][r] = ra[l].x;
        As[buf][kq + 1][r] = ra[l].y;
        As[buf][kq + 2][r] = ra[l].z;
        As[buf][kq + 3][r] = ra[l].w;
      } else {
        const int kr = f / (BM / 4), mq = (f % (BM / 4)) * 4;
        *reinterpret_cast<float4*>(&As[buf][kr][mq]) = ra[l];
      }
    }
#pragma unroll
    for (int l = 0; l < B_VECS; ++l) {
      const int f = tid + l * NT;
      if (!TB) {
        const int kr = f / (BN / 4), nq = (f % (BN / 4)) * 4;
        *reinterpret_cast<float4*>(&Bs[buf][kr][nq]) = rb[l];
      } else {
        const int r = f / (BK / 4), kq = (f % (BK / 4)) * 4;
        Bs[buf][kq + 0][r] = rb[l].x;
        Bs[buf][kq + 1][r] = rb[l].y;
        Bs[buf][kq + 2][r] = rb[l].z;
        Bs[buf][kq + 3][r] = rb[l].w;
      }
    }
  };

  const int warp = tid / 32, lane = tid % 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int tm = lane / WTN, tn = lane % WTN;
  const int row_s = wm * WARP_M + tm * 4;  // first row of sub-tile 0 inside the block tile
  const int col_s = wn * WARP_N + tn * 4;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int k_tiles = (k_end - k_begin + BK - 1) / BK;
  load_tile(k_begin);
  store_tile(0);
  __syncthreads();

  for (int kt = 0; kt < k_tiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < k_tiles;
    if (more) load_tile(k_begin + (kt + 1) * BK);  // lands while the FFMAs below run
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float af[TM], bf[TN];
#pragma unroll
      for (int i = 0; i < TM / 4; ++i) {
        const float4 v = *reinterpret_cast<const float4*>(&As[cur][k][row_s + i * WTM * 4]);
        af[i * 4 + 0] = v.x;
        af[i * 4 + 1] = v.y;
        af[i * 4 + 2] = v.z;
        af[i * 4 + 3] = v.w;
      }
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][k][col_s + j * WTN * 4]);
        bf[j * 4 + 0] = v.x;
        bf[j * 4 + 1] = v.y;
        bf[j * 4 + 2] = v.z;
        bf[j * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
    }
    // The other buffer was last read before the previous barrier, so it is free to fill.
    if (more) store_tile(cur ^ 1);
    __syncthreads();
  }

  if constexpr (SPLIT) {
    split_finish<BM, BN, TM, TN, WTM, WTN, NT, EPI>(g, acc, row_s, col_s, m0, n0);
    return;
  }

  // Epilogue: C = alpha*acc (+ beta*C), then finish() (bias, activation) when EPI. beta == 0
  // must not read C (it may hold NaN garbage). Two passes: first every output's alpha·acc +
  // beta·C into acc, then finish() and the stores, so no load of C waits behind a store the
  // compiler must assume may alias it (in one pass each row's load came after the previous
  // row's store). Why: the sage layer's y = a·Wlᵀ + y took 31 µs a launch against 22 for the
  // same tile with beta = 0 (ncu, H100). With this and the small kernel's 32-bit indexing
  // together the sage adaptation took 2 % less time at 8 meshes and 4.5-5 % less from 64 up;
  // neither's share was isolated (docs/performance.md).
  // Same operations per output, so the same bits.
  const float alpha = g.alpha, beta = g.beta;
  const bool vec_c = (N % 4 == 0) && is_aligned(C, 16);
#pragma unroll
  for (int i = 0; i < TM / 4; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int row = m0 + row_s + i * WTM * 4 + r;
      const float* crow = C + static_cast<int64_t>(row) * N;
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        const int col = n0 + col_s + j * WTN * 4;
        float* v = &acc[i * 4 + r][j * 4];
#pragma unroll
        for (int e = 0; e < 4; ++e) v[e] = alpha * v[e];
        if (beta == 0.f || row >= M || col >= N) continue;
        if (vec_c) {
          const float4 old = *reinterpret_cast<const float4*>(crow + col);
          v[0] = fmaf(beta, old.x, v[0]);
          v[1] = fmaf(beta, old.y, v[1]);
          v[2] = fmaf(beta, old.z, v[2]);
          v[3] = fmaf(beta, old.w, v[3]);
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (col + e < N) v[e] = fmaf(beta, crow[col + e], v[e]);
        }
      }
    }
#pragma unroll
  for (int i = 0; i < TM / 4; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int row = m0 + row_s + i * WTM * 4 + r;
      if (row >= M) continue;
      float* crow = C + static_cast<int64_t>(row) * N;
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        const int col = n0 + col_s + j * WTN * 4;
        const float* v = &acc[i * 4 + r][j * 4];
        if (vec_c && col < N) {
          float4 o = make_float4(v[0], v[1], v[2], v[3]);
          if (EPI) {
            o.x = finish(g, o.x, col + 0);
            o.y = finish(g, o.y, col + 1);
            o.z = finish(g, o.z, col + 2);
            o.w = finish(g, o.w, col + 3);
          }
          *reinterpret_cast<float4*>(crow + col) = o;
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            if (col + e >= N) break;
            crow[col + e] = EPI ? finish(g, v[e], col + e) : v[e];
          }
        }
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Small shapes. Element (m,k) of op(A) and (k,n) of op(B) under the transpose flags.
template <bool TA>
__device__ __forceinline__ float a_at(const float* __restrict__ A, int m, int k, int M, int K) {
  return TA ? __ldg(A + static_cast<int64_t>(k) * M + m) : __ldg(A + static_cast<int64_t>(m) * K + k);
}
template <bool TB>
__device__ __forceinline__ float b_at(const float* __restrict__ B, int k, int n, int N, int K) {
  return TB ? __ldg(B + static_cast<int64_t>(n) * K + k) : __ldg(B + static_cast<int64_t>(k) * N + n);
}

__device__ __forceinline__ void store_c(const GemmArgs& g, float* c, float v, int n) {
  float o = g.alpha * v;
  if (g.beta != 0.f) o = fmaf(g.beta, *c, o);
  *c = finish(g, o, n);
}

// Output (m, n) of one product of the batch (A, B its operands, c its element of C): a chain
// of fmaf over k in order from zero, as every unsplit kernel here sums, then the store.
template <bool TA, bool TB>
__device__ __forceinline__ void small_output(const GemmArgs& g, const float* A, const float* B, float* c, int m,
                                             int n) {
  float s = 0.f;
#pragma unroll 4
  for (int k = 0; k < g.K; ++k) s = fmaf(a_at<TA>(A, m, k, g.M, g.K), b_at<TB>(B, k, n, g.N, g.K), s);
  store_c(g, c, s, n);
}

// One thread per output; threads of a warp take neighbouring n, so B reads coalesce (no
// transpose) and A reads broadcast. One product of fewer than 2^31 outputs (the common case)
// finds (m, n) with one 32-bit division instead of the general loop's two 64-bit ones, which
// are dozens of instructions each beside a K of a few terms. (Measured: the sage first layer's
// 65 536 x 3 x 64 product took 21.9 µs a launch with L2 warm, against 24.7 µs under ncu before:
// two tools, so no gain is claimed; the 128x64 tile does the same product in 8.3 µs with the
// same bits, docs/performance.md, and run_hand routes it there.)
template <bool TA, bool TB>
__global__ void matmul_fwd_small_kernel(GemmArgs g, int batch) {
  const int64_t MN = static_cast<int64_t>(g.M) * g.N, total = MN * batch;
  if (batch == 1 && total <= INT32_MAX) {
    const uint32_t N = static_cast<uint32_t>(g.N);
    for (const uint32_t idx : grid_stride<uint32_t>(static_cast<uint32_t>(total))) {
      const uint32_t m = idx / N;
      small_output<TA, TB>(g, g.a, g.b, g.c + idx, static_cast<int>(m), static_cast<int>(idx - m * N));
    }
    return;
  }
  for (const int64_t idx : grid_stride(total)) {
    const int64_t bz = idx / MN, rem = idx - bz * MN;
    small_output<TA, TB>(g, g.a + bz * g.stride_a, g.b + bz * g.stride_b, g.c + bz * g.stride_c + rem,
                         static_cast<int>(rem / g.N), static_cast<int>(rem % g.N));
  }
}

// One warp per output for few outputs and a long K (e.g. a weight gradient over a batch): the
// lanes split K, then a fixed shuffle tree sums them (deterministic).
template <bool TA, bool TB>
__global__ void matmul_fwd_warp_kernel(GemmArgs g, int batch) {
  const int64_t MN = static_cast<int64_t>(g.M) * g.N, total = MN * batch;
  const int lane = threadIdx.x % 32;
  for (const int64_t idx : grid_stride_warps(total)) {
    const int64_t bz = idx / MN, rem = idx - bz * MN;
    const int m = static_cast<int>(rem / g.N), n = static_cast<int>(rem % g.N);
    const float* A = g.a + bz * g.stride_a;
    const float* B = g.b + bz * g.stride_b;
    float s = 0.f;
    for (int k = lane; k < g.K; k += 32)
      s = fmaf(a_at<TA>(A, m, k, g.M, g.K), b_at<TB>(B, k, n, g.N, g.K), s);
    s = warp_sum(s);
    if (lane == 0) store_c(g, g.c + bz * g.stride_c + rem, s, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

// "cuda:N" of the current device, for the messages of helpers that get no tensor (run_hand has
// made c's device current before calling them).
std::string current_device_str() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return "cuda:?";
  }
  return Device::cuda(dev).str();
}

int sm_count(int device) {
  static std::atomic<int> cache[64] = {};
  if (device < 0 || device >= 64) return 132;
  int v = cache[device].load(std::memory_order_relaxed);
  if (v == 0) {
    IDEM_CUDA_CHECK("matmul", cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device));
    cache[device].store(v, std::memory_order_relaxed);
  }
  return v;
}

template <int BM, int BN, int BK, int TM, int TN, int WTM, int WTN, int MINB, bool TA, bool TB,
          bool EPI = false>
void launch_tiled_t(const GemmArgs& g, int batch, bool vec_a, bool vec_b, cudaStream_t st) {
  constexpr int NT = (BM / TM) * (BN / TN);
  const dim3 grid((g.M + BM - 1) / BM, (g.N + BN - 1) / BN, batch);
  if (vec_a && vec_b) {
    matmul_fwd_tiled_kernel<BM, BN, BK, TM, TN, WTM, WTN, MINB, TA, TB, true, true, EPI>
        <<<grid, NT, 0, st>>>(g);
    IDEM_LAUNCH_CHECK("matmul");
  } else if (vec_a) {
    matmul_fwd_tiled_kernel<BM, BN, BK, TM, TN, WTM, WTN, MINB, TA, TB, true, false, EPI>
        <<<grid, NT, 0, st>>>(g);
    IDEM_LAUNCH_CHECK("matmul");
  } else if (vec_b) {
    matmul_fwd_tiled_kernel<BM, BN, BK, TM, TN, WTM, WTN, MINB, TA, TB, false, true, EPI>
        <<<grid, NT, 0, st>>>(g);
    IDEM_LAUNCH_CHECK("matmul");
  } else {
    matmul_fwd_tiled_kernel<BM, BN, BK, TM, TN, WTM, WTN, MINB, TA, TB, false, false, EPI>
        <<<grid, NT, 0, st>>>(g);
    IDEM_LAUNCH_CHECK("matmul");
  }
}

// epi: the store applies finish(); only for !ta && tb (the instantiations that carry it).
template <int BM, int BN, int BK, int TM, int TN, int WTM, int WTN, int MINB>
void launch_tiled(const GemmArgs& g, int batch, bool ta, bool tb, bool vec_a, bool vec_b,
                  cudaStream_t st, bool epi = false) {
  IDEM_CHECK((g.N + BN - 1) / BN <= 65535, "matmul", "N = ", g.N, " is too large for one launch (",
             BN, "-column tiles, at most 65535 per launch) on ", current_device_str());
  if (epi) {
    IDEM_CHECK(!ta && tb, "matmul",
               "internal: the tiled epilogue is built for op(A)·Bᵀ only; got trans_a=",
               bool_str(ta), ", trans_b=", bool_str(tb), ", M=", g.M, " N=", g.N, " K=", g.K,
               " on ", current_device_str());
    launch_tiled_t<BM, BN, BK, TM, TN, WTM, WTN, MINB, false, true, true>(g, batch, vec_a, vec_b,
                                                                         st);
  } else if (!ta && !tb)
    launch_tiled_t<BM, BN, BK, TM, TN, WTM, WTN, MINB, false, false>(g, batch, vec_a, vec_b, st);
  else if (!ta && tb)
    launch_tiled_t<BM, BN, BK, TM, TN, WTM, WTN, MINB, false, true>(g, batch, vec_a, vec_b, st);
  else if (ta && !tb)
    launch_tiled_t<BM, BN, BK, TM, TN, WTM, WTN, MINB, true, false>(g, batch, vec_a, vec_b, st);
  else
    launch_tiled_t<BM, BN, BK, TM, TN, WTM, WTN, MINB, true, true>(g, batch, vec_a, vec_b, st);
}

// The small-shape kernels on the current stream: one thread per output, or one warp per output.
void launch_small(const GemmArgs& g, int batch, bool ta, bool tb, bool per_warp) {
  const int64_t outputs = static_cast<int64_t>(g.M) * g.N * batch;
  void (*const kernels[2][2][2])(GemmArgs, int) = {  // [per_warp][ta][tb]
      {{matmul_fwd_small_kernel<false, false>, matmul_fwd_small_kernel<false, true>},
       {matmul_fwd_small_kernel<true, false>, matmul_fwd_small_kernel<true, true>}},
      {{matmul_fwd_warp_kernel<false, false>, matmul_fwd_warp_kernel<false, true>},
       {matmul_fwd_warp_kernel<true, false>, matmul_fwd_warp_kernel<true, true>}}};
  launch_grid_stride(IDEM_SITE("matmul"), per_warp ? outputs * 32 : outputs, 256,
                     kernels[per_warp][ta][tb], g, batch);
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------------
// Split-K for Aᵀ·B with few outputs and a long K — the weight gradient dW = gᵀ·x of a Linear
// (or GNN layer) over a large batch: M, N are layer widths, K the number of rows. Since the tiled
// split-K below took over M, N <= 128, this one runs the other shapes (M·N <= 65 536, e.g.
// 256 x 16). One warp per
// output (the small-shape kernel) would walk all of K alone and read both operands with a
// stride. Instead: K is cut into S chunks of kc rows, computed as one batched tiled GEMM into a
// scratch (S, M, N) — for Aᵀ·B every chunk of both operands is a contiguous block of rows — and
// one kernel sums the S partial products in a fixed order (deterministic, no atomics). Rows
// past S·kc are added by a third launch with beta = 1.

__global__ void splitk_sum_kernel(const float* __restrict__ parts, float* __restrict__ c,
                                  int64_t chunks, int64_t outputs, float alpha) {
  for (const int64_t i : grid_stride(outputs)) {
    float acc = 0.f;
    for (int64_t s = 0; s < chunks; ++s) acc += parts[s * outputs + i];
    c[i] = alpha * acc;
  }
}

bool use_split_k(const MatmulParams& p) {
  return p.batch == 1 && p.trans_a && !p.trans_b && p.beta == 0.0 && p.M * p.N <= 65536 &&
         p.K >= 4096;
}

void matmul_split_k(const Tensor& c, const GemmArgs& g, const MatmulParams& p, int nsm,
                    cudaStream_t st) {
  const int64_t chunks = std::min<int64_t>(64, p.K / 1024), kc = p.K / chunks;
  const int64_t outputs = p.M * p.N;
  Tensor scratch = empty({chunks, p.M, p.N}, Options{DType::f32, c.device()});
  GemmArgs gs = g;
  gs.K = static_cast<int>(kc);
  gs.stride_a = kc * p.M;  // Aᵀ is stored (K, M): chunk s starts kc·M elements further
  gs.stride_b = kc * p.N;  // B is stored (K, N)
  gs.stride_c = outputs;
  gs.c = scratch.data<float>();
  gs.alpha = 1.f, gs.beta = 0.f;
  const bool vec_a = p.M % 4 == 0 && gs.stride_a % 4 == 0 && is_aligned(g.a, 16);
  const bool vec_b = p.N % 4 == 0 && gs.stride_b % 4 == 0 && is_aligned(g.b, 16);
  if ((p.M + 63) / 64 * ((p.N + 63) / 64) * chunks >= nsm)
    launch_tiled<64, 64, 16, 4, 4, 4, 8, 1>(gs, static_cast<int>(chunks), true, false, vec_a, vec_b, st);
  else
    launch_tiled<32, 32, 16, 4, 4, 4, 8, 1>(gs, static_cast<int>(chunks), true, false, vec_a, vec_b, st);
  launch_grid_stride(IDEM_SITE("matmul"), outputs, 256, splitk_sum_kernel, scratch.data<float>(),
                     g.c, chunks, outputs, g.alpha);
  const int64_t done = chunks * kc;
  if (done < p.K) {
    GemmArgs gr = g;
    gr.a = g.a + done * p.M;
    gr.b = g.b + done * p.N;
    gr.K = static_cast<int>(p.K - done);
    gr.beta = 1.f;  // C += alpha · (the remaining rows)
    launch_small(gr, 1, true, false, false);
  }
}

// ---------------------------------------------------------------------------------------------
// Tiled split-K for Aᵀ·B with M, N <= 128 and K >= 4096 (the GNN's dW = gzᵀ·x: 64 x 64 x
// 65 536), replacing the batched-GEMM split-K above for those shapes. Two launches:
//  - matmul_splitk_tn_kernel: block (i, j, s) computes the 64x64 output tile (i, j) over the
//    rows [s·kc, min(K, (s+1)·kc)) of both operands into the scratch partial s. 256 threads of
//    4x4 outputs; both operands go through shared memory in 32-row slices, double buffered. For
//    Aᵀ·B a slice of A (K,M) and of B (K,N) is a block of whole rows, so the float4 loads are
//    coalesced and land in shared memory k-major without a transpose. The last chunk may be
//    shorter (K need not be a multiple of kc); rows past its end load as zeros.
//  - splitk_tn_sum_kernel: output i = alpha·Σ_s parts[s][i] (+ beta·C) in a
//    fixed order: 8 groups, group q summing s = q, q+8, q+16, ... in order, then the 8 group
//    sums in order q = 0..7.
// The chunking (splitk_plan) depends on M, N and K only, never on the card's SM count, so the
// bits are the same on every GPU. About 256 blocks in the first launch (two per SM on 132 SMs)
// with chunks of at least 128 rows; no float atomics.
constexpr int kSkBM = 64, kSkBN = 64, kSkBK = 32, kSkThreads = 256;
constexpr int kSkGroups = 8, kSkSumCols = 32;  // the sum kernel: 8 groups x 32 outputs a block
constexpr int64_t kSkTargetBlocks = 256, kSkMinRows = 128;

struct SplitKPlan {
  int64_t kc, chunks;  // rows a chunk (a multiple of kSkBK), number of chunks (>= 1 for K >= 1)
};

SplitKPlan splitk_plan(int64_t M, int64_t N, int64_t K) {
  const int64_t tiles = cdiv(M, kSkBM) * cdiv(N, kSkBN);
  const int64_t target = std::max<int64_t>(1, kSkTargetBlocks / tiles);
  const int64_t kc = std::max(kSkMinRows, cdiv(cdiv(K, target), kSkBK) * kSkBK);
  return {kc, cdiv(K, kc)};
}

bool use_split_k_tiled(const MatmulParams& p) {
  return p.batch == 1 && p.trans_a && !p.trans_b && p.M <= 128 && p.N <= 128 && p.K >= 4096;
}

template <bool VEC_A, bool VEC_B>
__global__ void __launch_bounds__(kSkThreads)
    matmul_splitk_tn_kernel(GemmArgs g, int kc, float* __restrict__ parts) {
  constexpr int BM = kSkBM, BN = kSkBN, BK = kSkBK, NT = kSkThreads;
  constexpr int A_VECS = BM * BK / 4 / NT, B_VECS = BN * BK / 4 / NT;
  static_assert(A_VECS * 4 * NT == BM * BK && B_VECS * 4 * NT == BN * BK, "float4 split");
  // +4 floats a row as the tiled kernel's shared tiles (rows stay 16-byte aligned).
  __shared__ __align__(16) float As[2][BK][BM + 4];
  __shared__ __align__(16) float Bs[2][BK][BN + 4];

  const int M = g.M, N = g.N;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int k_begin = blockIdx.z * kc;  // < K: the plan makes no empty chunk
  const int k_end = k_begin + min(kc, g.K - k_begin);  // no k_begin + kc: it may pass INT_MAX
  const int tid = threadIdx.x;
  const float* __restrict__ A = g.a;  // (K, M)
  const float* __restrict__ B = g.b;  // (K, N)

  float4 ra[A_VECS], rb[B_VECS];
  // Slice [k0, k0 + BK): thread f loads 4 consecutive columns of row k0 + f / (cols/4).
  auto load_tile = [&](int k0) {
#pragma unroll
    for (int l = 0; l < A_VECS; ++l) {
      const int f = tid + l * NT, kr = f / (BM / 4), mq = (f % (BM / 4)) * 4;
      ra[l] = load4<VEC_A>(A, k0 + kr, m0 + mq, k_end, M, M);
    }
#pragma unroll
    for (int l = 0; l < B_VECS; ++l) {
      const int f = tid + l * NT, kr = f / (BN / 4), nq = (f % (BN / 4)) * 4;
      rb[l] = load4<VEC_B>(B, k0 + kr, n0 + nq, k_end, N, N);
    }
  };
  auto store_tile = [&](int buf) {
#pragma unroll
    for (int l = 0; l < A_VECS; ++l) {
      const int f = tid + l * NT, kr = f / (BM / 4), mq = (f % (BM / 4)) * 4;
      *reinterpret_cast<float4*>(&As[buf][kr][mq]) = ra[l];
    }
#pragma unroll
    for (int l = 0; l < B_VECS; ++l) {
      const int f = tid + l * NT, kr = f / (BN / 4), nq = (f % (BN / 4)) * 4;
      *reinterpret_cast<float4*>(&Bs[buf][kr][nq]) = rb[l];
    }
  };

  // The 64x64x16 tiled config's layout: a warp is 4 x 8 threads = 16 x 32 outputs, the 8 warps
  // 4 x 2 of them. A warp's A reads are 4 broadcast float4s, its B reads 128 contiguous bytes.
  const int warp = tid / 32, lane = tid % 32;
  const int row_s = (warp / 2) * 16 + (lane / 8) * 4;  // 0, 4, ..., 60
  const int col_s = (warp % 2) * 32 + (lane % 8) * 4;  // 0, 4, ..., 60

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  const int k_tiles = (k_end - k_begin + BK - 1) / BK;
  load_tile(k_begin);
  store_tile(0);
  __syncthreads();
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < k_tiles;
    if (more) load_tile(k_begin + (kt + 1) * BK);  // in flight during this slice's FMAs
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 av = *reinterpret_cast<const float4*>(&As[cur][k][row_s]);
      const float4 bv = *reinterpret_cast<const float4*>(&Bs[cur][k][col_s]);
      const float af[4] = {av.x, av.y, av.z, av.w}, bf[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
    }
    if (more) store_tile(cur ^ 1);  // the other buffer was last read before the last barrier
    __syncthreads();
  }

  float* __restrict__ P = parts + static_cast<int64_t>(blockIdx.z) * M * N;
  const int col = n0 + col_s;
  // N % 4 == 0: every row and partial starts 16-byte aligned and col < N covers col + 3.
  const bool vec = (N % 4) == 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = m0 + row_s + i;
    if (row >= M) continue;
    float* prow = P + static_cast<int64_t>(row) * N;
    if (vec) {
      if (col < N)
        *reinterpret_cast<float4*>(prow + col) =
            make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (col + j < N) prow[col + j] = acc[i][j];
    }
  }
}

// Block: kSkSumCols consecutive outputs x kSkGroups groups (a warp = one group, 32 outputs:
// coalesced reads of each partial).
__global__ void __launch_bounds__(kSkSumCols* kSkGroups)
    splitk_tn_sum_kernel(GemmArgs g, const float* __restrict__ parts, int chunks) {
  __shared__ float red[kSkGroups][kSkSumCols];
  const int tx = threadIdx.x % kSkSumCols, q = threadIdx.x / kSkSumCols;
  const int64_t outputs = static_cast<int64_t>(g.M) * g.N;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kSkSumCols + tx;
  float acc = 0.f;
  if (i < outputs) {
    // Unrolled so that several loads are in flight ahead of the (ordered) adds.
#pragma unroll 8
    for (int s = q; s < chunks; s += kSkGroups) acc += parts[s * outputs + i];
  }
  red[q][tx] = acc;
  __syncthreads();
  if (q != 0 || i >= outputs) return;
  float t = red[0][tx];
#pragma unroll
  for (int r = 1; r < kSkGroups; ++r) t += red[r][tx];
  float o = g.alpha * t;
  if (g.beta != 0.f) o = fmaf(g.beta, g.c[i], o);
  g.c[i] = o;
}

// Both launches on stream st; any M, N, K >= 1 (the router sends M, N <= 128, K >= 4096).
void matmul_split_k_tiled(const Tensor& c, const GemmArgs& g, cudaStream_t st) {
  const SplitKPlan plan = splitk_plan(g.M, g.N, g.K);
  const int64_t outputs = static_cast<int64_t>(g.M) * g.N;
  Tensor scratch = empty({plan.chunks, g.M, g.N}, Options{DType::f32, c.device()});
  const bool vec_a = g.M % 4 == 0 && is_aligned(g.a, 16);
  const bool vec_b = g.N % 4 == 0 && is_aligned(g.b, 16);
  const dim3 grid(static_cast<unsigned>(cdiv(g.M, kSkBM)), static_cast<unsigned>(cdiv(g.N, kSkBN)),
                  static_cast<unsigned>(plan.chunks));
  void (*const kernels[2][2])(GemmArgs, int, float*) = {
      {matmul_splitk_tn_kernel<false, false>, matmul_splitk_tn_kernel<false, true>},
      {matmul_splitk_tn_kernel<true, false>, matmul_splitk_tn_kernel<true, true>}};
  kernels[vec_a][vec_b]<<<grid, kSkThreads, 0, st>>>(g, static_cast<int>(plan.kc),
                                                      scratch.data<float>());
  IDEM_LAUNCH_CHECK("matmul");
  splitk_tn_sum_kernel<<<static_cast<unsigned>(cdiv(outputs, kSkSumCols)), kSkSumCols * kSkGroups,
                         0, st>>>(g, scratch.data<float>(), static_cast<int>(plan.chunks));
  IDEM_LAUNCH_CHECK("matmul");
}

// ---------------------------------------------------------------------------------------------
// Cluster split-K: one product of few outputs and a moderate K — the wide IT³ MLP's layers,
// (64, 256)·(256, 256) at batch 64 or (256, 256)·(256, 256) at 256, and their weight gradients —
// where the 32x32 tiles number 16 to 64 and leave most of the GPU idle while each block walks
// all of K, one 16-deep tile after another, a global-load latency each. The tiled kernel with
// SPLIT: the 32x32x16 config (64 threads), the K rows cut into S chunks (S = 2, 4 or 8 blocks
// of a (1, 1, S) thread-block cluster per tile, about 128 blocks), each block one chunk, and the
// S partial tiles summed through distributed shared memory in chunk order by the blocks
// themselves: one launch, no scratch, no atomics. Each output is then S fmaf chains added in a
// fixed order — other bits than the unsplit tile's single chain (within rounding). The plan
// depends on M, N and K only, so a shape gives the same bits on every run and every card that
// takes the split; but the split needs sm_90 code (clusters) and float4-aligned operands (its
// only instantiations), so a build or card without clusters, an unaligned view of the same
// data, or IDEM_GEMM_CLUSTER_SPLIT=off (for comparisons) runs the unsplit 32x32 tile and gets
// the single chains' bits.
struct ClusterSplitPlan {
  int ways = 1;  // S: 1 = not split
  int kc = 0;    // rows of K a chunk (a multiple of 16); every chunk starts before K
};

constexpr int kCsBM = 32, kCsBN = 32, kCsBK = 16, kCsThreads = 64;
constexpr int64_t kCsMaxTiles = 64, kCsTargetBlocks = 128, kCsMinN = 64, kSmallOutputs = 8192;

ClusterSplitPlan cluster_split_plan(const MatmulParams& p) {
  ClusterSplitPlan plan;
  // N <= 64 keeps the unsplit tile: a product at most 64 wide is the shape of a GNN layer's
  // x·Wᵀ, whose single fmaf chain per output the fused SAGEConv kernel reproduces bit for bit
  // (core/kernels/sage_conv.h); the wide MLP's products are 256 wide.
  if (p.batch != 1 || p.K < 2 * kCsBK || p.N <= kCsMinN || p.M * p.N <= kSmallOutputs) return plan;
  const int64_t tiles = cdiv(p.M, kCsBM) * cdiv(p.N, kCsBN);
  if (tiles > kCsMaxTiles) return plan;
  for (int ways = 8; ways >= 2; ways /= 2) {
    if (tiles * ways > kCsTargetBlocks) continue;
    const int64_t kc = cdiv(cdiv(p.K, ways), kCsBK) * kCsBK;
    if (cdiv(p.K, kc) < ways) continue;  // a chunk would be empty
    plan.ways = ways;
    plan.kc = static_cast<int>(kc);
    return plan;
  }
  return plan;
}

bool cluster_split_enabled() {
  static const bool on = env_choice("IDEM_GEMM_CLUSTER_SPLIT", {"on", "off"}, "on") == "on";
  return on;
}

// The SPLIT instantiations: 32x32x16, 4x4 outputs a thread, float4 loads on both operands.
template <bool TA, bool TB, bool EPI>
auto cluster_split_kernel() {
  return matmul_fwd_tiled_kernel<kCsBM, kCsBN, kCsBK, 4, 4, 4, 8, 1, TA, TB, true, true, EPI, true>;
}

// Whether this build has the split's cluster code for `device` (the current one), asked once.
bool cluster_split_available(int device) {
  static std::array<std::atomic<int>, 64> cache{};
  return once_per_device(cache, device, [device] {
    const auto kernel = reinterpret_cast<const void*>(cluster_split_kernel<false, false, false>());
    return has_cluster_code(kernel, device, "matmul") ? 1 : 0;
  }) == 1;
}

template <bool TA, bool TB, bool EPI>
void launch_cluster_split_t(const GemmArgs& g, int ways, cudaStream_t st) {
  const dim3 grid(static_cast<unsigned>(cdiv(g.M, kCsBM)), static_cast<unsigned>(cdiv(g.N, kCsBN)),
                  static_cast<unsigned>(ways));
  ClusterLaunch launch(grid, dim3(1, 1, static_cast<unsigned>(ways)), kCsThreads, 0, st);
  IDEM_CUDA_CHECK("matmul", cudaLaunchKernelEx(&launch.cfg, cluster_split_kernel<TA, TB, EPI>(), g));
  IDEM_LAUNCH_CHECK("matmul");
}

void launch_cluster_split(const GemmArgs& g, const ClusterSplitPlan& plan, bool ta, bool tb, bool epi,
                          cudaStream_t st) {
  GemmArgs gs = g;
  gs.split_kc = plan.kc;
  if (epi)  // run_hand's epilogue is op(A)·Bᵀ only (matmul_hand_epilogue checks)
    launch_cluster_split_t<false, true, true>(gs, plan.ways, st);
  else if (!ta && !tb)
    launch_cluster_split_t<false, false, false>(gs, plan.ways, st);
  else if (!ta && tb)
    launch_cluster_split_t<false, true, false>(gs, plan.ways, st);
  else if (ta && !tb)
    launch_cluster_split_t<true, false, false>(gs, plan.ways, st);
  else
    launch_cluster_split_t<true, true, false>(gs, plan.ways, st);
}

}  // namespace

namespace {

// What run_hand needs to know about the operands besides the shapes.
struct OperandFacts {
  bool vec_a = false, vec_b = false;  // 16-byte loads possible (see operand_facts)
  bool epilogue = false;              // a bias or an activation in the store
  int device = 0;
};

OperandFacts operand_facts(const Tensor& c, const Tensor& a, const Tensor& b,
                           const MatmulParams& p, bool epilogue) {
  // 16-byte loads need the contiguous dim of the stored matrix to be a multiple of 4, an
  // aligned base and a batch stride that keeps every batch entry aligned.
  const int64_t a_cols = p.trans_a ? p.M : p.K, b_cols = p.trans_b ? p.K : p.N;
  OperandFacts o;
  o.vec_a = a_cols % 4 == 0 && p.stride_a % 4 == 0 && is_aligned(a.data<float>(), 16);
  o.vec_b = b_cols % 4 == 0 && p.stride_b % 4 == 0 && is_aligned(b.data<float>(), 16);
  o.epilogue = epilogue;
  o.device = c.device().index;
  return o;
}

// The narrow kernel's preconditions (variant 10).
bool narrow_fits(const MatmulParams& p, const OperandFacts& o) {
  return p.batch == 1 && !p.trans_a && p.N <= kNarrowMaxN && p.K <= kNarrowMaxK && o.vec_a &&
         !o.epilogue;
}

// The kernel matmul_hand runs (a matmul_hand_variant number) for a chunk of `nb` of the
// p.batch products (gridDim.z is limited to 65535, so run_hand walks a larger batch in chunks).
int route(const MatmulParams& p, int64_t nb, const OperandFacts& o) {
  // Split-K for Aᵀ·B with a long K: the tiled one for M, N <= 128, the batched-GEMM one for
  // other few-output shapes. Neither has an epilogue (matmul_hand_epilogue takes op(A)·Bᵀ only,
  // which never comes here).
  if (use_split_k_tiled(p)) return 7;
  if (use_split_k(p)) return 8;
  // The cluster split-K where its plan splits and the operands are aligned.
  if (cluster_split_plan(p).ways > 1 && o.vec_a && o.vec_b &&
      cluster_split_available(o.device) && cluster_split_enabled())
    return 9;
  const int64_t outputs = p.M * p.N * p.batch;
  const int nsm = sm_count(o.device);
  // Narrow products (N <= 4, e.g. the sage first layer's input gradient 65 536 x 64 -> 3): one
  // thread a row, A staged through shared memory (cuda/kernels/matmul_narrow.cu), when the rows
  // give every SM a block. The small kernel's bits, and the tiles' but for the sign of an
  // all-zero sum (see the top of this file). No epilogue (the Linear forwards that carry one
  // have N = a layer width).
  if (narrow_fits(p, o) && outputs > kSmallOutputs && cdiv(p.M, kNarrowRows) >= nsm) return 10;
  // Tiny products (IT³ layers): the tiles would leave the GPU idle.
  if (outputs <= kSmallOutputs) return 5;
  // Tall and skinny (N <= 64): 128 rows by 64 columns, when that fills every SM. A 128x128
  // tile would spend half its FMAs and threads on padding columns (docs/performance.md).
  // Not for a transposed A: those instantiations spill under the 128-register cap
  // (ptxas -v), and the GNN/Linear products (x·Wᵀ, gz·W) never transpose A. Ahead of the
  // short-K rule for one product wider than the narrow kernel's N: for the sage first layer's
  // 65 536 x 3 x 64 products this tile is 2.3x (cold) to 2.6x (warm) faster than the small
  // kernel, with the same bits (TallSkinnyCuda compares them). A batch of short-K products, and
  // a short-K product at most kNarrowMaxN wide that the narrow kernel refused (K % 4, alignment,
  // an epilogue) or leaves to the small kernel, stay on the small kernel (not measured against
  // the tile).
  if (p.N <= 64 && !p.trans_a && cdiv(p.M, 128) * nb >= nsm &&
      (p.K > 16 || (p.batch == 1 && p.N > kNarrowMaxN)))
    return 6;
  // A short K otherwise: the tiles would spend their loads on padding.
  if (p.K <= 16) return 5;
  // Otherwise the largest tile that still gives every SM a block.
  if (cdiv(p.M, 128) * cdiv(p.N, 128) * nb >= nsm) return 1;
  if (cdiv(p.M, 64) * cdiv(p.N, 64) * nb >= nsm) return 3;
  return 4;
}

// matmul_hand_variant with an optional epilogue (bias, act, slope: see GemmArgs).
void run_hand(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p, int variant,
              const float* bias, FusedAct act, float slope) {
  const char* op = "matmul";
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  // The kernels index in 32 bits and their tile cursors run up to one tile (at most 128) past
  // an extent before the bounds check, so each extent keeps that much headroom below INT32_MAX.
  constexpr int64_t kExtentLimit = INT32_MAX - 256;
  IDEM_CHECK(p.M <= kExtentLimit && p.N <= kExtentLimit && p.K <= kExtentLimit, op,
             "matrix extents M=", p.M, " N=", p.N, " K=", p.K, " on ", c.device().str(),
             " exceed the limit of the CUDA kernels (", kExtentLimit,
             ", their 32-bit indices less one tile)");
  set_device(c.device().index);
  const cudaStream_t st = current_stream();
  GemmArgs g{};
  g.a = a.data<float>();
  g.b = b.data<float>();
  g.c = c.data<float>();
  g.M = static_cast<int>(p.M);
  g.N = static_cast<int>(p.N);
  g.K = static_cast<int>(p.K);
  g.stride_a = p.stride_a;
  g.stride_b = p.stride_b;
  g.stride_c = p.stride_c;
  g.alpha = static_cast<float>(p.alpha);
  g.beta = static_cast<float>(p.beta);
  g.bias = bias;
  g.act = static_cast<int>(act);
  g.slope = slope;
  const OperandFacts o = operand_facts(c, a, b, p, bias != nullptr || act != FusedAct::none);
  const bool vec_a = o.vec_a, vec_b = o.vec_b, e = o.epilogue;
  const int v0 = variant == 0 ? route(p, std::min<int64_t>(65535, p.batch), o) : variant;

  // Variants 7 and 8 force a split-K: one unbatched Aᵀ·B product.
  if (v0 == 7) {
    IDEM_CHECK(p.batch == 1 && p.trans_a && !p.trans_b && p.K >= 1, op,
               "internal: the tiled split-K needs one Aᵀ·B product with K >= 1; got batch ",
               p.batch, ", trans_a=", bool_str(p.trans_a), ", trans_b=", bool_str(p.trans_b),
               ", M=", p.M, " N=", p.N, " K=", p.K, " on ", c.device().str());
    matmul_split_k_tiled(c, g, st);
    return;
  }
  if (v0 == 8) {
    IDEM_CHECK(use_split_k(p) || (p.batch == 1 && p.trans_a && !p.trans_b && p.beta == 0.0 &&
                                  p.K >= 1024),
               op, "internal: the batched split-K needs one Aᵀ·B product, beta 0, K >= 1024; got batch ",
               p.batch, ", trans_a=", bool_str(p.trans_a), ", trans_b=", bool_str(p.trans_b),
               ", beta ", p.beta, ", M=", p.M, " N=", p.N, " K=", p.K, " on ", c.device().str());
    matmul_split_k(c, g, p, sm_count(o.device), st);
    return;
  }
  if (v0 == 9) {
    const ClusterSplitPlan plan = cluster_split_plan(p);
    IDEM_CHECK(plan.ways > 1 && vec_a && vec_b && cluster_split_available(o.device), op,
               "internal: the cluster split-K (variant 9) needs one product of more than ",
               kSmallOutputs, " outputs in at most ", kCsMaxTiles, " 32x32 tiles, N > ", kCsMinN,
               ", K >= ", 2 * kCsBK,
               ", float4-aligned operands and sm_90 code; got batch ", p.batch, ", M=", p.M, " N=", p.N,
               " K=", p.K, ", trans_a=", bool_str(p.trans_a), ", trans_b=", bool_str(p.trans_b),
               ", aligned ", bool_str(vec_a), "/", bool_str(vec_b), " on ", c.device().str());
    launch_cluster_split(g, plan, p.trans_a, p.trans_b, e, st);
    return;
  }
  if (v0 == 10) {
    IDEM_CHECK(narrow_fits(p, o), op, "internal: the narrow kernel (variant 10) needs one product with A "
               "not transposed, N <= ", kNarrowMaxN, ", K <= ", kNarrowMaxK,
               ", K % 4 == 0, a 16-byte aligned A and no epilogue; got batch ", p.batch, ", M=",
               p.M, " N=", p.N, " K=", p.K, ", trans_a=", bool_str(p.trans_a), ", aligned A ",
               bool_str(vec_a), ", epilogue ", bool_str(e), " on ", c.device().str());
    launch_matmul_narrow({g.a, g.b, g.c, g.M, g.N, g.K, g.alpha, g.beta, p.trans_b}, st, op);
    return;
  }

  // The tiles and the small kernel; gridDim.z is limited to 65535: walk the batch in chunks.
  const int64_t outputs = p.M * p.N * p.batch;
  for (int64_t b0 = 0; b0 < p.batch; b0 += 65535) {
    const int nb = static_cast<int>(std::min<int64_t>(65535, p.batch - b0));
    GemmArgs gc = g;
    gc.a = g.a + b0 * p.stride_a;
    gc.b = g.b + b0 * p.stride_b;
    gc.c = g.c + b0 * p.stride_c;
    const int v = variant != 0 ? variant : b0 == 0 ? v0 : route(p, nb, o);
    const bool ta = p.trans_a, tb = p.trans_b;
    switch (v) {
      case 1: launch_tiled<128, 128, 8, 8, 8, 8, 4, 2>(gc, nb, ta, tb, vec_a, vec_b, st, e); break;
      case 2: launch_tiled<128, 128, 16, 8, 8, 8, 4, 2>(gc, nb, ta, tb, vec_a, vec_b, st, e); break;
      case 3: launch_tiled<64, 64, 16, 4, 4, 4, 8, 1>(gc, nb, ta, tb, vec_a, vec_b, st, e); break;
      case 4: launch_tiled<32, 32, 16, 4, 4, 4, 8, 1>(gc, nb, ta, tb, vec_a, vec_b, st, e); break;
      // 128x64: 16x8 threads of 8x8, a warp 4x8 threads = 32x64 outputs; 4 blocks per SM (the
      // same 128-register cap as 128x128x8) so 132 SMs hold 528 blocks = 67 584 rows at once.
      case 6: launch_tiled<128, 64, 8, 8, 8, 4, 8, 4>(gc, nb, ta, tb, vec_a, vec_b, st, e); break;
      default:
        // Few outputs and a long K: a warp per output keeps enough threads busy.
        launch_small(gc, nb, ta, tb, p.K >= 128 && outputs <= 65536);
    }
    // Each launch_* helper checks its one launch (IDEM_LAUNCH_CHECK counts launches).
  }
}

}  // namespace

// matmul_hand with its kernel forced (the variants: core/kernels/matmul.h), so the benchmark can
// time each one and tests can compare their bits.
void matmul_hand_variant(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p,
                         int variant) {
  run_hand(c, a, b, p, variant, nullptr, FusedAct::none, 0.f);
}

void matmul_hand(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p) {
  run_hand(c, a, b, p, 0, nullptr, FusedAct::none, 0.f);
}

int matmul_hand_route(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p,
                      bool epilogue) {
  IDEM_CHECK(!epilogue || (!p.trans_a && p.trans_b), "matmul",
             "internal: an epilogue is built for op(A)·Bᵀ only; got trans_a=", bool_str(p.trans_a),
             ", trans_b=", bool_str(p.trans_b));
  if (p.M == 0 || p.N == 0 || p.batch == 0) return 0;
  set_device(c.device().index);  // cluster_split_available asks the current device
  return route(p, std::min<int64_t>(65535, p.batch), operand_facts(c, a, b, p, epilogue));
}

void matmul_hand_epilogue(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p,
                          const Tensor& bias, FusedAct act, double slope) {
  IDEM_CHECK(!p.trans_a && p.trans_b, "matmul",
             "internal: matmul_hand_epilogue is built for op(A)·Bᵀ (trans_a=false, trans_b=true); got "
             "trans_a=", bool_str(p.trans_a), ", trans_b=", bool_str(p.trans_b), ", M=", p.M,
             " N=", p.N, " K=", p.K, " on ", c.device().str());
  run_hand(c, a, b, p, 0, bias.defined() ? bias.data<float>() : nullptr, act,
           static_cast<float>(slope));
}

void matmul_fwd(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p) {
  if (gemm_backend() == GemmBackend::cublas)
    matmul_cublas(c, a, b, p);
  else
    matmul_hand(c, a, b, p);
}

#ifndef IDEM_WITH_CUBLAS
void matmul_cublas(const Tensor&, const Tensor&, const Tensor&, const MatmulParams&) {
  fail("matmul", "the cuBLAS path was not built (IDEM_CUBLAS=OFF); use the hand-written SGEMM "
                 "(IDEM_GEMM=hand or idem::set_gemm_backend(GemmBackend::hand)) or rebuild with "
                 "-DIDEM_CUBLAS=ON");
}
#endif

}  // namespace idem::cuda
