#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "data/image_rng.h"

namespace idem::data {

namespace {


struct ImageShape {
  int64_t n, c, h, w;
};

ImageShape image_shape(const Tensor& images, const char* op) {
  IDEM_CHECK(images.defined(), op, "images tensor is undefined");
  IDEM_CHECK(images.dtype() == DType::f32, op, "expected f32 images, got ",
             dtype_name(images.dtype()));
  const Shape& s = images.shape();
  IDEM_CHECK(s.size() == 3 || s.size() == 4, op,
             "expected images of shape (N,C,H,W) or (N,H,W), got ", shape_str(s));
  if (s.size() == 3) return {s[0], 1, s[1], s[2]};
  return {s[0], s[1], s[2], s[3]};
}

}  // namespace

Tensor patch_shuffle(const Tensor& images, int grid, uint64_t seed, int64_t index_offset) {
  const char* op = "data::patch_shuffle";
  const ImageShape d = image_shape(images, op);
  IDEM_CHECK(grid >= 1, op, "grid must be >= 1, got ", grid);
  IDEM_CHECK(d.h >= grid && d.w >= grid, op, "images of ", d.h, "x", d.w, " are smaller than a ",
             grid, "x", grid, " grid");
  IDEM_CHECK(index_offset >= 0, op, "index_offset must be >= 0, got ", index_offset);
  const Tensor in = images.to(Device::cpu());
  Tensor out = in.clone_data();  // leftover rows/columns keep their place
  const float* x = in.data<float>();
  float* y = out.data<float>();
  const int64_t ph = d.h / grid, pw = d.w / grid, np = int64_t(grid) * grid;
  const uint64_t key = splitmix64(seed ^ 0x5EED0DE70ull);
  std::vector<int64_t> perm(static_cast<size_t>(np));
  for (int64_t i = 0; i < d.n; ++i) {
    ImageRng rng(key, uint64_t(index_offset + i));
    std::iota(perm.begin(), perm.end(), int64_t(0));
    for (int64_t k = np - 1; k > 0; --k)  // Fisher-Yates
      std::swap(perm[size_t(k)], perm[size_t(rng.randint(0, int(k + 1)))]);
    for (int64_t c = 0; c < d.c; ++c) {
      const int64_t base = (i * d.c + c) * d.h * d.w;
      for (int64_t p = 0; p < np; ++p) {  // destination patch p takes source patch perm[p]
        const int64_t dy = (p / grid) * ph, dx = (p % grid) * pw;
        const int64_t sy = (perm[size_t(p)] / grid) * ph, sx = (perm[size_t(p)] % grid) * pw;
        for (int64_t r = 0; r < ph; ++r)
          std::copy_n(x + base + (sy + r) * d.w + sx, pw, y + base + (dy + r) * d.w + dx);
      }
    }
  }
  return out.to(images.device());
}

Tensor memo_augment(const Tensor& images, int copies, uint64_t seed, int64_t index_offset) {
  const char* op = "data::memo_augment";
  const ImageShape d = image_shape(images, op);
  IDEM_CHECK(copies >= 1, op, "copies must be >= 1, got ", copies);
  IDEM_CHECK(index_offset >= 0, op, "index_offset must be >= 0, got ", index_offset);
  const Tensor in = images.to(Device::cpu());
  Shape os = images.shape();
  os[0] = d.n * copies;
  Tensor out = empty(os, {DType::f32});
  const float* x = in.data<float>();
  float* y = out.data<float>();
  const int64_t hw = d.h * d.w, per_image = d.c * hw;
  const uint64_t key = splitmix64(seed ^ 0x3E3A0A06ull);
  for (int64_t a = 0; a < copies; ++a)
    for (int64_t i = 0; i < d.n; ++i) {
      // Stream per (image, copy): the copies of one image are independent draws.
      ImageRng rng(key, uint64_t(index_offset + i) * uint64_t(copies) + uint64_t(a));
      const bool flip = rng.uniform() < 0.5;
      const int64_t sy = rng.randint(0, 5) - 2, sx = rng.randint(0, 5) - 2;
      const double contrast = 0.8 + 0.4 * rng.uniform();
      const bool noisy = rng.uniform() < 0.5;
      const float* src = x + i * per_image;
      float* dst = y + (a * d.n + i) * per_image;
      double m = 0;
      for (int64_t k = 0; k < per_image; ++k) m += src[k];
      m /= double(per_image);
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t r = 0; r < d.h; ++r)
          for (int64_t q = 0; q < d.w; ++q) {
            // Output pixel (r, q) reads the shifted (and possibly mirrored) source pixel.
            const int64_t rr = r - sy, qq0 = q - sx;
            const int64_t qq = flip ? d.w - 1 - qq0 : qq0;
            double v =
                (rr >= 0 && rr < d.h && qq0 >= 0 && qq0 < d.w) ? src[c * hw + rr * d.w + qq] : 0.0;
            v = (v - m) * contrast + m;
            if (noisy) v += 0.02 * rng.normal();
            dst[c * hw + r * d.w + q] = float(std::min(1.0, std::max(0.0, v)));
          }
    }
  return out.to(images.device());
}

}  // namespace idem::data
