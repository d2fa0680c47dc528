// CUDA normalization (batch/layer/group norm through one canonical shape) and dropout, f32.
// Contract: core/kernels/norm.h; reference: core/cpu/norm.cpp.
//
// Two paths for every reduction. Many groups (channels), or small ones: one block per group, the
// *_block_kernels. Fewer than kSplitMaxSlices groups of at least 2·kSplitMinChunk elements
// (batch_norm over 32 or 64 channels of N·H·W elements each): one block per group would leave
// most SMs idle, so each group is cut into chunks of at most kSplitMaxChunk (8 192) elements and
// a 2-D grid (chunk, group) reduces them into a small workspace of partials, which the next
// launch combines in a fixed tree: the *_split_* kernels. They walk their chunk with additions
// only (no 64-bit division per element). Up to 256 chunks a group, every block of the
// elementwise pass combines its group's partials itself; past that, one block per group combines
// them once (the *_split_combine_kernels, one more launch), so the re-reads do not grow as nch².
//
// Kernels:
//  - norm_fwd_block_kernel: one block per statistics group: mean, then the centred sum of
//    squares (two passes, no E[x²]−E[x]² cancellation), then y; thread 0 writes mean/rstd and
//    updates the running statistics in place (batch_norm training). One launch per forward.
//  - norm_fwd_split_part_kernel + norm_fwd_split_map_kernel<CH, kStatsMerge>: the split forward.
//    Per chunk (Σ x, Σ (x − chunk mean)²), two passes over the chunk; then every block merges its
//    group's partials (Chan: M2 = Σ M2_q + n_q·(m_q − mean)², all terms ≥ 0) and writes y over
//    its chunk; block 0 of the group writes mean/rstd and the running statistics. Past 256
//    chunks norm_fwd_split_combine_kernel merges them once and writes mean/rstd and the running
//    statistics, and norm_fwd_split_map_kernel<CH, kStatsSaved> reads mean/rstd.
//  - norm_fwd_stats_map_kernel: given statistics (batch_norm evaluation), elementwise; with few
//    large groups norm_fwd_split_map_kernel<CH, kStatsGiven> instead (no division per element).
//  - norm_bwd_data_block_kernel: one block per group: Σ g·w and Σ g·w·x̂, then dx; when the
//    statistics and affine views coincide (batch_norm) it also sums Σ g and Σ g·x̂, which are
//    dbias and dweight: the whole batch_norm backward is one launch.
//  - norm_bwd_data_split_part_kernel + norm_bwd_data_split_map_kernel<CH, true, ·>: the same
//    split in two launches (partial sums per chunk; combine, dweight/dbias, dx per chunk); past
//    256 chunks norm_bwd_data_split_combine_kernel (between them) sums the partials once and
//    writes dweight/dbias. The per-element sums are one helper, bwd_data_terms, for the block
//    kernel and the split partials.
//  - norm_bwd_data_map_kernel: dx = g·w·rstd for fixed statistics, elementwise; with few large
//    groups norm_bwd_data_split_map_kernel<CH, false, false>.
//  - norm_bwd_affine_block_kernel: one block per channel: dweight, dbias (layer/group norm, and
//    batch_norm in evaluation mode); with few large channels norm_bwd_affine_split_part_kernel
//    (partials per chunk) + norm_bwd_affine_split_sum_kernel (one block per channel, so each
//    channel's partials are summed once).
//  - dropout_fwd_philox_kernel: elementwise Philox mask (also the backward, applied to g).
// Every block reduction uses a fixed tree (warp shuffles, then one warp over the per-warp
// partials: block_sum in cuda/device_utils.cuh), and the split path's chunking depends on the
// shape only, so results are deterministic (bit-identical reruns); no atomics.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/kernels/norm.h"
#include "core/philox.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kMapThreads = 256;
constexpr int kMaxBlockThreads = 256;

// The split path (few large groups or channels, below). Taken when there are fewer than
// kSplitMaxSlices slices (about two per SM of a 132-SM H100: one block per slice would leave most
// of the GPU idle) and a slice holds at least two chunks of kSplitMinChunk elements (8 per
// thread). Chunks: enough for about kSplitTargetBlocks blocks in all, each about len/chunks
// elements (so a chunk may fall under kSplitMinChunk: bn_cnn's second layer, below) and none
// over kSplitMaxChunk.
//
// kSplitMaxChunk = 8192 floats (32 KiB): the forward's partials kernel reads its chunk twice (the
// sum, then the centred squares), and the second pass should hit the cache. At 8 resident blocks
// of 256 threads per SM, 132 SMs hold 132·8·32 KiB = 33 MiB of chunks in flight, inside the
// 50 MiB L2 of an H100; 16 K-element chunks (66 MiB) would not fit, and without a cap a large
// group made chunks of any size (batch_norm on 256x3x224x224: 3·342 blocks of 37 568
// elements, 147 KiB each; with the cap 3·1 568 blocks of 8 192). Smaller chunks cost only more
// blocks and partials (a few floats per chunk). The cap does not touch the bn_cnn sizes (chunks
// of 3 136 and 1 952 elements at batch 128), whose bits stay as they were.
//
// The constants are fixed, not read from the device: the chunking, and so the summation order
// and the bits, depend on the shape only.
constexpr int kSplitThreads = 256;
constexpr int64_t kSplitMaxSlices = 256;
constexpr int64_t kSplitMinChunk = 2048;
constexpr int64_t kSplitMaxChunk = 8192;
constexpr int64_t kSplitTargetBlocks = 1024;

// Who combines a slice's partials. Up to kSplitInlineCombine chunks, every block of the elementwise
// pass combines them itself: each thread loads at most one partial, so the combine is one L2 round
// trip and one block_sum, overlapped with the other blocks' streaming. That is cheaper than a
// kernel boundary (about 2 µs) at the bn_cnn sizes at batch 128: 32 groups of 100 352 elements
// in 32 chunks re-read 32·32·32·4 floats = 512 KiB of partials from L2 in the fused backward,
// against 38 MiB of x, g and dx (about 11 µs at HBM speed), where the extra launch would add
// about 20 %. Past that, the re-reads grow as nch² per slice (at the cap, batch_norm on
// 256x3x224x224: 3·1 568²·4 floats = 118 MB of L2 reads, against 770 MB of HBM traffic for the
// backward's two passes, each thread would load 7 partials of each sum in turn), so one block
// per slice combines the partials once (norm_*_split_combine_kernel) and the elementwise blocks
// read the result. Both combine with the same loop and block_sum tree over the chunk index, so
// the bits depend on the chunking only, not on who combined.
constexpr int kSplitInlineCombine = kSplitThreads;

// NormShape by value for device code.
struct Dims {
  int64_t O, G, I;  // statistics view (stat_outer, groups, stat_inner)
  int64_t A, C, B;  // affine view (aff_outer, channels, aff_inner)
};

Dims dims_of(const NormShape& s) {
  return {s.stat_outer, s.groups, s.stat_inner, s.aff_outer, s.channels, s.aff_inner};
}

float* fptr(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

// Threads for a block that reduces n elements: a multiple of 32, at most kMaxBlockThreads.
int block_threads(int64_t n) {
  const int64_t t = std::min<int64_t>(std::max<int64_t>(n, 1), kMaxBlockThreads);
  return static_cast<int>((t + 31) / 32 * 32);
}

unsigned block_grid(int64_t blocks) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Chunks of the split path for `slices` slices of `len` elements (on = false: one block per
// slice, the block kernels).
struct SplitPlan {
  bool on = false;
  int nch = 1;     // chunks per slice (grid.x); the grid is (nch, slices)
  int64_t L = 0;   // elements per chunk (the last one may be shorter, none is empty)
  bool combine_once() const { return nch > kSplitInlineCombine; }
};
SplitPlan split_plan(int64_t slices, int64_t len) {
  SplitPlan p;
  if (slices >= kSplitMaxSlices || len < 2 * kSplitMinChunk) return p;
  const int64_t target =
      std::min(ceil_div(kSplitTargetBlocks, slices), ceil_div(len, kSplitMinChunk));
  // Whole warps: rows of 32·m elements stay aligned. 8192 is a multiple of 32.
  p.L = std::min(ceil_div(ceil_div(len, target), 32) * 32, kSplitMaxChunk);
  // L > 1 365 (len >= 4 096 and target <= len / 2 048 + 1), so nch < len / 1 365 + 1: grid.x
  // takes 2^31 − 1 (checked below, unreachable for a tensor that fits in memory) and
  // grid.y (slices < 256) 65 535. The partials are K·slices·nch floats (K <= 4), under 1/500 of
  // x. Every index into them is 64-bit (g·nch + q with g int64_t).
  const int64_t nch = ceil_div(len, p.L);
  IDEM_CHECK(nch <= INT32_MAX, "norm", "a group of ", len, " elements needs ", nch,
             " chunks of ", p.L, ", more than a CUDA grid's x extent holds");
  p.nch = static_cast<int>(nch);
  p.on = true;
  return p;
}

// Flat index of the j-th element (j < O*I) of group g in the statistics view.
__device__ __forceinline__ int64_t group_elem(const Dims& d, int64_t g, int64_t j) {
  const int64_t o = j / d.I, i = j - o * d.I;
  return (o * d.G + g) * d.I + i;
}
__device__ __forceinline__ int64_t channel_of(const Dims& d, int64_t k) {
  return (k / d.B) % d.C;
}
__device__ __forceinline__ int64_t group_of(const Dims& d, int64_t k) {
  return (k / d.I) % d.G;
}

// ---------------------------------------------------------------------------------------------
// Forward.

__global__ void norm_fwd_block_kernel(float* __restrict__ y, float* __restrict__ mean,
                                      float* __restrict__ rstd, float* __restrict__ run_mean,
                                      float* __restrict__ run_var, const float* __restrict__ x,
                                      const float* __restrict__ w, const float* __restrict__ b,
                                      Dims d, float eps, float momentum) {
  __shared__ float scratch[32];
  const int64_t R = d.O * d.I;
  const float inv_r = 1.f / static_cast<float>(R);
  for (int64_t g = blockIdx.x; g < d.G; g += gridDim.x) {
    float acc[1] = {0.f};
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) acc[0] += __ldg(x + group_elem(d, g, j));
    block_sum<1>(acc, scratch);
    const float mu = acc[0] * inv_r;
    float sq[1] = {0.f};
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
      const float c = __ldg(x + group_elem(d, g, j)) - mu;
      sq[0] += c * c;
    }
    block_sum<1>(sq, scratch);
    const float r = 1.f / sqrtf(sq[0] * inv_r + eps);
    if (threadIdx.x == 0) {
      mean[g] = mu;
      rstd[g] = r;
      if (run_mean != nullptr) {
        // Unbiased variance for the running estimate, as torch (R > 1 checked by the op).
        run_mean[g] = (1.f - momentum) * run_mean[g] + momentum * mu;
        run_var[g] = (1.f - momentum) * run_var[g] + momentum * (sq[0] / static_cast<float>(R - 1));
      }
    }
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
      const int64_t k = group_elem(d, g, j);
      const int64_t c = channel_of(d, k);
      float v = (__ldg(x + k) - mu) * r;
      if (w != nullptr) v *= __ldg(w + c);
      if (b != nullptr) v += __ldg(b + c);
      y[k] = v;
    }
  }
}

__global__ void norm_fwd_stats_map_kernel(float* __restrict__ y, float* __restrict__ mean,
                                          float* __restrict__ rstd, const float* __restrict__ x,
                                          const float* __restrict__ mean_in,
                                          const float* __restrict__ var_in,
                                          const float* __restrict__ w, const float* __restrict__ b,
                                          Dims d, float eps, int64_t n) {
  for (const int64_t k : grid_stride(n)) {
    const int64_t g = group_of(d, k), c = channel_of(d, k);
    const float r = 1.f / sqrtf(__ldg(var_in + g) + eps);
    float v = (__ldg(x + k) - __ldg(mean_in + g)) * r;
    if (w != nullptr) v *= __ldg(w + c);
    if (b != nullptr) v += __ldg(b + c);
    y[k] = v;
    // The saved statistics (n >= G, so every group is covered).
    if (k < d.G) {
      mean[k] = __ldg(mean_in + k);
      rstd[k] = 1.f / sqrtf(__ldg(var_in + k) + eps);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward.

// The per-element terms of the batch-statistics backward, for one element with gradient gk,
// weight wk and normalized input xh: acc += (g·w, g·w·x̂ [, g, g·x̂ when FUSED]). One helper for
// the block kernel and the split partials, so both sum the same expressions.
template <bool FUSED, int K>
__device__ __forceinline__ void bwd_data_terms(float (&acc)[K], float gk, float wk, float xh) {
  static_assert(K == (FUSED ? 4 : 2), "K sums: 4 when FUSED, else 2");
  acc[0] += gk * wk;
  acc[1] += gk * wk * xh;
  if constexpr (FUSED) {
    acc[2] += gk;
    acc[3] += gk * xh;
  }
}

// FUSED: statistics view == affine view (batch_norm), so per-group Σ g and Σ g·x̂ are dbias and
// dweight of channel g.
template <bool FUSED>
__global__ void norm_bwd_data_block_kernel(float* __restrict__ dx, float* __restrict__ dw,
                                           float* __restrict__ db, const float* __restrict__ gout,
                                           const float* __restrict__ x,
                                           const float* __restrict__ mean,
                                           const float* __restrict__ rstd,
                                           const float* __restrict__ w, Dims d) {
  constexpr int K = FUSED ? 4 : 2;
  __shared__ float scratch[K * 32];
  const int64_t R = d.O * d.I;
  const float inv_r = 1.f / static_cast<float>(R);
  for (int64_t g = blockIdx.x; g < d.G; g += gridDim.x) {
    const float mu = __ldg(mean + g), r = __ldg(rstd + g);
    float acc[K];  // Σ g·w, Σ g·w·x̂ [, Σ g, Σ g·x̂]
#pragma unroll
    for (int q = 0; q < K; ++q) acc[q] = 0.f;
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
      const int64_t k = group_elem(d, g, j);
      const float gk = __ldg(gout + k);
      const float wk = w != nullptr ? __ldg(w + channel_of(d, k)) : 1.f;
      const float xh = (__ldg(x + k) - mu) * r;
      bwd_data_terms<FUSED>(acc, gk, wk, xh);
    }
    block_sum<K>(acc, scratch);
    if constexpr (FUSED) {
      if (threadIdx.x == 0) {
        if (dw != nullptr) dw[g] = acc[3];
        if (db != nullptr) db[g] = acc[2];
      }
    }
    if (dx != nullptr) {
      // dx = rstd/R · (R·g·w − Σ g·w − x̂·Σ g·w·x̂)
      const float mean_gw = acc[0] * inv_r, mean_gwx = acc[1] * inv_r;
      for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
        const int64_t k = group_elem(d, g, j);
        const float wk = w != nullptr ? __ldg(w + channel_of(d, k)) : 1.f;
        const float xh = (__ldg(x + k) - mu) * r;
        dx[k] = r * (__ldg(gout + k) * wk - mean_gw - xh * mean_gwx);
      }
    }
  }
}

__global__ void norm_bwd_data_map_kernel(float* __restrict__ dx, const float* __restrict__ gout,
                                         const float* __restrict__ rstd,
                                         const float* __restrict__ w, Dims d, int64_t n) {
  for (const int64_t k : grid_stride(n)) {
    const float wk = w != nullptr ? __ldg(w + channel_of(d, k)) : 1.f;
    dx[k] = __ldg(gout + k) * wk * __ldg(rstd + group_of(d, k));
  }
}

__global__ void norm_bwd_affine_block_kernel(float* __restrict__ dw, float* __restrict__ db,
                                             const float* __restrict__ gout,
                                             const float* __restrict__ x,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ rstd, Dims d) {
  __shared__ float scratch[2 * 32];
  const int64_t per = d.A * d.B;  // elements of one channel
  for (int64_t c = blockIdx.x; c < d.C; c += gridDim.x) {
    float acc[2] = {0.f, 0.f};  // Σ g·x̂, Σ g
    for (int64_t j = threadIdx.x; j < per; j += blockDim.x) {
      const int64_t a = j / d.B, bi = j - a * d.B;
      const int64_t k = (a * d.C + c) * d.B + bi;
      const int64_t g = group_of(d, k);
      const float gk = __ldg(gout + k);
      acc[0] += gk * (__ldg(x + k) - __ldg(mean + g)) * __ldg(rstd + g);
      acc[1] += gk;
    }
    block_sum<2>(acc, scratch);
    if (threadIdx.x == 0) {
      if (dw != nullptr) dw[c] = acc[0];
      if (db != nullptr) db[c] = acc[1];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Split path: few large groups (or channels). Each slice (one group of the statistics view, or
// one channel of the affine view) is cut into chunks of L consecutive elements in its logical
// order; a 2-D grid (chunk, slice) of kSplitThreads-thread blocks reduces one chunk each into a
// small partials buffer, and a second launch combines a slice's partials with block_sum (a fixed
// tree over the chunk index, so the same bits on every run) and, where there is one, runs the
// elementwise pass over the same chunk.

// A 3-D view (P, Q, S) of the contiguous x: element (p, q, s) sits at (p·Q + q)·S + s, and slice
// q holds the P·S elements j = p·S + s. step_p/step_s = kSplitThreads / S and % S (host), so a
// thread can advance its (p, s, k) by kSplitThreads elements of the slice with additions only.
struct View {
  int64_t P, Q, S;
  int64_t step_p, step_s;
};

View view_of(int64_t P, int64_t Q, int64_t S) {
  return {P, Q, S, kSplitThreads / S, kSplitThreads % S};
}

// f(k, p, s) for the elements j0 + threadIdx.x, + kSplitThreads, ... < j1 of slice q: one 64-bit
// division per thread, then additions (no division per element). blockDim.x == kSplitThreads.
template <typename F>
__device__ __forceinline__ void walk_chunk(const View& v, int64_t q, int64_t j0, int64_t j1,
                                           F&& f) {
  int64_t j = j0 + threadIdx.x;
  if (j >= j1) return;
  int64_t p = j / v.S, s = j - p * v.S;
  int64_t k = (p * v.Q + q) * v.S + s;
  const int64_t qs = v.Q * v.S;
  const int64_t k_step = v.step_p * qs + v.step_s;
  const int64_t k_wrap = qs - v.S;  // from (p, S + s') on to (p + 1, s')
#pragma unroll 4
  for (; j < j1; j += kSplitThreads) {
    f(k, p, s);
    // Selects, not a branch, so the compiler can issue the unrolled loads back to back.
    s += v.step_s;
    const bool wrap = s >= v.S;
    s -= wrap ? v.S : 0;
    p += v.step_p + (wrap ? 1 : 0);
    k += k_step + (wrap ? k_wrap : 0);
  }
}

// Channel of element k = (o, g, i) of the statistics view (k, p = o, s = i), for the weight.
enum ChanMode : int {
  kChanGroup = 0,    // channel = group (batch_norm: the two views coincide)
  kChanInner = 1,    // channel = i (layer_norm: aff_inner == 1, channels == stat_inner)
  kChanGeneral = 2,  // (k / B) % C, two divisions, only where the weight or bias is read
};
template <int CH>
__device__ __forceinline__ int64_t chan_of(const Dims& d, int64_t g, int64_t k, int64_t i) {
  if constexpr (CH == kChanGroup) return g;
  else if constexpr (CH == kChanInner) return i;
  else return channel_of(d, k);
}

// Group of element k = (a, c, b) of the affine view (k, p = a), for mean/rstd.
//   kGroupOuter: stat_outer == 1 and each outer index a holds gpa = G/A whole groups of
//   cpg = C/gpa channels (I == cpg·B): k = (a·C + c)·B + b = (a·gpa + c/cpg)·I + (c%cpg)·B + b,
//   so group = a·gpa + c/cpg, whose second term is fixed for the block of channel c (gbase).
//   layer_norm (gpa = 1: group = a) and group_norm (gpa = its groups, A = the batch).
// The shapes of the three normalizations (core/ops/norm.cpp) always allow one of the two modes,
// so the split path has no per-element division mode. A NormShape that allows neither (none
// of the L1 ops makes one; only a hand-made shape given to ops::norm_backward could) takes the
// block kernel, norm_bwd_affine_block_kernel, which finds each element's group by division.
enum GroupMode : int {
  kGroupChan = 0,   // group = channel (batch_norm)
  kGroupOuter = 1,  // group = a·gpa + gbase (layer_norm, group_norm; see above)
};

// The chunk [j0, j1) of block (blockIdx.x, ·) in a slice of n elements.
struct Chunk {
  int64_t j0, j1;
};
__device__ __forceinline__ Chunk chunk_of(int64_t L, int64_t n) {
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * L;
  return {j0, j0 + L < n ? j0 + L : n};
}

// Forward, pass 1: chunk q of group g -> part[g·nch + q] = (Σ x, Σ (x − m_q)²) with m_q the
// chunk's own mean (two passes over the chunk; the second one mostly hits the cache).
__global__ void __launch_bounds__(kSplitThreads)
    norm_fwd_split_part_kernel(float2* __restrict__ part, const float* __restrict__ x, View v,
                               int64_t L, int nch) {
  __shared__ float scratch[32];
  const int64_t g = blockIdx.y;
  const Chunk ch = chunk_of(L, v.P * v.S);
  float acc[1] = {0.f};
  walk_chunk(v, g, ch.j0, ch.j1, [&](int64_t k, int64_t, int64_t) { acc[0] += __ldg(x + k); });
  block_sum<1>(acc, scratch);
  const float m = acc[0] / static_cast<float>(ch.j1 - ch.j0);
  float sq[1] = {0.f};
  walk_chunk(v, g, ch.j0, ch.j1, [&](int64_t k, int64_t, int64_t) {
    const float c = __ldg(x + k) - m;
    sq[0] += c * c;
  });
  block_sum<1>(sq, scratch);
  if (threadIdx.x == 0) part[g * nch + blockIdx.x] = make_float2(acc[0], sq[0]);
}

// Chan's merge of a group's nch chunk partials: mean = Σ sums / R and
// M2 = Σ_q (M2_q + n_q·(m_q − mean)²), every term ≥ 0 (no cancellation). Both sums run through
// block_sum (fixed tree); every thread gets mean and M2, and every block of the group the same bits.
__device__ __forceinline__ void merge_group_stats(const float2* __restrict__ part, int nch,
                                                  int64_t L, int64_t R, float* scratch,
                                                  float& mu, float& m2) {
  float s[1] = {0.f};
  for (int q = threadIdx.x; q < nch; q += blockDim.x) s[0] += part[q].x;
  block_sum<1>(s, scratch);
  mu = s[0] / static_cast<float>(R);
  float m[1] = {0.f};
  for (int q = threadIdx.x; q < nch; q += blockDim.x) {
    const int64_t j0 = static_cast<int64_t>(q) * L;
    const float n_q = static_cast<float>((j0 + L < R ? j0 + L : R) - j0);
    const float dm = part[q].x / n_q - mu;
    m[0] += part[q].y + n_q * dm * dm;
  }
  block_sum<1>(m, scratch);
  m2 = m[0];
}

// The statistics of group g from its merged (mean, M2): rstd = 1/sqrt(M2/R + eps). The writer
// thread stores mean/rstd and updates the running statistics (unbiased variance, as torch).
__device__ __forceinline__ float finish_group_stats(int64_t g, float mu, float m2, int64_t R,
                                                    float eps, float momentum, bool writer,
                                                    float* __restrict__ mean,
                                                    float* __restrict__ rstd,
                                                    float* __restrict__ run_mean,
                                                    float* __restrict__ run_var) {
  const float r = 1.f / sqrtf(m2 * (1.f / static_cast<float>(R)) + eps);
  if (writer) {
    mean[g] = mu;
    rstd[g] = r;
    if (run_mean != nullptr) {
      run_mean[g] = (1.f - momentum) * run_mean[g] + momentum * mu;
      run_var[g] = (1.f - momentum) * run_var[g] + momentum * (m2 / static_cast<float>(R - 1));
    }
  }
  return r;
}

// Where the forward's elementwise pass gets group g's statistics.
enum StatSrc : int {
  kStatsMerge = 0,  // merges the nch partials itself; block (0, g) writes mean/rstd, running stats
  kStatsGiven = 1,  // mean_in/var_in (batch_norm evaluation); block (0, g) writes mean/rstd
  kStatsSaved = 2,  // mean/rstd, from norm_fwd_split_combine_kernel (nch > kSplitInlineCombine)
};

// Forward, combine once (nch > kSplitInlineCombine): one block per group merges its partials
// (the same merge_group_stats as a kStatsMerge block, so the same bits) and writes mean/rstd
// and the running statistics. blockDim.x == kSplitThreads, grid = groups.
__global__ void __launch_bounds__(kSplitThreads) norm_fwd_split_combine_kernel(
    float* __restrict__ mean, float* __restrict__ rstd, float* __restrict__ run_mean,
    float* __restrict__ run_var, const float2* __restrict__ part, int64_t R, int64_t L, int nch,
    float eps, float momentum) {
  __shared__ float scratch[32];
  const int64_t g = blockIdx.x;
  float mu, m2;
  merge_group_stats(part + g * nch, nch, L, R, scratch, mu, m2);
  finish_group_stats(g, mu, m2, R, eps, momentum, threadIdx.x == 0, mean, rstd, run_mean,
                     run_var);
}

// Forward, pass 2: statistics of group g (from SRC), then y over the chunk.
template <int CH, int SRC>
__global__ void __launch_bounds__(kSplitThreads) norm_fwd_split_map_kernel(
    float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
    float* __restrict__ run_mean, float* __restrict__ run_var, const float* __restrict__ x,
    const float* __restrict__ w, const float* __restrict__ b, const float2* __restrict__ part,
    const float* __restrict__ mean_in, const float* __restrict__ var_in, View v, Dims d,
    int64_t L, int nch, float eps, float momentum) {
  __shared__ float scratch[32];
  const int64_t g = blockIdx.y;
  const int64_t R = v.P * v.S;
  const bool writer = blockIdx.x == 0 && threadIdx.x == 0;
  float mu, r;
  if constexpr (SRC == kStatsGiven) {
    mu = __ldg(mean_in + g);
    r = 1.f / sqrtf(__ldg(var_in + g) + eps);
    if (writer) {
      mean[g] = mu;
      rstd[g] = r;
    }
  } else if constexpr (SRC == kStatsSaved) {
    mu = mean[g];
    r = rstd[g];
  } else {
    float m2;
    merge_group_stats(part + g * nch, nch, L, R, scratch, mu, m2);
    r = finish_group_stats(g, mu, m2, R, eps, momentum, writer, mean, rstd, run_mean, run_var);
  }
  const Chunk ch = chunk_of(L, R);
  walk_chunk(v, g, ch.j0, ch.j1, [&](int64_t k, int64_t, int64_t i) {
    float val = (__ldg(x + k) - mu) * r;
    if (w != nullptr) val *= __ldg(w + chan_of<CH>(d, g, k, i));
    if (b != nullptr) val += __ldg(b + chan_of<CH>(d, g, k, i));
    y[k] = val;
  });
}

// Backward with batch statistics, pass 1: chunk q of group g -> part[(g·nch + q)·K + ·] =
// Σ g·w, Σ g·w·x̂ [, Σ g, Σ g·x̂ when FUSED (batch_norm): dbias and dweight of channel g].
template <int CH, bool FUSED>
__global__ void __launch_bounds__(kSplitThreads) norm_bwd_data_split_part_kernel(
    float* __restrict__ part, const float* __restrict__ gout, const float* __restrict__ x,
    const float* __restrict__ mean, const float* __restrict__ rstd,
    const float* __restrict__ w, View v, Dims d, int64_t L, int nch) {
  constexpr int K = FUSED ? 4 : 2;
  __shared__ float scratch[K * 32];
  const int64_t g = blockIdx.y;
  const float mu = __ldg(mean + g), r = __ldg(rstd + g);
  const Chunk ch = chunk_of(L, v.P * v.S);
  float acc[K];
#pragma unroll
  for (int q = 0; q < K; ++q) acc[q] = 0.f;
  walk_chunk(v, g, ch.j0, ch.j1, [&](int64_t k, int64_t, int64_t i) {
    const float gk = __ldg(gout + k);
    const float wk = w != nullptr ? __ldg(w + chan_of<CH>(d, g, k, i)) : 1.f;
    const float xh = (__ldg(x + k) - mu) * r;
    bwd_data_terms<FUSED>(acc, gk, wk, xh);
  });
  block_sum<K>(acc, scratch);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int m = 0; m < K; ++m) part[(g * nch + blockIdx.x) * K + m] = acc[m];
  }
}

// The K sums of group g from its nch partials part[(g·nch + q)·K + m]: a thread-strided loop over
// the chunk index, then block_sum (fixed tree); every thread gets the sums.
template <int K>
__device__ __forceinline__ void combine_bwd_partials(const float* __restrict__ part, int64_t g,
                                                     int nch, float* scratch, float (&acc)[K]) {
#pragma unroll
  for (int m = 0; m < K; ++m) acc[m] = 0.f;
  for (int q = threadIdx.x; q < nch; q += blockDim.x) {
#pragma unroll
    for (int m = 0; m < K; ++m) acc[m] += part[(g * nch + q) * K + m];
  }
  block_sum<K>(acc, scratch);
}

// Backward with batch statistics, combine once (nch > kSplitInlineCombine, dx wanted): one block
// per group sums its partials (combine_bwd_partials, as a map block would: the same bits) into
// sums[g·K + m], and writes dweight/dbias when FUSED. blockDim.x == kSplitThreads, grid = groups.
template <bool FUSED>
__global__ void __launch_bounds__(kSplitThreads) norm_bwd_data_split_combine_kernel(
    float* __restrict__ sums, float* __restrict__ dw, float* __restrict__ db,
    const float* __restrict__ part, int nch) {
  constexpr int K = FUSED ? 4 : 2;
  __shared__ float scratch[K * 32];
  const int64_t g = blockIdx.x;
  float acc[K];
  combine_bwd_partials<K>(part, g, nch, scratch, acc);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int m = 0; m < K; ++m) sums[g * K + m] = acc[m];
    if constexpr (FUSED) {
      if (dw != nullptr) dw[g] = acc[3];
      if (db != nullptr) db[g] = acc[2];
    }
  }
}

// Backward, pass 2 over chunk q of group g. BATCH: the group's K sums, read from `sums` when
// norm_bwd_data_split_combine_kernel made them, else combined here from the partials (block (0, g)
// then writes dweight/dbias when FUSED); then dx = rstd/R · (R·g·w − Σ g·w − x̂·Σ g·w·x̂).
// Otherwise fixed statistics: dx = g·w·rstd. dx may be null (FUSED, only dweight/dbias wanted:
// a grid of one block per group, which combines each group's partials once).
template <int CH, bool BATCH, bool FUSED>
__global__ void __launch_bounds__(kSplitThreads) norm_bwd_data_split_map_kernel(
    float* __restrict__ dx, float* __restrict__ dw, float* __restrict__ db,
    const float* __restrict__ part, const float* __restrict__ sums,
    const float* __restrict__ gout, const float* __restrict__ x, const float* __restrict__ mean,
    const float* __restrict__ rstd, const float* __restrict__ w, View v, Dims d, int64_t L,
    int nch) {
  constexpr int K = FUSED ? 4 : 2;
  __shared__ float scratch[K * 32];
  const int64_t g = blockIdx.y;
  const int64_t R = v.P * v.S;
  const float r = __ldg(rstd + g);
  float acc[K];
  if constexpr (BATCH) {
    if (sums != nullptr) {
#pragma unroll
      for (int m = 0; m < K; ++m) acc[m] = __ldg(sums + g * K + m);
    } else {
      combine_bwd_partials<K>(part, g, nch, scratch, acc);
      if constexpr (FUSED) {
        if (blockIdx.x == 0 && threadIdx.x == 0) {
          if (dw != nullptr) dw[g] = acc[3];
          if (db != nullptr) db[g] = acc[2];
        }
      }
    }
  }
  if (dx == nullptr) return;
  const Chunk ch = chunk_of(L, R);
  if constexpr (BATCH) {
    const float inv_r = 1.f / static_cast<float>(R);
    const float mu = __ldg(mean + g);
    const float mean_gw = acc[0] * inv_r, mean_gwx = acc[1] * inv_r;
    walk_chunk(v, g, ch.j0, ch.j1, [&](int64_t k, int64_t, int64_t i) {
      const float wk = w != nullptr ? __ldg(w + chan_of<CH>(d, g, k, i)) : 1.f;
      const float xh = (__ldg(x + k) - mu) * r;
      dx[k] = r * (__ldg(gout + k) * wk - mean_gw - xh * mean_gwx);
    });
  } else {
    walk_chunk(v, g, ch.j0, ch.j1, [&](int64_t k, int64_t, int64_t i) {
      const float wk = w != nullptr ? __ldg(w + chan_of<CH>(d, g, k, i)) : 1.f;
      dx[k] = __ldg(gout + k) * wk * r;
    });
  }
}

// dweight/dbias, pass 1: chunk q of channel c (affine view) -> part[c·nch + q] = (Σ g·x̂, Σ g).
template <int GM>
__global__ void __launch_bounds__(kSplitThreads) norm_bwd_affine_split_part_kernel(
    float2* __restrict__ part, const float* __restrict__ gout, const float* __restrict__ x,
    const float* __restrict__ mean, const float* __restrict__ rstd, View v, Dims d, int64_t L,
    int nch) {
  __shared__ float scratch[2 * 32];
  const int64_t c = blockIdx.y;
  const Chunk ch = chunk_of(L, v.P * v.S);
  float acc[2] = {0.f, 0.f};  // Σ g·x̂, Σ g
  if constexpr (GM == kGroupChan) {
    const float mu = __ldg(mean + c), r = __ldg(rstd + c);
    walk_chunk(v, c, ch.j0, ch.j1, [&](int64_t k, int64_t, int64_t) {
      const float gk = __ldg(gout + k);
      acc[0] += gk * ((__ldg(x + k) - mu) * r);
      acc[1] += gk;
    });
  } else {
    static_assert(GM == kGroupOuter, "the split path's group modes are kGroupChan, kGroupOuter");
    const int64_t gpa = d.G / d.A;
    const int64_t gbase = c / (d.C / gpa);
    walk_chunk(v, c, ch.j0, ch.j1, [&](int64_t k, int64_t a, int64_t) {
      const int64_t g = a * gpa + gbase;
      const float gk = __ldg(gout + k);
      acc[0] += gk * (__ldg(x + k) - __ldg(mean + g)) * __ldg(rstd + g);
      acc[1] += gk;
    });
  }
  block_sum<2>(acc, scratch);
  if (threadIdx.x == 0) part[c * nch + blockIdx.x] = make_float2(acc[0], acc[1]);
}

// dweight/dbias, pass 2: one block per channel sums its nch partials (fixed tree).
__global__ void __launch_bounds__(kSplitThreads)
    norm_bwd_affine_split_sum_kernel(float* __restrict__ dw, float* __restrict__ db,
                                     const float2* __restrict__ part, int nch) {
  __shared__ float scratch[2 * 32];
  const int64_t c = blockIdx.x;
  float acc[2] = {0.f, 0.f};
  for (int q = threadIdx.x; q < nch; q += blockDim.x) {
    acc[0] += part[c * nch + q].x;
    acc[1] += part[c * nch + q].y;
  }
  block_sum<2>(acc, scratch);
  if (threadIdx.x == 0) {
    if (dw != nullptr) dw[c] = acc[0];
    if (db != nullptr) db[c] = acc[1];
  }
}

// Host side of the split path: which index shortcut a shape allows.
ChanMode chan_mode(const NormShape& s) {
  if (s.affine_is_stats()) return kChanGroup;
  if (s.aff_inner == 1 && s.channels == s.stat_inner) return kChanInner;
  return kChanGeneral;
}
// false when the shape allows neither group mode (see GroupMode): the block path then.
bool group_mode(const NormShape& s, GroupMode& mode) {
  mode = kGroupChan;
  if (s.affine_is_stats()) return true;
  mode = kGroupOuter;
  if (s.stat_outer == 1 && s.groups % s.aff_outer == 0) {
    const int64_t gpa = s.groups / s.aff_outer;  // >= 1: groups >= 1 is a multiple of aff_outer
    if (s.channels % gpa == 0 && s.stat_inner == s.channels / gpa * s.aff_inner) return true;
  }
  return false;
}

// Picks the instantiation for a runtime mode: K<0>, K<1> or K<2>.
template <typename Fn>
Fn by_mode(int mode, Fn k0, Fn k1, Fn k2) {
  return mode == 0 ? k0 : (mode == 1 ? k1 : k2);
}

// A float workspace for the partials, from the caching allocator (stream-ordered: released when
// the tensor dies, after the launches that use it are queued; served from the cache during a CUDA
// graph capture, cuda/allocator.h rule 4).
Tensor split_workspace(int64_t floats, const Tensor& like) {
  return empty({floats}, Options{DType::f32, like.device()});
}

dim3 split_grid(const SplitPlan& sp, int64_t slices) {
  return dim3(static_cast<unsigned>(sp.nch), static_cast<unsigned>(slices));
}

// The forward's elementwise pass for a channel mode (runtime) and a statistics source.
template <int SRC>
auto fwd_map_kernel(int chan_mode) {
  return by_mode(chan_mode, norm_fwd_split_map_kernel<0, SRC>, norm_fwd_split_map_kernel<1, SRC>,
                 norm_fwd_split_map_kernel<2, SRC>);
}

// ---------------------------------------------------------------------------------------------
// Dropout.

__global__ void dropout_fwd_philox_kernel(float* __restrict__ out, const float* __restrict__ in,
                                          int64_t n, uint64_t seed, uint64_t offset,
                                          uint32_t keep_threshold, float scale) {
  for (const int64_t k : grid_stride(n)) {
    uint32_t r[4];
    philox_block(seed, static_cast<uint64_t>(k), offset, r);
    out[k] = (r[0] >> 8) >= keep_threshold ? __ldg(in + k) * scale : 0.f;
  }
}

}  // namespace

void norm_fwd(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
              const Tensor& running_var, const NormShape& s, const NormParams& p) {
  if (s.numel() == 0) return;
  set_device(x.device().index);
  const cudaStream_t st = current_stream();
  const Dims d = dims_of(s);
  const float eps = static_cast<float>(p.eps), momentum = static_cast<float>(p.momentum);
  const SplitPlan sp = split_plan(s.groups, s.group_size());
  if (sp.on) {
    const Tensor part = split_workspace(2 * s.groups * sp.nch, x);
    float2* pp = reinterpret_cast<float2*>(part.data<float>());
    const View v = view_of(s.stat_outer, s.groups, s.stat_inner);
    const dim3 grid = split_grid(sp, s.groups);
    norm_fwd_split_part_kernel<<<grid, kSplitThreads, 0, st>>>(pp, x.data<float>(), v, sp.L,
                                                                 sp.nch);
    IDEM_LAUNCH_CHECK("norm");
    if (sp.combine_once()) {
      // Many chunks: one block per group merges them and writes mean/rstd (running stats too).
      norm_fwd_split_combine_kernel<<<static_cast<unsigned>(s.groups), kSplitThreads, 0, st>>>(
          mean.data<float>(), rstd.data<float>(), fptr(running_mean), fptr(running_var), pp,
          s.group_size(), sp.L, sp.nch, eps, momentum);
      IDEM_LAUNCH_CHECK("norm");
    }
    const auto kernel = sp.combine_once() ? fwd_map_kernel<kStatsSaved>(chan_mode(s))
                                          : fwd_map_kernel<kStatsMerge>(chan_mode(s));
    kernel<<<grid, kSplitThreads, 0, st>>>(y.data<float>(), mean.data<float>(), rstd.data<float>(),
                                           fptr(running_mean), fptr(running_var), x.data<float>(),
                                           fptr(weight), fptr(bias), pp, nullptr, nullptr, v, d,
                                           sp.L, sp.nch, eps, momentum);
    IDEM_LAUNCH_CHECK("norm");
    return;
  }
  norm_fwd_block_kernel<<<block_grid(s.groups), block_threads(s.group_size()), 0, st>>>(
      y.data<float>(), mean.data<float>(), rstd.data<float>(), fptr(running_mean),
      fptr(running_var), x.data<float>(), fptr(weight), fptr(bias), d, eps, momentum);
  IDEM_LAUNCH_CHECK("norm");
}

void norm_fwd_stats(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor& mean_in, const Tensor& var_in, const Tensor& weight,
                    const Tensor& bias, const NormShape& s, const NormParams& p) {
  const int64_t n = s.numel();
  if (n == 0) return;
  set_device(x.device().index);
  const SplitPlan sp = split_plan(s.groups, s.group_size());
  if (sp.on) {
    // Few large groups: the chunked map, which needs no division per element.
    const auto kernel = fwd_map_kernel<kStatsGiven>(chan_mode(s));
    kernel<<<split_grid(sp, s.groups), kSplitThreads, 0, current_stream()>>>(
        y.data<float>(), mean.data<float>(), rstd.data<float>(), nullptr, nullptr,
        x.data<float>(), fptr(weight), fptr(bias), nullptr, mean_in.data<float>(),
        var_in.data<float>(), view_of(s.stat_outer, s.groups, s.stat_inner), dims_of(s), sp.L,
        sp.nch, static_cast<float>(p.eps), 0.f);
    IDEM_LAUNCH_CHECK("norm");
    return;
  }
  launch_grid_stride(IDEM_SITE("norm"), n, kMapThreads, norm_fwd_stats_map_kernel,
                     y.data<float>(), mean.data<float>(), rstd.data<float>(), x.data<float>(),
                     mean_in.data<float>(), var_in.data<float>(), fptr(weight), fptr(bias),
                     dims_of(s), static_cast<float>(p.eps), n);
}

void norm_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
              const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight,
              const NormShape& s, bool batch_stats) {
  const int64_t n = s.numel();
  if (n == 0) return;
  set_device(x.device().index);
  const cudaStream_t st = current_stream();
  const Dims d = dims_of(s);
  float* pdx = fptr(dx);
  float* pdw = fptr(dweight);
  float* pdb = fptr(dbias);
  const bool want_affine = pdw != nullptr || pdb != nullptr;
  const bool fused = batch_stats && s.affine_is_stats();
  const SplitPlan sp = split_plan(s.groups, s.group_size());
  if (batch_stats && (pdx != nullptr || (fused && want_affine))) {
    if (sp.on) {
      const View v = view_of(s.stat_outer, s.groups, s.stat_inner);
      const int K = fused ? 4 : 2;
      // Many chunks and dx wanted: the partials are combined once, into K sums per group at the
      // end of the workspace. Only dweight/dbias wanted: the map grid is one block per group
      // (no dx pass), which combines each group's partials once by itself.
      const bool once = pdx != nullptr && sp.combine_once();
      const int64_t nparts = K * s.groups * sp.nch;
      const Tensor part = split_workspace(nparts + (once ? K * s.groups : 0), x);
      float* pp = part.data<float>();
      float* psums = once ? pp + nparts : nullptr;
      const dim3 grid = split_grid(sp, s.groups);
      const dim3 map_grid(pdx != nullptr ? grid.x : 1u, grid.y);
      const unsigned combine_grid = static_cast<unsigned>(s.groups);
      if (fused) {
        norm_bwd_data_split_part_kernel<kChanGroup, true><<<grid, kSplitThreads, 0, st>>>(
            pp, g.data<float>(), x.data<float>(), mean.data<float>(), rstd.data<float>(),
            fptr(weight), v, d, sp.L, sp.nch);
        IDEM_LAUNCH_CHECK("norm_backward");
        if (once) {
          norm_bwd_data_split_combine_kernel<true>
              <<<combine_grid, kSplitThreads, 0, st>>>(psums, pdw, pdb, pp, sp.nch);
          IDEM_LAUNCH_CHECK("norm_backward");
        }
        norm_bwd_data_split_map_kernel<kChanGroup, true, true>
            <<<map_grid, kSplitThreads, 0, st>>>(pdx, pdw, pdb, pp, psums, g.data<float>(),
                                                 x.data<float>(), mean.data<float>(),
                                                 rstd.data<float>(), fptr(weight), v, d, sp.L,
                                                 sp.nch);
        IDEM_LAUNCH_CHECK("norm_backward");
      } else {
        const int cm = chan_mode(s);
        const auto part_kernel = by_mode(cm, norm_bwd_data_split_part_kernel<0, false>,
                                         norm_bwd_data_split_part_kernel<1, false>,
                                         norm_bwd_data_split_part_kernel<2, false>);
        part_kernel<<<grid, kSplitThreads, 0, st>>>(pp, g.data<float>(), x.data<float>(),
                                                    mean.data<float>(), rstd.data<float>(),
                                                    fptr(weight), v, d, sp.L, sp.nch);
        IDEM_LAUNCH_CHECK("norm_backward");
        if (once) {
          norm_bwd_data_split_combine_kernel<false>
              <<<combine_grid, kSplitThreads, 0, st>>>(psums, nullptr, nullptr, pp, sp.nch);
          IDEM_LAUNCH_CHECK("norm_backward");
        }
        const auto map_kernel = by_mode(cm, norm_bwd_data_split_map_kernel<0, true, false>,
                                        norm_bwd_data_split_map_kernel<1, true, false>,
                                        norm_bwd_data_split_map_kernel<2, true, false>);
        map_kernel<<<map_grid, kSplitThreads, 0, st>>>(
            pdx, nullptr, nullptr, pp, psums, g.data<float>(), x.data<float>(),
            mean.data<float>(), rstd.data<float>(), fptr(weight), v, d, sp.L, sp.nch);
        IDEM_LAUNCH_CHECK("norm_backward");
      }
    } else {
      const unsigned grid = block_grid(s.groups);
      const int threads = block_threads(s.group_size());
      if (fused) {
        norm_bwd_data_block_kernel<true>
            <<<grid, threads, 0, st>>>(pdx, pdw, pdb, g.data<float>(), x.data<float>(),
                                       mean.data<float>(), rstd.data<float>(), fptr(weight), d);
        IDEM_LAUNCH_CHECK("norm_backward");
      } else {
        norm_bwd_data_block_kernel<false>
            <<<grid, threads, 0, st>>>(pdx, nullptr, nullptr, g.data<float>(), x.data<float>(),
                                       mean.data<float>(), rstd.data<float>(), fptr(weight), d);
        IDEM_LAUNCH_CHECK("norm_backward");
      }
    }
  } else if (pdx != nullptr) {
    if (sp.on) {
      const auto kernel = by_mode(chan_mode(s), norm_bwd_data_split_map_kernel<0, false, false>,
                                  norm_bwd_data_split_map_kernel<1, false, false>,
                                  norm_bwd_data_split_map_kernel<2, false, false>);
      kernel<<<split_grid(sp, s.groups), kSplitThreads, 0, st>>>(
          pdx, nullptr, nullptr, nullptr, nullptr, g.data<float>(), x.data<float>(),
          mean.data<float>(), rstd.data<float>(), fptr(weight),
          view_of(s.stat_outer, s.groups, s.stat_inner), d, sp.L, sp.nch);
      IDEM_LAUNCH_CHECK("norm_backward");
    } else {
      launch_grid_stride(IDEM_SITE("norm_backward"), n, kMapThreads, norm_bwd_data_map_kernel,
                         pdx, g.data<float>(), rstd.data<float>(), fptr(weight), d, n);
    }
  }
  if (want_affine && !fused) {
    const SplitPlan sa = split_plan(s.channels, s.aff_outer * s.aff_inner);
    GroupMode gm;
    if (sa.on && group_mode(s, gm)) {
      const Tensor part = split_workspace(2 * s.channels * sa.nch, x);
      float2* pp = reinterpret_cast<float2*>(part.data<float>());
      const auto kernel = gm == kGroupChan ? norm_bwd_affine_split_part_kernel<kGroupChan>
                                           : norm_bwd_affine_split_part_kernel<kGroupOuter>;
      kernel<<<split_grid(sa, s.channels), kSplitThreads, 0, st>>>(
          pp, g.data<float>(), x.data<float>(), mean.data<float>(), rstd.data<float>(),
          view_of(s.aff_outer, s.channels, s.aff_inner), d, sa.L, sa.nch);
      IDEM_LAUNCH_CHECK("norm_backward");
      norm_bwd_affine_split_sum_kernel<<<static_cast<unsigned>(s.channels), kSplitThreads, 0,
                                         st>>>(pdw, pdb, pp, sa.nch);
      IDEM_LAUNCH_CHECK("norm_backward");
    } else {
      norm_bwd_affine_block_kernel<<<block_grid(s.channels),
                                     block_threads(s.aff_outer * s.aff_inner), 0, st>>>(
          pdw, pdb, g.data<float>(), x.data<float>(), mean.data<float>(), rstd.data<float>(), d);
      IDEM_LAUNCH_CHECK("norm_backward");
    }
  }
}

void dropout_apply(const Tensor& out, const Tensor& in, const DropoutParams& p) {
  const int64_t n = in.numel();
  if (n == 0) return;
  set_device(in.device().index);
  launch_grid_stride(IDEM_SITE("dropout"), n, kMapThreads, dropout_fwd_philox_kernel,
                     out.data<float>(), in.data<float>(), n, p.seed, p.offset, p.keep_threshold(),
                     static_cast<float>(p.scale()));
}

}  // namespace idem::cuda
