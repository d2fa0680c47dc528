// CUDA convolution: the hand-written direct kernels (cuda::conv2d_hand) and the run-time switch
// between them and cuDNN (cuda::conv2d_fwd / bwd_data / bwd_weight). Contract:
// core/kernels/conv.h; reference: core/cpu/conv.cpp (im2col + GEMM). The cuDNN path is
// cuda/vendor/cudnn_conv.cpp; a throwing fallback is at the end of this file.
//
// Direct (implicit) convolution, no im2col buffer: the networks idem trains (the fmnist CNN:
// 1->10 and 10->20 channels, 5x5) have a few channels and a tiny reduction, where a generic
// GEMM tile would be mostly empty. Every kernel is deterministic (no atomics):
//  - fwd, tiled (when a group's weights and one image's zero-padded input patch fit in 48 KB of
//    shared memory, as both fmnist layers do): one block per (n, g, chunk of work items) stages
//    both in shared memory once; a thread accumulates OB output channels x 2 pixels in
//    registers (one float4 weight load per tap for OB channels).
//  - fwd, direct (otherwise): one thread per (n, block of OB output channels, p, q); each input
//    tap it loads is reused for OB channels; weight reads are warp-uniform (broadcast).
//  - bwd_data: one thread per (n, block of CB input channels, h, w), gathering
//    dy[n, o, p, q]·w[o, c, r, s] over the taps with p·sh − ph + r·dh = h (and likewise w).
//    When a group's weights and one image's dy fit in 48 KB (both fmnist layers), a tiled
//    variant stages them in shared memory first and runs the same loops on them.
//  - bwd_weight: two passes. Pass 1: one thread per (chunk of the N·P·Q positions, block of OB
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

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;

// The extents as 32-bit ints for cheap index math (conv2d_hand checks that they fit);
// flat offsets are computed in 64 bits.
struct ConvDims {
  int N, C, H, W, O, R, S, P, Q;
  int sh, sw, ph, pw, dh, dw;
  int G, Cg, Og;
};

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
                            ConvDims d, int n_ob, int OgP, int n_pb, int Hp, int Wp, int chunks) {
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
template <int CB>
__global__ void __launch_bounds__(kThreads)
    conv2d_bwd_data_tiled_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                 const float* __restrict__ w, ConvDims d, int n_cb, int chunks) {
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
  block_stage(
      nw + d.Og * pq, [&](int i) { return i < nw ? __ldg(wg + i) : __ldg(dyg + (i - nw)); },
      [&](int i, float v) { ws[i] = v; });  // dys follows ws
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
  for (int r = 0; r < d.R; ++r) {
    const int hp = h + d.ph - r * d.dh;
    if (hp < 0 || hp % d.sh != 0) continue;
    const int p = hp / d.sh;
    if (p >= d.P) continue;
    for (int s = 0; s < d.S; ++s) {
      const int wp = wx + d.pw - s * d.dw;
      if (wp < 0 || wp % d.sw != 0) continue;
      const int q = wp / d.sw;
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

// The tiled fwd kernel when its shared-memory tile fits in the default 48 KB; false (and
// nothing launched) otherwise.
bool hand_fwd_tiled(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
                    const ConvDims& d, cudaStream_t st) {
  constexpr int kPB = 2;           // pixels per thread
  constexpr int64_t kMaxSmem = 48 * 1024;
  const int ob = tiled_channel_block(d.Og);
  const int n_ob = (d.Og + ob - 1) / ob;
  const int64_t OgP = static_cast<int64_t>(n_ob) * ob;
  // The padded rows / columns actually read: (P−1)·sh + (R−1)·dh + 1 <= H + 2·ph.
  const int64_t Hp = static_cast<int64_t>(d.P - 1) * d.sh + static_cast<int64_t>(d.R - 1) * d.dh + 1;
  const int64_t Wp = static_cast<int64_t>(d.Q - 1) * d.sw + static_cast<int64_t>(d.S - 1) * d.dw + 1;
  const int64_t crs = static_cast<int64_t>(d.Cg) * d.R * d.S;
  const int64_t smem = (crs * OgP + static_cast<int64_t>(d.Cg) * Hp * Wp) * 4;
  if (smem > kMaxSmem) return false;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q;
  const int64_t n_pb = (pq + kPB - 1) / kPB;
  const int64_t items = n_ob * n_pb;
  // Chunks of at most kThreads items per (n, g), balanced, in whole warps.
  const int64_t chunks = (items + kThreads - 1) / kThreads;
  const int64_t per = (items + chunks - 1) / chunks;
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (per + 31) / 32 * 32));
  const int64_t blocks = static_cast<int64_t>(d.N) * d.G * chunks;
  if (blocks > INT_MAX || pq > INT_MAX) return false;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  auto launch = [&](auto blk, auto ks) {
    conv2d_fwd_tiled_kernel<decltype(blk)::value, kPB, decltype(ks)::value>
        <<<static_cast<unsigned>(blocks), threads, static_cast<size_t>(smem), st>>>(
            y.data<float>(), x.data<float>(), w.data<float>(), b, d, n_ob,
            static_cast<int>(OgP), static_cast<int>(n_pb), static_cast<int>(Hp),
            static_cast<int>(Wp), static_cast<int>(chunks));
    IDEM_LAUNCH_CHECK("conv2d");
  };
  with_block(ob, [&](auto blk) {
    // The 5x5 and 3x3 kernels get the tap row unrolled at compile time.
    if (d.S == 5)
      launch(blk, std::integral_constant<int, 5>{});
    else if (d.S == 3)
      launch(blk, std::integral_constant<int, 3>{});
    else
      launch(blk, std::integral_constant<int, 0>{});
  });
  return true;
}

void hand_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
              const ConvDims& d, cudaStream_t st) {
  if (hand_fwd_tiled(y, x, w, bias, d, st)) return;
  const int ob = channel_block(d.Og);
  const int n_ob = (d.Og + ob - 1) / ob;
  const int64_t total = static_cast<int64_t>(d.N) * d.G * n_ob * d.P * d.Q;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  with_block(ob, [&](auto blk) {
    launch_grid_stride(IDEM_SITE("conv2d"), total, kThreads,
                       conv2d_fwd_direct_kernel<decltype(blk)::value>, y.data<float>(),
                       x.data<float>(), w.data<float>(), b, d, n_ob);
  });
}

// The tiled bwd_data kernel when w[g] and one image's dy fit in the default 48 KB; false (and
// nothing launched) otherwise.
bool hand_bwd_data_tiled(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvDims& d,
                         int cb, int n_cb, cudaStream_t st) {
  constexpr int64_t kMaxSmem = 48 * 1024;
  const int64_t crs = static_cast<int64_t>(d.Cg) * d.R * d.S;
  const int64_t pq = static_cast<int64_t>(d.P) * d.Q, hw = static_cast<int64_t>(d.H) * d.W;
  const int64_t smem = (d.Og * crs + d.Og * pq) * 4;
  if (smem > kMaxSmem) return false;
  const int64_t items = n_cb * hw;
  // Chunks of at most kThreads items per (n, g), balanced, in whole warps.
  const int64_t chunks = (items + kThreads - 1) / kThreads;
  const int64_t per = (items + chunks - 1) / chunks;
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (per + 31) / 32 * 32));
  const int64_t blocks = static_cast<int64_t>(d.N) * d.G * chunks;
  if (blocks > INT_MAX || items > INT_MAX) return false;
  with_block(cb, [&](auto blk) {
    conv2d_bwd_data_tiled_kernel<decltype(blk)::value>
        <<<static_cast<unsigned>(blocks), threads, static_cast<size_t>(smem), st>>>(
            dx.data<float>(), dy.data<float>(), w.data<float>(), d, n_cb, static_cast<int>(chunks));
    IDEM_LAUNCH_CHECK("conv2d_backward_data");
  });
  return true;
}

void hand_bwd_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvDims& d,
                   cudaStream_t st) {
  const int cb = channel_block(d.Cg);
  const int n_cb = (d.Cg + cb - 1) / cb;
  if (hand_bwd_data_tiled(dx, dy, w, d, cb, n_cb, st)) return;
  const int64_t total = static_cast<int64_t>(d.N) * d.G * n_cb * d.H * d.W;
  with_block(cb, [&](auto blk) {
    launch_grid_stride(IDEM_SITE("conv2d_backward_data"), total, kThreads,
                       conv2d_bwd_data_direct_kernel<decltype(blk)::value>, dx.data<float>(),
                       dy.data<float>(), w.data<float>(), d, n_cb);
  });
}

void hand_bwd_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvDims& d) {
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
      hand_bwd_weight(out, a, b, d);
      break;
  }
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
