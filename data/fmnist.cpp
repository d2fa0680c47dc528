// Fashion-MNIST loading and the synthetic stand-in. Contract: data/fmnist.h.
#include "data/fmnist.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/philox.h"
#include "data/idx.h"

namespace idem::data {

namespace {

constexpr const char* kOp = "fmnist";

std::string find_file(const std::string& dir, const std::string& base) {
  for (const char* suffix : {"", ".gz"}) {
    const std::filesystem::path p = std::filesystem::path(dir) / (base + suffix);
    std::error_code ec;
    if (std::filesystem::is_regular_file(p, ec)) return p.string();
  }
  std::error_code ec;
  const bool dir_exists = std::filesystem::is_directory(dir, ec);
  fail(kOp, "missing ", base, " (or ", base, ".gz) in ", dir,
       dir_exists ? "" : " (the directory does not exist)",
       ": install Fashion-MNIST with `sudo apt-get install dataset-fashion-mnist`, or pass "
       "--data DIR naming a directory with the four IDX files (train-images-idx3-ubyte, "
       "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each "
       "optionally .gz)");
}

struct RawSplit {
  Tensor images, labels;  // u8 (N,H,W), u8 (N)
  std::string images_path, labels_path;
};

// Reads one split; with need_images false only the images' header is read (for the checks),
// and `images` is an empty (0,H,W) tensor.
RawSplit read_split(const std::string& dir, const std::string& prefix, bool need_images) {
  RawSplit s;
  s.images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  s.labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  s.labels = read_idx(s.labels_path);
  Shape shape;
  DType dtype = DType::u8;
  if (need_images) {
    s.images = read_idx(s.images_path);
    shape = s.images.shape();
    dtype = s.images.dtype();
  } else {
    const IdxInfo info = read_idx_info(s.images_path);
    shape = info.shape;
    dtype = info.dtype;
  }
  IDEM_CHECK(dtype == DType::u8 && shape.size() == 3, kOp, s.images_path,
             ": expected u8 images of shape (N,H,W), got ", dtype_name(dtype), " ",
             shape_str(shape));
  IDEM_CHECK(s.labels.dtype() == DType::u8 && s.labels.dim() == 1, kOp, s.labels_path,
             ": expected u8 labels of shape (N), got ", dtype_name(s.labels.dtype()), " ",
             shape_str(s.labels.shape()));
  IDEM_CHECK(shape[0] == s.labels.size(0), kOp, s.images_path, " holds ", shape[0], " images but ",
             s.labels_path, " holds ", s.labels.size(0), " labels");
  IDEM_CHECK(shape[0] > 0 && shape[1] > 0 && shape[2] > 0, kOp, s.images_path,
             ": no images (shape ", shape_str(shape), ")");
  if (!need_images) s.images = empty({0, shape[1], shape[2]}, {DType::u8});
  return s;
}

int64_t max_label(const Tensor& labels) {
  const uint8_t* p = labels.data<uint8_t>();
  return labels.numel() ? *std::max_element(p, p + labels.numel()) : 0;
}

ImageDataset convert(const RawSplit& s, int64_t max_n, int64_t num_classes) {
  const int64_t n = max_n < 0 ? s.images.size(0) : std::min(max_n, s.images.size(0));
  const int64_t h = s.images.size(1), w = s.images.size(2);
  ImageDataset d;
  d.num_classes = num_classes;
  d.images = empty({n, 1, h, w}, {DType::f32});
  d.labels = empty({n}, {DType::i64});
  const uint8_t* src = s.images.data<uint8_t>();
  float* dst = d.images.data<float>();
  for (int64_t i = 0; i < n * h * w; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f;
  const uint8_t* ls = s.labels.data<uint8_t>();
  int64_t* ld = d.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) ld[i] = ls[i];
  return d;
}

// A small counter-based stream for the synthetic set: draw k of image i is a pure function of
// (seed, i, k).
class Stream {
 public:
  Stream(uint64_t seed, uint64_t index) : seed_(seed), index_(index) {}
  double uniform(double lo = 0, double hi = 1) {
    if (pos_ == 4) {
      philox_block(seed_, counter_++, index_, buf_);
      pos_ = 0;
    }
    return lo + (hi - lo) * philox_uniform(buf_[pos_++]);
  }

 private:
  uint64_t seed_, index_, counter_ = 0;
  uint32_t buf_[4] = {0, 0, 0, 0};
  int pos_ = 4;
};

struct Segment {
  double x0, y0, x1, y1;
};

double segment_distance(double px, double py, const Segment& s) {
  const double dx = s.x1 - s.x0, dy = s.y1 - s.y0;
  const double len2 = dx * dx + dy * dy;
  const double t =
      len2 > 0 ? std::clamp(((px - s.x0) * dx + (py - s.y0) * dy) / len2, 0.0, 1.0) : 0;
  return std::hypot(px - s.x0 - t * dx, py - s.y0 - t * dy);
}

// Distance (in shape units, shape in [-1,1]²) from (u, v) to class k's stroke; 0 inside a
// filled shape.
double shape_distance(int k, double u, double v) {
  static constexpr Segment kSquare[4] = {
      {-.8, -.8, .8, -.8}, {.8, -.8, .8, .8}, {.8, .8, -.8, .8}, {-.8, .8, -.8, -.8}};
  static constexpr Segment kTriangle[3] = {{0, -.9, .9, .7}, {.9, .7, -.9, .7}, {-.9, .7, 0, -.9}};
  const double r = std::hypot(u, v);
  switch (k) {
    case 0:
      return segment_distance(u, v, {-1, 0, 1, 0});
    case 1:
      return segment_distance(u, v, {0, -1, 0, 1});
    case 2:
      return segment_distance(u, v, {-.8, -.8, .8, .8});
    case 3:
      return segment_distance(u, v, {-.8, .8, .8, -.8});
    case 4: {
      double d = 1e9;
      for (const Segment& s : kSquare) d = std::min(d, segment_distance(u, v, s));
      return d;
    }
    case 5:
      return std::max(0.0, r - 0.6);
    case 6:
      return std::min(segment_distance(u, v, {-1, 0, 1, 0}), segment_distance(u, v, {0, -1, 0, 1}));
    case 7:
      return std::min(segment_distance(u, v, {-.8, -.8, .8, .8}),
                      segment_distance(u, v, {-.8, .8, .8, -.8}));
    case 8:
      return std::fabs(r - 0.75);
    default: {
      double d = 1e9;
      for (const Segment& s : kTriangle) d = std::min(d, segment_distance(u, v, s));
      return d;
    }
  }
}

}  // namespace

FmnistData load_fmnist(const std::string& dir, int64_t max_train, int64_t max_test) {
  IDEM_CHECK(max_train >= -1 && max_test >= -1, kOp,
             "max_train and max_test must be >= 0, or -1 for all; got ", max_train, " and ",
             max_test);
  FmnistData out;
  out.source = dir.empty() ? kFmnistDefaultDir : dir;
  const RawSplit train = read_split(out.source, "train", max_train != 0);
  const RawSplit test = read_split(out.source, "t10k", max_test != 0);
  IDEM_CHECK(
      train.images.size(1) == test.images.size(1) && train.images.size(2) == test.images.size(2),
      kOp, "train images are ", train.images.size(1), "x", train.images.size(2),
      " but test images are ", test.images.size(1), "x", test.images.size(2), " (",
      train.images_path, ", ", test.images_path, ")");
  const int64_t classes =
      std::max<int64_t>(10, 1 + std::max(max_label(train.labels), max_label(test.labels)));
  out.train = convert(train, max_train, classes);
  out.test = convert(test, max_test, classes);
  return out;
}

ImageDataset synthetic_images(int64_t n, uint64_t seed) {
  IDEM_CHECK(n >= 0, "synthetic_images", "n must be >= 0, got ", n);
  constexpr int64_t kSide = 28;
  ImageDataset d;
  d.images = empty({n, 1, kSide, kSide}, {DType::f32});
  d.labels = empty({n}, {DType::i64});
  float* img = d.images.data<float>();
  int64_t* lab = d.labels.data<int64_t>();
  const double pi = std::acos(-1.0);
  for (int64_t i = 0; i < n; ++i) {
    Stream rng(seed, static_cast<uint64_t>(i));
    const int k = std::min(9, static_cast<int>(rng.uniform(0, 10)));
    const double cx = 13.5 + rng.uniform(-3, 3), cy = 13.5 + rng.uniform(-3, 3);
    const double scale = rng.uniform(7, 10);  // half-size in pixels
    const double angle = rng.uniform(-12, 12) * pi / 180;
    const double half_width = rng.uniform(0.9, 1.6);  // stroke half-width in pixels
    const double bright = rng.uniform(0.7, 1.0);
    const double ca = std::cos(angle), sa = std::sin(angle);
    float* out = img + i * kSide * kSide;
    for (int64_t y = 0; y < kSide; ++y)
      for (int64_t x = 0; x < kSide; ++x) {
        // Pixel centre -> shape coordinates (inverse rotation and scale).
        const double px = x - cx, py = y - cy;
        const double u = (ca * px + sa * py) / scale, v = (-sa * px + ca * py) / scale;
        const double dist = shape_distance(k, u, v) * scale;  // back to pixels
        const double ink = std::clamp(half_width + 0.5 - dist, 0.0, 1.0);
        const double noise = rng.uniform(-0.04, 0.04);
        out[y * kSide + x] = static_cast<float>(std::clamp(bright * ink + noise, 0.0, 1.0));
      }
    lab[i] = k;
  }
  return d;
}

}  // namespace idem::data
