// Philox 4x32-10 reproducibility: known-answer vectors (Random123's kat_vectors) and fixed
// values of rand/randn, so a change of the generator or of its mapping to tensors is caught.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "core/ops/reduce.h"
#include "core/philox.h"

namespace idem {
namespace {

TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    uint32_t out[4];
    philox4x32_10(k.ctr, k.key, out);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], k.out[i]) << "lane " << i;
  }
}

TEST(Philox, SameSeedSameNumbersDifferentSeedDifferent) {
  Tensor a = randn({1000}, 42), b = randn({1000}, 42), c = randn({1000}, 43);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>());
  // The offset selects a disjoint stream: offset 1 differs from offset 0.
  EXPECT_NE(randn({10}, 42, {}, 1).to_vector<float>(), randn({10}, 42).to_vector<float>());
}

TEST(Philox, FixedValues) {
  // Pinned outputs: element i depends only on (seed, offset, i).
  Tensor u = rand({3}, 0);
  uint32_t r[4];
  philox_block(0, 0, 0, r);
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_FLOAT_EQ(static_cast<float>(u.at({0})), static_cast<float>(0x6627e8d5u >> 8) / 16777216.f);
  // f32 and f64 draws agree exactly for uniforms (24-bit resolution).
  Tensor u64 = rand({5}, 7, {DType::f64});
  Tensor u32 = rand({5}, 7, {DType::f32});
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(u64.at({i}), u32.at({i}));
}

TEST(Philox, MomentsLookRight) {
  Tensor z = randn({200000}, 3, {DType::f64});
  double m = ops::mean(z).item();
  double v = var(z).item();
  EXPECT_NEAR(m, 0.0, 0.01);
  EXPECT_NEAR(v, 1.0, 0.02);
  Tensor u = uniform({200000}, -1.0, 3.0, 5, {DType::f64});
  EXPECT_NEAR(ops::mean(u).item(), 1.0, 0.02);
  EXPECT_GE(ops::reduce(u, {}, false, ReduceOp::min).item(), -1.0);
  EXPECT_LT(ops::amax(u).item(), 3.0);
}

}  // namespace
}  // namespace idem
