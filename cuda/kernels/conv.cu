// CUDA convolution: the hand-written kernels (cuda::conv2d_hand) and the run-time switch
// between them and cuDNN (cuda::conv2d_fwd / bwd_data / bwd_weight). Contract:
// core/kernels/conv.h; reference: core/cpu/conv.cpp (im2col + GEMM). The cuDNN path is
// cuda/vendor/cudnn_conv.cpp; a throwing fallback is at the end of this file.
//
// No im2col buffer anywhere. Three families of kernels, chosen per direction and shape by
// choose_kernel (cuda::conv2d_hand_kernel_name reports the choice):
//  1. tiled, when a group's weights and one image's operand fit in 48 KB of shared memory (the
//     fmnist CNN's layers, the bn_cnn demo's first layer; few channels, where a GEMM tile
//     would be mostly empty);
//  2. implicit GEMM (fwd and bwd_data), otherwise when the reduction has >= 64 taps and the
//     output has >= 16 channels per group (the bn_cnn demo's 32->64 layer and head);
//  3. direct, for the rest.
// bwd_weight has three: an implicit GEMM with a fixed split of the N·P·Q positions when a group
// has >= 16 output channels and >= 32 taps (the bn_cnn layers above, the fmnist CNN's 10->20
// layer); else, for one group of at most 1 024 weights whose image of x and band of dy's rows
// fit in 48 KB, at batch >= 32, a block per image (or a few) and band of output rows staging
// both in shared memory (the fmnist CNN's 1->10 layer; cuda/kernels/conv_wgrad_image.cu); else
// two passes.
// Every kernel is deterministic (no atomics; each output is one thread's sum in a fixed order):
//  - fwd, tiled: one block per (n, g, chunk of work items) stages both in shared memory once; a
//    thread accumulates OB output channels x 2 pixels in registers (one float4 weight load per
//    tap for OB channels).
//  - fwd / bwd_data, implicit GEMM: rows = output pixels (N·P·Q, or N·H·W for bwd_data),
//    columns = output channels of the group, K = taps (channel, r, s); 64 x 64 (or 64 x 32)
//    block tiles, K steps of 16 gathered into shared memory with zero padding, a 4 x 4 (4 x 2)
//    register micro-tile per thread, bias in the initial value. Details at the kernel.
//  - fwd, direct: one thread per (n, block of OB output channels, p, q); each input tap it loads
//    is reused for OB channels; weight reads are warp-uniform (broadcast).
//  - bwd_data, direct: one thread per (n, block of CB input channels, h, w), gathering
//    dy[n, o, p, q]·w[o, c, r, s] over the taps with p·sh − ph + r·dh = h (and likewise w).
//    The tiled variant (w[g] and one image's dy in 48 KB) stages them in shared memory first
//    and runs the same loops on them.
//  - bwd_weight, implicit GEMM: rows = output channels of the group, columns = taps
//    (channel, r, s), reduction = the N·P·Q positions cut into chunks whose count depends on the
//    shape only; a block computes a 64 x 64 (32 x 64) tile over one chunk into a scratch, a
//    second kernel adds the chunks in order. Details at the kernel.
//  - bwd_weight, two passes. Pass 1: one thread per (chunk of the N·P·Q positions, block of OB
//    output channels, tap k = (c, r, s)) sums its chunk in order into partial[chunk][o][k];
//    pass 2: one warp per weight element sums the chunks in a fixed lane order and a fixed
//    shuffle tree.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "core/kernels/conv.h"
#include "cuda/block_stage.cuh"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"
#include "cuda/kernels/conv_dims.h"
#include "cuda/kernels/conv_wgrad_image.h"

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;

ConvDims dims_of(const ConvShape& s, const char* op) {
  const int64_t vals[] = {s.N,
                          s.C,
                          s.H,
                          s.W,
                          s.O,
                          s.R,
                          s.S,
                          s.P,
                          s.Q,
                          s.p.stride_h,
                          s.p.stride_w,
                          s.p.pad_h,
                          s.p.pad_w,
                          s.p.dilation_h,
                          s.p.dilation_w,
                          s.p.groups,
                          s.Cg() * s.R * s.S};
  for (int64_t v : vals)
    IDEM_CHECK(v >= 0 && v <= INT_MAX, op, "extent ", v,
               " exceeds the 32-bit range of the hand-written CUDA kernels");
  ConvDims d;
  d.N = static_cast<int>(s.N);
  d.C = static_cast<int>(s.C);
  d.H = static_cast<int>(s.H);
  d.W = static_cast<int>(s.W);
  d.O = static_cast<int>(s.O);
  d.R = static_cast<int>(s.R);
  d.S = static_cast<int>(s.S);
  d.P = static_cast<int>(s.P);
  d.Q = static_cast<int>(s.Q);
  d.sh = static_cast<int>(s.p.stride_h);
  d.sw = static_cast<int>(s.p.stride_w);
  d.ph = static_cast<int>(s.p.pad_h);
  d.pw = static_cast<int>(s.p.pad_w);
  d.dh = static_cast<int>(s.p.dilation_h);
  d.dw = static_cast<int>(s.p.dilation_w);
  d.G = static_cast<int>(s.p.groups);
  d.Cg = static_cast<int>(s.Cg());
  d.Og = static_cast<int>(s.Og());
  return d;
}

// ---------------------------------------------------------------------------------------------
// fwd: y[n, o0 + j, p, q] for j < OB.
template <int OB>
__global__ void __launch_bounds__(kThreads)
    conv2d_fwd_direct_kernel(float* __restrict__ y, const float* __restrict__ x,
                             const float* __restrict__ w, const float* __restrict__ bias,
                             ConvDims d, int n_ob) {
  const int64_t total = static_cast<int64_t>(d.N) * d.G * n_ob * d.P * d.Q;
  const int crs = d.Cg * d.R * d.S;  // distance between two output channels' weights
  const int64_t hw = static_cast<int64_t>(d.H) * d.W;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q;
  for (const int64_t t : grid_stride(total)) {
    int64_t rest = t;
    const int q = static_cast<int>(rest % d.Q);
    rest /= d.Q;
    const int p = static_cast<int>(rest % d.P);
    rest /= d.P;
    const int ob = static_cast<int>(rest % n_ob);
    rest /= n_ob;
    const int g = static_cast<int>(rest % d.G);
    const int n = static_cast<int>(rest / d.G);
    const int nvalid = min(OB, d.Og - ob * OB);
    const int o0 = g * d.Og + ob * OB;

    float acc[OB];
#pragma unroll
    for (int j = 0; j < OB; ++j) acc[j] = (bias != nullptr && j < nvalid) ? bias[o0 + j] : 0.f;

    const int hb = p * d.sh - d.ph, wb = q * d.sw - d.pw;
    const float* xg = x + (static_cast<int64_t>(n) * d.C + static_cast<int64_t>(g) * d.Cg) * hw;
    const float* wg = w + static_cast<int64_t>(o0) * crs;
    for (int c = 0; c < d.Cg; ++c) {
      const float* xc = xg + c * hw;
      const float* wc = wg + c * d.R * d.S;
      for (int r = 0; r < d.R; ++r) {
        const int h = hb + r * d.dh;
        if (h < 0 || h >= d.H) continue;
        const float* xr = xc + static_cast<int64_t>(h) * d.W;
        const float* wr = wc + r * d.S;
        for (int s = 0; s < d.S; ++s) {
          const int ww = wb + s * d.dw;
          if (ww < 0 || ww >= d.W) continue;
          const float v = __ldg(xr + ww);
#pragma unroll
          for (int j = 0; j < OB; ++j)
            if (j < nvalid) acc[j] = fmaf(v, __ldg(wr + s + j * crs), acc[j]);
        }
      }
    }
    float* yo = y + ((static_cast<int64_t>(n) * d.O + o0) * d.P + p) * d.Q + q;
#pragma unroll
    for (int j = 0; j < OB; ++j)
      if (j < nvalid) yo[j * pq] = acc[j];
  }
}

// ---------------------------------------------------------------------------------------------
// fwd, tiled fast path (taken when a group's weights and one image's input patch fit in 48 KB
// of shared memory, e.g. the fmnist CNN's 10->20 layer: 20 KB + 5.6 KB). One block per
// (n, g, chunk of work items); the block stages, once,
//  - the group's weights transposed to ws[k·OgP + o] (k = (c·R + r)·S + s, o < OgP, zero for
//    o >= Og), so a thread's OB channels at one tap are contiguous (a float4 when OB % 4 == 0)
//    and warp-uniform (broadcast);
//  - the input patch of all Cg channels with the padding materialised as zeros,
//    xs[(c·Hp + hh)·Wp + ww] = x[n, g·Cg + c, hh − ph, ww − pw], so the tap loop has no bounds
//    checks.
// A work item is (channel block ob, pixel block pb): OB channels x PB pixels (pb, pb + n_pb, ...)
// accumulated in registers; items are numbered ob-major so a warp shares ob (weight broadcast)
// and its lanes read neighbouring pixels. Each output's sum runs bias, then c, r, s in order,
// as in conv2d_fwd_direct_kernel; no atomics.
template <int OB, int PB, int KS>
__global__ void __launch_bounds__(kThreads)
    conv2d_fwd_tiled_kernel(float* __restrict__ y, const float* __restrict__ x,
                            const float* __restrict__ w, const float* __restrict__ bias,
                            ConvDims d, int n_ob, int OgP, int n_pb, int Hp, int Wp, int chunks,
                            bool vec) {
  extern __shared__ float4 conv_smem[];  // float4: 16-byte alignment for the weight loads
  const int S = KS > 0 ? KS : d.S;
  const int crs = d.Cg * d.R * S;
  const int hpwp = Hp * Wp;
  float* ws = reinterpret_cast<float*>(conv_smem);
  float* xs = ws + crs * OgP;

  const int chunk = static_cast<int>(blockIdx.x % chunks);
  const int ng = static_cast<int>(blockIdx.x / chunks);
  const int g = ng % d.G, n = ng / d.G;

  // Stage the weights (read in global order, coalesced, stored transposed) and the zero-padded
  // input patch in one block_stage pass: a few memory round trips for the whole tile.
  const float* wg = w + static_cast<int64_t>(g) * d.Og * crs;
  const int64_t hw = static_cast<int64_t>(d.H) * d.W;
  const float* xg = x + (static_cast<int64_t>(n) * d.C + static_cast<int64_t>(g) * d.Cg) * hw;
  const int nw = d.Og * crs;
  if (vec) {
    // The host checked that w[g] and the image's Cg channels are whole, 16-byte aligned float4
    // runs and that the patch is the image itself (no padding, every row and column read): one
    // 16-byte load per four floats and one division per four weights, so a block at batch 8
    // or 64 (one image, a few hundred threads) waits for two or three round trips, not five.
    const int nw4 = nw / 4, nx4 = d.Cg * hpwp / 4;
    const float4* wg4 = reinterpret_cast<const float4*>(wg);
    const float4* xg4 = reinterpret_cast<const float4*>(xg);
    block_stage<4>(
        nw4 + nx4, [&](int i) { return i < nw4 ? __ldg(wg4 + i) : __ldg(xg4 + (i - nw4)); },
        [&](int i, float4 v) {
          const float e[4] = {v.x, v.y, v.z, v.w};
          if (i < nw4) {
            int o = 4 * i / crs, k = 4 * i - o * crs;
#pragma unroll
            for (int u = 0; u < 4; ++u) {
              ws[k * OgP + o] = e[u];
              if (++k == crs) k = 0, ++o;
            }
          } else {
            float* dst = xs + 4 * (i - nw4);
#pragma unroll
            for (int u = 0; u < 4; ++u) dst[u] = e[u];
          }
        });
  } else {
    block_stage(
        nw + d.Cg * hpwp,
        [&](int i) {
          if (i < nw) return __ldg(wg + i);
          i -= nw;
          const int c = i / hpwp, rem = i - c * hpwp;
          const int hh = rem / Wp, wc = rem - hh * Wp;
          const int h = hh - d.ph, wx = wc - d.pw;
          return (h >= 0 && h < d.H && wx >= 0 && wx < d.W)
                     ? __ldg(xg + c * hw + static_cast<int64_t>(h) * d.W + wx)
                     : 0.f;
        },
        [&](int i, float v) {
          if (i < nw) {
            const int o = i / crs, k = i - o * crs;
            ws[k * OgP + o] = v;
          } else {
            xs[i - nw] = v;
          }
        });
  }
  const int opad = OgP - d.Og;
  for (int i = threadIdx.x; i < opad * crs; i += blockDim.x) {  // stores only, no loads
    const int k = i / opad, o = d.Og + (i - k * opad);
    ws[k * OgP + o] = 0.f;
  }
  __syncthreads();

  const int item = chunk * blockDim.x + threadIdx.x;
  if (item >= n_ob * n_pb) return;  // no barrier follows
  const int ob = item / n_pb, pb = item - ob * n_pb;
  const int pq = d.P * d.Q;
  int xoff[PB];
  bool valid[PB];
#pragma unroll
  for (int i = 0; i < PB; ++i) {
    const int pix = pb + i * n_pb;
    valid[i] = pix < pq;
    const int pc = valid[i] ? pix : 0;  // a missing pixel reads pixel 0's taps, never stored
    const int p = pc / d.Q, q = pc - p * d.Q;
    xoff[i] = p * d.sh * Wp + q * d.sw;
  }
  float acc[OB][PB];
#pragma unroll
  for (int j = 0; j < OB; ++j) {
    const int o = ob * OB + j;
    const float b0 = (bias != nullptr && o < d.Og) ? __ldg(bias + g * d.Og + o) : 0.f;
#pragma unroll
    for (int i = 0; i < PB; ++i) acc[j][i] = b0;
  }

  const float* wk = ws + ob * OB;
  const int row_step = d.dh * Wp;
  for (int c = 0; c < d.Cg; ++c) {
    const float* xr = xs + c * hpwp;
    for (int r = 0; r < d.R; ++r, xr += row_step) {
#pragma unroll
      for (int s = 0; s < S; ++s, wk += OgP) {
        float wv[OB];
        if constexpr (OB % 4 == 0) {
#pragma unroll
          for (int j = 0; j < OB; j += 4) {
            const float4 v4 = *reinterpret_cast<const float4*>(wk + j);
            wv[j] = v4.x;
            wv[j + 1] = v4.y;
            wv[j + 2] = v4.z;
            wv[j + 3] = v4.w;
          }
        } else {
#pragma unroll
          for (int j = 0; j < OB; ++j) wv[j] = wk[j];
        }
        const int so = s * d.dw;
#pragma unroll
        for (int i = 0; i < PB; ++i) {
          const float xv = xr[xoff[i] + so];
#pragma unroll
          for (int j = 0; j < OB; ++j) acc[j][i] = fmaf(xv, wv[j], acc[j][i]);
        }
      }
    }
  }

  const int nvalid = min(OB, d.Og - ob * OB);
  float* yo = y + (static_cast<int64_t>(n) * d.O + g * d.Og + ob * OB) * pq;
#pragma unroll
  for (int i = 0; i < PB; ++i) {
    if (!valid[i]) continue;
    const int pix = pb + i * n_pb;
#pragma unroll
    for (int j = 0; j < OB; ++j)
      if (j < nvalid) yo[static_cast<int64_t>(j) * pq + pix] = acc[j][i];
  }
}

// ---------------------------------------------------------------------------------------------
// bwd_data: dx[n, g·Cg + c0 + j, h, w] for j < CB.
template <int CB>
__global__ void __launch_bounds__(kThreads)
    conv2d_bwd_data_direct_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                  const float* __restrict__ w, ConvDims d, int n_cb) {
  const int64_t total = static_cast<int64_t>(d.N) * d.G * n_cb * d.H * d.W;
  const int rs = d.R * d.S, crs = d.Cg * rs;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q;
  const int64_t hw = static_cast<int64_t>(d.H) * d.W;
  for (const int64_t t : grid_stride(total)) {
    int64_t rest = t;
    const int wx = static_cast<int>(rest % d.W);
    rest /= d.W;
    const int h = static_cast<int>(rest % d.H);
    rest /= d.H;
    const int cb = static_cast<int>(rest % n_cb);
    rest /= n_cb;
    const int g = static_cast<int>(rest % d.G);
    const int n = static_cast<int>(rest / d.G);
    const int c0 = cb * CB;  // within the group
    const int nvalid = min(CB, d.Cg - c0);

    float acc[CB];
#pragma unroll
    for (int j = 0; j < CB; ++j) acc[j] = 0.f;

    const float* dyg = dy + (static_cast<int64_t>(n) * d.O + static_cast<int64_t>(g) * d.Og) * pq;
    // w[g·Og + o, c0 + j, r, s] = wg[o·crs + j·rs + r·S + s]
    const float* wg = w + static_cast<int64_t>(g) * d.Og * crs + c0 * rs;
    for (int r = 0; r < d.R; ++r) {
      const int hp = h + d.ph - r * d.dh;  // = p·sh for the output row p that reads h via r
      if (hp < 0 || hp % d.sh != 0) continue;
      const int p = hp / d.sh;
      if (p >= d.P) continue;
      for (int s = 0; s < d.S; ++s) {
        const int wp = wx + d.pw - s * d.dw;
        if (wp < 0 || wp % d.sw != 0) continue;
        const int q = wp / d.sw;
        if (q >= d.Q) continue;
        const float* dyp = dyg + static_cast<int64_t>(p) * d.Q + q;
        const float* wrs = wg + r * d.S + s;
        for (int o = 0; o < d.Og; ++o) {
          const float v = __ldg(dyp + o * pq);
#pragma unroll
          for (int j = 0; j < CB; ++j)
            if (j < nvalid) acc[j] = fmaf(v, __ldg(wrs + o * crs + j * rs), acc[j]);
        }
      }
    }
    float* out = dx + ((static_cast<int64_t>(n) * d.C + g * d.Cg + c0) * d.H + h) * d.W + wx;
#pragma unroll
    for (int j = 0; j < CB; ++j)
      if (j < nvalid) out[j * hw] = acc[j];
  }
}

// ---------------------------------------------------------------------------------------------
// bwd_data, tiled fast path (taken when a group's weights and one image's dy fit in 48 KB of
// shared memory, e.g. the fmnist CNN's 10->20 layer: 20 KB + 5 KB). One block per (n, g, chunk of
// work items) stages w[g] in its global layout (o, c, r, s) and dy[n, g] (o, p, q) with one
// block_stage pass; a work item is conv2d_bwd_data_direct_kernel's thread (cb, h, w), and it
// runs the same loops in the same order reading shared memory, so the bits are the same. The
// direct kernel waits on global loads inside its tap × channel loop (docs/performance.md).
template <int CB, bool UNIT_STRIDE>
__global__ void __launch_bounds__(kThreads)
    conv2d_bwd_data_tiled_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                 const float* __restrict__ w, ConvDims d, int n_cb, int chunks,
                                 bool vec) {
  extern __shared__ float4 conv_smem[];
  const int rs = d.R * d.S, crs = d.Cg * rs;
  const int pq = d.P * d.Q, hw = d.H * d.W;
  float* ws = reinterpret_cast<float*>(conv_smem);  // Og·crs
  float* dys = ws + d.Og * crs;                      // Og·pq

  const int chunk = static_cast<int>(blockIdx.x % chunks);
  const int ng = static_cast<int>(blockIdx.x / chunks);
  const int g = ng % d.G, n = ng / d.G;
  const float* wg = w + static_cast<int64_t>(g) * d.Og * crs;
  const float* dyg = dy + (static_cast<int64_t>(n) * d.O + static_cast<int64_t>(g) * d.Og) * pq;
  const int nw = d.Og * crs;
  if (vec) {  // whole, 16-byte aligned float4 runs (the host checked): a quarter of the loads
    const int nw4 = nw / 4;
    const float4* wg4 = reinterpret_cast<const float4*>(wg);
    const float4* dyg4 = reinterpret_cast<const float4*>(dyg);
    block_stage<4>(
        nw4 + d.Og * pq / 4,
        [&](int i) { return i < nw4 ? __ldg(wg4 + i) : __ldg(dyg4 + (i - nw4)); },
        [&](int i, float4 v) { conv_smem[i] = v; });  // dys follows ws
  } else {
    block_stage(
        nw + d.Og * pq, [&](int i) { return i < nw ? __ldg(wg + i) : __ldg(dyg + (i - nw)); },
        [&](int i, float v) { ws[i] = v; });  // dys follows ws
  }
  __syncthreads();

  const int item = chunk * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
  if (item >= n_cb * hw) return;  // no barrier follows
  const int wx = item % d.W, h = (item / d.W) % d.H, cb = item / hw;
  const int c0 = cb * CB;
  const int nvalid = min(CB, d.Cg - c0);
  float acc[CB];
#pragma unroll
  for (int j = 0; j < CB; ++j) acc[j] = 0.f;
  const float* wc = ws + c0 * rs;
  // UNIT_STRIDE (sh = sw = 1) drops the divisions by the stride: p = hp, q = wp.
  for (int r = 0; r < d.R; ++r) {
    const int hp = h + d.ph - r * d.dh;
    if (hp < 0 || (!UNIT_STRIDE && hp % d.sh != 0)) continue;
    const int p = UNIT_STRIDE ? hp : hp / d.sh;
    if (p >= d.P) continue;
    for (int s = 0; s < d.S; ++s) {
      const int wp = wx + d.pw - s * d.dw;
      if (wp < 0 || (!UNIT_STRIDE && wp % d.sw != 0)) continue;
      const int q = UNIT_STRIDE ? wp : wp / d.sw;
      if (q >= d.Q) continue;
      const float* dyp = dys + p * d.Q + q;
      const float* wrs = wc + r * d.S + s;
      for (int o = 0; o < d.Og; ++o) {
        const float v = dyp[o * pq];
#pragma unroll
        for (int j = 0; j < CB; ++j)
          if (j < nvalid) acc[j] = fmaf(v, wrs[o * crs + j * rs], acc[j]);
      }
    }
  }
  float* out = dx + ((static_cast<int64_t>(n) * d.C + g * d.Cg + c0) * d.H + h) * d.W + wx;
#pragma unroll
  for (int j = 0; j < CB; ++j)
    if (j < nvalid) out[static_cast<int64_t>(j) * hw] = acc[j];
}

// ---------------------------------------------------------------------------------------------
// bwd_weight pass 1: partial[chunk, o0 + j, k] = Σ_{m in chunk} dy[n, o0+j, p, q]·x[n, c, h, w],
// m = (n·P + p)·Q + q, k = (c·R + r)·S + s.
template <int OB>
__global__ void __launch_bounds__(kThreads)
    conv2d_bwd_weight_partial_kernel(float* __restrict__ partial, const float* __restrict__ dy,
                                     const float* __restrict__ x, ConvDims d, int n_ob,
                                     int64_t chunk_len, int64_t n_chunks) {
  const int rs = d.R * d.S, crs = d.Cg * rs;
  const int64_t total = n_chunks * d.G * n_ob * crs;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q;
  const int64_t positions = d.N * pq;
  for (const int64_t t : grid_stride(total)) {
    int64_t rest = t;
    const int k = static_cast<int>(rest % crs);
    rest /= crs;
    const int ob = static_cast<int>(rest % n_ob);
    rest /= n_ob;
    const int g = static_cast<int>(rest % d.G);
    const int64_t chunk = rest / d.G;
    const int c = k / rs, r = (k % rs) / d.S, s = k % d.S;
    const int nvalid = min(OB, d.Og - ob * OB);
    const int o0 = g * d.Og + ob * OB;

    float acc[OB];
#pragma unroll
    for (int j = 0; j < OB; ++j) acc[j] = 0.f;

    const int64_t m0 = chunk * chunk_len;
    const int64_t m1 = m0 + chunk_len < positions ? m0 + chunk_len : positions;
    if (m0 < m1) {
      int n = static_cast<int>(m0 / pq);
      int p = static_cast<int>((m0 % pq) / d.Q);
      int q = static_cast<int>(m0 % d.Q);
      const int hoff = r * d.dh - d.ph, woff = s * d.dw - d.pw;
      for (int64_t m = m0; m < m1; ++m) {
        const int h = p * d.sh + hoff, ww = q * d.sw + woff;
        if (h >= 0 && h < d.H && ww >= 0 && ww < d.W) {
          const float v =
              __ldg(x + ((static_cast<int64_t>(n) * d.C + g * d.Cg + c) * d.H + h) * d.W + ww);
          const float* dyp = dy + ((static_cast<int64_t>(n) * d.O + o0) * d.P + p) * d.Q + q;
#pragma unroll
          for (int j = 0; j < OB; ++j)
            if (j < nvalid) acc[j] = fmaf(v, __ldg(dyp + j * pq), acc[j]);
        }
        if (++q == d.Q) {
          q = 0;
          if (++p == d.P) {
            p = 0;
            ++n;
          }
        }
      }
    }
    float* out = partial + (chunk * d.O + o0) * crs + k;
#pragma unroll
    for (int j = 0; j < OB; ++j)
      if (j < nvalid) out[static_cast<int64_t>(j) * crs] = acc[j];
  }
}

// bwd_weight pass 2: dw[e] = Σ_chunk partial[chunk, e], one warp per element e; lane l sums
// chunks l, l + 32, ... in order, then a fixed shuffle tree adds the lanes.
__global__ void __launch_bounds__(kThreads)
    conv2d_bwd_weight_reduce_kernel(float* __restrict__ dw, const float* __restrict__ partial,
                                    int64_t n_elems, int64_t n_chunks) {
  const int lane = threadIdx.x & 31;
  for (const int64_t e : grid_stride_warps(n_elems)) {  // e is warp-uniform
    float v = 0.f;
    for (int64_t c = lane; c < n_chunks; c += 32) v += partial[c * n_elems + e];
    v = warp_sum(v);
    if (lane == 0) dw[e] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Implicit GEMM (fwd and bwd_data), for layers too big for the tiled kernels' 48 KB and with
// enough channels and taps to fill a GEMM tile (selection: conv_hand_choice below). No im2col
// buffer: the A tile is gathered from the activations on the fly, zero where a tap falls in the
// padding (or, for bwd_data, on no output pixel).
//
//   fwd      : y[n, g·Og + col, p, q] = bias + Σ_k A[m][k] · B[k][col]
//              rows m = (n, p, q) < N·P·Q, columns col < Og, taps k = (ch, r, s) < Cg·R·S,
//              A[m][k] = x[n, g·Cg + ch, p·sh − ph + r·dh, q·sw − pw + s·dw],
//              B[k][col] = w[g·Og + col, ch, r, s] (= w[(g·Og + col)·K + k]).
//   bwd_data : dx[n, g·Cg + col, h, w] = Σ_k A[m][k] · B[k][col]   (the transposed problem)
//              rows m = (n, h, w) < N·H·W, columns col < Cg, taps k = (ch, r, s) < Og·R·S,
//              A[m][k] = dy[n, g·Og + ch, p, q] where p·sh = h + ph − r·dh and
//              q·sw = w + pw − s·dw (zero unless both divide and land in [0,P) × [0,Q)),
//              B[k][col] = w[g·Og + ch, col, r, s].
//
// Tiling: a block of 256 threads (16 × 16) owns a BM × BN output tile, BM = 16·TM rows and
// BN = 16·TN columns, for one group (blockIdx.z). It walks K in steps of BK = 16: the threads
// gather the A tile (BK × BM, stored k-major: As[k][m]) and the B tile (Bs[k][col]) into shared
// memory, then thread (tx, ty) accumulates rows tx·TM .. tx·TM + TM−1 and columns
// ty·TN .. ty·TN + TN−1 of the tile in registers (a TM × TN micro-tile; both operands are read
// as one float4/float2 per k). The global loads of the next K step are issued into registers
// before the current step's arithmetic, so they are in flight while it runs.
//
// Loading (all global loads guarded: rows ≥ M, columns ≥ the column count, taps ≥ K and taps
// in the padding read nothing and store 0): thread t gathers A rows m_l = t % BM (one row for
// the whole kernel, so its (n, p, q) is decoded once) at taps k_l = t / BM + (256 / BM)·i,
// i < TM — a warp reads 32 neighbouring pixels of one tap; and B taps k_l = t % BK at columns
// t / BK + 16·j, j < TN — a warp reads 16 neighbouring weights of two channels. Each thread keeps
// its taps as (ch, r, s) cursors advanced by BK per step with carries (no divisions in the
// loop).
//
// Determinism: each output is one thread's sum, starting from the bias (fwd) or 0 and adding
// k = 0, 1, ..., K−1 in order (a tap in the padding adds 0·w); no atomics, no split K. The fwd
// order is the direct kernel's (bias, then c, r, s).
//
// 32-bit index math: the selection requires N·P·Q, N·H·W, C·H·W, O·P·Q and O·Cg·R·S to fit in
// an int (conv_igemm_fits); an image's base offset is computed in 64 bits.
constexpr int kGemmBK = 16;
constexpr int kGemmThreads = 256;  // 16 x 16

// The tap cursor: k = (ch·R + r)·S + s with r < R, s < S. advance() adds the step
// dch·R·S + dr·S + ds (= BK) in mixed radix.
struct TapCursor {
  int ch, r, s;
  __device__ void init(int k, int R, int S) {
    ch = k / (R * S);
    const int rs = k - ch * R * S;
    r = rs / S;
    s = rs - r * S;
  }
  __device__ void advance(int dch, int dr, int ds, int R, int S) {
    s += ds;
    if (s >= S) {
      s -= S;
      ++r;
    }
    r += dr;  // r <= R before, dr < R: one carry at most
    if (r >= R) {
      r -= R;
      ++ch;
    }
    ch += dch;
  }
};

// v[0..V) = p[0..V) from shared memory, one vector load (p is V-float aligned).
template <int V>
__device__ __forceinline__ void load_smem_vec(float (&v)[V], const float* p) {
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x;
    v[1] = t.y;
    v[2] = t.z;
    v[3] = t.w;
  } else if constexpr (V == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x;
    v[1] = t.y;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = p[i];
  }
}

// kData = false: fwd (out = y, a = x, bias optional); kData = true: bwd_data (out = dx,
// a = dy, bias unused). Grid: (ceil(M / BM), ceil(cols / BN), G).
template <bool kData, int TM, int TN>
__global__ void __launch_bounds__(kGemmThreads)
    conv2d_igemm_kernel(float* __restrict__ out, const float* __restrict__ a,
                        const float* __restrict__ w, const float* __restrict__ bias, ConvDims d) {
  constexpr int BM = 16 * TM, BN = 16 * TN, BK = kGemmBK;
  constexpr int kRowsPerPass = kGemmThreads / BM;  // A taps loaded per pass
  static_assert(kRowsPerPass * TM == BK, "A tile: TM passes of 256 / BM taps cover BK");
  static_assert(kGemmThreads / BK == 16, "B tile: 16 columns per pass");
  __shared__ __align__(16) float As[BK][BM];
  __shared__ __align__(16) float Bs[BK][BN + 4];  // +4: fewer bank conflicts, rows stay 16-aligned

  const int tid = static_cast<int>(threadIdx.x);
  const int g = static_cast<int>(blockIdx.z);
  const int m0 = static_cast<int>(blockIdx.x) * BM;
  const int col0 = static_cast<int>(blockIdx.y) * BN;

  // The problem in GEMM terms (see the comment above).
  const int RS = d.R * d.S;
  const int row_h = kData ? d.H : d.P, row_w = kData ? d.W : d.Q;  // the output grid
  const int row_hw = row_h * row_w;
  const int M = d.N * row_hw;
  const int cols = kData ? d.Cg : d.Og;
  const int nch = kData ? d.Og : d.Cg;  // channels along K
  const int K = nch * RS;
  const int a_c = kData ? d.O : d.C, a_h = kData ? d.P : d.H, a_w = kData ? d.Q : d.W;
  const int a_hw = a_h * a_w;
  const int out_c = kData ? d.C : d.O;

  // This thread's A row, fixed for the whole kernel.
  const int m_l = tid % BM;
  const int m = m0 + m_l;
  const bool row_ok = m < M;
  int hb, wb;
  const float* a_img;
  {
    const int mc = row_ok ? m : 0;
    const int n = mc / row_hw, pix = mc - n * row_hw;
    const int y0 = pix / row_w, x0 = pix - y0 * row_w;
    // fwd: the input row/column of tap (0, 0); bwd_data: h + ph (minus r·dh gives p·sh).
    hb = kData ? y0 + d.ph : y0 * d.sh - d.ph;
    wb = kData ? x0 + d.pw : x0 * d.sw - d.pw;
    a_img = a + (static_cast<int64_t>(n) * a_c + static_cast<int64_t>(g) * nch) * a_hw;
  }

  // The step BK as (dch, dr, ds) for the cursors.
  const int dch = BK / RS, dr = (BK % RS) / d.S, ds = (BK % RS) % d.S;
  TapCursor ca[TM];  // A taps k_l = tid / BM + kRowsPerPass·i
#pragma unroll
  for (int i = 0; i < TM; ++i) ca[i].init(tid / BM + kRowsPerPass * i, d.R, d.S);
  const int kb_l = tid % BK;  // B tap of this thread
  TapCursor cb;
  cb.init(kb_l, d.R, d.S);
  int kb = kb_l;  // = (cb.ch·R + cb.r)·S + cb.s
  const float* wg = w + static_cast<int64_t>(g) * d.Og * d.Cg * RS;  // w[g·Og]

  float a_reg[TM], b_reg[TN];
  auto load_tiles = [&]() {
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const TapCursor& c = ca[i];
      float v = 0.f;
      if (row_ok && c.ch < nch) {
        if constexpr (!kData) {
          const int h = hb + c.r * d.dh, ww = wb + c.s * d.dw;
          if (h >= 0 && h < d.H && ww >= 0 && ww < d.W)
            v = __ldg(a_img + c.ch * a_hw + h * d.W + ww);
        } else {
          const int hp = hb - c.r * d.dh, wp = wb - c.s * d.dw;
          if (hp >= 0 && wp >= 0 && hp % d.sh == 0 && wp % d.sw == 0) {
            const int p = hp / d.sh, q = wp / d.sw;
            if (p < d.P && q < d.Q) v = __ldg(a_img + c.ch * a_hw + p * d.Q + q);
          }
        }
      }
      a_reg[i] = v;
    }
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int col = col0 + tid / BK + 16 * j;
      float v = 0.f;
      if (col < cols && kb < K)
        v = kData ? __ldg(wg + (cb.ch * d.Cg + col) * RS + cb.r * d.S + cb.s)
                  : __ldg(wg + col * K + kb);
      b_reg[j] = v;
    }
  };

  const int tx = tid % 16, ty = tid / 16;
  float acc[TM][TN];
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int col = col0 + ty * TN + j;
    const float b0 = (!kData && bias != nullptr && col < cols) ? __ldg(bias + g * d.Og + col) : 0.f;
#pragma unroll
    for (int i = 0; i < TM; ++i) acc[i][j] = b0;
  }

  load_tiles();
  for (int k0 = 0; k0 < K; k0 += BK) {  // the same trip count in every thread: barriers are safe
#pragma unroll
    for (int i = 0; i < TM; ++i) As[tid / BM + kRowsPerPass * i][m_l] = a_reg[i];
#pragma unroll
    for (int j = 0; j < TN; ++j) Bs[kb_l][tid / BK + 16 * j] = b_reg[j];
    __syncthreads();
    if (k0 + BK < K) {  // the next step's loads, in flight during this step's arithmetic
#pragma unroll
      for (int i = 0; i < TM; ++i) ca[i].advance(dch, dr, ds, d.R, d.S);
      cb.advance(dch, dr, ds, d.R, d.S);
      kb += BK;
      load_tiles();
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[TM], bv[TN];
      load_smem_vec<TM>(av, &As[kk][tx * TM]);
      load_smem_vec<TN>(bv, &Bs[kk][ty * TN]);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();  // before the next step overwrites the tiles
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int mo = m0 + tx * TM + i;
    if (mo >= M) continue;
    const int n = mo / row_hw, pix = mo - n * row_hw;
    float* o = out + (static_cast<int64_t>(n) * out_c + static_cast<int64_t>(g) * cols) * row_hw + pix;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int col = col0 + ty * TN + j;
      if (col < cols) o[col * row_hw] = acc[i][j];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// bwd_weight, implicit GEMM with a deterministic split K, for the layers the fwd / bwd_data
// implicit GEMM serves (selection: bwd_weight_igemm_plan below). Per group g:
//
//   dw[g·Og + row, col] = Σ_m A[m][row] · B[m][col]
//   rows row < Og (output channels), columns col = (ch, r, s) < Cg·R·S (= w's flat tap index),
//   reduction m = (n, p, q) < N·P·Q (= (n·P + p)·Q + q),
//   A[m][row] = dy[n, g·Og + row, p, q],
//   B[m][col] = x[n, g·Cg + ch, p·sh − ph + r·dh, q·sw − pw + s·dw] (0 in the padding).
//
// The output is small (64 × 288 for the bn_cnn 32->64 layer) and the reduction long (25 088 at
// batch 128), so the reduction is cut into n_chunks chunks of chunk_len positions (a multiple
// of BK; the counts depend on the shape only: bwd_weight_igemm_plan). Grid: (column tiles,
// row tiles · G, chunks). A block computes one BM × BN tile (BM = 16·TM rows, BN = 64 columns)
// over its chunk, K steps of BK = 16 positions through shared memory, a TM × 4 register
// micro-tile per thread, the next step's global loads in flight during the arithmetic (as in
// conv2d_igemm_kernel), and stores the tile to partial[chunk] (laid out as dw). Pass 2
// (conv2d_bwd_weight_chunk_sum_kernel) adds the chunks in order 0, 1, ...; with one chunk the
// tile goes straight to dw.
//
// Loading: thread t owns position m_l = t % BK of every step (one (n, p, q) cursor, advanced by
// BK with carries: no divisions in the loop) and loads rows u + 16·i (i < TM) of dy and columns
// u + 16·j (j < 4) of x, u = t / BK; a warp reads 16 neighbouring positions of two rows (two
// taps): contiguous in dy, stride sw in x. Rows ≥ Og, columns ≥ Cg·R·S, positions ≥ N·P·Q and
// taps in the padding read nothing and store 0. Each thread decodes its columns' (ch, r, s) once.
// Shared tiles are [BK][BM + 4] and [BK][BN + 4]: rows stay 16-byte aligned for the vector
// reads, and the stores (16 positions × 2 rows per warp) hit each bank at most twice.
//
// Determinism: each partial is one thread's fmaf chain over its chunk's positions in increasing
// m (a position in the padding or past N·P·Q adds a·0), each dw element the chunks' sum in chunk
// order; no atomics. The chunking depends on the shape only, so the bits do not depend on the
// device, the stream or the timing.
//
// 32-bit index math: the selection requires C·H·W and O·P·Q (offsets inside one image) and
// N·P·Q + 2·chunk_len in an int; image bases and output offsets are 64-bit.
template <int TM>
__global__ void __launch_bounds__(kGemmThreads)
    conv2d_bwd_weight_igemm_kernel(float* __restrict__ partial, const float* __restrict__ dy,
                                   const float* __restrict__ x, ConvDims d, int chunk_len,
                                   int row_tiles) {
  constexpr int TN = 4;
  constexpr int BM = 16 * TM, BN = 16 * TN, BK = kGemmBK;
  static_assert(kGemmThreads / BK == 16, "16 rows / columns per load pass");
  __shared__ __align__(16) float As[BK][BM + 4];
  __shared__ __align__(16) float Bs[BK][BN + 4];

  const int tid = static_cast<int>(threadIdx.x);
  const int col0 = static_cast<int>(blockIdx.x) * BN;
  const int row0 = static_cast<int>(blockIdx.y % row_tiles) * BM;
  const int g = static_cast<int>(blockIdx.y / row_tiles);
  const int chunk = static_cast<int>(blockIdx.z);

  const int RS = d.R * d.S;
  const int K = d.Cg * RS;  // columns
  const int PQ = d.P * d.Q, HW = d.H * d.W;
  const int M = d.N * PQ;  // reduction length
  const int m_begin = chunk * chunk_len;  // < M (the plan has no empty chunk)
  const int steps = (min(chunk_len, M - m_begin) + BK - 1) / BK;  // the same in every thread

  // This thread's load slots: position m_l of each step, rows / columns u + 16·i.
  const int m_l = tid % BK, u = tid / BK;
  int a_off[TM];  // (g·Og + row)·PQ inside an image of dy, or -1 past Og
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int row = row0 + u + 16 * i;
    a_off[i] = row < d.Og ? (g * d.Og + row) * PQ : -1;
  }
  int b_off[TN], b_h[TN], b_w[TN];  // (g·Cg + ch)·HW or -1 past K; r·dh − ph; s·dw − pw
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int col = col0 + u + 16 * j;
    const int cc = col < K ? col : 0;
    const int ch = cc / RS, rs = cc - ch * RS;
    const int r = rs / d.S, s = rs - r * d.S;
    b_off[j] = col < K ? (g * d.Cg + ch) * HW : -1;
    b_h[j] = r * d.dh - d.ph;
    b_w[j] = s * d.dw - d.pw;
  }
  // The position cursor (ch = n, r = p, s = q) and the step BK in that radix.
  TapCursor pos;
  pos.init(m_begin + m_l, d.P, d.Q);
  const int dn = BK / PQ, dp = (BK % PQ) / d.Q, dq = (BK % PQ) % d.Q;

  float a_reg[TM], b_reg[TN];
  auto load_tiles = [&]() {
    const bool pos_ok = pos.ch < d.N;  // false past N·P·Q (the last chunk's tail)
    const int64_t n = pos_ok ? pos.ch : 0;
    const float* dy_img = dy + n * d.O * PQ + pos.r * d.Q + pos.s;
    const float* x_img = x + n * d.C * HW;
#pragma unroll
    for (int i = 0; i < TM; ++i)
      a_reg[i] = (pos_ok && a_off[i] >= 0) ? __ldg(dy_img + a_off[i]) : 0.f;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      float v = 0.f;
      const int h = pos.r * d.sh + b_h[j], ww = pos.s * d.sw + b_w[j];
      if (pos_ok && b_off[j] >= 0 && h >= 0 && h < d.H && ww >= 0 && ww < d.W)
        v = __ldg(x_img + b_off[j] + h * d.W + ww);
      b_reg[j] = v;
    }
  };

  const int tx = tid % 16, ty = tid / 16;  // columns tx·4 + j, rows ty·TM + i
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  load_tiles();
  for (int step = 0; step < steps; ++step) {  // the same trip count in every thread
#pragma unroll
    for (int i = 0; i < TM; ++i) As[m_l][u + 16 * i] = a_reg[i];
#pragma unroll
    for (int j = 0; j < TN; ++j) Bs[m_l][u + 16 * j] = b_reg[j];
    __syncthreads();
    if (step + 1 < steps) {  // the next step's loads, in flight during this step's arithmetic
      pos.advance(dn, dp, dq, d.P, d.Q);
      load_tiles();
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[TM], bv[TN];
      load_smem_vec<TM>(av, &As[kk][ty * TM]);
      load_smem_vec<TN>(bv, &Bs[kk][tx * TN]);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();  // before the next step overwrites the tiles
  }

  float* out = partial + static_cast<int64_t>(chunk) * d.O * K;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int row = row0 + ty * TM + i;
    if (row >= d.Og) continue;
    float* o = out + static_cast<int64_t>(g * d.Og + row) * K;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int col = col0 + tx * TN + j;
      if (col < K) o[col] = acc[i][j];
    }
  }
}

// bwd_weight implicit GEMM, pass 2: dw[e] = Σ_chunk partial[chunk, e] in chunk order, one
// thread per element (neighbouring threads read neighbouring elements of each chunk).
__global__ void __launch_bounds__(kThreads)
    conv2d_bwd_weight_chunk_sum_kernel(float* __restrict__ dw, const float* __restrict__ partial,
                                       int64_t n_elems, int n_chunks) {
  for (const int64_t e : grid_stride(n_elems)) {
    float acc = partial[e];
#pragma unroll 8
    for (int c = 1; c < n_chunks; ++c) acc += partial[c * n_elems + e];
    dw[e] = acc;
  }
}

// Register block over channels: the largest of 8, 4, 2 that wastes at most a quarter of the
// extent in partially filled blocks (Og = 10 -> 4, 20 -> 8, 1 -> 1).
int channel_block(int extent) {
  for (int b : {8, 4, 2}) {
    const int blocks = (extent + b - 1) / b;
    if (extent >= b && (blocks * b - extent) * 4 <= extent) return b;
  }
  return 1;
}

// Calls f(std::integral_constant<int, B>{}) for B = block (1, 2, 4 or 8).
template <typename F>
void with_block(int block, F&& f) {
  switch (block) {
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    default:
      f(std::integral_constant<int, 1>{});
      break;
  }
}

// Register block over channels for the tiled fwd kernel, whose weight tile is padded with zero
// channels to a multiple of the block: the largest of 8, 4, 2 that pads at most an eighth of
// the extent (20 -> 4, 10 -> 2, 16 -> 8, 1 -> 1).
int tiled_channel_block(int extent) {
  for (int b : {8, 4, 2}) {
    const int blocks = (extent + b - 1) / b;
    if (extent >= b && (blocks * b - extent) * 8 <= extent) return b;
  }
  return 1;
}

// The tiled kernels' work split: `items` work items per (image, group) in chunks of at most
// kThreads, balanced, each chunk a block of whole warps. Sets t.chunks, t.threads, t.blocks.
template <typename Plan>
void set_chunks(Plan& t, int64_t items, const ConvDims& d) {
  t.chunks = (items + kThreads - 1) / kThreads;
  const int64_t per = (items + t.chunks - 1) / t.chunks;
  t.threads = static_cast<int>(std::min<int64_t>(kThreads, (per + 31) / 32 * 32));
  t.blocks = static_cast<int64_t>(d.N) * d.G * t.chunks;
}

// The tiled fwd kernel's launch geometry; ok = false when its shared-memory tile does not fit
// in the default 48 KB (or a count leaves the int range).
struct FwdTiledPlan {
  bool ok = false;
  int ob = 1, n_ob = 1, threads = 0;
  int64_t OgP = 0, Hp = 0, Wp = 0, smem = 0, n_pb = 0, chunks = 0, blocks = 0;
};
constexpr int kTiledPB = 2;  // pixels per thread of the tiled fwd kernel

FwdTiledPlan plan_fwd_tiled(const ConvDims& d) {
  constexpr int64_t kMaxSmem = 48 * 1024;
  FwdTiledPlan t;
  t.ob = tiled_channel_block(d.Og);
  t.n_ob = (d.Og + t.ob - 1) / t.ob;
  t.OgP = static_cast<int64_t>(t.n_ob) * t.ob;
  // The padded rows / columns actually read: (P−1)·sh + (R−1)·dh + 1 <= H + 2·ph.
  t.Hp = static_cast<int64_t>(d.P - 1) * d.sh + static_cast<int64_t>(d.R - 1) * d.dh + 1;
  t.Wp = static_cast<int64_t>(d.Q - 1) * d.sw + static_cast<int64_t>(d.S - 1) * d.dw + 1;
  const int64_t crs = static_cast<int64_t>(d.Cg) * d.R * d.S;
  t.smem = (crs * t.OgP + static_cast<int64_t>(d.Cg) * t.Hp * t.Wp) * 4;
  if (t.smem > kMaxSmem) return t;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q;
  t.n_pb = (pq + kTiledPB - 1) / kTiledPB;
  const int64_t items = t.n_ob * t.n_pb;
  set_chunks(t, items, d);
  t.ok = t.blocks <= INT_MAX && pq <= INT_MAX;
  return t;
}

// The tiled bwd_data kernel's launch geometry; ok = false when w[g] and one image's dy do not
// fit in the default 48 KB (or a count leaves the int range).
struct BwdDataTiledPlan {
  bool ok = false;
  int cb = 1, n_cb = 1, threads = 0;
  int64_t smem = 0, chunks = 0, blocks = 0;
};

BwdDataTiledPlan plan_bwd_data_tiled(const ConvDims& d) {
  constexpr int64_t kMaxSmem = 48 * 1024;
  BwdDataTiledPlan t;
  t.cb = channel_block(d.Cg);
  t.n_cb = (d.Cg + t.cb - 1) / t.cb;
  const int64_t crs = static_cast<int64_t>(d.Cg) * d.R * d.S;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q, hw = static_cast<int64_t>(d.H) * d.W;
  t.smem = (d.Og * crs + d.Og * pq) * 4;
  if (t.smem > kMaxSmem) return t;
  const int64_t items = t.n_cb * hw;
  set_chunks(t, items, d);
  t.ok = t.blocks <= INT_MAX && items <= INT_MAX;
  return t;
}

// The implicit GEMM's selection rule, for fwd (data = false) or bwd_data (data = true):
//  - it pays: K = (taps per output) >= 64, so a thread's 4x4 micro-tile runs at least 4 steps of
//    16, and the column count (Og for fwd, Cg for bwd_data) >= 16, so a 32- or 64-wide tile is
//    at least half (a quarter) full. Below that the direct kernel's per-output loops waste less.
//  - it fits: the int index math (N·P·Q, N·H·W, C·H·W, O·P·Q and the weight count in an int)
//    and the grid (column tiles and groups <= 65535).
// It is tried after the tiled kernels (which win on the small fmnist layers they were tuned on)
// and before the direct kernels.
bool igemm_selected(const ConvDims& d, bool data) {
  const int64_t RS = static_cast<int64_t>(d.R) * d.S;
  const int64_t K = (data ? d.Og : d.Cg) * RS;
  const int64_t cols = data ? d.Cg : d.Og;
  if (K < 64 || cols < 16) return false;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q, hw = static_cast<int64_t>(d.H) * d.W;
  const int64_t counts[] = {d.N * pq, d.N * hw, d.C * hw, d.O * pq,
                            static_cast<int64_t>(d.O) * d.Cg * RS};
  for (int64_t v : counts)
    if (v > INT_MAX) return false;
  const int64_t col_tiles = (cols + 31) / 32;  // the narrower tile: the most tiles
  return col_tiles <= 65535 && d.G <= 65535;
}

// Launches conv2d_igemm_kernel: 64-row tiles; 64-column tiles when there are more than 32
// columns, else 32-column tiles (Cg = 32 for the bn_cnn 32->64 layer's bwd_data).
template <bool kData>
void launch_igemm(const Tensor& out, const Tensor& a, const Tensor& w, const float* bias,
                  const ConvDims& d, cudaStream_t st) {
  constexpr int TM = 4;
  const int64_t M = static_cast<int64_t>(d.N) * (kData ? d.H * d.W : d.P * d.Q);
  const int cols = kData ? d.Cg : d.Og;
  const int TN = cols > 32 ? 4 : 2;
  const dim3 grid(static_cast<unsigned>((M + 16 * TM - 1) / (16 * TM)),
                  static_cast<unsigned>((cols + 16 * TN - 1) / (16 * TN)),
                  static_cast<unsigned>(d.G));
  const char* op = kData ? "conv2d_backward_data" : "conv2d";
  if (TN == 4) {
    conv2d_igemm_kernel<kData, TM, 4><<<grid, kGemmThreads, 0, st>>>(
        out.data<float>(), a.data<float>(), w.data<float>(), bias, d);
    IDEM_LAUNCH_CHECK(op);
  } else {
    conv2d_igemm_kernel<kData, TM, 2><<<grid, kGemmThreads, 0, st>>>(
        out.data<float>(), a.data<float>(), w.data<float>(), bias, d);
    IDEM_LAUNCH_CHECK(op);
  }
}

// The bwd_weight implicit GEMM's launch geometry (conv2d_bwd_weight_igemm_kernel); ok = false
// when it is not selected. The rule, like igemm_selected's:
//  - it pays: Og >= 16 rows (a 32- or 64-row tile at least half full) and Cg·R·S >= 32
//    columns (the 64-column tile at least half full). Below that (the fmnist CNN's first layer,
//    bn_cnn's 1->32 layer: 9 or 25 taps) the two-pass kernel wastes less.
//  - it fits: C·H·W and O·P·Q in an int (offsets inside one image), N·P·Q and Cg·R·S small
//    enough for the position and column cursors (<= INT_MAX / 2), the grid (row tiles · G <=
//    65535).
// The split of the N·P·Q positions depends on the shape only (never on the device): about
// kTargetBlocks blocks, each chunk at least kMinChunk positions (4 steps of 16) and at most
// kMaxChunks chunks, chunk_len a multiple of 16, no empty chunk.
struct BwdWeightGemmPlan {
  bool ok = false;
  int tm = 4, row_tiles = 0, col_tiles = 0, chunk_len = 0, chunks = 0;
};

BwdWeightGemmPlan bwd_weight_igemm_plan(const ConvDims& d) {
  constexpr int64_t kTargetBlocks = 512, kMinChunk = 64, kMaxChunks = 1024;
  BwdWeightGemmPlan t;
  const int64_t K = static_cast<int64_t>(d.Cg) * d.R * d.S;
  if (d.Og < 16 || K < 32) return t;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q, hw = static_cast<int64_t>(d.H) * d.W;
  const int64_t M = d.N * pq;
  // K bounds the int column cursor (a tile runs up to 63 columns past K before its check).
  if (M > INT_MAX / 2 || K > INT_MAX / 2 || static_cast<int64_t>(d.C) * hw > INT_MAX ||
      static_cast<int64_t>(d.O) * pq > INT_MAX)
    return t;
  t.tm = d.Og > 32 ? 4 : 2;
  const int64_t row_tiles = (d.Og + 16 * t.tm - 1) / (16 * t.tm);
  const int64_t col_tiles = (K + 63) / 64;
  if (row_tiles * d.G > 65535 || col_tiles > INT_MAX) return t;
  const int64_t tiles = row_tiles * col_tiles * d.G;
  int64_t chunks = (kTargetBlocks + tiles - 1) / tiles;
  chunks = std::max<int64_t>(1, std::min({chunks, kMaxChunks, (M + kMinChunk - 1) / kMinChunk}));
  int64_t len = (M + chunks - 1) / chunks;
  len = (len + kGemmBK - 1) / kGemmBK * kGemmBK;
  t.chunks = static_cast<int>((M + len - 1) / len);  // <= chunks: every chunk has a position
  t.chunk_len = static_cast<int>(len);
  t.row_tiles = static_cast<int>(row_tiles);
  t.col_tiles = static_cast<int>(col_tiles);
  t.ok = true;
  return t;
}

// Which kernel conv2d_hand runs for one direction: the single place the rule lives (used by
// the launches below and by conv2d_hand_kernel_name).
// bwd_weight per image (conv_wgrad_image.h): one group, few weights, an image of x and a band
// of dy's rows in 48 KB, and a batch of at least 32 images (below that the two-pass kernels
// were as fast at batch 8; not measured in between).
bool wgrad_image_selected(const ConvDims& d) {
  const int64_t weights = static_cast<int64_t>(d.O) * d.C * d.R * d.S;
  if (d.G != 1 || d.N < 32 || weights > kWgradImageMaxWeights) return false;
  const WgradImageSplit split = wgrad_image_split(d.N, d.P);
  return wgrad_image_smem_bytes(d.C, d.H, d.W, d.O, split.rows_per_band, d.Q) <=
         kWgradImageSmemBytes;
}

enum class HandKernel { tiled, implicit_gemm, direct, per_image, two_pass };

HandKernel choose_kernel(ConvDir dir, const ConvDims& d) {
  switch (dir) {
    case ConvDir::fwd:
      if (plan_fwd_tiled(d).ok) return HandKernel::tiled;
      return igemm_selected(d, false) ? HandKernel::implicit_gemm : HandKernel::direct;
    case ConvDir::bwd_data:
      if (plan_bwd_data_tiled(d).ok) return HandKernel::tiled;
      return igemm_selected(d, true) ? HandKernel::implicit_gemm : HandKernel::direct;
    case ConvDir::bwd_weight:
      if (bwd_weight_igemm_plan(d).ok) return HandKernel::implicit_gemm;
      if (wgrad_image_selected(d)) return HandKernel::per_image;
      break;
  }
  return HandKernel::two_pass;
}

void hand_fwd_tiled(const Tensor& y, const Tensor& x, const Tensor& w, const float* b,
                    const ConvDims& d, const FwdTiledPlan& t, cudaStream_t st) {
  // The kernel's float4 staging: every group's weights and every image's group of channels
  // start 16-byte aligned and are whole float4s (C = G·Cg, so whole images are too), and the
  // patch is the image (nothing padded, every row and column read).
  const int64_t hw = static_cast<int64_t>(d.H) * d.W, crs = static_cast<int64_t>(d.Cg) * d.R * d.S;
  const bool vec = is_aligned(x.data<float>(), 16) && is_aligned(w.data<float>(), 16) &&
                   (d.Og * crs) % 4 == 0 && (d.Cg * hw) % 4 == 0 && d.ph == 0 && d.pw == 0 &&
                   t.Hp == d.H && t.Wp == d.W;
  auto launch = [&](auto blk, auto ks) {
    conv2d_fwd_tiled_kernel<decltype(blk)::value, kTiledPB, decltype(ks)::value>
        <<<static_cast<unsigned>(t.blocks), t.threads, static_cast<size_t>(t.smem), st>>>(
            y.data<float>(), x.data<float>(), w.data<float>(), b, d, t.n_ob,
            static_cast<int>(t.OgP), static_cast<int>(t.n_pb), static_cast<int>(t.Hp),
            static_cast<int>(t.Wp), static_cast<int>(t.chunks), vec);
    IDEM_LAUNCH_CHECK("conv2d");
  };
  with_block(t.ob, [&](auto blk) {
    // The 5x5 and 3x3 kernels get the tap row unrolled at compile time.
    if (d.S == 5)
      launch(blk, std::integral_constant<int, 5>{});
    else if (d.S == 3)
      launch(blk, std::integral_constant<int, 3>{});
    else
      launch(blk, std::integral_constant<int, 0>{});
  });
}

void hand_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
              const ConvDims& d, cudaStream_t st) {
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  switch (choose_kernel(ConvDir::fwd, d)) {
    case HandKernel::tiled:
      hand_fwd_tiled(y, x, w, b, d, plan_fwd_tiled(d), st);
      return;
    case HandKernel::implicit_gemm:
      launch_igemm<false>(y, x, w, b, d, st);
      return;
    default:
      break;
  }
  const int ob = channel_block(d.Og);
  const int n_ob = (d.Og + ob - 1) / ob;
  const int64_t total = static_cast<int64_t>(d.N) * d.G * n_ob * d.P * d.Q;
  with_block(ob, [&](auto blk) {
    launch_grid_stride(IDEM_SITE("conv2d"), total, kThreads,
                       conv2d_fwd_direct_kernel<decltype(blk)::value>, y.data<float>(),
                       x.data<float>(), w.data<float>(), b, d, n_ob);
  });
}

void hand_bwd_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvDims& d,
                   cudaStream_t st) {
  const HandKernel k = choose_kernel(ConvDir::bwd_data, d);
  if (k == HandKernel::tiled) {
    const BwdDataTiledPlan t = plan_bwd_data_tiled(d);
    // float4 staging when every group's weights and every image's group of dy channels start
    // 16-byte aligned and are whole float4s.
    const int64_t pq = static_cast<int64_t>(d.P) * d.Q,
                  crs = static_cast<int64_t>(d.Cg) * d.R * d.S;
    const bool vec = is_aligned(dy.data<float>(), 16) && is_aligned(w.data<float>(), 16) &&
                     (d.Og * crs) % 4 == 0 && (d.Og * pq) % 4 == 0;
    auto launch = [&](auto blk, auto unit) {
      conv2d_bwd_data_tiled_kernel<decltype(blk)::value, decltype(unit)::value>
          <<<static_cast<unsigned>(t.blocks), t.threads, static_cast<size_t>(t.smem), st>>>(
              dx.data<float>(), dy.data<float>(), w.data<float>(), d, t.n_cb,
              static_cast<int>(t.chunks), vec);
      IDEM_LAUNCH_CHECK("conv2d_backward_data");
    };
    with_block(t.cb, [&](auto blk) {
      if (d.sh == 1 && d.sw == 1)
        launch(blk, std::true_type{});
      else
        launch(blk, std::false_type{});
    });
    return;
  }
  if (k == HandKernel::implicit_gemm) {
    launch_igemm<true>(dx, dy, w, nullptr, d, st);
    return;
  }
  const int cb = channel_block(d.Cg);
  const int n_cb = (d.Cg + cb - 1) / cb;
  const int64_t total = static_cast<int64_t>(d.N) * d.G * n_cb * d.H * d.W;
  with_block(cb, [&](auto blk) {
    launch_grid_stride(IDEM_SITE("conv2d_backward_data"), total, kThreads,
                       conv2d_bwd_data_direct_kernel<decltype(blk)::value>, dx.data<float>(),
                       dy.data<float>(), w.data<float>(), d, n_cb);
  });
}

// The implicit GEMM with a fixed split of the positions, then the chunks' ordered sum (or, with
// one chunk, the GEMM straight into dw). The scratch comes from the caching allocator.
void bwd_weight_igemm(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvDims& d,
                      const BwdWeightGemmPlan& t, cudaStream_t st) {
  const int64_t n_elems = static_cast<int64_t>(d.O) * d.Cg * d.R * d.S;
  Tensor partial;
  if (t.chunks > 1) partial = empty({static_cast<int64_t>(t.chunks), n_elems}, dw.options());
  float* out = t.chunks > 1 ? partial.data<float>() : dw.data<float>();
  const dim3 grid(static_cast<unsigned>(t.col_tiles), static_cast<unsigned>(t.row_tiles * d.G),
                  static_cast<unsigned>(t.chunks));
  if (t.tm == 4) {
    conv2d_bwd_weight_igemm_kernel<4><<<grid, kGemmThreads, 0, st>>>(
        out, dy.data<float>(), x.data<float>(), d, t.chunk_len, t.row_tiles);
    IDEM_LAUNCH_CHECK("conv2d_backward_weight");
  } else {
    conv2d_bwd_weight_igemm_kernel<2><<<grid, kGemmThreads, 0, st>>>(
        out, dy.data<float>(), x.data<float>(), d, t.chunk_len, t.row_tiles);
    IDEM_LAUNCH_CHECK("conv2d_backward_weight");
  }
  if (t.chunks > 1)
    launch_grid_stride(IDEM_SITE("conv2d_backward_weight"), n_elems, kThreads,
                       conv2d_bwd_weight_chunk_sum_kernel, dw.data<float>(),
                       partial.data<float>(), n_elems, t.chunks);
}

// The per-image kernel (one partial per block of images and band of rows), then the partials'
// sum by the two-pass kernels' reduce (a warp per weight: the lanes split the partials).
void bwd_weight_per_image(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvDims& d,
                          cudaStream_t st) {
  const int64_t n_elems = static_cast<int64_t>(d.O) * d.C * d.R * d.S;
  const WgradImageSplit split = wgrad_image_split(d.N, d.P);
  Tensor partial = empty({static_cast<int64_t>(split.blocks()), n_elems}, dw.options());
  const WgradImage a{dy.data<float>(), x.data<float>(), partial.data<float>(), d,
                     split.images_per_block, split.rows_per_band};
  launch_conv_wgrad_image(a, split, st, "conv2d_backward_weight");
  launch_grid_stride(IDEM_SITE("conv2d_backward_weight"), n_elems * 32, kThreads,
                     conv2d_bwd_weight_reduce_kernel, dw.data<float>(), partial.data<float>(),
                     n_elems, static_cast<int64_t>(split.blocks()));
}

// The two-pass kernels (partial sums per chunk of positions, then a warp per element).
void bwd_weight_two_pass(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvDims& d) {
  const int ob = channel_block(d.Og);
  const int n_ob = (d.Og + ob - 1) / ob;
  const int64_t crs = static_cast<int64_t>(d.Cg) * d.R * d.S;
  const int64_t pairs = static_cast<int64_t>(d.G) * n_ob * crs;
  const int64_t positions = static_cast<int64_t>(d.N) * d.P * d.Q;
  // Enough chunks for ~128K threads in pass 1, at most 1024 so pass 2 stays short.
  constexpr int64_t kTargetThreads = 131072, kMaxChunks = 1024;
  int64_t n_chunks = (kTargetThreads + pairs - 1) / pairs;
  n_chunks = std::max<int64_t>(1, std::min({n_chunks, kMaxChunks, positions}));
  const int64_t chunk_len = (positions + n_chunks - 1) / n_chunks;
  n_chunks = (positions + chunk_len - 1) / chunk_len;

  const int64_t n_elems = static_cast<int64_t>(d.O) * crs;
  Tensor partial = empty({n_chunks, n_elems}, dw.options());  // from the caching allocator
  const int64_t total = n_chunks * pairs;
  with_block(ob, [&](auto blk) {
    launch_grid_stride(IDEM_SITE("conv2d_backward_weight"), total, kThreads,
                       conv2d_bwd_weight_partial_kernel<decltype(blk)::value>,
                       partial.data<float>(), dy.data<float>(), x.data<float>(), d, n_ob,
                       chunk_len, n_chunks);
  });
  launch_grid_stride(IDEM_SITE("conv2d_backward_weight"), n_elems * 32, kThreads,
                     conv2d_bwd_weight_reduce_kernel, dw.data<float>(), partial.data<float>(),
                     n_elems, n_chunks);
}

}  // namespace

void conv2d_hand(ConvDir dir, const Tensor& out, const Tensor& a, const Tensor& b,
                 const Tensor& bias, const ConvShape& s) {
  const char* op = dir == ConvDir::fwd        ? "conv2d"
                   : dir == ConvDir::bwd_data ? "conv2d_backward_data"
                                              : "conv2d_backward_weight";
  if (out.numel() == 0) return;
  const ConvDims d = dims_of(s, op);
  set_device(out.device().index);
  const cudaStream_t st = current_stream();
  switch (dir) {
    case ConvDir::fwd:
      hand_fwd(out, a, b, bias, d, st);
      break;
    case ConvDir::bwd_data:
      hand_bwd_data(out, a, b, d, st);
      break;
    case ConvDir::bwd_weight:
      switch (choose_kernel(dir, d)) {
        case HandKernel::implicit_gemm:
          bwd_weight_igemm(out, a, b, d, bwd_weight_igemm_plan(d), st);
          break;
        case HandKernel::per_image:
          bwd_weight_per_image(out, a, b, d, st);
          break;
        default:
          bwd_weight_two_pass(out, a, b, d);
      }
      break;
  }
}

const char* conv2d_hand_kernel_name(ConvDir dir, const ConvShape& s) {
  const ConvDims d = dims_of(s, "conv2d_hand_kernel_name");
  switch (choose_kernel(dir, d)) {
    case HandKernel::tiled:
      return "tiled";
    case HandKernel::implicit_gemm:
      return "implicit_gemm";
    case HandKernel::direct:
      return "direct";
    case HandKernel::per_image:
      return "per_image";
    case HandKernel::two_pass:
      break;
  }
  return "two_pass";
}

// The two-pass bwd_weight kernels whatever the shape (contract: core/kernels/conv.h), for the
// benchmark's old-kernel line and the tests that compare the implicit GEMM against them.
void conv2d_bwd_weight_two_pass(const Tensor& dw, const Tensor& dy, const Tensor& x,
                                const ConvShape& s) {
  if (dw.numel() == 0) return;
  const ConvDims d = dims_of(s, "conv2d_backward_weight");
  set_device(dw.device().index);
  bwd_weight_two_pass(dw, dy, x, d);
}

void conv2d_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
                const ConvShape& s) {
  if (conv_backend() == ConvBackend::cudnn)
    conv2d_cudnn(ConvDir::fwd, y, x, w, bias, s);
  else
    conv2d_hand(ConvDir::fwd, y, x, w, bias, s);
}

void conv2d_bwd_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvShape& s) {
  if (conv_backend() == ConvBackend::cudnn)
    conv2d_cudnn(ConvDir::bwd_data, dx, dy, w, Tensor(), s);
  else
    conv2d_hand(ConvDir::bwd_data, dx, dy, w, Tensor(), s);
}

void conv2d_bwd_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvShape& s) {
  if (conv_backend() == ConvBackend::cudnn)
    conv2d_cudnn(ConvDir::bwd_weight, dw, dy, x, Tensor(), s);
  else
    conv2d_hand(ConvDir::bwd_weight, dw, dy, x, Tensor(), s);
}

#ifndef IDEM_WITH_CUDNN
void conv2d_cudnn(ConvDir, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                  const ConvShape&) {
  fail("conv2d",
       "the cuDNN path was not built (IDEM_CUDNN=OFF or cuDNN not found at configure "
       "time); use the hand-written kernels (IDEM_CONV=hand or "
       "idem::set_conv_backend(ConvBackend::hand)) or rebuild with -DIDEM_CUDNN=ON");
}
#endif

}  // namespace idem::cuda
