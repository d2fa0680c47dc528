// The CPU thread pool (contract and the determinism argument: core/parallel.h).
//
// One job at a time: a job is a chunked loop. The caller publishes it under the mutex, wakes the
// workers, and then takes chunks itself from the same atomic counter; each thread keeps taking
// chunks until none is left. The caller returns only when every worker that joined the job has
// left it, so no worker touches the job's function after parallel_for returns.
// A second thread that calls parallel_for while a job runs (the airfoil data generator has its own
// threads) does not wait for the pool: it runs its loop inline. Results do not change, because
// the partition is the same either way.
#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "core/error.h"

namespace idem {

namespace {

constexpr int kMaxThreads = 1024;

// True on a pool worker and on a caller while it runs chunks: a nested loop runs inline.
thread_local bool t_in_parallel = false;

class ThreadPool {
 public:
  ~ThreadPool() { resize(0); }

  int threads() {
    std::call_once(init_, [this] {
      int n = int(std::max(1u, std::thread::hardware_concurrency()));
      if (const char* env = std::getenv("IDEM_NUM_THREADS"); env && *env)
        n = parse_thread_count(env, "IDEM_NUM_THREADS");
      wanted_.store(n);
    });
    return wanted_.load();
  }

  uint64_t jobs_run() const { return jobs_run_.load(); }

  void set_threads(int n) {
    threads();  // the environment is read first, so it cannot override a later explicit call
    wanted_.store(n);
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    const Job job{&fn, n, grain, (n + grain - 1) / grain};
    const int want = threads();
    std::unique_lock<std::mutex> busy(submit_, std::try_to_lock);
    if (want <= 1 || t_in_parallel || !busy.owns_lock()) {
      run_inline(job);
      return;
    }
    // Workers stay between loops (created or joined only when the thread count changes); a
    // worker that finds no chunk left goes back to sleep.
    resize(size_t(want - 1));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      next_.store(0);
      failed_.store(false);
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    jobs_run_.fetch_add(1);
    t_in_parallel = true;
    work(job);
    t_in_parallel = false;
    std::exception_ptr error;
    {
      // Every worker that joined this job has left it once active_ is 0: none can still call
      // fn or take a chunk of the next job with this job's fields.
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return active_ == 0; });
      job_ = Job{};
      error = error_;
      error_ = nullptr;
    }
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

  void worker_loop(size_t index) {
    t_in_parallel = true;
    uint64_t seen = 0;
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen || index >= target_; });
        if (index >= target_) return;
        seen = generation_;
        if (!job_.fn) continue;  // woke after that job ended
        job = job_;
        ++active_;
      }
      work(job);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--active_ == 0) done_.notify_all();
      }
    }
  }

  // Keeps `want` workers (the caller is one more thread). Called with submit_ held, or from the
  // destructor, so no job is running.
  void resize(size_t want) {
    std::vector<std::thread> leaving;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      target_ = want;
      while (workers_.size() < want) {
        const size_t index = workers_.size();
        workers_.emplace_back([this, index] { worker_loop(index); });
      }
      while (workers_.size() > want) {
        leaving.push_back(std::move(workers_.back()));
        workers_.pop_back();
      }
    }
    if (leaving.empty()) return;
    wake_.notify_all();
    for (auto& t : leaving) t.join();
  }

  std::once_flag init_;
  std::atomic<int> wanted_{1};
  std::mutex submit_;  // one job at a time
  std::mutex mutex_;   // guards job_, generation_, target_, active_, error_ and workers_
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  size_t target_ = 0;
  uint64_t generation_ = 0;
  int active_ = 0;
  Job job_;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  std::atomic<uint64_t> jobs_run_{0};
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

uint64_t pool_jobs_run() { return pool().jobs_run(); }

bool inside_parallel_loop() { return t_in_parallel; }

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw Error("[threads] set_num_threads(" + std::to_string(n) +
                "): expected a thread count from 1 to " + std::to_string(kMaxThreads));
  if (t_in_parallel) throw Error("[threads] set_num_threads called from inside a parallel loop");
  pool().set_threads(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (grain < 1) throw Error("[parallel_for] grain " + std::to_string(grain) + " must be >= 1");
  if (n <= 0) return;
  if (n <= grain) {
    fn(0, n);
    return;
  }
  pool().run(n, grain, fn);
}

ThreadCountGuard::ThreadCountGuard(int n) : prev_(num_threads()) { set_num_threads(n); }
ThreadCountGuard::~ThreadCountGuard() {
  try {
    set_num_threads(prev_);
  } catch (...) {
  }
}

}  // namespace idem
