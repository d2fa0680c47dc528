// Test-time augmentations for the entropy-family adaptation methods (docs/it3.md, "Methods"):
// DeYO's patch shuffle and MEMO's random augmentations, for images (N,C,H,W) or (N,H,W).
//
// Randomness as in data/corruptions.h: image i of a call reads a Philox stream keyed by
// (seed, index_offset + i) only, so the result is a pure function of (image, seed, its index)
// and does not depend on the batch or the thread it ran in. The work is done on the CPU and the
// result moved back to the input's device (a host round trip per call on a GPU: these methods
// draw per batch, so they run eagerly anyway; it3/adapt_path.cpp keeps them off the graph path).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem::data {

// DeYO's pattern-destroying transform: the image is cut into a grid×grid grid of patches of
// ⌊H/grid⌋×⌊W/grid⌋ pixels, and the patches are permuted (a uniform random permutation per
// image, the same for every channel). Rows/columns past grid·⌊H/grid⌋ (when grid does not divide
// H or W) stay where they are. DeYO resizes instead; on 28×28 with grid 4 no pixel is left over.
// requires: f32 images (N,C,H,W) or (N,H,W), grid >= 1, H and W >= grid.
// ensures:  a new tensor of the same shape, dtype and device holding the same multiset of
//           pixel values per image and channel.
Tensor patch_shuffle(const Tensor& images, int grid, uint64_t seed, int64_t index_offset = 0);

// MEMO's augmentations: `copies` random views of every image, stacked copy-major: row a·N + i
// of the result (shape (copies·N, ...)) is copy a of image i. Each view, with its own draws:
//   horizontal flip       with probability 1/2
//   shift                 by (dy, dx), each uniform in {-2, ..., 2} pixels, zero fill
//   contrast              (v − mean)·c + mean, c uniform in [0.8, 1.2] (mean of that image)
//   Gaussian noise        σ = 0.02, with probability 1/2
// then every value clamped to [0, 1] (the images' range). A small, documented stand-in for
// MEMO's AugMix: the labels of 28×28 images survive every one of these.
// requires: f32 images (N,C,H,W) or (N,H,W), copies >= 1.
Tensor memo_augment(const Tensor& images, int copies, uint64_t seed, int64_t index_offset = 0);

}  // namespace idem::data
