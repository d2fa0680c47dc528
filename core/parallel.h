// The CPU thread pool: how the CPU kernels use several cores without giving up bit-for-bit
// reproducibility.
//
// Why our own pool and not OpenMP: the pool is ~150 lines that a reader can follow, it lets
// ThreadSanitizer see every synchronization (GCC's libgomp is not instrumented, so a TSan run
// over OpenMP code reports false races), an exception thrown inside a task reaches the caller,
// and the thread count can change at run time without restarting a runtime.
//
// Why results do not depend on the thread count: a parallel loop is cut into chunks by the
// loop's size and a grain that the kernel chooses, never by the number of threads. Each chunk
// is computed by one thread, start to finish, in the same order as a serial run would compute
// it. Threads only decide *who* computes a chunk, not *what* it computes. Kernels whose chunks
// write disjoint outputs are therefore bit-identical at 1 and at N threads; reductions go
// through parallel_sum, which adds the per-chunk partials in chunk order on the caller.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace idem {

// The number of threads CPU kernels use (>= 1). The first call reads the environment
// variable IDEM_NUM_THREADS (a whole number 1..1024); unset, it is the number of cores the
// process may use (available_cores, core/cpu_cores.h: the machine's, capped by the affinity mask
// and the cgroup's CPU quota). An invalid IDEM_NUM_THREADS throws idem::Error.
int num_threads();

// requires: 1 <= n <= 1024, else idem::Error naming the value. Takes effect on the next
// parallel loop; the pool grows or shrinks then. Not to be called from inside a parallel loop.
void set_num_threads(int n);

// Parses a thread count given by a user ("--threads 4", IDEM_NUM_THREADS=4); `what` names
// where it came from in the error message.
int parse_thread_count(const char* text, const char* what);

// Calls fn(lo, hi) once for each chunk [lo, hi) of [0, n): chunk c is
// [c·grain, min(n, (c+1)·grain)). Chunks run on the pool's threads and on the caller, in no
// particular order; the call returns when every chunk is done. The partition depends only on
// n and grain (see the file comment).
//   - n <= grain, one thread, or a call from inside a chunk (nested loop): runs inline, serially.
//   - an exception thrown by fn: the remaining chunks are skipped, and the first exception is
//     rethrown here once all running chunks have finished (no thread is left behind).
// requires: grain >= 1, n >= 0.
// A template so that a loop that runs inline (n <= grain: most loops over small tensors) calls
// fn directly, without building a std::function (a heap allocation for most lambdas).
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& fn);

namespace detail {
[[noreturn]] void bad_grain(int64_t grain);
// parallel_for's split path (n > grain, grain >= 1).
void parallel_for_split(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
}  // namespace detail

template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (grain < 1) detail::bad_grain(grain);
  if (n <= 0) return;
  if (n <= grain) {
    fn(int64_t(0), n);
    return;
  }
  // std::ref: the std::function holds a pointer to fn, never a copy (no allocation either).
  detail::parallel_for_split(n, grain, std::function<void(int64_t, int64_t)>(std::ref(fn)));
}

// How many loops have run on the pool's threads (not inline) since the process started: lets a
// test check that a kernel really split its work.
uint64_t pool_jobs_run();

// What the pool has done since the process started (tests, benchmarks).
struct PoolStats {
  uint64_t jobs_run = 0;  // loops run on the pool's threads (pool_jobs_run)
  uint64_t wakes = 0;     // loops that had to wake a sleeping worker (a futex call)
  int sleeping = 0;       // workers asleep now (not spinning, not working)
};
PoolStats pool_stats();

// How long an idle worker spins (pause instructions and yields, watching for the next loop)
// before it sleeps, and how long a caller spins for the last worker to finish before it sleeps;
// default 50 µs. Back-to-back small loops then find the workers awake: waking a sleeping thread
// costs more than such a loop (tens of µs in a VM). 0 sleeps at once. Never changes results.
// requires: 0 <= us <= 1 000 000, else idem::Error.
int pool_spin_us();
void set_pool_spin_us(int us);

// True while the calling thread runs a chunk of a parallel loop, where a nested parallel_for
// runs inline: a kernel can then skip cutting its work for threads it will not get.
bool inside_parallel_loop();

// A fixed-order sum: partial[c] = chunk_sum(lo, hi) for each chunk of parallel_for(n, grain),
// computed in parallel, then added in chunk order on the caller. The same bits at any thread
// count (but not those of one serial loop over [0, n) unless n <= grain).
template <typename T, typename F>
T parallel_sum(int64_t n, int64_t grain, F chunk_sum) {
  if (n <= grain) return n > 0 ? chunk_sum(int64_t(0), n) : T(0);
  const int64_t chunks = (n + grain - 1) / grain;
  std::vector<T> partial(static_cast<size_t>(chunks), T(0));
  parallel_for(n, grain, [&](int64_t lo, int64_t hi) { partial[size_t(lo / grain)] = chunk_sum(lo, hi); });
  T total = T(0);
  for (const T& p : partial) total += p;
  return total;
}

// A grain that gives chunks of about `work_per_chunk` units when one item costs
// `work_per_item` units (at least 1 item per chunk). Kernels use it so that small tensors stay
// on one thread, where waking the pool would cost more than the work.
inline int64_t grain_for(int64_t work_per_item, int64_t work_per_chunk = int64_t(1) << 16) {
  if (work_per_item < 1) work_per_item = 1;
  const int64_t g = work_per_chunk / work_per_item;
  return g < 1 ? 1 : g;
}

// A grain for parallel_for(n, ·) near `grain` that cuts [0, n) into an even number of
// near-equal chunks whenever it cuts it at all (n > grain). For loops whose chunks each compute
// their own outputs (elementwise ops, pooling planes, reductions over independent rows), where
// the chunk sizes change no bits: ceil(n / grain) chunks, the last one short, leave a thread
// idle when the count is odd (3 chunks on 2 threads take 2 chunks' time, 4 chunks of 3/4 the
// size take 1.5), and a short last chunk idles the other thread at the end. Like grain, the
// result depends on n and grain only, never on the thread count. It is at most `grain`, and the
// count is even whenever the chunks are at least as long as their count (n >= c·(c − 1) for c
// chunks: every loop that uses it), else it may stay odd (n = 5, grain = 2 gives 3 chunks).
inline int64_t even_grain(int64_t n, int64_t grain) {
  if (grain < 1) grain = 1;
  if (n <= grain) return grain;
  int64_t chunks = (n + grain - 1) / grain;
  chunks += chunks & 1;
  return (n + chunks - 1) / chunks;
}

// Sets the thread count for its lifetime and restores the previous one (tests, benchmarks).
class ThreadCountGuard {
 public:
  explicit ThreadCountGuard(int n);
  ~ThreadCountGuard();
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int prev_;
};

}  // namespace idem
