// The convolution weight gradient for layers with few weights (internal to cuda/kernels/conv.cu,
// which routes to it): dw[o, c, r, s] = Σ_{n, p, q} dy[n, o, p, q] · x[n, c, h, w], h = p·sh −
// ph + r·dh, w = q·sw − pw + s·dw, for one group (groups = 1) of at most 1 024 weights, where a
// whole image of x and a band of dy's rows fit in 48 KB of shared memory — the fmnist CNN's
// first layer, 1 -> 10 channels, 5 x 5 taps over 28 x 28 images. There the two-pass kernels (a
// thread per chunk of positions and tap, reading x and dy from global memory with a stride) took
// 74 µs at batch 256 on an H100, against a few µs of arithmetic.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/kernels/conv_dims.h"

namespace idem::cuda {

// Threads a block; each takes up to kWgradImagePerThread weights.
constexpr int kWgradImageThreads = 256, kWgradImagePerThread = 4;
constexpr int kWgradImageMaxWeights = kWgradImageThreads * kWgradImagePerThread;
constexpr int64_t kWgradImageSmemBytes = 48 * 1024;

struct WgradImage {
  const float* dy;  // (N, O, P, Q)
  const float* x;   // (N, C, H, W)
  float* partial;   // (image blocks · bands, O·C·R·S): one partial sum per block
  ConvDims d;       // groups = 1
  int images_per_block, rows_per_band;
};

// How the work is cut, from the shape alone (the same split, hence the same bits, on every
// device): blocks of images (about 256 of them), and each image's output rows into bands so
// that there are about 512 blocks in all (more blocks, shorter chains: a block's threads are
// latency-bound on their fmaf chains). Block (i, b) sums the images of block i over the rows
// of band b.
struct WgradImageSplit {
  int images_per_block = 1, image_blocks = 0, rows_per_band = 1, bands = 0;
  int blocks() const { return image_blocks * bands; }
};
inline WgradImageSplit wgrad_image_split(int64_t N, int64_t P) {
  WgradImageSplit s;
  s.images_per_block = static_cast<int>((N + 255) / 256);
  s.image_blocks = static_cast<int>((N + s.images_per_block - 1) / s.images_per_block);
  const int64_t want = std::min<int64_t>(P, std::max<int64_t>(1, (512 + s.image_blocks - 1) / s.image_blocks));
  s.rows_per_band = static_cast<int>((P + want - 1) / want);
  s.bands = static_cast<int>((P + s.rows_per_band - 1) / s.rows_per_band);
  return s;
}

// Shared memory a block needs: one image of x, and `rows` rows of dy for every output channel,
// each channel's rows padded by one float (so the threads' reads of neighbouring output
// channels fall in different banks).
inline int64_t wgrad_image_smem_bytes(int64_t C, int64_t H, int64_t W, int64_t O, int64_t rows,
                                      int64_t Q) {
  return 4 * (C * H * W + O * (rows * Q + 1));
}

// One launch of split.blocks() blocks on `stream`. Each weight of a block is one thread's four
// fmaf chains (output columns q ≡ 0, 1, 2, 3 mod 4 of the valid ones) over the block's images in
// order, its band's rows in order, the columns in order; a tap in the padding adds nothing; the
// chains are added as (c0 + c1) + (c2 + c3). The caller checks the fit (groups = 1, at most
// kWgradImageMaxWeights weights, wgrad_image_smem_bytes with rows_per_band <=
// kWgradImageSmemBytes) and sums the partials; `op` names it in launch errors.
void launch_conv_wgrad_image(const WgradImage& a, const WgradImageSplit& split, cudaStream_t stream,
                             const char* op);

}  // namespace idem::cuda
