// The CPU thread pool (core/parallel.h): every index once, the partition independent of the
// thread count, exceptions reach the caller without a hang, nested and concurrent loops, and
// clear errors for bad thread counts.
#include "core/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.h"

namespace idem {
namespace {

using testing::expect_error;

TEST(Parallel, EveryIndexExactlyOnceAtEveryThreadCount) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadCountGuard guard(threads);
    for (int64_t n : {0, 1, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h.store(0);
        parallel_for(n, grain, [&](int64_t lo, int64_t hi) {
          EXPECT_LE(hi - lo, grain);
          EXPECT_EQ(lo % grain, 0) << "chunks start at multiples of the grain";
          for (int64_t i = lo; i < hi; ++i) hits[size_t(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[size_t(i)].load(), 1) << "threads " << threads << " n " << n << " grain " << grain << " index " << i;
      }
    }
  }
}

TEST(Parallel, SumHasTheSameBitsAtEveryThreadCount) {
  std::vector<float> x(100003);
  uint32_t state = 12345;
  for (auto& v : x) {
    state = state * 1664525u + 1013904223u;
    v = float(state >> 8) / float(1 << 24) - 0.5f;
  }
  auto sum_at = [&](int threads) {
    ThreadCountGuard guard(threads);
    return parallel_sum<float>(int64_t(x.size()), 1000, [&](int64_t lo, int64_t hi) {
      float s = 0;
      for (int64_t i = lo; i < hi; ++i) s += x[size_t(i)];
      return s;
    });
  };
  const float one = sum_at(1);
  for (int threads : {2, 3, 7, 16}) {
    const float many = sum_at(threads);
    EXPECT_EQ(std::memcmp(&one, &many, sizeof(float)), 0) << one << " vs " << many << " at " << threads << " threads";
  }
}

TEST(Parallel, AnExceptionInATaskReachesTheCallerAndThePoolKeepsWorking) {
  ThreadCountGuard guard(4);
  std::atomic<int> ran{0};
  EXPECT_THROW(parallel_for(1000, 10,
                            [&](int64_t lo, int64_t) {
                              ran.fetch_add(1);
                              if (lo == 500) throw std::runtime_error("task 50 failed");
                            }),
               std::runtime_error);
  EXPECT_GE(ran.load(), 1);
  // The pool is not stuck: the next loops run to completion, many times.
  for (int round = 0; round < 50; ++round) {
    std::atomic<int64_t> total{0};
    parallel_for(256, 4, [&](int64_t lo, int64_t hi) { total.fetch_add(hi - lo); });
    ASSERT_EQ(total.load(), 256);
  }
  // An idem::Error keeps its type and message.
  expect_error([] { parallel_for(100, 1, [](int64_t lo, int64_t) {
                  if (lo == 99) throw Error("[demo_op] chunk 99 failed");
                }); },
               "chunk 99 failed");
}

TEST(Parallel, NestedLoopsRunInlineAndFinish) {
  ThreadCountGuard guard(4);
  std::atomic<int64_t> total{0};
  parallel_for(16, 1, [&](int64_t, int64_t) {
    parallel_for(100, 7, [&](int64_t lo, int64_t hi) { total.fetch_add(hi - lo); });
  });
  EXPECT_EQ(total.load(), 1600);
}

TEST(Parallel, TwoCallerThreadsAtOnceBothFinish) {
  ThreadCountGuard guard(3);
  std::atomic<int64_t> a{0}, b{0};
  std::thread t([&] {
    for (int i = 0; i < 200; ++i) parallel_for(64, 4, [&](int64_t lo, int64_t hi) { a.fetch_add(hi - lo); });
  });
  for (int i = 0; i < 200; ++i) parallel_for(64, 4, [&](int64_t lo, int64_t hi) { b.fetch_add(hi - lo); });
  t.join();
  EXPECT_EQ(a.load(), 200 * 64);
  EXPECT_EQ(b.load(), 200 * 64);
}

TEST(Parallel, ThreadCountsChangeBetweenLoops) {
  for (int threads : {4, 1, 6, 2, 1, 3}) {
    ThreadCountGuard guard(threads);
    EXPECT_EQ(num_threads(), threads);
    std::atomic<int64_t> total{0};
    parallel_for(1000, 9, [&](int64_t lo, int64_t hi) { total.fetch_add(hi - lo); });
    EXPECT_EQ(total.load(), 1000);
  }
}

TEST(Parallel, BadThreadCountsAreClearErrors) {
  expect_error([] { set_num_threads(0); }, "expected a thread count from 1 to 1024");
  expect_error([] { set_num_threads(-3); }, "set_num_threads(-3)");
  expect_error([] { set_num_threads(5000); }, "set_num_threads(5000)");
  expect_error([] { parse_thread_count("0", "--threads"); }, "--threads = '0' is not a thread count");
  expect_error([] { parse_thread_count("many", "--threads"); }, "'many'");
  expect_error([] { parse_thread_count("4x", "IDEM_NUM_THREADS"); }, "IDEM_NUM_THREADS");
  expect_error([] { parse_thread_count("", "--threads"); }, "not a thread count");
  EXPECT_EQ(parse_thread_count("12", "--threads"), 12);
  expect_error([] { parallel_for(10, 0, [](int64_t, int64_t) {}); }, "grain 0 must be >= 1");
}

}  // namespace
}  // namespace idem
