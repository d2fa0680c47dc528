// The CPU thread pool (contract and the determinism argument: core/parallel.h).
//
// One job at a time: a job is a chunked loop. The caller writes the job's fields, opens it by
// making the generation counter odd, runs chunks itself from the same atomic chunk counter, then
// closes it (generation even) and waits until every worker that joined has left. Each thread
// keeps taking chunks until none is left.
//
// Why workers spin before they sleep: a CPU training step is a chain of small parallel loops a
// few µs apart. Waking a sleeping thread (futex + inter-processor interrupt) costs tens of µs in
// a VM, more than such a loop's work, so 2 threads were slower than 1. A worker that finishes a
// job watches the generation counter for spin_us (default 50 µs) with pause instructions and
// yields, and only then sleeps on the condition variable; the caller likewise spins on the
// active-worker count before it sleeps. Back-to-back loops then never touch the kernel, and an
// idle pool still sleeps (a bounded spin, never a busy wait).
//
// How a late worker is kept out of a finished job (no mutex on the fast path): a worker first
// counts itself in (active_, seq_cst) and then reads the generation (seq_cst). Odd: the job is
// open and the caller, which closes it (seq_cst store) before it reads active_ (seq_cst), is
// bound to see the worker and wait for it. Even: the job is closed, and the worker leaves
// without reading its fields. So the caller rewrites job_ only when no worker can read it.
// Sleeping and waking use the same store-then-load pairing (sleeping_ / caller_waiting_), and
// the waker takes the mutex before notifying, so no wake-up is lost.
//
// A second thread that calls parallel_for while a job runs (the airfoil data generator has its own
// threads) does not wait for the pool: it runs its loop inline. Results do not change, because
// the partition is the same either way.
#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/cpu_cores.h"
#include "core/error.h"

namespace idem {

namespace {

constexpr int kMaxThreads = 1024;
constexpr int kMaxSpinUs = 1000000;

// True on a pool worker and on a caller while it runs chunks: a nested loop runs inline.
thread_local bool t_in_parallel = false;

// One short wait in a spin loop: tells the core (and a hyperthread sibling) that we are spinning.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until done() is true or spin_us have passed; true when done() became true. Checks the
// clock and yields the core (other threads may need it more: an oversubscribed pool, other
// processes) every 32 pauses.
template <typename Done>
bool spin_until(int spin_us, Done done) {
  if (done()) return true;
  if (spin_us <= 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
  for (unsigned i = 1;; ++i) {
    cpu_relax();
    if (done()) return true;
    if (i % 32 == 0) {
      if (std::chrono::steady_clock::now() >= deadline) return done();
      std::this_thread::yield();
    }
  }
}

class ThreadPool {
 public:
  ~ThreadPool() { resize(0); }

  int threads() {
    std::call_once(init_, [this] {
      int n = available_cores();  // the machine's cores as far as this process may use them
      if (const char* env = std::getenv("IDEM_NUM_THREADS"); env && *env)
        n = parse_thread_count(env, "IDEM_NUM_THREADS");
      wanted_.store(n);
    });
    return wanted_.load();
  }

  PoolStats stats() const {
    return PoolStats{jobs_run_.load(), wakes_.load(), sleeping_.load()};
  }

  void set_threads(int n) {
    threads();  // the environment is read first, so it cannot override a later explicit call
    wanted_.store(n);
  }

  int spin_us() const { return spin_us_.load(std::memory_order_relaxed); }
  void set_spin_us(int us) { spin_us_.store(us, std::memory_order_relaxed); }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    const Job job{&fn, n, grain, (n + grain - 1) / grain};
    const int want = threads();
    std::unique_lock<std::mutex> busy(submit_, std::try_to_lock);
    if (want <= 1 || t_in_parallel || !busy.owns_lock()) {
      run_inline(job);
      return;
    }
    // Workers stay between loops (created or joined only when the thread count changes).
    if (size_t(want - 1) != size_) resize(size_t(want - 1));
    // No worker is inside a job now (the last run waited for them), so these plain writes race
    // with nothing; the seq_cst store of an odd generation publishes them.
    job_ = job;
    next_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    const uint64_t open = gen_.load(std::memory_order_relaxed) + 1;  // only a submitter writes gen_
    gen_.store(open);
    if (sleeping_.load() > 0) {
      { std::lock_guard<std::mutex> lock(mutex_); }  // a worker between its check and its wait
      wake_.notify_all();
      wakes_.fetch_add(1, std::memory_order_relaxed);
    }
    jobs_run_.fetch_add(1, std::memory_order_relaxed);
    t_in_parallel = true;
    work(job);
    t_in_parallel = false;
    gen_.store(open + 1);  // closed: no worker joins from now on
    if (!spin_until(spin_us(), [&] { return active_.load() == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      caller_waiting_.store(true);
      done_.wait(lock, [&] { return active_.load() == 0; });
      caller_waiting_.store(false);
    }
    // Every worker that joined has left (its seq_cst decrement is read above): error_ is ours.
    std::exception_ptr error = error_;
    error_ = nullptr;
    if (error) std::rethrow_exception(error);
  }

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0, grain = 1, chunks = 0;
  };

  static void run_inline(const Job& job) {
    const bool outer = t_in_parallel;
    t_in_parallel = true;
    try {
      for (int64_t lo = 0; lo < job.n; lo += job.grain) (*job.fn)(lo, std::min(job.n, lo + job.grain));
    } catch (...) {
      t_in_parallel = outer;
      throw;
    }
    t_in_parallel = outer;
  }

  // Takes chunks of `job` until none is left. After a failure the rest are taken but skipped.
  void work(const Job& job) {
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= job.chunks) return;
      if (failed_.load()) continue;
      try {
        (*job.fn)(c * job.grain, std::min(job.n, (c + 1) * job.grain));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true);
      }
    }
  }

  // A worker leaves a job (or backs out of a closed one); the last one out wakes a caller that
  // stopped spinning.
  void leave() {
    if (active_.fetch_sub(1) == 1 && caller_waiting_.load()) {
      { std::lock_guard<std::mutex> lock(mutex_); }  // the caller between its check and its wait
      done_.notify_all();
    }
  }

  // Waits until a job newer than `seen` is open (true) or this worker is to exit (false):
  // spins first, then sleeps on wake_.
  bool wait_for_job(size_t index, uint64_t seen) {
    auto stop = [&] { return index >= target_.load(); };
    auto ready = [&] {
      const uint64_t g = gen_.load();
      return (g & 1) != 0 && g != seen;
    };
    if (spin_until(spin_us(), [&] { return stop() || ready(); })) return !stop();
    std::unique_lock<std::mutex> lock(mutex_);
    sleeping_.fetch_add(1);
    wake_.wait(lock, [&] { return stop() || ready(); });
    sleeping_.fetch_sub(1);
    return !stop();
  }

  void worker_loop(size_t index) {
    t_in_parallel = true;
    uint64_t seen = 0;
    while (wait_for_job(index, seen)) {
      active_.fetch_add(1);  // counted in before the generation is read (file comment)
      const uint64_t g = gen_.load();
      seen = g;
      if (g & 1) work(Job(job_));  // else the job closed meanwhile: back out
      leave();
    }
  }

  // Keeps `want` workers (the caller is one more thread). Called with submit_ held, or from the
  // destructor, so no job is running.
  void resize(size_t want) {
    std::vector<std::thread> leaving;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      target_.store(want);
      while (workers_.size() < want) {
        const size_t index = workers_.size();
        workers_.emplace_back([this, index] { worker_loop(index); });
      }
      while (workers_.size() > want) {
        leaving.push_back(std::move(workers_.back()));
        workers_.pop_back();
      }
      size_ = want;
    }
    if (leaving.empty()) return;
    wake_.notify_all();
    for (auto& t : leaving) t.join();
  }

  std::once_flag init_;
  std::atomic<int> wanted_{1};
  std::atomic<int> spin_us_{50};
  std::mutex submit_;  // one job at a time; guards size_
  std::mutex mutex_;   // guards workers_ and error_; the sleeps and wakes on wake_ and done_
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  size_t size_ = 0;                   // workers_.size(), read without mutex_ by the submitter
  std::atomic<size_t> target_{0};     // workers with index >= target_ exit
  std::atomic<uint64_t> gen_{0};      // odd: job_ is open for joining
  std::atomic<int> active_{0};        // workers counted into the current job
  std::atomic<int> sleeping_{0};      // workers asleep on wake_ (or about to be)
  std::atomic<bool> caller_waiting_{false};
  Job job_;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  std::atomic<uint64_t> jobs_run_{0}, wakes_{0};
};

// Never destroyed, like the CPU allocator's cache: a static object destroyed after it could still
// run a parallel loop, and joining sleeping workers at exit buys nothing.
ThreadPool& pool() {
  static ThreadPool* p = new ThreadPool();  // intentionally never deleted (see above)
  return *p;
}

}  // namespace

int parse_thread_count(const char* text, const char* what) {
  const std::string s = text ? text : "";
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || end == s.c_str() || *end != '\0' || v < 1 || v > kMaxThreads)
    throw Error(std::string("[threads] ") + what + " = '" + s +
                "' is not a thread count: expected a whole number from 1 to " +
                std::to_string(kMaxThreads));
  return int(v);
}

int num_threads() { return pool().threads(); }

uint64_t pool_jobs_run() { return pool().stats().jobs_run; }

PoolStats pool_stats() { return pool().stats(); }

int pool_spin_us() { return pool().spin_us(); }

void set_pool_spin_us(int us) {
  if (us < 0 || us > kMaxSpinUs)
    throw Error("[threads] set_pool_spin_us(" + std::to_string(us) + "): expected 0 to " +
                std::to_string(kMaxSpinUs) + " µs");
  pool().set_spin_us(us);
}

bool inside_parallel_loop() { return t_in_parallel; }

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw Error("[threads] set_num_threads(" + std::to_string(n) +
                "): expected a thread count from 1 to " + std::to_string(kMaxThreads));
  if (t_in_parallel) throw Error("[threads] set_num_threads called from inside a parallel loop");
  pool().set_threads(n);
}

namespace detail {

void bad_grain(int64_t grain) {
  throw Error("[parallel_for] grain " + std::to_string(grain) + " must be >= 1");
}

void parallel_for_split(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  pool().run(n, grain, fn);
}

}  // namespace detail

ThreadCountGuard::ThreadCountGuard(int n) : prev_(num_threads()) { set_num_threads(n); }
ThreadCountGuard::~ThreadCountGuard() {
  try {
    set_num_threads(prev_);
  } catch (...) {
  }
}

}  // namespace idem
