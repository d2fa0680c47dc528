// Image corruptions in the style of CIFAR-10-C (Hendrycks & Dietterich, "Benchmarking Neural
// Network Robustness to Common Corruptions and Perturbations", ICLR 2019), for single-channel
// images in [0,1]: the 15 corruptions of docs/task_fmnist.md at severities 1..5, with the
// CIFAR-10-C formulas and parameter values. Where 28x28 grayscale forces a choice (border modes,
// the fog map size, elastic parameters scaled to the image size, ...) docs/task_fmnist.md lists
// it next to the parameter table.
//
// Randomness: image i of a call uses a Philox stream keyed by (seed, corruption, index_offset + i)
// only, so the result for an image does not depend on the batch it was corrupted in (pass the
// image's position in the full data set as index_offset when corrupting in chunks, e.g. on
// several threads). The severities of one corruption read the same stream, so the noise fields,
// blur angles, glass offsets, plasma and affine jitter are the same numbers scaled differently
// ("common random numbers"; only the Poisson sampler's rejection loop decouples), which makes
// comparisons between severities less noisy.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace idem::data {

// In the order of docs/task_fmnist.md's table (and of corruption_names()).
enum class Corruption {
  gaussian_noise,
  shot_noise,
  impulse_noise,
  speckle_noise,
  gaussian_blur,
  defocus_blur,
  glass_blur,
  motion_blur,
  zoom_blur,
  fog,
  brightness,
  contrast,
  elastic_transform,
  pixelate,
  jpeg_compression,
};

constexpr int kNumCorruptions = 15;
constexpr int kNumSeverities = 5;

// "gaussian_noise", "shot_noise", ..., "jpeg_compression" (index = enum value).
const std::vector<std::string>& corruption_names();
const std::vector<Corruption>& all_corruptions();
const std::string& corruption_name(Corruption c);
// Exact names; '-' is accepted for '_'. Unknown names throw idem::Error listing the valid ones.
Corruption parse_corruption(const std::string& name);

// requires: images f32, shape (N,1,H,W) or (N,H,W), H and W >= 8, finite values (any device:
//           the work is done on the CPU and the result moved back); severity in 1..5.
// ensures:  a new tensor of the same shape, dtype and device, every value in [0,1].
Tensor corrupt(const Tensor& images, Corruption c, int severity, uint64_t seed,
               int64_t index_offset = 0);

// ---- building blocks, exposed so that tests can check them ----

// 1-D Gaussian weights exp(-x²/2σ²) for x in [-r, r], r = int(truncate·σ + 0.5) (scipy's
// gaussian_filter), normalised to sum 1. σ <= 0 gives {1}.
std::vector<float> gaussian_kernel(double sigma, double truncate = 4.0);

// A square correlation kernel with odd side `size`, centred at (size/2, size/2), row-major.
struct Kernel2d {
  int64_t size = 1;
  std::vector<float> weights{1.0f};
  float at(int64_t dy, int64_t dx) const {  // offsets from the centre
    return weights[static_cast<size_t>((dy + size / 2) * size + dx + size / 2)];
  }
};

// CIFAR-10-C's defocus kernel: the disk x²+y² <= radius² on the integer grid, normalised, then
// blurred by a 3x3 Gaussian of σ = alias_blur (cv2.GaussianBlur); all-zero borders trimmed.
// Sums to 1.
Kernel2d disk_kernel(double radius, double alias_blur);

// ImageMagick's motion-blur kernel (what CIFAR-10-C calls): 2·ceil(radius)+1 taps at distances
// i = 0, 1, ... along the direction angle_deg (x right, y down), tap i at
// (round(i·sin), round(i·cos)) as (dy, dx), weighted exp(-i²/2σ²); normalised to sum 1. One-sided:
// a pixel averages itself with pixels "behind" it, as a moving camera does.
Kernel2d motion_kernel(double radius, double sigma, double angle_deg);

// JPEG baseline round trip of one grayscale image in place: values rounded to 8 bits, 8x8 DCT,
// the standard luminance table (ITU T.81 Annex K) scaled by `quality` as libjpeg does
// (jpeg_set_quality, baseline: entries clamped to 1..255), rounding quantisation, inverse DCT,
// rounding to 8 bits; edge blocks are padded by replicating the last row/column like libjpeg.
// requires: quality in 1..100.
void jpeg_roundtrip(float* image, int64_t h, int64_t w, int quality);

}  // namespace idem::data
