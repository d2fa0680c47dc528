// JPEG baseline round trip for grayscale images (the jpeg_compression corruption). Contract:
// data/corruptions.h. Written from ITU T.81 and libjpeg's quality scaling; no entropy coding,
// because Huffman coding is lossless and changes nothing that the decoder sees.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "data/corruptions.h"

namespace idem::data {

namespace {

// ITU T.81 Annex K, table K.1 (luminance), natural (row-major) order.
// clang-format off
constexpr int kLumaQuant[64] = {
    16, 11, 10, 16,  24,  40,  51,  61,
    12, 12, 14, 19,  26,  58,  60,  55,
    14, 13, 16, 24,  40,  57,  69,  56,
    14, 17, 22, 29,  51,  87,  80,  62,
    18, 22, 37, 56,  68, 109, 103,  77,
    24, 35, 55, 64,  81, 104, 113,  92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103,  99};
// clang-format on

// libjpeg's jpeg_quality_scaling + jpeg_add_quant_table with force_baseline = TRUE.
void quant_table(int quality, float q[64]) {
  const long scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
  for (int i = 0; i < 64; ++i) {
    const long v = (kLumaQuant[i] * scale + 50) / 100;
    q[i] = static_cast<float>(std::clamp(v, 1L, 255L));
  }
}

}  // namespace

void jpeg_roundtrip(float* image, int64_t h, int64_t w, int quality) {
  IDEM_CHECK(quality >= 1 && quality <= 100, "jpeg_roundtrip", "quality must be in 1..100, got ",
             quality);
  IDEM_CHECK(h >= 1 && w >= 1, "jpeg_roundtrip", "empty image (", h, "x", w, ")");
  float q[64];
  quant_table(quality, q);
  // Orthonormal DCT-II basis: c[u][x] = a(u) cos((2x+1)uπ/16), a(0) = √(1/8), a(u>0) = 1/2, which
  // is T.81's F(u,v) = ¼ C(u) C(v) Σ Σ f cos cos.
  float c[8][8];
  const double pi = std::acos(-1.0);
  for (int u = 0; u < 8; ++u)
    for (int x = 0; x < 8; ++x)
      c[u][x] = static_cast<float>((u == 0 ? std::sqrt(0.125) : 0.5) *
                                   std::cos((2 * x + 1) * u * pi / 16.0));

  float f[8][8], t[8][8], g[8][8];
  for (int64_t by = 0; by < h; by += 8) {
    for (int64_t bx = 0; bx < w; bx += 8) {
      // Samples rounded to 8 bits, level-shifted; rows/columns past the edge replicate it.
      for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x) {
          const float v = image[std::min(by + y, h - 1) * w + std::min(bx + x, w - 1)];
          f[y][x] = std::nearbyint(std::clamp(v, 0.0f, 1.0f) * 255.0f) - 128.0f;
        }
      // Forward: G = C F Cᵀ : (8,8)(8,8)(8,8) -> (8,8)
      for (int u = 0; u < 8; ++u)
        for (int x = 0; x < 8; ++x) {
          float s = 0;
          for (int y = 0; y < 8; ++y) s += c[u][y] * f[y][x];
          t[u][x] = s;
        }
      for (int u = 0; u < 8; ++u)
        for (int v = 0; v < 8; ++v) {
          float s = 0;
          for (int x = 0; x < 8; ++x) s += t[u][x] * c[v][x];
          // Quantise (round to the nearest multiple of the table entry) and dequantise.
          g[u][v] = std::nearbyint(s / q[u * 8 + v]) * q[u * 8 + v];
        }
      // Inverse: F = Cᵀ G C
      for (int y = 0; y < 8; ++y)
        for (int v = 0; v < 8; ++v) {
          float s = 0;
          for (int u = 0; u < 8; ++u) s += c[u][y] * g[u][v];
          t[y][v] = s;
        }
      for (int y = 0; y < 8 && by + y < h; ++y)
        for (int x = 0; x < 8 && bx + x < w; ++x) {
          float s = 0;
          for (int v = 0; v < 8; ++v) s += t[y][v] * c[v][x];
          image[(by + y) * w + bx + x] =
              std::clamp(std::nearbyint(s + 128.0f), 0.0f, 255.0f) / 255.0f;
        }
    }
  }
}

}  // namespace idem::data
