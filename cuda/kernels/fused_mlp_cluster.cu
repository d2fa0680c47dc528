// CUDA: the cluster kernel of the fused IT³ MLP adaptation, for nets with a layer 64 or more wide
// (the bench's mlp_256: 14 → 256 → 256 → 256 → 1) at up to kFusedMlpClusterMaxBatch rows.
// Contract and shared-memory layout: core/kernels/fused_mlp_adapt.h (FusedMlpClusterLayout);
// reference: core/cpu/fused_mlp_adapt.cpp.
//
// Why: the phase kernel (fused_mlp_adapt.cu) runs such a net as a cooperative grid of one block
// per SM with a grid barrier between its 21 phases (K = 1), and under ncu (H100, mlp_256 at
// batch 8) it was barrier-bound: about 3.5 µs per phase, the barrier's spin loops the top stall
// sites, and each grid barrier invalidating L1, so every phase read θ and Θ again from L2.
// Here the whole adaptation runs in ONE thread-block cluster (16 blocks on an H100): the phases
// are separated by the cluster's hardware barrier, and each block keeps the rows of W and b of
// the units it owns (θ, Θ and the optimizer's moments) in its shared memory for the whole call:
//   - forward of layer l: block q computes its units' outputs for every row (its own W rows);
//   - input gradient of layer l (Σ_j δ[b, j]·W[j, i], a column of W): block q computes the
//     inputs i it owns in layer l − 1, reading the column's rows from the blocks that own them
//     through distributed shared memory (each value once per column, reused across the rows);
//   - weight gradient and optimizer step of layer l: block q, for its own rows, in place.
// Activations and gradient rows go through the global scratch (L2), as in the phase kernel.
//
// Every sum is the phase kernel's, term for term and in the same order: a dot over 64 or more
// terms is one warp's (lane l takes terms l, l + 32, …, then warp_sum's fixed xor tree), a
// shorter one a single thread's in index order, and a weight gradient a sum over the rows in
// row order. There are no atomics, so repeated calls give the same bits.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <new>

#include "core/kernels/fused_mlp_adapt.h"
#include "cuda/common.cuh"
#include "cuda/kernels/fused_mlp_device.cuh"

namespace idem::cuda {

namespace {

namespace cg = cooperative_groups;
using namespace fused_mlp;

constexpr int kWarps = kFusedMlpClusterThreads / 32;
constexpr int kMaxTermsPerLane = kFusedMlpMaxWidth / 32;  // a warp dot's terms per lane

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define IDEM_CLUSTER_KERNEL 1
#endif

// Block q's part of the call: the layout, its rank and, per layer, the first unit it owns.
struct Part {
  FusedMlpClusterLayout lay;
  float* sm;  // this block's shared memory
  int q;
  int lo[kFusedMlpMaxLayers];  // first unit of layer l + 1 owned by this block
  int own[kFusedMlpMaxLayers];  // units of layer l + 1 owned by this block (0 … rows)

  __device__ float* params(int64_t section, int l) const { return sm + section + lay.woff[l - 1]; }
};

#ifdef IDEM_CLUSTER_KERNEL
// Element [r, i] of layer l's W (r a row of block `rank`, i an input) in section `section`
// of block `rank`'s shared memory: the same offset in every block (the layout is the same).
__device__ __forceinline__ const float* remote_w(const Part& P, int64_t section, int l, int rank, int r, int i,
                                                 int nin) {
  return cg::this_cluster().map_shared_rank(P.params(section, l) + r * nin + i, rank);
}

// How many chunks a warp phase splits the B rows into: one where the block has a unit (or
// column) per warp or more; else enough that every warp has work (the 1-wide output layer of
// a regression net is one block's single unit: one warp walking all the rows left the other
// 15 idle). Each dot stays one warp's whole sum, so the bits do not change.
__device__ __forceinline__ int row_chunks(int units, int B) {
  return units >= kWarps || units == 0 ? 1 : min(B, kWarps / units);
}

// For each row b in [b0, b1): one warp's dot of lane's terms w[m] (term lane + 32·m, those below
// n) with x(b, term), in the phase kernel's order (lane-strided terms, then warp_sum's xor
// tree), handed to lane 0 as emit(b, sum). Rows four at a time: their loads and shuffle trees are
// independent, so they overlap.
template <typename X, typename Emit>
__device__ __forceinline__ void warp_dots_over_rows(const float (&w)[kMaxTermsPerLane], int n, int b0, int b1,
                                                    int lane, X x, Emit emit) {
#pragma unroll 4
  for (int b = b0; b < b1; ++b) {
    float acc = 0.0f;
#pragma unroll
    for (int m = 0; m < kMaxTermsPerLane; ++m) {
      const int i = lane + 32 * m;
      if (i < n) acc += x(b, i) * w[m];
    }
    acc = warp_sum(acc);
    if (lane == 0) emit(b, acc);
  }
}

// Layer l's forward for the units this block owns, every row: out[b·nout + j] (and, when y is
// not null, the prediction y[b·S + j] of the last layer). The input is [x, s] for layer 1 (s
// null: ∅), else the activations below, `prev`.
__device__ void forward_layer(const FusedMlpAdaptParams& p, const Geo& g, const Part& P, bool anchor, int l,
                              const float* prev, const float* s, float* out, float* y) {
  const int nin = p.widths[l - 1], nout = p.widths[l];
  const int own = P.own[l - 1], lo = P.lo[l - 1];
  const float* W = P.params(anchor ? P.lay.anchor : P.lay.theta, l);
  const float* bias = W + int64_t(P.lay.rows[l - 1]) * nin;
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  if (nin >= kFusedMlpWarpDotMinInputs) {
    // A warp per unit and chunk of rows: lane's terms of the row held in registers and reused
    // for every row b of the chunk.
    const int chunks = row_chunks(own, g.B), per = (g.B + chunks - 1) / chunks;
    for (int item = warp; item < own * chunks; item += kWarps) {
      const int r = item % own, b0 = (item / own) * per, b1 = min(g.B, b0 + per);
      float w[kMaxTermsPerLane];
#pragma unroll
      for (int m = 0; m < kMaxTermsPerLane; ++m) {
        const int i = lane + 32 * m;
        w[m] = i < nin ? W[r * nin + i] : 0.0f;
      }
      const int j = lo + r;
      warp_dots_over_rows(
          w, nin, b0, b1, lane,
          [&](int b, int i) { return prev ? prev[b * nin + i] : input_at(p, g, b, i, s); },
          [&](int b, float acc) {
            const float z = layer_output(p, g, l, acc, bias[r]);
            out[b * nout + j] = z;
            if (y) y[b * g.S + j] = z;
          });
    }
  } else {
    for (int t = tid; t < g.B * own; t += kFusedMlpClusterThreads) {
      const int b = t / own, r = t - b * own, j = lo + r;
      const float* a = prev ? prev + b * nin : nullptr;
      const float z = layer_output(p, g, l, forward_dot(p, g, W + r * nin, a, s, b, nin), bias[r]);
      out[b * nout + j] = z;
      if (y) y[b * g.S + j] = z;
    }
  }
}

// The network's forward with θ (anchor false; input [x, ∅]) or Θ (input [x, y0]): one phase
// per layer. y not null: the prediction, written by the last layer's owners.
__device__ void forward(const FusedMlpAdaptParams& p, const Geo& g, const Part& P, bool anchor, const float* s,
                        float* acts, float* y) {
  for (int l = 1; l <= g.L; ++l) {
    forward_layer(p, g, P, anchor, l, l > 1 ? acts + g.off[l - 1] : nullptr, s, acts + g.off[l],
                  l == g.L ? y : nullptr);
    cg::this_cluster().sync();
  }
}

// One input-gradient phase of layer l: for the columns c0 + c of its W with c in [c_lo, c_hi)
// (this block's share) and every row b, acc = Σ_j δ(b·nout + j)·W[j, c0 + c], handed to
// out(b, c, acc). W's rows j live in the blocks that own unit j of layer l.
template <typename Delta, typename Out>
__device__ void input_grad_phase(const FusedMlpAdaptParams& p, const Geo& g, const Part& P, int64_t section, int l,
                                 int c0, int c_lo, int c_hi, Delta delta, Out out) {
  const int nin = p.widths[l - 1], nout = p.widths[l], rows = P.lay.rows[l - 1];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int ncols = c_hi - c_lo;
  if (nout >= kFusedMlpWarpDotMinInputs) {
    // A warp per column and chunk of rows: lane's terms j = lane, lane + 32, … fetched once,
    // reused for every row of the chunk.
    const int chunks = row_chunks(ncols, g.B), per = (g.B + chunks - 1) / chunks;
    for (int item = warp; item < ncols * chunks; item += kWarps) {
      const int c = c_lo + item % ncols, b0 = (item / ncols) * per, b1 = min(g.B, b0 + per);
      float w[kMaxTermsPerLane];
#pragma unroll
      for (int m = 0; m < kMaxTermsPerLane; ++m) {
        const int j = lane + 32 * m;
        if (j < nout) {
          const int rank = j / rows;
          w[m] = *remote_w(P, section, l, rank, j - rank * rows, c0 + c, nin);
        } else {
          w[m] = 0.0f;
        }
      }
      warp_dots_over_rows(
          w, nout, b0, b1, lane, [&](int b, int j) { return delta(b * nout + j); },
          [&](int b, float acc) { out(b, c, acc); });
    }
  } else {
    for (int t = tid; t < g.B * ncols; t += kFusedMlpClusterThreads) {
      const int b = t / ncols, c = c_lo + (t - b * ncols);
      float acc = 0.0f;
      for (int j = 0; j < nout; ++j) {
        const int rank = j / rows;
        acc += delta(b * nout + j) * *remote_w(P, section, l, rank, j - rank * rows, c0 + c, nin);
      }
      out(b, c, acc);
    }
  }
}

// This block's share [lo, hi) of n items split as the layout splits a layer's units.
__device__ __forceinline__ void share(int n, int blocks, int q, int& lo, int& hi) {
  const int per = (n + blocks - 1) / blocks;
  lo = min(q * per, n);
  hi = min(lo + per, n);
}

// Layer l's weight gradients for this block's rows (param_grad: a sum over the rows b in row
// order) and the optimizer step on θ and the moments in shared memory. delta: layer l's output
// gradients (B, n_l); a: its input activations (B, n_{l−1}), or null for [x, ∅].
__device__ void update_layer(const FusedMlpAdaptParams& p, const Geo& g, const Part& P, const Step& st, int l,
                             const float* delta, const float* a) {
  const int nin = p.widths[l - 1], nout = p.widths[l];
  const int own = P.own[l - 1], lo = P.lo[l - 1], rows = P.lay.rows[l - 1];
  const int nw = own * nin;
  float* w = P.params(P.lay.theta, l);
  float* m = P.lay.m >= 0 ? P.params(P.lay.m, l) : nullptr;
  float* v = P.lay.v >= 0 ? P.params(P.lay.v, l) : nullptr;
  for (int t = int(threadIdx.x); t < nw + own; t += kFusedMlpClusterThreads) {
    // The layer's parameter index (W[lo + r, i] at (lo + r)·nin + i; bias lo + r past the
    // weights) and the element in the section's layer block (W[r, i] at r·nin + i, bias r at
    // rows·nin + r).
    const bool isw = t < nw;
    const int layer_t = isw ? lo * nin + t : nout * nin + lo + (t - nw);
    const int e = isw ? t : rows * nin + (t - nw);
    const float grad = param_grad(p, g, delta, a, nin, nout, layer_t);
    update_one(st, w[e], m ? m + e : nullptr, v ? v + e : nullptr, grad);
  }
}

// Copies this block's rows of every layer between the params' tensors and a section of shared
// memory: to_shared true reads `src` (W and b of each layer, as FusedMlpLayer's w/b or w0/b0
// pick) into the section; false writes the section back to them.
template <typename Pick>
__device__ void copy_rows(const FusedMlpAdaptParams& p, const Part& P, int64_t section, bool to_shared, Pick pick) {
  for (int l = 1; l <= p.layers; ++l) {
    const int nin = p.widths[l - 1], own = P.own[l - 1], lo = P.lo[l - 1], rows = P.lay.rows[l - 1];
    float* sw = P.params(section, l);
    float *gw, *gb;
    pick(p.layer[l - 1], gw, gb);
    const int nw = own * nin;
    for (int t = int(threadIdx.x); t < nw + own; t += kFusedMlpClusterThreads) {
      // W's own rows are contiguous in the tensor: rows lo … lo + own − 1, nin each.
      float* gp = t < nw ? gw + lo * nin + t : gb + lo + (t - nw);
      float* sp = t < nw ? sw + t : sw + rows * nin + (t - nw);
      if (to_shared)
        *sp = *gp;
      else
        *gp = *sp;
    }
  }
}
#endif  // IDEM_CLUSTER_KERNEL

#ifdef IDEM_CLUSTER_KERNEL
// Block q's Part: its layout, rank and owned units.
__device__ Part make_part(const FusedMlpAdaptParams& p, float* sm) {
  Part P;
  P.lay = fused_mlp_cluster_layout(p, int(cg::this_cluster().num_blocks()));
  P.sm = sm;
  P.q = int(cg::this_cluster().block_rank());
  for (int l = 0; l < p.layers; ++l) {
    int lo, hi;
    share(p.widths[l + 1], P.lay.blocks, P.q, lo, hi);
    P.lo[l] = lo;
    P.own[l] = hi - lo;
  }
  return P;
}
#endif

__global__ void __launch_bounds__(kFusedMlpClusterThreads, 1)
    fused_mlp_cluster_kernel(const __grid_constant__ FusedMlpAdaptParams p) {
#ifdef IDEM_CLUSTER_KERNEL
  extern __shared__ float sm[];
  __shared__ int off[kFusedMlpMaxLayers + 1];
  // The Part in shared memory: its arrays are indexed by layer at run time, which in registers
  // would put them in (slow) local memory. Raw storage: a __shared__ object cannot have a
  // constructor, and the layout's members have initializers.
  __shared__ alignas(Part) unsigned char part[sizeof(Part)];
  Part& P = *reinterpret_cast<Part*>(part);
  cg::cluster_group cluster = cg::this_cluster();
  if (threadIdx.x == 0) {
    new (&P) Part(make_part(p, sm));
    layer_offsets(p, off);
  }
  __syncthreads();
  const Geo g = make_geo(p, off);
  const bool adapting = p.steps > 0;
  using Layer = FusedMlpLayer;
  if (adapting) {
    // Θ from the params (kept for F; copy_rows only reads the tensors it is given here), then
    // θ ← Θ from shared memory (the sections are laid out alike) and the moments ← 0.
    copy_rows(p, P, P.lay.anchor, true, [](const Layer& ly, float*& w, float*& b) {
      w = const_cast<float*>(ly.w0), b = const_cast<float*>(ly.b0);
    });
    __syncthreads();
    for (int64_t e = threadIdx.x; e < P.lay.section; e += kFusedMlpClusterThreads)
      sm[P.lay.theta + e] = sm[P.lay.anchor + e];
    for (int64_t e = P.lay.anchor + P.lay.section + threadIdx.x; e < P.lay.total; e += kFusedMlpClusterThreads)
      sm[e] = 0.0f;
  } else {
    copy_rows(p, P, P.lay.theta, true, [](const Layer& ly, float*& w, float*& b) { w = ly.w, b = ly.b; });
  }
  cluster.sync();  // every block's rows before any block reads them

  const float* y0 = p.fa + off[g.L];
  const float* y1 = p.Fa + off[g.L];
  for (int k = 1; k <= p.steps; ++k) {
    const Step st = step_scalars(p, k);
    forward(p, g, P, false, nullptr, p.fa, nullptr);  // y0 = f_θ(x, ∅)
    forward(p, g, P, true, y0, p.Fa, nullptr);        // y1 = F(x, y0)
    // Backward through F (Θ), input gradient only; δ of F's last layer is the distance's
    // gradient, computed where it is read. δ of layer l − 1 lands in d0 / d1 in turn.
    const auto dist_delta = [&](int e) { return dist_grad(p, g, y1[e], y0[e]); };
    float* cur = p.d0;
    float* other = p.d1;
    for (int l = g.L; l >= 2; --l) {
      const int n = p.widths[l - 1];
      const float* a = p.Fa + off[l - 1];
      const auto to_cur = [&](int b, int c, float acc) {
        cur[b * n + c] = math::fused_act_grad(p.act, acc, a[b * n + c], p.slope);
      };
      int lo, hi;
      share(n, P.lay.blocks, P.q, lo, hi);
      if (l == g.L)
        input_grad_phase(p, g, P, P.lay.anchor, l, 0, lo, hi, dist_delta, to_cur);
      else
        input_grad_phase(p, g, P, P.lay.anchor, l, 0, lo, hi, buffer_delta(other), to_cur);
      cluster.sync();
      float* t = cur;
      cur = other;
      other = t;
    }
    // ∂L/∂y0 = −dist_grad + the signal columns of F's input gradient, into f's layer-L gradient
    // rows (fd); and the loss.
    float* gy0 = p.fd + off[g.L];
    {
      const auto to_gy0 = [&](int b, int c, float acc) {
        const int e = b * g.S + c;
        gy0[e] = -dist_grad(p, g, y1[e], y0[e]) + acc;
      };
      int lo, hi;
      share(g.S, P.lay.blocks, P.q, lo, hi);
      if (g.L == 1)
        input_grad_phase(p, g, P, P.lay.anchor, 1, g.d, lo, hi, dist_delta, to_gy0);
      else
        input_grad_phase(p, g, P, P.lay.anchor, 1, g.d, lo, hi, buffer_delta(other), to_gy0);
      loss_block0(p, g, [y0, y1](int e) { return y1[e] - y0[e]; }, k);
      cluster.sync();
    }
    // Backward through f: phase l updates layer l + 1 (its columns were read in phase l + 1 and
    // are not read again this step) and computes δ of layer l − 1 from θ_l's columns; phase 1
    // also updates layer 1.
    for (int l = g.L; l >= 1; --l) {
      if (l < g.L) update_layer(p, g, P, st, l + 1, p.fd + off[l + 1], p.fa + off[l]);
      if (l == 1) update_layer(p, g, P, st, 1, p.fd + off[1], nullptr);
      if (l > 1) {
        const int n = p.widths[l - 1];
        const float* a = p.fa + off[l - 1];
        float* out = p.fd + off[l - 1];
        int lo, hi;
        share(n, P.lay.blocks, P.q, lo, hi);
        input_grad_phase(p, g, P, P.lay.theta, l, 0, lo, hi, buffer_delta(p.fd + off[l]),
                         [&](int b, int c, float acc) {
                           out[b * n + c] = math::fused_act_grad(p.act, acc, a[b * n + c], p.slope);
                         });
      }
      cluster.sync();
    }
  }
  // θ and the optimizer state back to the params (they are the adapted model's), then the
  // prediction f_θ(x, ∅), written by the last layer's owners.
  if (adapting) {
    copy_rows(p, P, P.lay.theta, false, [](const Layer& ly, float*& w, float*& b) { w = ly.w, b = ly.b; });
    if (P.lay.m >= 0)
      copy_rows(p, P, P.lay.m, false, [](const Layer& ly, float*& w, float*& b) { w = ly.mw, b = ly.mb; });
    if (P.lay.v >= 0)
      copy_rows(p, P, P.lay.v, false, [](const Layer& ly, float*& w, float*& b) { w = ly.vw, b = ly.vb; });
  }
  forward(p, g, P, false, nullptr, p.fa, p.y);
#endif  // IDEM_CLUSTER_KERNEL
}

// The largest cluster of this kernel `device` can hold with a block's whole shared memory (one
// block per SM): 16, 8 or 0 (largest_cluster), asked once per device at the largest dynamic size
// (which `smem` raises the kernel's limit to). 0 where the kernel has no cluster code: compiled
// for sm_90 or later and running on one (a build for an older architecture, JIT-compiled from
// its PTX on an H100, has an empty kernel body).
int cluster_size_limit(int device, DynamicSharedMemory& smem, const char* op) {
  static std::array<std::atomic<int>, 64> cache{};
  return once_per_device(cache, device, [&] {
    const auto kernel = reinterpret_cast<const void*>(fused_mlp_cluster_kernel);
    if (!has_cluster_code(kernel, device, op)) return 0;
    return largest_cluster(kernel, kFusedMlpClusterThreads, smem.largest(device, op));
  });
}

}  // namespace

int fused_mlp_cluster_blocks(const FusedMlpAdaptParams& p, int device) {
  const char* op = "fused_mlp_adapt";
  if (p.batch > kFusedMlpClusterMaxBatch) return 0;
  set_device(device);  // the attributes below act on the current device
  static DynamicSharedMemory smem(reinterpret_cast<const void*>(fused_mlp_cluster_kernel));
  const int most = cluster_size_limit(device, smem, op);
  for (int blocks : {16, 8}) {
    if (blocks > most) continue;
    const size_t bytes = size_t(fused_mlp_cluster_layout(p, blocks).total) * sizeof(float);
    if (smem.fits(device, bytes, op)) return blocks;
  }
  return 0;
}

void fused_mlp_cluster(const FusedMlpAdaptParams& p, int blocks) {
  const size_t bytes = size_t(fused_mlp_cluster_layout(p, blocks).total) * sizeof(float);
  ClusterLaunch launch(blocks, kFusedMlpClusterThreads, bytes, current_stream());
  IDEM_CUDA_CHECK("fused_mlp_adapt", cudaLaunchKernelEx(&launch.cfg, fused_mlp_cluster_kernel, p));
  IDEM_LAUNCH_CHECK("fused_mlp_adapt");
}

}  // namespace idem::cuda
