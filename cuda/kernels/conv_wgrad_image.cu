// The per-image convolution weight gradient (cuda/kernels/conv_wgrad_image.h).
//
// How: block (i, b) stages one image's x (C·H·W) and the rows of band b of its dy (O channels
// of rows·Q, each padded by one float) in shared memory with coalesced loads, then thread t
// computes weights t, t + 256, … (o, c, r, s) by walking the band's output positions (p, q) in
// order and reading both operands from shared memory: the threads of a warp share a few output
// channels (one or two when a channel has 16 or more taps) and read neighbouring taps, so most
// reads are broadcasts. The valid columns
// of each tap (w = q·sw − pw + s·dw inside the image) are found once per thread, so the inner
// loop has no bounds test, and it runs four independent chains (the latency of one fmaf chain
// per thread is what bounds this kernel). The block repeats this for each of its images and
// stores one partial per weight; conv.cu's reduce kernel adds the partials in a fixed order.
// No atomics: the same bits on every run and every device.
#include "cuda/kernels/conv_wgrad_image.h"

#include "cuda/block_stage.cuh"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

__global__ void __launch_bounds__(kWgradImageThreads) conv_wgrad_image_kernel(WgradImage a) {
  extern __shared__ float smem[];
  const ConvDims& d = a.d;
  const int hw = d.H * d.W, pq = d.P * d.Q;
  const int p0 = blockIdx.y * a.rows_per_band, p1 = min(d.P, p0 + a.rows_per_band);
  const int band = (p1 - p0) * d.Q, pitch = a.rows_per_band * d.Q + 1;
  float* xs = smem;             // x[n]: C rows of H·W
  float* ds = smem + d.C * hw;  // dy[n] rows p0..p1-1: O rows of pitch
  const int rs = d.R * d.S, crs = d.C * rs, weights = d.O * crs;
  const int t = threadIdx.x;

  // This thread's weights, decoded once: offsets into the staged image, the first input row
  // offset, and the valid output columns [q_lo, q_hi) with their first input column.
  int d_off[kWgradImagePerThread], x_off[kWgradImagePerThread], hoff[kWgradImagePerThread],
      q_lo[kWgradImagePerThread], q_hi[kWgradImagePerThread], w_lo[kWgradImagePerThread];
  float acc[kWgradImagePerThread][4];
#pragma unroll
  for (int j = 0; j < kWgradImagePerThread; ++j) {
    const int e = t + j * kWgradImageThreads;
    const int ee = e < weights ? e : 0;
    const int o = ee / crs, k = ee - o * crs;
    const int c = k / rs, r = (k - c * rs) / d.S, s = k - c * rs - r * d.S;
    d_off[j] = o * pitch;
    x_off[j] = c * hw;
    hoff[j] = r * d.dh - d.ph;
    const int woff = s * d.dw - d.pw;  // w = q·sw + woff
    // 0 <= q·sw + woff < W  <=>  ceil(−woff / sw) <= q <= floor((W − 1 − woff) / sw)
    int lo = woff >= 0 ? 0 : (-woff + d.sw - 1) / d.sw;
    int hi = d.W - 1 - woff < 0 ? 0 : (d.W - 1 - woff) / d.sw + 1;
    lo = min(lo, d.Q);
    hi = max(lo, min(hi, d.Q));
    q_lo[j] = lo;
    q_hi[j] = hi;
    w_lo[j] = lo * d.sw + woff;
#pragma unroll
    for (int u = 0; u < 4; ++u) acc[j][u] = 0.f;
  }

  const int n0 = blockIdx.x * a.images_per_block;
  const int n1 = min(d.N, n0 + a.images_per_block);
  for (int n = n0; n < n1; ++n) {
    __syncthreads();  // the previous image's reads are done
    // Both operands in one block_stage pass: four loads in flight a thread (eight spill
    // beside this thread's decoded weights), so the staging costs a quarter of the memory round
    // trips of one per 256 floats (fmnist1 at batch 256: 4 instead of 15).
    const float* xn = a.x + static_cast<int64_t>(n) * d.C * hw;
    const float* dn = a.dy + static_cast<int64_t>(n) * d.O * pq + p0 * d.Q;
    const int nx = d.C * hw;
    block_stage<4>(
        nx + d.O * band,
        [&](int i) {
          if (i < nx) return __ldg(xn + i);
          i -= nx;
          const int o = i / band, m = i - o * band;
          return __ldg(dn + static_cast<int64_t>(o) * pq + m);
        },
        [&](int i, float v) {
          if (i < nx) {
            xs[i] = v;
          } else {
            i -= nx;
            const int o = i / band, m = i - o * band;
            ds[o * pitch + m] = v;
          }
        });
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kWgradImagePerThread; ++j) {
      if (t + j * kWgradImageThreads >= weights) continue;
      const float* dr = ds + d_off[j] + q_lo[j];
      const int len = q_hi[j] - q_lo[j], sw = d.sw;
      float c0 = acc[j][0], c1 = acc[j][1], c2 = acc[j][2], c3 = acc[j][3];
      for (int p = p0; p < p1; ++p, dr += d.Q) {
        const int h = p * d.sh + hoff[j];
        if (h < 0 || h >= d.H) continue;
        const float* xr = xs + x_off[j] + h * d.W + w_lo[j];
        int q = 0;
        for (; q + 3 < len; q += 4) {
          c0 = fmaf(dr[q + 0], xr[(q + 0) * sw], c0);
          c1 = fmaf(dr[q + 1], xr[(q + 1) * sw], c1);
          c2 = fmaf(dr[q + 2], xr[(q + 2) * sw], c2);
          c3 = fmaf(dr[q + 3], xr[(q + 3) * sw], c3);
        }
        if (q + 0 < len) c0 = fmaf(dr[q + 0], xr[(q + 0) * sw], c0);
        if (q + 1 < len) c1 = fmaf(dr[q + 1], xr[(q + 1) * sw], c1);
        if (q + 2 < len) c2 = fmaf(dr[q + 2], xr[(q + 2) * sw], c2);
      }
      acc[j][0] = c0, acc[j][1] = c1, acc[j][2] = c2, acc[j][3] = c3;
    }
  }
  float* out = a.partial + (static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y) * weights;
#pragma unroll
  for (int j = 0; j < kWgradImagePerThread; ++j) {
    const int e = t + j * kWgradImageThreads;
    if (e < weights) out[e] = (acc[j][0] + acc[j][1]) + (acc[j][2] + acc[j][3]);
  }
}

}  // namespace

void launch_conv_wgrad_image(const WgradImage& a, const WgradImageSplit& split, cudaStream_t stream,
                             const char* op) {
  const ConvDims& d = a.d;
  const size_t smem =
      static_cast<size_t>(wgrad_image_smem_bytes(d.C, d.H, d.W, d.O, a.rows_per_band, d.Q));
  const dim3 grid(static_cast<unsigned>(split.image_blocks), static_cast<unsigned>(split.bands));
  conv_wgrad_image_kernel<<<grid, kWgradImageThreads, smem, stream>>>(a);
  IDEM_LAUNCH_CHECK(op);
}

}  // namespace idem::cuda
