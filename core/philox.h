// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// A counter-based generator: the output block is a pure function of (counter, key), so any
// element of a random tensor can be computed independently, on the CPU or on the GPU, and the
// same seed gives the same numbers everywhere. Usable from host and device code.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define IDEM_HOST_DEVICE __host__ __device__
#else
#define IDEM_HOST_DEVICE
#endif

namespace idem {

IDEM_HOST_DEVICE inline void philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2],
                                           uint32_t out[4]) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// The block for element `index` of a draw with (seed, offset): counter = {index_lo, index_hi,
// offset_lo, offset_hi}, key = {seed_lo, seed_hi}.
IDEM_HOST_DEVICE inline void philox_block(uint64_t seed, uint64_t index, uint64_t offset,
                                          uint32_t out[4]) {
  const uint32_t ctr[4] = {static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                           static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  philox4x32_10(ctr, key, out);
}

// U[0,1) with 24 bits (exactly representable in f32, so f32 and f64 draws agree).
IDEM_HOST_DEVICE inline float philox_uniform(uint32_t r) {
  return static_cast<float>(r >> 8) * (1.0f / 16777216.0f);
}

}  // namespace idem
