// Helpers shared by the unit tests (header-only): error-message checks, element-by-element
// comparisons, and scratch files. One copy here so that every test file checks the same way.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "core/parallel.h"
#include "core/tensor.h"

// Skips a CUDA test, saying why, on a machine without a usable GPU (CI has none).
#define IDEM_REQUIRE_GPU()                 \
  if (!::idem::cuda::available())          \
  GTEST_SKIP() << "no usable GPU: " << ::idem::cuda::device_summary()

namespace idem::testing {

// Sets a process-wide setting through its setter for a scope and restores the value its
// getter gave before when the scope ends.
template <typename T, T (*Get)(), void (*Set)(T)>
class ScopedSetting {
 public:
  explicit ScopedSetting(T value) : prev_(Get()) { Set(value); }
  ~ScopedSetting() { Set(prev_); }
  ScopedSetting(const ScopedSetting&) = delete;
  ScopedSetting& operator=(const ScopedSetting&) = delete;

 private:
  T prev_;
};

// How long the CPU pool's idle workers spin (core/parallel.h), in µs.
using SpinGuard = ScopedSetting<int, pool_spin_us, set_pool_spin_us>;
// The CUDA GEMM backend.
using GemmGuard = ScopedSetting<GemmBackend, gemm_backend, set_gemm_backend>;
// The CPU GEMM (packed or Eigen).
using CpuGemmGuard = ScopedSetting<CpuGemm, cpu_gemm, set_cpu_gemm>;
// Whether CUDA allocations are poisoned (core/kernels/runtime.h); a test that counts launches
// turns it off, since a poisoning memset counts as one.
using PoisonGuard = ScopedSetting<bool, cuda::poison_allocations, cuda::set_poison_allocations>;

// Waits, up to `timeout`, until at least `n` of the CPU pool's workers sleep (their spin after the
// last loop is over); whether they did.
inline bool wait_for_sleeping_workers(int n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (pool_stats().sleeping < n) {
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// f() must throw an idem::Error whose message contains `part`.
template <typename F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected idem::Error containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// f() must throw an idem::Error that names the op ("[op]") and contains `part` (and `also`,
// when given: e.g. the file a loader was reading).
template <typename F>
void expect_error(F&& f, const std::string& op, const std::string& part,
                  const std::string& also = "") {
  try {
    f();
    ADD_FAILURE() << "expected idem::Error [" << op << "] containing '" << part << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[" + op + "]"), std::string::npos) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
    if (!also.empty()) EXPECT_NE(msg.find(also), std::string::npos) << msg;
  }
}

inline std::vector<double> vals(const Tensor& t) {
  return t.to_vector<double>();
}

// Same length, and |got[i] - want[i]| <= tol for every i.
inline void expect_near_all(const std::vector<double>& got, const std::vector<double>& want,
                            double tol, const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol) << what << " element " << i;
}
inline void expect_near_all(const Tensor& got, const std::vector<double>& want, double tol,
                            const std::string& what = "") {
  expect_near_all(got.to_vector<double>(), want, tol, what);
}
inline void expect_near_all(const Tensor& got, const Tensor& want, double tol,
                            const std::string& what = "") {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  expect_near_all(got.to_vector<double>(), want.to_vector<double>(), tol, what);
}

// Element i matches when |got[i] - want[i]| <= atol + rtol · |want[i]| (computed in double), as
// EXPECT_NEAR with that bound: NaN matches nothing, not even NaN, and neither does an infinity
// its equal (inf - inf is NaN). A size mismatch fails at once; otherwise every mismatch fails the test, the first ten each
// with its index (and position in `shape`, when given), both values, the difference, the
// allowed difference and the seed (when given), then one line with the number of mismatches.
inline void expect_close(const std::vector<double>& got, const std::vector<double>& want,
                         double atol, double rtol, const std::string& what,
                         std::optional<uint64_t> seed = std::nullopt, const Shape* shape = nullptr) {
  ASSERT_EQ(got.size(), want.size()) << what << ": sizes differ";
  constexpr size_t kReported = 10;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(got[i] - want[i]);
    const double tol = atol + rtol * std::fabs(want[i]);
    if (diff <= tol) continue;  // false for NaN
    if (++bad > kReported) continue;
    std::ostringstream at;
    at << what << ": element " << i;
    if (shape != nullptr && !shape->empty()) {
      std::vector<int64_t> pos(shape->size());
      int64_t rest = static_cast<int64_t>(i);
      for (size_t d = shape->size(); d-- > 0;) {
        const int64_t extent = std::max<int64_t>((*shape)[d], 1);
        pos[d] = rest % extent;
        rest /= extent;
      }
      at << " [";
      for (size_t d = 0; d < pos.size(); ++d) at << (d ? ", " : "") << pos[d];
      at << "]";
    }
    constexpr int kAllDigits = std::numeric_limits<double>::max_digits10;
    at << std::setprecision(kAllDigits) << ": got " << got[i] << ", want " << want[i]
       << std::setprecision(6) << ", |diff| " << diff << " > " << tol << " (atol " << atol
       << ", rtol " << rtol << ")";
    if (seed) at << ", seed " << *seed;
    ADD_FAILURE() << at.str();
  }
  if (bad > 0)
    ADD_FAILURE() << what << ": " << bad << " of " << got.size() << " elements differ"
                  << (bad > kReported ? " (the first ten are listed)" : "")
                  << (seed ? ", seed " + std::to_string(*seed) : std::string());
}

// The same for tensors (on any device, any dtype): both defined, the same shape, then element
// by element as above.
inline void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol,
                         const std::string& what, std::optional<uint64_t> seed = std::nullopt) {
  ASSERT_TRUE(got.defined()) << what << ": got an undefined tensor";
  ASSERT_TRUE(want.defined()) << what << ": want is an undefined tensor";
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const Shape shape = got.shape();
  expect_close(got.to_vector<double>(), want.to_vector<double>(), atol, rtol, what, seed, &shape);
}

// The CUDA kernel launches (cuda::launch_count, core/kernels/runtime.h) that fn makes.
template <typename F>
uint64_t launches(F&& fn) {
  const uint64_t before = cuda::launch_count();
  fn();
  return cuda::launch_count() - before;
}

// The tolerance of the GEMM tests for an f32 sum over k terms: 2e-4, growing with k past 64
// (as the parity tests' scale).
inline double gemm_tolerance(int64_t k) { return 2e-4 * std::max(1.0, static_cast<double>(k) / 64.0); }

// Same shape, dtype and bytes (on whatever device each lives).
inline bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

// A copy of `t` on `dev` that starts `shift` elements into its storage (a view of a larger
// buffer), so its base is misaligned for 16-byte loads when shift % 4 != 0: for the scalar
// fallbacks of kernels that load float4s from aligned operands.
inline Tensor shifted_copy(const Tensor& t, const Device& dev, int64_t shift) {
  if (shift == 0) return t.to(dev);
  Tensor buf = zeros({t.numel() + shift}, {t.dtype(), dev});
  Tensor v = buf.slice0(shift, shift + t.numel()).view_as_shape(t.shape());
  v.copy_(t);
  return v;
}

// Overwrites t's values (t keeps its dtype and device).
inline void set(const Tensor& t, const std::vector<double>& v) {
  t.copy_(from_vector<double>(v, t.shape()).to(t.dtype()));
}

// 0, 1, 2, ... in row-major order.
inline Tensor iota(const Shape& s, DType dt = DType::f64) {
  return arange(numel_of(s), {dt}).view_as_shape(s);
}

// The tensor's bytes as stored (copied to the host first).
inline std::string raw(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  if (h.nbytes() == 0) return {};
  return std::string(static_cast<const char*>(h.raw_data()), h.nbytes());
}

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
             std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace idem::testing
