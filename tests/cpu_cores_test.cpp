// The default thread count: the cores the process may use (core/cpu_cores.h).
#include "core/cpu_cores.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace idem {
namespace {

TEST(CpuCores, CgroupV2CpuMaxGivesWholeCoresRoundedUp) {
  EXPECT_EQ(cgroup_v2_cpu_limit("max 100000\n"), 0) << "no limit";
  EXPECT_EQ(cgroup_v2_cpu_limit("200000 100000\n"), 2);
  EXPECT_EQ(cgroup_v2_cpu_limit("150000 100000"), 2) << "1.5 CPUs keep 2 threads partly busy";
  EXPECT_EQ(cgroup_v2_cpu_limit("50000 100000"), 1);
  EXPECT_EQ(cgroup_v2_cpu_limit("100000 100000"), 1);
  // What does not parse sets no limit rather than a wrong one.
  EXPECT_EQ(cgroup_v2_cpu_limit(""), 0);
  EXPECT_EQ(cgroup_v2_cpu_limit("100000"), 0);
  EXPECT_EQ(cgroup_v2_cpu_limit("abc 100000"), 0);
  EXPECT_EQ(cgroup_v2_cpu_limit("100000 0"), 0);
}

TEST(CpuCores, CgroupV1QuotaAndPeriod) {
  EXPECT_EQ(cgroup_v1_cpu_limit("-1\n", "100000\n"), 0) << "quota -1: no limit";
  EXPECT_EQ(cgroup_v1_cpu_limit("400000\n", "100000\n"), 4);
  EXPECT_EQ(cgroup_v1_cpu_limit("250000", "100000"), 3);
  EXPECT_EQ(cgroup_v1_cpu_limit("", ""), 0);
  EXPECT_EQ(cgroup_v1_cpu_limit("100000", "x"), 0);
}

TEST(CpuCores, NeverMoreThanTheMachineNorTheAffinityMask) {
  const int n = available_cores();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, int(std::max(1u, std::thread::hardware_concurrency())));
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_LE(n, CPU_COUNT(&set));
  // Narrow the mask to one CPU: the count follows it.
  int first = 0;
  while (!CPU_ISSET(first, &set)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  const int narrowed = available_cores();
  ASSERT_EQ(sched_setaffinity(0, sizeof(set), &set), 0);  // restore before any assertion can stop
  EXPECT_EQ(narrowed, 1);
#endif
}

}  // namespace
}  // namespace idem
