// The CPU thread pool (core/parallel.h): every index once, the partition independent of the
// thread count, exceptions reach the caller without a hang, nested and concurrent loops, clear
// errors for bad thread counts, and the spin before sleeping (back-to-back loops wake no one,
// an idle pool sleeps, thread counts change while workers spin).
#include "core/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.h"

namespace idem {
namespace {

using testing::expect_error;
using testing::SpinGuard;
using testing::wait_for_sleeping_workers;

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

// even_grain: no larger than the grain, and an even count of chunks, the last one short by less
// than one item per chunk, wherever the chunks are at least as long as their count.
TEST(Parallel, EvenGrainGivesAnEvenCountOfNearEqualChunks) {
  EXPECT_EQ(even_grain(100, 100), 100);  // one chunk: left alone
  EXPECT_EQ(even_grain(0, 8), 8);
  EXPECT_EQ(even_grain(640, 45), 40);       // the cnn's first pooling: 15 chunks -> 16
  EXPECT_EQ(even_grain(1280, 409), 320);    // its second: 409, 409, 409, 53 -> 4 × 320
  EXPECT_EQ(even_grain(92160, 32768), 23040);  // a leaky ReLU: 3 chunks -> 4
  int checked = 0;
  for (int64_t grain : {3, 4, 7, 45, 409, 1000}) {
    for (int64_t n = grain + 1; n < grain * 60; n += 1 + n / 97) {
      const int64_t g = even_grain(n, grain);
      ASSERT_GE(g, 1);
      ASSERT_LE(g, grain) << "n " << n << " grain " << grain;
      const int64_t chunks = (n + g - 1) / g;
      int64_t wanted = (n + grain - 1) / grain;  // the plain count, rounded up to even
      wanted += wanted & 1;
      if (n < wanted * (wanted - 1)) continue;
      EXPECT_EQ(chunks, wanted) << "n " << n << " grain " << grain;
      ++checked;
      EXPECT_EQ(chunks % 2, 0) << "n " << n << " grain " << grain << " -> " << g;
      EXPECT_LE(g * chunks - n, chunks) << "the last chunk is short by at most one item a chunk";
    }
  }
  EXPECT_GT(checked, 1000);
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

// Busy work of about `us` microseconds, so that a chunk lasts long enough for a worker to join.
void busy_for_us(int us) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < end) {
  }
}

TEST(Parallel, BackToBackLoopsFindTheWorkersAwake) {
  ThreadCountGuard threads(2);
  SpinGuard spin(200000);  // 0.2 s: far longer than the gap between two loops, even under TSan
  parallel_for(2, 1, [](int64_t, int64_t) {});  // starts the worker
  const PoolStats before = pool_stats();
  const std::thread::id caller = std::this_thread::get_id();
  int on_worker = 0;
  for (int loop = 0; loop < 300; ++loop) {
    std::atomic<int64_t> total{0};
    std::atomic<bool> worker_ran{false};
    parallel_for(4, 1, [&](int64_t lo, int64_t hi) {
      busy_for_us(20);
      if (std::this_thread::get_id() != caller) worker_ran.store(true);
      total.fetch_add(hi - lo);
    });
    ASSERT_EQ(total.load(), 4) << "loop " << loop;
    on_worker += worker_ran.load() ? 1 : 0;
  }
  const PoolStats after = pool_stats();
  EXPECT_EQ(after.jobs_run - before.jobs_run, 300u);
  // A worker sleeps only after 0.2 s without a loop; a wake or two allows for a descheduled one.
  EXPECT_LE(after.wakes - before.wakes, 2u);
  EXPECT_GT(on_worker, 0) << "the spinning worker never took a chunk";
}

TEST(Parallel, AnIdlePoolSleepsAndWakesForTheNextLoop) {
  ThreadCountGuard threads(3);
  SpinGuard spin(1000);
  std::atomic<int64_t> total{0};
  parallel_for(100, 1, [&](int64_t lo, int64_t hi) { total.fetch_add(hi - lo); });
  ASSERT_EQ(total.load(), 100);
  // Both workers stop spinning after 1 ms and sleep: an idle pool burns no CPU.
  ASSERT_TRUE(wait_for_sleeping_workers(2));
  ASSERT_EQ(pool_stats().sleeping, 2);
  const uint64_t wakes = pool_stats().wakes;
  total.store(0);
  parallel_for(100, 1, [&](int64_t lo, int64_t hi) { total.fetch_add(hi - lo); });
  EXPECT_EQ(total.load(), 100);
  EXPECT_EQ(pool_stats().wakes, wakes + 1) << "the loop had to wake the sleeping workers once";
}

TEST(Parallel, WithoutSpinEveryLoopStillFinishesAndErrorsStillArrive) {
  // Spin 0: workers sleep after every loop and a caller whose worker is still busy sleeps too
  // (the 2 ms chunks), so every wake-up path runs.
  ThreadCountGuard threads(2);
  SpinGuard spin(0);
  for (int loop = 0; loop < 200; ++loop) {
    std::atomic<int64_t> total{0};
    parallel_for(64, 5, [&](int64_t lo, int64_t hi) { total.fetch_add(hi - lo); });
    ASSERT_EQ(total.load(), 64) << "loop " << loop;
  }
  for (int loop = 0; loop < 10; ++loop) {
    std::atomic<int64_t> total{0};
    parallel_for(2, 1, [&](int64_t lo, int64_t hi) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      total.fetch_add(hi - lo);
    });
    ASSERT_EQ(total.load(), 2);
    EXPECT_THROW(parallel_for(2, 1, [&](int64_t lo, int64_t) {
                   std::this_thread::sleep_for(std::chrono::milliseconds(lo == 1 ? 2 : 0));
                   if (lo == 1) throw std::runtime_error("late chunk failed");
                 }),
                 std::runtime_error);
  }
}

TEST(Parallel, ManyTinyLoopsAndThreadCountChangesWhileWorkersSpin) {
  SpinGuard spin(100000);  // workers are still spinning when the next count takes effect
  for (int round = 0; round < 20; ++round) {
    for (int threads : {4, 2, 5, 1, 3}) {
      ThreadCountGuard guard(threads);
      for (int loop = 0; loop < 20; ++loop) {
        std::atomic<int64_t> total{0};
        parallel_for(9, 2, [&](int64_t lo, int64_t hi) { total.fetch_add(hi - lo); });
        ASSERT_EQ(total.load(), 9) << "round " << round << " threads " << threads;
      }
    }
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
  expect_error([] { set_pool_spin_us(-1); }, "set_pool_spin_us(-1)");
  expect_error([] { set_pool_spin_us(2000000); }, "expected 0 to 1000000");
}

}  // namespace
}  // namespace idem
