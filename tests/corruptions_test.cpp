// The 15 CIFAR-10-C-style corruptions: each one's defining property (noise statistics, kernels
// that sum to 1, blur of a constant, JPEG quality, ...), ranges, determinism, batch-split
// invariance, argument errors, and how the damage grows with severity.
#include "data/corruptions.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "data/fmnist.h"
#include "tests/test_util.h"

namespace idem::data {
namespace {

using testing::bit_equal;
using testing::expect_error;

constexpr int64_t kSide = 28;

std::vector<float> vec(const Tensor& t) {
  return t.to_vector<float>();
}

// Smooth, natural-looking images with values in [0.2, 0.8] (no clipping for the pointwise
// corruptions): a few sinusoids with a per-image phase.
Tensor smooth_images(int64_t n) {
  Tensor t = empty({n, 1, kSide, kSide});
  float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < kSide; ++y)
      for (int64_t x = 0; x < kSide; ++x)
        p[(i * kSide + y) * kSide + x] =
            static_cast<float>(0.5 + 0.18 * std::sin(x / 4.0 + i) * std::cos(y / 5.0 - 0.3 * i) +
                               0.12 * std::sin((x + y) / 7.0 + 2.0 * i));
  return t;
}

Tensor constant_images(int64_t n, float v) {
  return full({n, 1, kSide, kSide}, v);
}

struct Stats {
  double mean = 0, var = 0;
};
Stats stats(const std::vector<float>& v) {
  Stats s;
  for (float x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (float x : v) s.var += (x - s.mean) * (x - s.mean);
  s.var /= static_cast<double>(v.size() - 1);
  return s;
}

double mse(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = vec(a), y = vec(b);
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += (x[i] - y[i]) * (x[i] - y[i]);
  return s / static_cast<double>(x.size());
}

const std::set<Corruption> kRandom = {Corruption::gaussian_noise,
                                      Corruption::shot_noise,
                                      Corruption::impulse_noise,
                                      Corruption::speckle_noise,
                                      Corruption::glass_blur,
                                      Corruption::motion_blur,
                                      Corruption::fog,
                                      Corruption::elastic_transform};

TEST(Corruptions, NamesAndParsing) {
  ASSERT_EQ(corruption_names().size(), static_cast<size_t>(kNumCorruptions));
  ASSERT_EQ(all_corruptions().size(), static_cast<size_t>(kNumCorruptions));
  for (Corruption c : all_corruptions()) EXPECT_EQ(parse_corruption(corruption_name(c)), c);
  EXPECT_EQ(corruption_names().front(), "gaussian_noise");
  EXPECT_EQ(corruption_names().back(), "jpeg_compression");
  EXPECT_EQ(parse_corruption("motion-blur"), Corruption::motion_blur);
  expect_error([] { parse_corruption("snow"); }, "corrupt", "unknown corruption 'snow'",
               "gaussian_noise, shot_noise, impulse_noise");
  expect_error([] { parse_corruption(""); }, "corrupt", "jpeg_compression");
}

TEST(Corruptions, RejectsBadArguments) {
  const Tensor x = smooth_images(2);
  for (int s : {0, 6, -1})
    expect_error([&] { corrupt(x, Corruption::fog, s, 0); }, "corrupt",
                 "fog: severity must be in 1..5, got " + std::to_string(s));
  expect_error([&] { corrupt(x.to(DType::f64), Corruption::contrast, 1, 0); }, "corrupt",
               "expected f32 images, got f64");
  expect_error(
      [&] {
        corrupt(zeros({2, 3, 28, 28}), Corruption::contrast, 1, 0);
      },
      "corrupt", "(N,1,H,W) or (N,H,W), got (2x3x28x28)");
  expect_error(
      [&] {
        corrupt(zeros({28, 28}), Corruption::contrast, 1, 0);
      },
      "corrupt", "got (28x28)");
  expect_error(
      [&] {
        corrupt(zeros({1, 4, 4}), Corruption::contrast, 1, 0);
      },
      "corrupt", "at least 8x8");
  expect_error([&] { corrupt(x, static_cast<Corruption>(99), 1, 0); }, "corrupt",
               "invalid corruption value 99");
  expect_error([&] { corrupt(x, Corruption::fog, 1, 0, -3); }, "corrupt", "index_offset");
  Tensor bad = x.clone_data();
  bad.data<float>()[kSide * kSide + 5] = std::nanf("");
  expect_error([&] { corrupt(bad, Corruption::brightness, 1, 0); }, "corrupt",
               "image 1 holds a non-finite value");
  expect_error([] { jpeg_roundtrip(nullptr, 8, 8, 0); }, "jpeg_roundtrip", "quality");
}

// Every corruption and severity: shape kept, values in [0,1] even for all-black and all-white
// images, same seed -> same bytes, other seed -> other bytes exactly for the random ones,
// (N,H,W) input == (N,1,H,W) input.
TEST(Corruptions, RangeDeterminismAndShapes) {
  const ImageDataset syn = synthetic_images(6, 3);
  Tensor x = empty({10, 1, kSide, kSide});
  x.slice0(0, 6).copy_(syn.images);
  x.slice0(6, 8).copy_(smooth_images(2));
  x.slice0(8, 9).copy_(constant_images(1, 0.0f));
  x.slice0(9, 10).copy_(constant_images(1, 1.0f));
  for (Corruption c : all_corruptions())
    for (int s = 1; s <= kNumSeverities; ++s) {
      const std::string what = corruption_name(c) + " severity " + std::to_string(s);
      const Tensor y = corrupt(x, c, s, 11);
      ASSERT_EQ(y.shape(), x.shape()) << what;
      for (float v : vec(y)) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << what << ": " << v;
      EXPECT_TRUE(bit_equal(y, corrupt(x, c, s, 11))) << what;
      EXPECT_EQ(!bit_equal(y, corrupt(x, c, s, 12)), kRandom.count(c) == 1) << what;
      const Tensor y3 = corrupt(x.view_as_shape({10, kSide, kSide}), c, s, 11);
      EXPECT_EQ(y3.shape(), (Shape{10, kSide, kSide})) << what;
      EXPECT_TRUE(bit_equal(y3.view_as_shape(x.shape()), y)) << what;
    }
  EXPECT_EQ(corrupt(zeros({0, 1, kSide, kSide}), Corruption::fog, 3, 0).numel(), 0);
}

// Image i's randomness depends on (seed, index_offset + i) only: corrupting in two chunks gives
// the same bytes as one call.
TEST(Corruptions, BatchSplitInvariance) {
  const Tensor x = synthetic_images(10, 4).images;
  for (Corruption c : kRandom) {
    const Tensor all = corrupt(x, c, 5, 99);
    const Tensor a = corrupt(x.slice0(0, 4), c, 5, 99, 0);
    const Tensor b = corrupt(x.slice0(4, 10), c, 5, 99, 4);
    EXPECT_TRUE(bit_equal(all.slice0(0, 4).clone_data(), a)) << corruption_name(c);
    EXPECT_TRUE(bit_equal(all.slice0(4, 10).clone_data(), b)) << corruption_name(c);
  }
  // Two identical images in one batch still get different noise.
  for (Corruption c : {Corruption::gaussian_noise, Corruption::shot_noise,
                       Corruption::impulse_noise, Corruption::speckle_noise, Corruption::fog}) {
    const Tensor y = corrupt(constant_images(2, 0.5f), c, 3, 99);
    EXPECT_FALSE(bit_equal(y.slice0(0, 1).clone_data(), y.slice0(1, 2).clone_data()))
        << corruption_name(c);
  }
}

TEST(Corruptions, ContrastKeepsTheMeanAndScalesDeviations) {
  const double c[5] = {.75, .5, .4, .3, .15};
  const Tensor x = smooth_images(4);
  const std::vector<float> xv = vec(x);
  for (int s = 1; s <= 5; ++s) {
    const std::vector<float> yv = vec(corrupt(x, Corruption::contrast, s, 0));
    for (int64_t i = 0; i < 4; ++i) {
      const int64_t n = kSide * kSide;
      const Stats sx = stats({xv.begin() + i * n, xv.begin() + (i + 1) * n});
      const Stats sy = stats({yv.begin() + i * n, yv.begin() + (i + 1) * n});
      EXPECT_NEAR(sy.mean, sx.mean, 1e-6) << "severity " << s;
      for (int64_t j = i * n; j < (i + 1) * n; ++j)
        ASSERT_NEAR(yv[j] - sx.mean, c[s - 1] * (xv[j] - sx.mean), 1e-6) << "severity " << s;
    }
  }
}

TEST(Corruptions, BrightnessAddsC) {
  const double c[5] = {.05, .1, .15, .2, .3};
  const Tensor x = smooth_images(2);
  const std::vector<float> xv = vec(x);
  for (int s = 1; s <= 5; ++s) {
    const std::vector<float> yv = vec(corrupt(x, Corruption::brightness, s, 0));
    for (size_t j = 0; j < xv.size(); ++j)
      ASSERT_NEAR(yv[j], std::min(1.0, xv[j] + c[s - 1]), 1e-6);  // clipped at white
  }
  EXPECT_EQ(vec(corrupt(constant_images(1, 0.9f), Corruption::brightness, 5, 0))[0], 1.0f);
}

TEST(Corruptions, GaussianNoiseHasVarianceCSquared) {
  const double c[5] = {.04, .06, .08, .09, .10};
  const Tensor x = constant_images(64, 0.5f);  // 50 176 pixels, 5σ from the clipping bounds
  for (int s = 1; s <= 5; ++s) {
    const Stats st = stats(vec(corrupt(x, Corruption::gaussian_noise, s, 7)));
    const double n = static_cast<double>(x.numel());
    EXPECT_NEAR(st.mean, 0.5, 4 * c[s - 1] / std::sqrt(n)) << "severity " << s;
    // The variance estimate's relative standard error is sqrt(2/n) = 0.6%.
    EXPECT_NEAR(st.var / (c[s - 1] * c[s - 1]), 1.0, 0.03) << "severity " << s;
  }
}

TEST(Corruptions, ShotNoiseIsPoissonWithTheMeanKept) {
  const double c[5] = {500, 250, 100, 75, 50};
  // x = 0.3 exercises the large-λ sampler (λ = 15..150), x = 0.05 the small one (λ = 2.5..25).
  for (float level : {0.3f, 0.05f})
    for (int s = 1; s <= 5; ++s) {
      const std::vector<float> y =
          vec(corrupt(constant_images(64, level), Corruption::shot_noise, s, 5));
      const Stats st = stats(y);
      const double var = level / c[s - 1], n = static_cast<double>(y.size());
      EXPECT_NEAR(st.mean, level, 4 * std::sqrt(var / n)) << "level " << level << " sev " << s;
      EXPECT_NEAR(st.var / var, 1.0, 0.05) << "level " << level << " severity " << s;
      for (size_t i = 0; i < 50; ++i) {  // values are counts / c
        const double k = y[i] * c[s - 1];
        ASSERT_NEAR(k, std::round(k), 1e-3 * c[s - 1] / 50) << y[i];
      }
    }
}

TEST(Corruptions, ImpulseNoiseFlipsAFractionCToBlackOrWhite) {
  const double c[5] = {.01, .02, .03, .05, .07};
  for (int s = 1; s <= 5; ++s) {
    const std::vector<float> y =
        vec(corrupt(constant_images(64, 0.5f), Corruption::impulse_noise, s, 3));
    double salt = 0, pepper = 0, kept = 0;
    for (float v : y) (v == 1.0f ? salt : v == 0.0f ? pepper : kept) += 1;
    const double n = static_cast<double>(y.size());
    EXPECT_EQ(salt + pepper + kept, n);
    const double tol = 4 * std::sqrt(c[s - 1] * (1 - c[s - 1]) / n);
    EXPECT_NEAR((salt + pepper) / n, c[s - 1], tol) << "severity " << s;
    EXPECT_NEAR(salt / n, c[s - 1] / 2, tol) << "severity " << s;
  }
}

TEST(Corruptions, SpeckleNoiseIsMultiplicative) {
  const double c[5] = {.06, .10, .12, .16, .20};
  for (int s = 1; s <= 5; ++s) {
    const Stats st =
        stats(vec(corrupt(constant_images(64, 0.5f), Corruption::speckle_noise, s, 2)));
    EXPECT_NEAR(st.mean, 0.5, 0.002);
    EXPECT_NEAR(st.var / (0.25 * c[s - 1] * c[s - 1]), 1.0, 0.03) << "severity " << s;
    // Black stays black.
    for (float v : vec(corrupt(constant_images(1, 0.0f), Corruption::speckle_noise, s, 2)))
      ASSERT_EQ(v, 0.0f);
  }
}

TEST(Corruptions, KernelsSumToOne) {
  auto sum = [](const std::vector<float>& k) {
    double s = 0;
    for (float v : k) s += v;
    return s;
  };
  for (double sigma : {0.05, 0.25, 0.4, 0.6, 0.7, 0.8, 1.0, 3.0}) {
    const std::vector<float> k = gaussian_kernel(sigma);
    const size_t r = static_cast<size_t>(4 * sigma + 0.5);  // scipy's truncate = 4
    ASSERT_EQ(k.size(), 2 * r + 1) << sigma;
    EXPECT_NEAR(sum(k), 1.0, 1e-6) << sigma;
    for (size_t i = 0; i < k.size(); ++i) EXPECT_EQ(k[i], k[k.size() - 1 - i]);
    EXPECT_EQ(*std::max_element(k.begin(), k.end()), k[r]);
  }
  EXPECT_EQ(gaussian_kernel(5.6, 3.0).size(), 35u);
  EXPECT_EQ(gaussian_kernel(0.0), std::vector<float>{1.0f});

  const double defocus[5][2] = {{.3, .4}, {.4, .5}, {.5, .6}, {1, .2}, {1.5, .1}};
  for (const auto& p : defocus) {
    const Kernel2d k = disk_kernel(p[0], p[1]);
    EXPECT_NEAR(sum(k.weights), 1.0, 1e-6) << p[0];
    // Sub-pixel disks are one pixel (3x3 after anti-aliasing); r = 1 and 1.5 reach 1 px (5x5).
    EXPECT_EQ(k.size, p[0] < 1 ? 3 : 5) << p[0];
    for (int64_t dy = -k.size / 2; dy <= k.size / 2; ++dy)
      for (int64_t dx = -k.size / 2; dx <= k.size / 2; ++dx) {
        EXPECT_FLOAT_EQ(k.at(dy, dx), k.at(-dy, dx));
        EXPECT_FLOAT_EQ(k.at(dy, dx), k.at(dx, dy));
      }
  }
  // r = 1.5: the 3x3 disk (x²+y² <= 2.25) holds 9 equal pixels before the tiny blur.
  EXPECT_NEAR(disk_kernel(1.5, 0.1).at(1, 1), 1.0 / 9, 1e-3);

  for (double radius : {6.0, 8.0, 9.0})
    for (double angle : {-45.0, 0.0, 30.0, 45.0, 90.0}) {
      const Kernel2d k = motion_kernel(radius, 2.0, angle);
      EXPECT_NEAR(sum(k.weights), 1.0, 1e-6);
      EXPECT_EQ(k.size, 2 * 2 * static_cast<int64_t>(radius) + 1);
    }
  // Angle 0 smears along +x, 90° along +y, with weights falling off from the centre.
  const Kernel2d k0 = motion_kernel(6, 1.5, 0);
  for (int64_t dy = -12; dy <= 12; ++dy)
    for (int64_t dx = -12; dx <= 12; ++dx)
      if (dy != 0 || dx < 0) {
        EXPECT_EQ(k0.at(dy, dx), 0.0f) << dy << "," << dx;
      }
  for (int64_t dx = 1; dx <= 12; ++dx) EXPECT_LT(k0.at(0, dx), k0.at(0, dx - 1));
  const Kernel2d k90 = motion_kernel(6, 1.5, 90);
  for (int64_t d = 0; d <= 12; ++d) EXPECT_EQ(k90.at(d, 0), k0.at(0, d));
}

TEST(Corruptions, BlursKeepAConstantImage) {
  const Tensor x = constant_images(3, 0.37f);
  for (Corruption c : {Corruption::gaussian_blur, Corruption::defocus_blur, Corruption::glass_blur,
                       Corruption::motion_blur, Corruption::zoom_blur, Corruption::pixelate,
                       Corruption::elastic_transform})
    for (int s = 1; s <= 5; ++s)
      for (float v : vec(corrupt(x, c, s, 1)))
        ASSERT_NEAR(v, 0.37f, 1e-6) << corruption_name(c) << " severity " << s;
  // JPEG: 128/255 is the level shift, an exact zero block.
  for (float v : vec(corrupt(constant_images(1, 128.0f / 255), Corruption::jpeg_compression, 5, 0)))
    ASSERT_EQ(v, 128.0f / 255);
}

// Correlating a unit impulse reproduces the (symmetric) kernel around it.
TEST(Corruptions, BlurOfAnImpulseIsTheKernel) {
  Tensor x = zeros({1, 1, kSide, kSide});
  x.data<float>()[14 * kSide + 14] = 1.0f;
  const std::vector<float> g = gaussian_kernel(1.0);  // gaussian_blur severity 5
  const std::vector<float> y = vec(corrupt(x, Corruption::gaussian_blur, 5, 0));
  for (int64_t dy = -4; dy <= 4; ++dy)
    for (int64_t dx = -4; dx <= 4; ++dx)
      EXPECT_NEAR(y[(14 + dy) * kSide + 14 + dx], g[dy + 4] * g[dx + 4], 1e-7);
  const Kernel2d d = disk_kernel(1.5, 0.1);  // defocus_blur severity 5
  const std::vector<float> z = vec(corrupt(x, Corruption::defocus_blur, 5, 0));
  double total = 0;
  for (float v : z) total += v;
  EXPECT_NEAR(total, 1.0, 1e-6);
  for (int64_t dy = -2; dy <= 2; ++dy)
    for (int64_t dx = -2; dx <= 2; ++dx)
      EXPECT_NEAR(z[(14 + dy) * kSide + 14 + dx], d.at(dy, dx), 1e-7);
}

TEST(Corruptions, MotionBlurSmearsAnImpulseAlongALine) {
  Tensor x = zeros({4, 1, kSide, kSide});
  for (int64_t i = 0; i < 4; ++i) x.data<float>()[i * kSide * kSide + 14 * kSide + 14] = 1.0f;
  const std::vector<float> y = vec(corrupt(x, Corruption::motion_blur, 3, 8));
  for (int64_t i = 0; i < 4; ++i) {
    double total = 0, peak = 0;
    int nonzero = 0;
    for (int64_t j = i * kSide * kSide; j < (i + 1) * kSide * kSide; ++j) {
      total += y[j];
      peak = std::max<double>(peak, y[j]);
      nonzero += y[j] > 1e-4;
    }
    EXPECT_NEAR(total, 1.0, 1e-5);  // the reach (12 px) stays inside the image
    EXPECT_LT(peak, 0.5);
    EXPECT_GE(nonzero, 5);
  }
}

TEST(Corruptions, JpegQuality) {
  const Tensor x = synthetic_images(8, 5).images;
  std::vector<float> rounded = vec(x);
  for (float& v : rounded) v = std::nearbyint(v * 255) / 255;
  auto roundtrip = [&](int q) {
    std::vector<float> y = vec(x);
    for (int64_t i = 0; i < 8; ++i) jpeg_roundtrip(y.data() + i * kSide * kSide, kSide, kSide, q);
    return y;
  };
  auto errors = [&](const std::vector<float>& y) {
    double max_err = 0, mean_err = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      max_err = std::max<double>(max_err, std::fabs(y[i] - rounded[i]));
      mean_err += std::fabs(y[i] - rounded[i]) / static_cast<double>(y.size());
    }
    return std::make_pair(max_err, mean_err);
  };
  const auto [max100, mean100] = errors(roundtrip(100));
  EXPECT_LE(max100, 2.0 / 255 + 1e-6);  // near-lossless: only coefficient rounding
  const auto [max40, mean40] = errors(roundtrip(40));
  EXPECT_GT(mean40, 3 * mean100);  // lossy ...
  EXPECT_LT(mean40, 0.03);         // ... but close
  EXPECT_GT(max40, 4.0 / 255);
  // Output is 8-bit.
  for (float v : roundtrip(58)) ASSERT_NEAR(v * 255, std::nearbyint(v * 255), 1e-3);
  // Sizes that are not multiples of 8 are padded, not cropped.
  std::vector<float> odd(9 * 13, 0.25f);
  jpeg_roundtrip(odd.data(), 9, 13, 50);
  for (float v : odd) EXPECT_NEAR(v, 0.25f, 2.0 / 255);
}

TEST(Corruptions, PixelateIsBlocky) {
  // Nearest-neighbour upsampling from floor(28c) columns leaves at most that many distinct ones.
  const int64_t side[5] = {26, 25, 23, 21, 18};
  Tensor noise = rand({1, 1, kSide, kSide}, 17);
  for (int s = 1; s <= 5; ++s) {
    const std::vector<float> y = vec(corrupt(noise, Corruption::pixelate, s, 0));
    std::set<std::vector<float>> cols, rows;
    for (int64_t c = 0; c < kSide; ++c) {
      std::vector<float> col;
      for (int64_t r = 0; r < kSide; ++r) col.push_back(y[r * kSide + c]);
      cols.insert(col);
      rows.insert(std::vector<float>(y.begin() + c * kSide, y.begin() + (c + 1) * kSide));
    }
    EXPECT_EQ(static_cast<int64_t>(cols.size()), side[s - 1]) << "severity " << s;
    EXPECT_EQ(static_cast<int64_t>(rows.size()), side[s - 1]) << "severity " << s;
  }
}

TEST(Corruptions, ElasticAndGlassKeepTheRangeAndChangeTheImage) {
  const Tensor x = smooth_images(4);
  const std::vector<float> xv = vec(x);
  const auto [lo, hi] = std::minmax_element(xv.begin(), xv.end());
  for (Corruption c : {Corruption::elastic_transform, Corruption::glass_blur})
    for (int s = 1; s <= 5; ++s) {
      const Tensor y = corrupt(x, c, s, 21);
      for (float v : vec(y)) ASSERT_TRUE(v >= *lo - 1e-6f && v <= *hi + 1e-6f) << v;
      EXPECT_GT(mse(x, y), 1e-5) << corruption_name(c) << " severity " << s;
    }
}

TEST(Corruptions, FogRaisesTheMeanOfDarkImages) {
  const Tensor x = synthetic_images(32, 6).images;  // dark background, bright strokes
  const double clean = stats(vec(x)).mean;
  double previous = clean;
  for (int s = 1; s <= 5; ++s) {
    const double m = stats(vec(corrupt(x, Corruption::fog, s, 4))).mean;
    EXPECT_GT(m, previous) << "severity " << s;
    previous = m;
  }
}

// Mean squared difference to the clean images per severity.
std::vector<double> damage(const Tensor& x, Corruption c) {
  std::vector<double> d;
  for (int s = 1; s <= 5; ++s) d.push_back(mse(x, corrupt(x, c, s, 2024)));
  return d;
}

std::string str(const std::vector<double>& d) {
  std::string s;
  for (double v : d) s += std::to_string(v) + " ";
  return s;
}

// The damage grows with severity, except where CIFAR-10-C's own parameters are not monotone in
// pixel error (documented in docs/task_fmnist.md): glass_blur's severity 3 and 5 blur more
// (σ .4 vs .25), which smooths the pixel swaps back towards the clean image, and
// elastic_transform's random-affine jitter shrinks with severity (.08 -> .03 of the side) while
// the local displacement field grows.
void check_ordering(const Tensor& x) {
  for (Corruption c : all_corruptions()) {
    const std::vector<double> d = damage(x, c);
    const std::string what = corruption_name(c) + ": " + str(d);
    EXPECT_GT(d[0], 0.0) << what;
    if (c == Corruption::glass_blur) {
      EXPECT_GT(d[3], std::max({d[0], d[1], d[2]})) << what;
      EXPECT_GT(d[4], d[2]) << what;
      EXPECT_GT(d[4], d[0]) << what;
    } else if (c == Corruption::elastic_transform) {
      for (int s = 1; s < 5; ++s) EXPECT_LT(d[s], d[s - 1]) << what;
    } else {
      for (int s = 1; s < 5; ++s) EXPECT_GE(d[s], d[s - 1] * (1 - 1e-6)) << what;
    }
  }
}

TEST(Corruptions, DamageGrowsWithSeverity) {
  check_ordering(synthetic_images(64, 10).images);
}

TEST(Corruptions, DamageGrowsWithSeverityOnFashionMnist) {
  FmnistData d;
  try {
    d = load_fmnist("", 0, 128);
  } catch (const Error& e) {
    GTEST_SKIP() << "Fashion-MNIST not installed: " << e.what();
  }
  check_ordering(d.test.images);
}

}  // namespace
}  // namespace idem::data
