// The 15 CIFAR-10-C corruptions for single-channel images. Contract: data/corruptions.h; the
// parameter table and the choices made for 28x28 grayscale: docs/task_fmnist.md.
//
// Structure: a Corrupter is built once per call (parameters, kernels, index tables, scratch
// images), then run image by image with that image's own random stream, so the per-image work
// allocates nothing and costs O(pixels x kernel taps). (This file is over 600 lines because it is
// one table of fifteen small algorithms that share the same filtering helpers.)
#include "data/corruptions.h"

#include <algorithm>
#include <cmath>

#include "core/philox.h"
#include "data/image_rng.h"

namespace idem::data {

namespace {

constexpr const char* kOp = "corrupt";

// ---- parameters per severity 1..5 (CIFAR-10-C values; docs/task_fmnist.md) ----
constexpr double kGaussianNoise[5] = {.04, .06, .08, .09, .10};
constexpr double kShotNoise[5] = {500, 250, 100, 75, 50};
constexpr double kImpulseNoise[5] = {.01, .02, .03, .05, .07};
constexpr double kSpeckleNoise[5] = {.06, .10, .12, .16, .20};
constexpr double kGaussianBlur[5] = {.4, .6, .7, .8, 1.0};
constexpr double kDefocus[5][2] = {
    {.3, .4}, {.4, .5}, {.5, .6}, {1, .2}, {1.5, .1}};  // radius, alias σ
struct GlassParams {
  double sigma;
  int delta, iterations;
};
constexpr GlassParams kGlass[5] = {{.05, 1, 1}, {.25, 1, 1}, {.4, 1, 1}, {.25, 1, 2}, {.4, 1, 2}};
constexpr double kMotion[5][2] = {{6, 1}, {6, 1.5}, {6, 2}, {8, 2}, {9, 2.5}};  // radius, σ
// Zoom factors 1.00, 1.01, ... below z (np.arange(1, z, 0.01) as intended: 6, 11, 16, 21, 26).
constexpr int kZoomCount[5] = {6, 11, 16, 21, 26};
constexpr double kFog[5][2] = {{.2, 3}, {.5, 3}, {.75, 2.5}, {1, 2}, {1.5, 1.75}};  // a, decay
constexpr double kBrightness[5] = {.05, .1, .15, .2, .3};
constexpr double kContrast[5] = {.75, .5, .4, .3, .15};
// Elastic (alpha, sigma, affine) as fractions of the image side, CIFAR-10-C's IMSIZE multiples:
// at 28x28 that is alpha 0/1.4/2.24/2.8/2.8 px, sigma 0/5.6/1.68/1.12/0.84 px and affine
// corner jitter 2.24/1.96/1.68/1.4/0.84 px.
constexpr double kElastic[5][3] = {
    {0, 0, .08}, {.05, .2, .07}, {.08, .06, .06}, {.1, .04, .05}, {.1, .03, .03}};
constexpr double kPixelate[5] = {.95, .9, .85, .75, .65};
constexpr int kJpegQuality[5] = {80, 65, 58, 50, 40};

// Randomness: ImageRng (data/image_rng.h), a Philox stream per image.


// ---------------------------------------------------------------------------------------------
// Filtering helpers.

// nearest: aaa|abcd|ddd (scipy 'nearest', ImageMagick 'edge'); reflect: ba|abcd|dc (scipy
// 'reflect'); reflect101: cb|abcd|cb (OpenCV's default, scipy 'mirror').
enum class Border { nearest, reflect, reflect101 };

int64_t border_index(int64_t i, int64_t n, Border b) {
  if (i >= 0 && i < n) return i;
  if (n == 1) return 0;
  switch (b) {
    case Border::nearest:
      return i < 0 ? 0 : n - 1;
    case Border::reflect: {
      const int64_t p = 2 * n;
      i = ((i % p) + p) % p;
      return i < n ? i : p - 1 - i;
    }
    case Border::reflect101: {
      const int64_t p = 2 * n - 2;
      i = ((i % p) + p) % p;
      return i < n ? i : p - i;
    }
  }
  return 0;
}

// Bilinear sample at (fy, fx) with per-neighbour border handling (cv2.remap / map_coordinates).
float bilinear(const float* img, int64_t h, int64_t w, double fy, double fx, Border b) {
  const double y0f = std::floor(fy), x0f = std::floor(fx);
  // Far-away coordinates (hostile parameters) are clamped before the integer conversion.
  const int64_t y0 = static_cast<int64_t>(std::clamp(y0f, -4.0 * h, 4.0 * h));
  const int64_t x0 = static_cast<int64_t>(std::clamp(x0f, -4.0 * w, 4.0 * w));
  const float wy = static_cast<float>(fy - y0f), wx = static_cast<float>(fx - x0f);
  const int64_t ya = border_index(y0, h, b), yb = border_index(y0 + 1, h, b);
  const int64_t xa = border_index(x0, w, b), xb = border_index(x0 + 1, w, b);
  const float top = img[ya * w + xa] + wx * (img[ya * w + xb] - img[ya * w + xa]);
  const float bot = img[yb * w + xa] + wx * (img[yb * w + xb] - img[yb * w + xa]);
  return top + wy * (bot - top);
}

// A separable correlation with a 1-D kernel. Each line is first copied into a padded buffer
// (border indices precomputed), so the inner loops are contiguous and vectorise.
class Separable {
 public:
  void init(std::vector<float> k, int64_t h, int64_t w, Border b) {
    k_ = std::move(k);
    h_ = h;
    w_ = w;
    r_ = static_cast<int64_t>(k_.size()) / 2;
    pad_cols_.resize(static_cast<size_t>(w + 2 * r_));
    pad_rows_.resize(static_cast<size_t>(h + 2 * r_));
    for (int64_t i = 0; i < w + 2 * r_; ++i) pad_cols_[i] = border_index(i - r_, w, b);
    for (int64_t i = 0; i < h + 2 * r_; ++i) pad_rows_[i] = border_index(i - r_, h, b);
    line_.resize(static_cast<size_t>(w + 2 * r_));
  }
  // out = K_rows ⋆ (K_cols ⋆ in); tmp is scratch of h*w.
  void apply(const float* in, float* tmp, float* out) {
    const int64_t n = static_cast<int64_t>(k_.size());
    if (n == 1) {
      std::copy(in, in + h_ * w_, out);
      return;
    }
    for (int64_t y = 0; y < h_; ++y) {
      const float* row = in + y * w_;
      for (size_t i = 0; i < line_.size(); ++i) line_[i] = row[pad_cols_[i]];
      float* t = tmp + y * w_;
      std::fill(t, t + w_, 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float kj = k_[j];
        const float* src = line_.data() + j;
        for (int64_t x = 0; x < w_; ++x) t[x] += kj * src[x];
      }
    }
    std::fill(out, out + h_ * w_, 0.0f);
    for (int64_t y = 0; y < h_; ++y) {
      float* o = out + y * w_;
      for (int64_t j = 0; j < n; ++j) {
        const float* row = tmp + pad_rows_[y + j] * w_;
        const float kj = k_[j];
        for (int64_t x = 0; x < w_; ++x) o[x] += kj * row[x];
      }
    }
  }

 private:
  std::vector<float> k_{1.0f};
  std::vector<int64_t> pad_rows_, pad_cols_;
  std::vector<float> line_;
  int64_t h_ = 0, w_ = 0, r_ = 0;
};

struct Tap {
  int64_t dy, dx;
  float w;
};

// A sparse 2-D correlation over a list of taps, with border indices precomputed per tap.
class Correlate2d {
 public:
  void init(const std::vector<Tap>& taps, int64_t h, int64_t w, Border b) {
    taps_ = taps;
    h_ = h;
    w_ = w;
    rows_.resize(taps.size() * static_cast<size_t>(h));
    cols_.resize(taps.size() * static_cast<size_t>(w));
    for (size_t t = 0; t < taps.size(); ++t) {
      for (int64_t y = 0; y < h; ++y) rows_[t * h + y] = border_index(y + taps[t].dy, h, b);
      for (int64_t x = 0; x < w; ++x) cols_[t * w + x] = border_index(x + taps[t].dx, w, b);
    }
  }
  void apply(const float* in, float* out) const {
    std::fill(out, out + h_ * w_, 0.0f);
    for (size_t t = 0; t < taps_.size(); ++t) {
      const float wt = taps_[t].w;
      const int64_t* cols = &cols_[t * w_];
      for (int64_t y = 0; y < h_; ++y) {
        const float* row = in + rows_[t * h_ + y] * w_;
        float* o = out + y * w_;
        for (int64_t x = 0; x < w_; ++x) o[x] += wt * row[cols[x]];
      }
    }
  }

 private:
  std::vector<Tap> taps_;
  std::vector<int64_t> rows_, cols_;
  int64_t h_ = 0, w_ = 0;
};

std::vector<Tap> taps_of(const Kernel2d& k) {
  std::vector<Tap> taps;
  const int64_t r = k.size / 2;
  for (int64_t dy = -r; dy <= r; ++dy)
    for (int64_t dx = -r; dx <= r; ++dx)
      if (k.at(dy, dx) != 0.0f) taps.push_back({dy, dx, k.at(dy, dx)});
  return taps;
}

// ImageMagick MotionBlurImage's taps (unnormalised weights are fine: normalised here).
void motion_taps(double radius, double sigma, double angle_deg, std::vector<Tap>& taps) {
  const int64_t width = 2 * static_cast<int64_t>(std::ceil(radius)) + 1;
  const double a = angle_deg * 3.14159265358979323846 / 180.0;
  taps.clear();
  double total = 0;
  for (int64_t i = 0; i < width; ++i) {
    const double wgt = std::exp(-static_cast<double>(i * i) / (2 * sigma * sigma));
    taps.push_back({static_cast<int64_t>(std::ceil(i * std::sin(a) - 0.5)),
                    static_cast<int64_t>(std::ceil(i * std::cos(a) - 0.5)),
                    static_cast<float>(wgt)});
    total += wgt;
  }
  for (Tap& t : taps) t.w = static_cast<float>(t.w / total);
}

// One axis of PIL's Image.resize(..., BOX): output pixel o averages the input pixels whose
// centres fall in its box [o·s, (o+1)·s), s = n_in / n_out (for upsampling: the nearest pixel).
struct Resample1d {
  std::vector<int64_t> start, count;
  std::vector<float> w;  // count[o] weights from offset o*stride
  int64_t stride = 0, n_out = 0;

  void init(int64_t n_in, int64_t n_out_) {
    n_out = n_out_;
    const double scale = static_cast<double>(n_in) / n_out, fscale = std::max(scale, 1.0);
    const double support = 0.5 * fscale;
    stride = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
    start.assign(n_out, 0);
    count.assign(n_out, 0);
    w.assign(static_cast<size_t>(n_out * stride), 0.0f);
    for (int64_t o = 0; o < n_out; ++o) {
      const double center = (o + 0.5) * scale;
      const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(center - support + 0.5));
      const int64_t hi = std::min<int64_t>(n_in, static_cast<int64_t>(center + support + 0.5));
      double total = 0;
      for (int64_t i = lo; i < hi && i - lo < stride; ++i) {
        const double x = (i - center + 0.5) / fscale;
        const double v = (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;  // PIL's box_filter
        w[o * stride + (i - lo)] = static_cast<float>(v);
        total += v;
      }
      start[o] = lo;
      count[o] = std::min(hi - lo, stride);
      if (total > 0)
        for (int64_t j = 0; j < count[o]; ++j) w[o * stride + j] /= static_cast<float>(total);
    }
  }
};

// out (h_out x w_out) = resample of in (h_in x w_in): along x with rx, then along y with ry.
void resample2d(const float* in, int64_t h_in, int64_t w_in, const Resample1d& ry,
                const Resample1d& rx, float* tmp, float* out) {
  for (int64_t y = 0; y < h_in; ++y)
    for (int64_t o = 0; o < rx.n_out; ++o) {
      float s = 0;
      for (int64_t j = 0; j < rx.count[o]; ++j)
        s += rx.w[o * rx.stride + j] * in[y * w_in + rx.start[o] + j];
      tmp[y * rx.n_out + o] = s;
    }
  for (int64_t o = 0; o < ry.n_out; ++o)
    for (int64_t x = 0; x < rx.n_out; ++x) {
      float s = 0;
      for (int64_t j = 0; j < ry.count[o]; ++j)
        s += ry.w[o * ry.stride + j] * tmp[(ry.start[o] + j) * rx.n_out + x];
      out[o * rx.n_out + x] = s;
    }
}

// One axis of clipped_zoom: output o samples the centre crop of side ceil(n/z), zoomed by z with
// scipy.ndimage.zoom(order=1) and trimmed back to n, between input lo[o] and lo[o]+1.
struct ZoomAxis {
  std::vector<int64_t> lo, hi;
  std::vector<float> frac;

  void init(int64_t n, double z) {
    const int64_t crop = static_cast<int64_t>(std::ceil(n / z));
    const int64_t top = (n - crop) / 2;
    const int64_t zoomed = static_cast<int64_t>(std::nearbyint(crop * z));
    const int64_t trim = (zoomed - n) / 2;
    lo.resize(n);
    hi.resize(n);
    frac.resize(n);
    for (int64_t o = 0; o < n; ++o) {
      const double c = zoomed > 1 ? (o + trim) * static_cast<double>(crop - 1) / (zoomed - 1) : 0;
      const int64_t f = std::min<int64_t>(static_cast<int64_t>(std::floor(c)), crop - 1);
      lo[o] = top + f;
      hi[o] = top + std::min<int64_t>(f + 1, crop - 1);
      frac[o] = static_cast<float>(c - f);
    }
  }
};

// CIFAR-10-C's plasma_fractal (diamond-square on a torus) into map (n x n, n a power of two),
// normalised to [0,1]. The noise amplitude is wibble·U(-wibble, wibble) as in the reference.
void plasma_fractal(int64_t n, double decay, ImageRng& rng, std::vector<double>& map) {
  map.assign(static_cast<size_t>(n * n), 0.0);
  auto at = [&](int64_t y, int64_t x) -> double& { return map[((y + n) % n) * n + (x + n) % n]; };
  double wibble = 100;
  for (int64_t step = n; step >= 2; step /= 2) {
    const int64_t half = step / 2;
    for (int64_t y = 0; y < n; y += step)  // squares: centre = mean of 4 corners + noise
      for (int64_t x = 0; x < n; x += step)
        at(y + half, x + half) =
            (at(y, x) + at(y + step, x) + at(y, x + step) + at(y + step, x + step)) / 4 +
            wibble * rng.uniform(-wibble, wibble);
    for (int64_t y = 0; y < n; y += step)  // diamonds on the top edges of the squares
      for (int64_t x = 0; x < n; x += step)
        at(y, x + half) =
            (at(y + half, x + half) + at(y - half, x + half) + at(y, x) + at(y, x + step)) / 4 +
            wibble * rng.uniform(-wibble, wibble);
    for (int64_t y = 0; y < n; y += step)  // diamonds on the left edges
      for (int64_t x = 0; x < n; x += step)
        at(y + half, x) =
            (at(y + half, x + half) + at(y + half, x - half) + at(y, x) + at(y + step, x)) / 4 +
            wibble * rng.uniform(-wibble, wibble);
    wibble /= decay;
  }
  const auto [mn, mx] = std::minmax_element(map.begin(), map.end());
  const double lo = *mn, range = *mx - *mn;
  for (double& v : map) v = range > 0 ? (v - lo) / range : 0.0;
}

double det3(const double a[3][3]) {
  return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
         a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
         a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
}

// ---------------------------------------------------------------------------------------------
// One corruption at one severity for images of one size.

class Corrupter {
 public:
  Corrupter(Corruption c, int severity, int64_t h, int64_t w)
      : c_(c), s_(severity - 1), h_(h), w_(w), hw_(h * w) {
    a_.resize(hw_);
    b_.resize(hw_);
    switch (c) {
      case Corruption::gaussian_blur:
        blur_.init(gaussian_kernel(kGaussianBlur[s_]), h, w, Border::nearest);
        break;
      case Corruption::glass_blur:
        blur_.init(gaussian_kernel(kGlass[s_].sigma), h, w, Border::nearest);
        break;
      case Corruption::defocus_blur:
        taps_.init(taps_of(disk_kernel(kDefocus[s_][0], kDefocus[s_][1])), h, w,
                   Border::reflect101);
        break;
      case Corruption::zoom_blur:
        zoom_y_.resize(kZoomCount[s_]);
        zoom_x_.resize(kZoomCount[s_]);
        for (int k = 0; k < kZoomCount[s_]; ++k) {
          zoom_y_[k].init(h, 1.0 + 0.01 * k);
          zoom_x_[k].init(w, 1.0 + 0.01 * k);
        }
        break;
      case Corruption::elastic_transform:
        field_blur_.init(gaussian_kernel(kElastic[s_][1] * std::min(h, w), 3.0), h, w,
                         Border::reflect);
        dx_.resize(hw_);
        dy_.resize(hw_);
        break;
      case Corruption::pixelate: {
        const int64_t sh = static_cast<int64_t>(h * kPixelate[s_]);
        const int64_t sw = static_cast<int64_t>(w * kPixelate[s_]);
        down_y_.init(h, sh);
        down_x_.init(w, sw);
        up_y_.init(sh, h);
        up_x_.init(sw, w);
        break;
      }
      case Corruption::motion_blur:
        motion_reach_ = 2 * static_cast<int64_t>(std::ceil(kMotion[s_][0]));  // farthest tap
        motion_pad_.resize(static_cast<size_t>((h + 2 * motion_reach_) * (w + 2 * motion_reach_)));
        break;
      case Corruption::fog:
        fog_n_ = 1;
        while (fog_n_ < std::max(h, w)) fog_n_ *= 2;
        break;
      default:
        break;
    }
  }

  // y = the corrupted image (not yet clipped).
  void run(const float* x, float* y, ImageRng& rng) {
    switch (c_) {
      case Corruption::gaussian_noise:
        for (int64_t i = 0; i < hw_; ++i) y[i] = x[i] + float(kGaussianNoise[s_]) * rng.normal();
        break;
      case Corruption::shot_noise: {
        const double c = kShotNoise[s_];
        for (int64_t i = 0; i < hw_; ++i)
          y[i] = static_cast<float>(rng.poisson(std::max(0.0f, x[i]) * c) / c);
        break;
      }
      case Corruption::impulse_noise: {  // each pixel flips with prob c, to 0 or 1 equally
        const double c = kImpulseNoise[s_];
        for (int64_t i = 0; i < hw_; ++i) {
          const double u = rng.uniform();
          y[i] = u < c / 2 ? 1.0f : u < c ? 0.0f : x[i];
        }
        break;
      }
      case Corruption::speckle_noise:
        for (int64_t i = 0; i < hw_; ++i)
          y[i] = x[i] + x[i] * float(kSpeckleNoise[s_]) * rng.normal();
        break;
      case Corruption::gaussian_blur:
        blur_.apply(x, a_.data(), y);
        break;
      case Corruption::defocus_blur:
        taps_.apply(x, y);
        break;
      case Corruption::glass_blur:
        glass(x, y, rng);
        break;
      case Corruption::motion_blur:
        motion(x, y, rng);
        break;
      case Corruption::zoom_blur:
        zoom(x, y);
        break;
      case Corruption::fog:
        fog(x, y, rng);
        break;
      case Corruption::brightness:
        for (int64_t i = 0; i < hw_; ++i) y[i] = x[i] + float(kBrightness[s_]);
        break;
      case Corruption::contrast: {
        double mean = 0;
        for (int64_t i = 0; i < hw_; ++i) mean += x[i];
        mean /= static_cast<double>(hw_);
        for (int64_t i = 0; i < hw_; ++i) y[i] = float((x[i] - mean) * kContrast[s_] + mean);
        break;
      }
      case Corruption::elastic_transform:
        elastic(x, y, rng);
        break;
      case Corruption::pixelate:
        resample2d(x, h_, w_, down_y_, down_x_, a_.data(), b_.data());
        resample2d(b_.data(), down_y_.n_out, down_x_.n_out, up_y_, up_x_, a_.data(), y);
        break;
      case Corruption::jpeg_compression:
        std::copy(x, x + hw_, y);
        jpeg_roundtrip(y, h_, w_, kJpegQuality[s_]);
        break;
    }
  }

 private:
  // Gaussian; then each pixel, bottom-right to top-left as in the reference, takes the value of
  // its neighbour at (dy, dx) drawn from [-δ, δ)² (numpy's randint excludes δ); then Gaussian
  // again. The reference writes this as a swap, but on its RGB arrays the tuple assignment of
  // numpy views copies instead of swapping, and that copy is what CIFAR-10-C contains (a literal
  // swap on a single-channel array lets pixels travel across the whole image).
  void glass(const float* x, float* y, ImageRng& rng) {
    const GlassParams& p = kGlass[s_];
    blur_.apply(x, b_.data(), a_.data());
    for (int it = 0; it < p.iterations; ++it)
      for (int64_t r = h_ - p.delta; r > p.delta; --r)
        for (int64_t c = w_ - p.delta; c > p.delta; --c) {
          const int dx = rng.randint(-p.delta, p.delta), dy = rng.randint(-p.delta, p.delta);
          a_[r * w_ + c] = a_[(r + dy) * w_ + c + dx];
        }
    blur_.apply(a_.data(), b_.data(), y);
  }

  // The image is edge-padded by the kernel's reach once, so each tap is a contiguous row sweep.
  void motion(const float* x, float* y, ImageRng& rng) {
    motion_taps(kMotion[s_][0], kMotion[s_][1], rng.uniform(-45, 45), motion_);
    const int64_t m = motion_reach_, pw = w_ + 2 * m;
    for (int64_t r = 0; r < h_ + 2 * m; ++r)
      for (int64_t c = 0; c < pw; ++c)
        motion_pad_[r * pw + c] =
            x[std::clamp<int64_t>(r - m, 0, h_ - 1) * w_ + std::clamp<int64_t>(c - m, 0, w_ - 1)];
    std::fill(y, y + hw_, 0.0f);
    for (const Tap& t : motion_)
      for (int64_t r = 0; r < h_; ++r) {
        const float* src = motion_pad_.data() + (r + m + t.dy) * pw + m + t.dx;
        float* o = y + r * w_;
        for (int64_t c = 0; c < w_; ++c) o[c] += t.w * src[c];
      }
  }

  // (x + Σ_k zoom(x, 1 + 0.01k)) / (K + 1), each zoom separable: along x into a_, then along y.
  void zoom(const float* x, float* y) {
    std::copy(x, x + hw_, y);
    for (size_t k = 0; k < zoom_y_.size(); ++k) {
      const ZoomAxis& zx = zoom_x_[k];
      const ZoomAxis& zy = zoom_y_[k];
      for (int64_t r = 0; r < h_; ++r)
        for (int64_t c = 0; c < w_; ++c) {
          const float* row = x + r * w_;
          a_[r * w_ + c] = row[zx.lo[c]] + zx.frac[c] * (row[zx.hi[c]] - row[zx.lo[c]]);
        }
      for (int64_t r = 0; r < h_; ++r) {
        const float* lo = a_.data() + zy.lo[r] * w_;
        const float* hi = a_.data() + zy.hi[r] * w_;
        const float f = zy.frac[r];
        for (int64_t c = 0; c < w_; ++c) y[r * w_ + c] += lo[c] + f * (hi[c] - lo[c]);
      }
    }
    const float inv = 1.0f / static_cast<float>(zoom_y_.size() + 1);
    for (int64_t i = 0; i < hw_; ++i) y[i] *= inv;
  }

  // (x + a·plasma) · max(x) / (max(x) + a), plasma cropped from the top-left of a 2^k map.
  void fog(const float* x, float* y, ImageRng& rng) {
    const double a = kFog[s_][0];
    plasma_fractal(fog_n_, kFog[s_][1], rng, plasma_);
    const double mx = std::max(0.0f, *std::max_element(x, x + hw_));
    for (int64_t r = 0; r < h_; ++r)
      for (int64_t c = 0; c < w_; ++c)
        y[r * w_ + c] = float((x[r * w_ + c] + a * plasma_[r * fog_n_ + c]) * mx / (mx + a));
  }

  // Random affine (three corner points jittered by ±affine px, bilinear, reflect-101 border),
  // then a displacement field: uniform(-1,1) noise smoothed by a Gaussian (σ, truncate 3,
  // reflect) times alpha, bilinear with reflect border.
  void elastic(const float* x, float* y, ImageRng& rng) {
    const double side = static_cast<double>(std::min(h_, w_));
    const double alpha = kElastic[s_][0] * side, affine = kElastic[s_][2] * side;
    const double cy = std::floor(h_ / 2.0), cx = std::floor(w_ / 2.0);
    const double sq = std::floor(side / 3.0);
    // (x, y) points as the reference writes them (symmetric for square images).
    const double p1[3][2] = {{cy + sq, cx + sq}, {cy + sq, cx - sq}, {cy - sq, cx - sq}};
    double p2[3][2];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 2; ++j) p2[i][j] = p1[i][j] + rng.uniform(-affine, affine);
    // warpAffine samples src at M⁻¹(dst): fit the affine map p2 -> p1 directly. Rows of A are
    // (x2, y2, 1); m[k] solves A·m[k] = (p1[0][k], p1[1][k], p1[2][k]) by Cramer's rule.
    const double A[3][3] = {
        {p2[0][0], p2[0][1], 1}, {p2[1][0], p2[1][1], 1}, {p2[2][0], p2[2][1], 1}};
    const double det = det3(A);
    double m[2][3] = {{1, 0, 0}, {0, 1, 0}};  // identity if the points were collinear
    if (std::fabs(det) > 1e-9)
      for (int k = 0; k < 2; ++k)
        for (int col = 0; col < 3; ++col) {
          double Ak[3][3];
          for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) Ak[i][j] = j == col ? p1[i][k] : A[i][j];
          m[k][col] = det3(Ak) / det;
        }
    for (int64_t r = 0; r < h_; ++r)
      for (int64_t c = 0; c < w_; ++c)
        a_[r * w_ + c] = bilinear(x, h_, w_, m[1][0] * c + m[1][1] * r + m[1][2],
                                  m[0][0] * c + m[0][1] * r + m[0][2], Border::reflect101);
    if (alpha == 0) {
      std::copy(a_.begin(), a_.end(), y);
      return;
    }
    for (int64_t i = 0; i < hw_; ++i) b_[i] = float(rng.uniform(-1, 1));
    field_blur_.apply(b_.data(), y, dx_.data());
    for (int64_t i = 0; i < hw_; ++i) b_[i] = float(rng.uniform(-1, 1));
    field_blur_.apply(b_.data(), y, dy_.data());
    for (int64_t r = 0; r < h_; ++r)
      for (int64_t c = 0; c < w_; ++c) {
        const int64_t i = r * w_ + c;
        y[i] = bilinear(a_.data(), h_, w_, r + alpha * dy_[i], c + alpha * dx_[i], Border::reflect);
      }
  }

  Corruption c_;
  int s_;  // severity - 1
  int64_t h_, w_, hw_;
  std::vector<float> a_, b_, dx_, dy_;  // scratch images
  Separable blur_, field_blur_;
  Correlate2d taps_;
  std::vector<Tap> motion_;
  int64_t motion_reach_ = 0;
  std::vector<float> motion_pad_;
  std::vector<ZoomAxis> zoom_y_, zoom_x_;
  Resample1d down_y_, down_x_, up_y_, up_x_;
  int64_t fog_n_ = 0;
  std::vector<double> plasma_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

const std::vector<std::string>& corruption_names() {
  // Function-local static: an immutable table, built once.
  static const std::vector<std::string> names = {
      "gaussian_noise", "shot_noise", "impulse_noise",     "speckle_noise", "gaussian_blur",
      "defocus_blur",   "glass_blur", "motion_blur",       "zoom_blur",     "fog",
      "brightness",     "contrast",   "elastic_transform", "pixelate",      "jpeg_compression"};
  return names;
}

const std::vector<Corruption>& all_corruptions() {
  static const std::vector<Corruption> all = [] {
    std::vector<Corruption> v;
    for (int i = 0; i < kNumCorruptions; ++i) v.push_back(static_cast<Corruption>(i));
    return v;
  }();
  return all;
}

const std::string& corruption_name(Corruption c) {
  const int i = static_cast<int>(c);
  IDEM_CHECK(i >= 0 && i < kNumCorruptions, kOp, "invalid corruption value ", i);
  return corruption_names()[static_cast<size_t>(i)];
}

Corruption parse_corruption(const std::string& name) {
  std::string n = name;
  std::replace(n.begin(), n.end(), '-', '_');
  const auto& names = corruption_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == n) return static_cast<Corruption>(i);
  std::string valid;
  for (const auto& s : names) valid += (valid.empty() ? "" : ", ") + s;
  fail(kOp, "unknown corruption '", name, "'; valid names: ", valid);
}

std::vector<float> gaussian_kernel(double sigma, double truncate) {
  if (!(sigma > 0)) return {1.0f};
  const int64_t r = static_cast<int64_t>(truncate * sigma + 0.5);
  std::vector<double> k(static_cast<size_t>(2 * r + 1));
  double total = 0;
  for (int64_t i = -r; i <= r; ++i) {
    k[i + r] = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
    total += k[i + r];
  }
  std::vector<float> out(k.size());
  for (size_t i = 0; i < k.size(); ++i) out[i] = static_cast<float>(k[i] / total);
  return out;
}

Kernel2d disk_kernel(double radius, double alias_blur) {
  IDEM_CHECK(radius >= 0 && radius <= 64, kOp, "disk radius must be in [0, 64], got ", radius);
  // The reference grid is [-8, 8]² (or [-r, r]² beyond 8) with a 3x3 (5x5) anti-alias blur.
  const int64_t half = radius <= 8 ? 8 : static_cast<int64_t>(radius);
  const int64_t ks = radius <= 8 ? 3 : 5, kr = ks / 2;
  const int64_t n = 2 * half + 1;
  std::vector<double> disk(static_cast<size_t>(n * n), 0.0), tmp(disk.size(), 0.0);
  double total = 0;
  for (int64_t y = -half; y <= half; ++y)
    for (int64_t x = -half; x <= half; ++x)
      if (static_cast<double>(x * x + y * y) <= radius * radius) {
        disk[(y + half) * n + x + half] = 1;
        total += 1;
      }
  // cv2.getGaussianKernel(ks, alias_blur), applied along x then y (reflect-101 borders).
  std::vector<double> g(static_cast<size_t>(ks));
  double gs = 0;
  for (int64_t i = 0; i < ks; ++i) {
    const double d2 = static_cast<double>((i - kr) * (i - kr));
    g[i] = alias_blur > 0 ? std::exp(-d2 / (2 * alias_blur * alias_blur)) : (i == kr ? 1.0 : 0.0);
    gs += g[i];
  }
  for (double& v : g) v /= gs;
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) {
      double s = 0;
      for (int64_t j = 0; j < ks; ++j)
        s += g[j] * disk[y * n + border_index(x + j - kr, n, Border::reflect101)];
      tmp[y * n + x] = s / total;
    }
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) {
      double s = 0;
      for (int64_t j = 0; j < ks; ++j)
        s += g[j] * tmp[border_index(y + j - kr, n, Border::reflect101) * n + x];
      disk[y * n + x] = s;
    }
  // Trim the all-zero border symmetrically and renormalise (float rounding).
  int64_t r = 0;
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x)
      if (disk[y * n + x] > 0) r = std::max({r, std::abs(y - half), std::abs(x - half)});
  Kernel2d k;
  k.size = 2 * r + 1;
  k.weights.assign(static_cast<size_t>(k.size * k.size), 0.0f);
  double kt = 0;
  for (int64_t y = -r; y <= r; ++y)
    for (int64_t x = -r; x <= r; ++x) kt += disk[(y + half) * n + x + half];
  for (int64_t y = -r; y <= r; ++y)
    for (int64_t x = -r; x <= r; ++x)
      k.weights[(y + r) * k.size + x + r] =
          static_cast<float>(disk[(y + half) * n + x + half] / kt);
  return k;
}

Kernel2d motion_kernel(double radius, double sigma, double angle_deg) {
  IDEM_CHECK(radius > 0 && radius <= 64 && sigma > 0, kOp,
             "motion kernel needs radius in (0, 64] and sigma > 0, got ", radius, ", ", sigma);
  std::vector<Tap> taps;
  motion_taps(radius, sigma, angle_deg, taps);
  const int64_t r = static_cast<int64_t>(taps.size()) - 1;  // the farthest tap
  Kernel2d k;
  k.size = 2 * r + 1;
  k.weights.assign(static_cast<size_t>(k.size * k.size), 0.0f);
  for (const Tap& t : taps) k.weights[(t.dy + r) * k.size + t.dx + r] += t.w;
  return k;
}

Tensor corrupt(const Tensor& images, Corruption c, int severity, uint64_t seed,
               int64_t index_offset) {
  IDEM_CHECK(images.defined(), kOp, "images tensor is undefined");
  const int ci = static_cast<int>(c);
  IDEM_CHECK(ci >= 0 && ci < kNumCorruptions, kOp, "invalid corruption value ", ci);
  const std::string& cname = corruption_names()[static_cast<size_t>(ci)];
  IDEM_CHECK(severity >= 1 && severity <= kNumSeverities, kOp, cname, ": severity must be in 1..",
             kNumSeverities, ", got ", severity);
  IDEM_CHECK(images.dtype() == DType::f32, kOp, cname, ": expected f32 images, got ",
             dtype_name(images.dtype()));
  const Shape& s = images.shape();
  IDEM_CHECK(s.size() == 3 || (s.size() == 4 && s[1] == 1), kOp, cname,
             ": expected images of shape (N,1,H,W) or (N,H,W), got ", shape_str(s));
  const int64_t n = s[0], h = s[s.size() - 2], w = s[s.size() - 1];
  IDEM_CHECK(h >= 8 && w >= 8, kOp, cname, ": images must be at least 8x8, got ", shape_str(s));
  IDEM_CHECK(index_offset >= 0, kOp, cname, ": index_offset must be >= 0, got ", index_offset);

  const Tensor in = images.to(Device::cpu());
  const float* x = in.data<float>();
  for (int64_t i = 0; i < in.numel(); ++i)
    if (!std::isfinite(x[i]))
      fail(kOp, cname, ": image ", i / (h * w), " holds a non-finite value (", x[i], ")");
  Tensor out = empty(s, {DType::f32});
  float* y = out.data<float>();
  Corrupter corrupter(c, severity, h, w);
  const uint64_t key = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(ci) + 1));
  for (int64_t i = 0; i < n; ++i) {
    ImageRng rng(key, static_cast<uint64_t>(index_offset + i));
    float* yi = y + i * h * w;
    corrupter.run(x + i * h * w, yi, rng);
    for (int64_t j = 0; j < h * w; ++j) yi[j] = std::clamp(yi[j], 0.0f, 1.0f);
  }
  return images.device().is_cpu() ? out : out.to(images.device());
}

}  // namespace idem::data
