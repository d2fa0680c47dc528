// MultiTensorCopy (core/ops/multi_copy.h): every copy bit-exact, every zeroed range zero, the
// memory around the destinations untouched (guard ranges), all access widths (16/8/4/1 bytes),
// entries spanning many blocks, bad input; the IT³ reset (model from the anchor + Adam moments
// zeroed + Optimizer::reset_step_counts) equal to a fresh copy and a fresh optimizer; one launch
// per run() on a GPU. CPU and GPU (GPU tests skip without one).
#include "core/ops/multi_copy.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/kernels/runtime.h"
#include "layers/mlp.h"
#include "layers/optim.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using testing::expect_error;
using testing::raw;

constexpr uint64_t kSeed = 777;

// Arbitrary bytes (every bit pattern, NaN payloads included once reinterpreted).
Tensor random_bytes(int64_t n, uint64_t seed, Device d) {
  Tensor u = rand({n}, seed, {DType::f64});
  std::vector<uint8_t> v(static_cast<size_t>(n));
  const std::vector<double> r = u.to_vector<double>();
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(r[i] * 256.0);
  return from_vector<uint8_t>(v, {n}, d);
}

// Destinations are slices of arenas filled with a pattern; the bytes between them are guards.
void check_on(Device dev) {
  SCOPED_TRACE(dev.str() + ", seed " + std::to_string(kSeed));
  const Options f32{DType::f32, dev}, i64{DType::i64, dev};
  // f32 arena: [0,7) guard, [7,1031) dst A (aligned to 4 bytes only: width 4), [1031,1100) guard,
  // [1100,61100) dst B (many 16 KiB blocks), [61100,61200) guard, [61200,61456) zero Z,
  // [61456,61500) guard.
  Tensor arena = full({61500}, 12345.0, f32);
  Tensor dst_a = arena.slice0(7, 1031), dst_b = arena.slice0(1100, 61100);
  Tensor zero_z = arena.slice0(61200, 61456);
  Tensor src_a = randn({1024}, kSeed, f32), src_b = randn({60000}, kSeed + 1, f32);
  // 8-byte arena (i64: CUDA has no f64) with a 2-D destination and a zeroed slice.
  Tensor arena64 = full({100}, -35.0, i64);
  Tensor dst_c = arena64.slice0(4, 34).view_as_shape({5, 6});
  Tensor src_c = (randn({5, 6}, kSeed + 2, {DType::f64}) * 1e15).to(DType::i64).to(dev);
  Tensor zero_y = arena64.slice0(40, 51);
  // Odd byte counts at odd offsets: width 1.
  Tensor arena8 = full({64}, 7.0, {DType::u8, dev});
  Tensor dst_d = arena8.slice0(3, 16);
  Tensor src_d = random_bytes(13, kSeed + 3, dev);
  // i64 (8-byte width), and an empty pair.
  Tensor dst_e = full({6}, 1.0, i64), src_e = arange(6, i64);
  Tensor empty_dst = empty({0, 3}, f32), empty_src = empty({0, 3}, f32);

  const std::string before32 = raw(arena), before64 = raw(arena64), before8 = raw(arena8);
  const std::string src_bytes = raw(src_a) + raw(src_b) + raw(src_c) + raw(src_d) + raw(src_e);
  MultiTensorCopy mc({{dst_a, src_a},
                      {dst_b, src_b},
                      {dst_c, src_c},
                      {dst_d, src_d},
                      {dst_e, src_e},
                      {empty_dst, empty_src}},
                     {zero_z, zero_y});
  EXPECT_EQ(mc.num_copies(), 6u);
  EXPECT_EQ(mc.num_zeroed(), 2u);
  EXPECT_EQ(mc.bytes_copied(), (1024 + 60000) * 4 + 30 * 8 + 13 + 6 * 8);
  EXPECT_EQ(mc.bytes_zeroed(), 256 * 4 + 11 * 8);
  for (int run = 0; run < 2; ++run) {  // a second run gives the same memory
    mc.run();
    EXPECT_TRUE(bit_equal(dst_a, src_a));
    EXPECT_TRUE(bit_equal(dst_b, src_b));
    EXPECT_TRUE(bit_equal(dst_c, src_c));
    EXPECT_TRUE(bit_equal(dst_d, src_d));
    EXPECT_TRUE(bit_equal(dst_e, src_e));
    EXPECT_EQ(raw(zero_z), std::string(256 * 4, '\0'));
    EXPECT_EQ(raw(zero_y), std::string(11 * 8, '\0'));
    // Guards: every byte outside the destinations is as before.
    const std::string a32 = raw(arena), a64 = raw(arena64), a8 = raw(arena8);
    auto same = [](const std::string& now, const std::string& was, size_t b, size_t e) {
      return now.compare(b, e - b, was, b, e - b) == 0;
    };
    EXPECT_TRUE(same(a32, before32, 0, 7 * 4));
    EXPECT_TRUE(same(a32, before32, 1031 * 4, 1100 * 4));
    EXPECT_TRUE(same(a32, before32, 61100 * 4, 61200 * 4));
    EXPECT_TRUE(same(a32, before32, 61456 * 4, 61500 * 4));
    EXPECT_TRUE(same(a64, before64, 0, 4 * 8));
    EXPECT_TRUE(same(a64, before64, 34 * 8, 40 * 8));
    EXPECT_TRUE(same(a64, before64, 51 * 8, 100 * 8));
    EXPECT_TRUE(same(a8, before8, 0, 3));
    EXPECT_TRUE(same(a8, before8, 16, 64));
    // Sources are read only.
    EXPECT_EQ(raw(src_a) + raw(src_b) + raw(src_c) + raw(src_d) + raw(src_e), src_bytes);
  }
}

TEST(MultiCopy, CopiesZeroesAndLeavesGuardsAloneCpu) {
  check_on(Device::cpu());
}

TEST(MultiCopy, CopiesZeroesAndLeavesGuardsAloneCuda) {
  IDEM_REQUIRE_GPU();
  check_on(Device::cuda(0));
}

TEST(MultiCopy, OneLaunchPerRunOnGpu) {
  IDEM_REQUIRE_GPU();
  const Options g{DType::f32, Device::cuda(0)};
  std::vector<MultiTensorCopy::CopyPair> copies;
  std::vector<Tensor> zero;
  for (int i = 0; i < 40; ++i) {
    copies.emplace_back(empty({i + 1, 3}, g), randn({i + 1, 3}, kSeed + i, g));
    zero.push_back(randn({i + 2}, kSeed + 100 + i, g));
  }
  MultiTensorCopy mc(copies, zero);
  EXPECT_EQ(mc.launches_per_run(), 1);
  const uint64_t before = cuda::launch_count();
  mc.run();
  EXPECT_EQ(cuda::launch_count() - before, 1u);
  for (const auto& [d, s] : copies) EXPECT_TRUE(bit_equal(d, s));
  for (const Tensor& z : zero) EXPECT_EQ(raw(z), std::string(z.nbytes(), '\0'));
  MultiTensorCopy nothing;
  const uint64_t before_empty = cuda::launch_count();
  nothing.run();
  EXPECT_EQ(cuda::launch_count() - before_empty, 0u);
  EXPECT_EQ(nothing.launches_per_run(), 0);
}

TEST(MultiCopy, BadInput) {
  Tensor arena = zeros({100});
  Tensor a = arena.slice0(0, 10), b = arena.slice0(5, 15), c = arena.slice0(20, 30);
  Tensor s10 = randn({10}, 1);
  expect_error(
      [&] {
        MultiTensorCopy({{a, s10}, {b, s10}});
      },
      "MultiTensorCopy", "destinations overlap");
  expect_error(
      [&] {
        MultiTensorCopy({{a, s10}}, {b});
      },
      "MultiTensorCopy", "destinations overlap");
  expect_error(
      [&] {
        MultiTensorCopy({{a, b}});
      },
      "MultiTensorCopy", "a destination overlaps a source");
  expect_error(
      [&] {
        MultiTensorCopy({{c, arena.slice0(25, 35)}});
      },
      "MultiTensorCopy", "overlaps a source");
  expect_error(
      [&] {
        MultiTensorCopy({{a, randn({10}, 1, {DType::f64})}});
      },
      "MultiTensorCopy", "same dtype and shape");
  expect_error(
      [&] {
        MultiTensorCopy({{a, randn({2, 5}, 1)}});
      },
      "MultiTensorCopy", "same dtype and shape");
  expect_error([&] { MultiTensorCopy({{a, Tensor()}}); }, "MultiTensorCopy", "copy 0 src");
  expect_error([&] { MultiTensorCopy({}, {Tensor()}); }, "MultiTensorCopy", "zero 0");
  if (cuda::available())
    expect_error(
        [&] {
          MultiTensorCopy({{a, s10.to(Device::cuda(0))}});
        },
        "MultiTensorCopy", "one device");
  // Adjacent (touching) ranges are fine.
  MultiTensorCopy ok({{arena.slice0(0, 10), s10}}, {arena.slice0(10, 20)});
  ok.run();
  EXPECT_TRUE(bit_equal(arena.slice0(0, 10), s10));
}

// The IT³ episodic reset in one run(): working model <- anchor (parameters and buffers), Adam
// moments <- 0, plus reset_step_counts(). The next adaptation step must then be exactly the first
// step of a fresh copy with a fresh optimizer.
void check_it3_reset(Device dev) {
  SCOPED_TRACE(dev.str() + ", seed " + std::to_string(kSeed));
  MlpOptions o;
  o.norm = MlpNorm::batch;  // buffers too (running_mean, running_var, num_batches_tracked)
  MLP anchor({5, 8, 2}, o, {}, 11);
  anchor.to(dev);
  auto working = clone_as(anchor);
  Adam opt(working->parameters(), AdamOptions{1e-2});
  Tensor x = randn({6, 5}, kSeed, {DType::f32, dev});
  auto step = [&](Module& m, Optimizer& op) {
    op.zero_grad();
    sum(square(m.forward(x))).backward();
    op.step();
  };
  for (int i = 0; i < 3; ++i) step(*working, opt);  // drift away from the anchor

  std::vector<Tensor> dst = working->parameters(), src = anchor.parameters();
  for (const Tensor& t : working->buffers()) dst.push_back(t);
  for (const Tensor& t : anchor.buffers()) src.push_back(t);
  MultiTensorCopy reset(copy_pairs(dst, src), {opt.state_buffer()});
  reset.run();
  opt.reset_step_counts();
  for (size_t i = 0; i < opt.params().size(); ++i) EXPECT_EQ(opt.step_count(i), 0);
  const auto wp = working->state_dict(), ap = anchor.state_dict();
  for (const auto& [name, t] : ap) EXPECT_TRUE(bit_equal(wp.at(name), t)) << name;
  EXPECT_EQ(raw(opt.state_buffer()), std::string(opt.state_buffer().nbytes(), '\0'));

  auto fresh = clone_as(anchor);
  Adam fresh_opt(fresh->parameters(), AdamOptions{1e-2});
  step(*working, opt);
  step(*fresh, fresh_opt);
  const auto w2 = working->state_dict(), f2 = fresh->state_dict();
  for (const auto& [name, t] : f2) EXPECT_TRUE(bit_equal(w2.at(name), t)) << name;
  EXPECT_TRUE(bit_equal(opt.state_buffer(), fresh_opt.state_buffer()));
}

TEST(MultiCopy, It3ResetEqualsFreshCopyAndOptimizerCpu) {
  check_it3_reset(Device::cpu());
}

TEST(MultiCopy, It3ResetEqualsFreshCopyAndOptimizerCuda) {
  IDEM_REQUIRE_GPU();
  check_it3_reset(Device::cuda(0));
}

TEST(MultiCopy, ResetStateIsZeroStateAndResetStepCounts) {
  Tensor p = randn({4}, kSeed).requires_grad_();
  Adam opt({p});
  sum(square(p)).backward();
  opt.step();
  ASSERT_EQ(opt.step_count(0), 1);
  const uint64_t calls = opt.kernel_calls();
  opt.reset_step_counts();  // host counters only
  EXPECT_EQ(opt.step_count(0), 0);
  EXPECT_EQ(opt.kernel_calls(), calls);
  EXPECT_NE(raw(opt.state_buffer()), std::string(opt.state_buffer().nbytes(), '\0'))
      << "reset_step_counts must leave the moments alone";
}

}  // namespace
}  // namespace idem
