// Run-time choices from environment variables that take one of a few named values
// (IDEM_GEMM, IDEM_CPU_GEMM, IDEM_CONV, IDEM_FUSED_KERNEL, IDEM_FUSED_SYNC,
// IDEM_GEMM_CLUSTER_SPLIT, IDEM_SAGE_CONV) or are on/off
// switches (IDEM_ANOMALY, IDEM_DETERMINISTIC, IDEM_CUDA_SYNC, IDEM_POISON_ALLOC,
// IDEM_IT3_HEAD_STAGED): one reader for
// each kind, so
// every such switch treats a bad value the same way, as an error that says what was expected,
// never as a silent fallback to the default (a typo in a comparison run would otherwise time
// the default twice).
#pragma once
#include <atomic>
#include <initializer_list>
#include <string>
#include <type_traits>

namespace idem {

// The value of environment variable `name` when it is one of `allowed` (exact, case-sensitive);
// `fallback` when it is unset or empty. Any other value is an idem::Error naming the variable,
// the value and the allowed values, e.g.
//   [env] IDEM_GEMM is 'cuBLAS'; expected one of: hand, cublas (or unset: hand)
std::string env_choice(const char* name, std::initializer_list<const char*> allowed,
                       const char* fallback);

// An on/off switch (IDEM_ANOMALY, IDEM_DETERMINISTIC, IDEM_CUDA_SYNC, IDEM_POISON_ALLOC,
// IDEM_IT3_HEAD_STAGED): true for 1, true or on; false for 0, false or off; `fallback` when
// unset or empty (off for every switch but IDEM_IT3_HEAD_STAGED); anything else is an
// idem::Error, as for env_choice.
bool env_flag(const char* name, bool fallback = false);

// A process-wide setting that code may choose with set() and the environment gives otherwise
// (the GEMM, CPU GEMM and convolution backends, IDEM_DETERMINISTIC, IDEM_ANOMALY,
// IDEM_POISON_ALLOC, IDEM_IT3_HEAD_STAGED). The environment is read by the first
// get() that no set() came before, and kept; until then a bad value throws at every get(). An
// explicit set() never reads the environment, so a program (or test) that chooses the setting
// works whatever the variable holds. `read` is env_choice/env_flag behind a small function.
// T: bool or an enum whose values are >= 0. Constant-initialised, so a namespace-scope or
// function-local instance never runs code, let alone throws, at load time.
template <typename T>
class EnvSetting {
  static_assert(std::is_enum_v<T> || std::is_same_v<T, bool>, "EnvSetting holds a bool or an enum");

 public:
  constexpr explicit EnvSetting(T (*read)()) : read_(read) {}
  EnvSetting(const EnvSetting&) = delete;
  EnvSetting& operator=(const EnvSetting&) = delete;

  T get() {
    int v = state_.load();
    if (v == kUnread) {
      // Two first readers both read the same environment; a set() between the read and the
      // exchange wins, because the exchange only replaces kUnread.
      int expected = kUnread;
      state_.compare_exchange_strong(expected, static_cast<int>(read_()));
      v = state_.load();
    }
    return static_cast<T>(v);
  }
  void set(T value) { state_.store(static_cast<int>(value)); }

 private:
  static constexpr int kUnread = -1;
  T (*read_)();
  std::atomic<int> state_{kUnread};
};

}  // namespace idem
