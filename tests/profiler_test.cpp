// The op-level profiler (core/profiler.h): rows per (op, direction) with calls, launches and time.
#include <gtest/gtest.h>

#include "core/kernels/runtime.h"
#include "core/profiler.h"
#include "it3/adapt.h"
#include "it3/models.h"
#include "test_util.h"

using namespace idem;

namespace {
const profiler::Row* find(const std::vector<profiler::Row>& rows, const std::string& op, const std::string& dir) {
  for (const auto& r : rows)
    if (r.op == op && r.dir == dir) return &r;
  return nullptr;
}

void check_it3_profile(Device d) {
  auto m = it3::make_mlp_model(4, {8, 8}, it3::SignalSpec::regression(1, 5.0), {}, 1);
  m->to(d);
  it3::AdaptOptions o = it3::AdaptOptions::for_method(it3::Method::it3);
  o.steps = 2, o.check_finite = false;
  o.fused = it3::FusedMode::off;  // the op-by-op path: the one with ops to charge (the fused one is one call)
  it3::Adapter a(m, o);
  it3::Input x(randn({6, 4}, 2).to(d));
  a.adapt_and_predict(x);  // warm
  profiler::start(d);
  a.adapt_and_predict(x);
  const auto rows = profiler::stop();
  EXPECT_FALSE(profiler::active());
  // 3 Linear layers with grad history in f and F per step, two steps: 12 recorded forwards.
  const profiler::Row* fwd = find(rows, "linear_act", "forward");
  ASSERT_NE(fwd, nullptr);
  EXPECT_EQ(fwd->calls, 12u);
  const profiler::Row* step = find(rows, "Adam", "update");
  ASSERT_NE(step, nullptr);
  EXPECT_EQ(step->calls, 2u);
  ASSERT_NE(find(rows, "reset θ ← Θ, moments ← 0", "reset"), nullptr);
  ASSERT_NE(find(rows, "l1_distance", "backward"), nullptr);
  double total = 0;
  for (const auto& r : rows) {
    total += r.us;
    EXPECT_GE(r.us, 0.0);
  }
  EXPECT_GT(total, 0.0);
  if (d.is_cuda()) {
    EXPECT_EQ(step->launches, 2u);  // one fused Adam launch per step
    EXPECT_EQ(find(rows, "reset θ ← Θ, moments ← 0", "reset")->launches, 1u);  // one MultiTensorCopy
  }
  const std::string t = profiler::table(rows, "test");
  EXPECT_NE(t.find("| linear_act | forward | 12 |"), std::string::npos) << t;
}
}  // namespace

TEST(Profiler, ChargesEveryOpOfAnIt3Adaptation) { check_it3_profile(Device::cpu()); }

TEST(Profiler, MisuseIsAClearError) {
  idem::testing::expect_error([] { profiler::stop(); }, "profiler", "no profile");
  profiler::start(Device::cpu());
  idem::testing::expect_error([] { profiler::start(Device::cpu()); }, "profiler", "already running");
  profiler::stop();
}

TEST(Profiler, AnExceptionInTheProfiledWorkEndsTheProfile) {
  EXPECT_THROW(profiler::profile(Device::cpu(), [] { idem::fail("work", "boom"); }), idem::Error);
  EXPECT_FALSE(profiler::active());
  const auto rows = profiler::profile(Device::cpu(), [] { profiler::mark("op", "forward", 4); });
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].op, "op");
}

TEST(ProfilerCuda, CountsLaunchesPerOp) {
  IDEM_REQUIRE_GPU();
  check_it3_profile(Device::cuda());
}
