// Randomness for the image transforms of data/ (the corruptions and the test-time
// augmentations): a Philox stream per image, so every image's draws depend on (key, image) only
// — not on the batch it is in, the thread that runs it, or the images before it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/philox.h"

namespace idem::data {

// splitmix64: decorrelates derived keys (one per transform) from the user's seed.

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// ln(k!) without std::lgamma (which writes the global signgam).
inline double log_factorial(int64_t k) {
  if (k < 16) {
    double s = 0;
    for (int64_t i = 2; i <= k; ++i) s += std::log(static_cast<double>(i));
    return s;
  }
  const double x = static_cast<double>(k + 1), x2 = x * x;  // Stirling series for lnΓ(x)
  return (x - 0.5) * std::log(x) - x + 0.91893853320467274178 +
         (1.0 / 12 - (1.0 / 360 - 1.0 / (1260 * x2)) / x2) / x;
}

class ImageRng {
 public:
  ImageRng(uint64_t key, uint64_t image) : key_(key), image_(image) {}

  uint32_t next_u32() {
    if (pos_ == 4) {
      philox_block(key_, counter_++, image_, buf_);
      pos_ = 0;
    }
    return buf_[pos_++];
  }
  double uniform() { return (next_u32() + 0.5) * (1.0 / 4294967296.0); }  // (0,1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int randint(int lo, int hi) {  // [lo, hi), as numpy's randint
    return lo + std::min(static_cast<int>(uniform() * (hi - lo)), hi - lo - 1);
  }
  float normal() {  // Box-Muller in float (fast enough for 10^7 pixels), both values used
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const float r = std::sqrt(-2.0f * std::log(static_cast<float>(uniform())));
    const float t = 6.2831853f * static_cast<float>(uniform());
    spare_ = r * std::sin(t);
    has_spare_ = true;
    return r * std::cos(t);
  }
  // Knuth's product method below 10, Hörmann's PTRS above (what numpy does).
  int64_t poisson(double lam) {
    if (lam <= 0) return 0;
    if (lam < 10) {
      const double limit = std::exp(-lam);
      double prod = uniform();
      int64_t k = 0;
      while (prod > limit) {
        ++k;
        prod *= uniform();
      }
      return k;
    }
    const double slam = std::sqrt(lam), loglam = std::log(lam);
    const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
    while (true) {
      const double u = uniform() - 0.5, v = uniform(), us = 0.5 - std::fabs(u);
      const double kd = std::floor((2 * a / us + b) * u + lam + 0.43);
      if (us >= 0.07 && v <= vr) return static_cast<int64_t>(kd);
      if (kd < 0 || (us < 0.013 && v > us)) continue;
      const int64_t k = static_cast<int64_t>(kd);
      if (std::log(v) + std::log(inv_alpha) - std::log(a / (us * us) + b) <=
          -lam + kd * loglam - log_factorial(k))
        return k;
    }
  }

 private:
  uint64_t key_, image_, counter_ = 0;
  uint32_t buf_[4] = {0, 0, 0, 0};
  int pos_ = 4;
  float spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace idem::data
