// env_choice (core/env.h), the reader of every named-value environment switch (IDEM_GEMM,
// IDEM_CPU_GEMM, IDEM_CONV, IDEM_FUSED_KERNEL, IDEM_FUSED_SYNC): an allowed value is returned,
// unset or empty gives the default, anything else is an error naming the variable, the value
// and what is allowed. env_flag, the on/off switches' reader (IDEM_ANOMALY,
// IDEM_DETERMINISTIC, IDEM_CUDA_SYNC, IDEM_POISON_ALLOC), likewise. EnvSetting: a setter
// overrides the variable, a bad value included. These use a variable of the test's own, so the
// real switches (read once per process) are left alone. The real switches themselves are
// checked in a fresh process each (EnvSwitch*), where nothing has read them yet.
#include "core/env.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "autograd/anomaly.h"
#include "autograd/functions.h"
#include "core/determinism.h"
#include "core/kernels/conv.h"
#include "core/kernels/it3_head.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "core/tensor.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using idem::testing::expect_error;

constexpr const char* kVar = "IDEM_TEST_ENV_CHOICE";

// Sets (or, with null, unsets) kVar for one test and restores what was there.
class EnvVar {
 public:
  explicit EnvVar(const char* value) {
    if (const char* old = std::getenv(kVar)) saved_ = old, had_ = true;
    set(value);
  }
  ~EnvVar() { set(had_ ? saved_.c_str() : nullptr); }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  static void set(const char* value) {
    if (value)
      setenv(kVar, value, 1);
    else
      unsetenv(kVar);
  }
  std::string saved_;
  bool had_ = false;
};

std::string choose() { return env_choice(kVar, {"auto", "rows", "phase"}, "auto"); }

TEST(EnvChoice, AllowedValueIsReturned) {
  for (const char* v : {"auto", "rows", "phase"}) {
    EnvVar e(v);
    EXPECT_EQ(choose(), v);
  }
}

TEST(EnvChoice, UnsetOrEmptyGivesTheDefault) {
  {
    EnvVar e(nullptr);
    EXPECT_EQ(choose(), "auto");
    EXPECT_EQ(env_choice(kVar, {"packed", "eigen"}, "eigen"), "eigen");
  }
  EnvVar e("");
  EXPECT_EQ(choose(), "auto");
}

TEST(EnvChoice, UnknownValueIsAnErrorThatSaysWhatIsAllowed) {
  for (const char* bad : {"row", "Rows", "rows ", "1"}) {
    EnvVar e(bad);
    expect_error([] { choose(); }, "env",
                 std::string(kVar) + " is '" + bad + "'; expected one of: auto, rows, phase",
                 "(or unset: auto)");
  }
}

TEST(EnvFlag, OnOffSpellingsUnsetAndErrors) {
  for (const char* on : {"1", "true", "on"}) {
    EnvVar e(on);
    EXPECT_TRUE(env_flag(kVar)) << on;
  }
  for (const char* off : {"0", "false", "off", ""}) {
    EnvVar e(off);
    EXPECT_FALSE(env_flag(kVar)) << off;
  }
  {
    EnvVar e(nullptr);
    EXPECT_FALSE(env_flag(kVar));
  }
  for (const char* bad : {"yes", "ON", "2"}) {  // a typo used to mean "off", silently
    EnvVar e(bad);
    expect_error([] { env_flag(kVar); }, "env",
                 std::string(kVar) + " is '" + bad + "'; expected one of: 1, true, on, 0, false, off",
                 "(or unset: 0)");
  }
}

// A switch that is on by default (IDEM_IT3_HEAD_STAGED): unset or empty gives the fallback, and
// off still turns it off; the error names the default it would have had.
TEST(EnvFlag, FallbackOnIsWhatUnsetAndEmptyGive) {
  for (const char* unset : {static_cast<const char*>(nullptr), ""}) {
    EnvVar e(unset);
    EXPECT_TRUE(env_flag(kVar, true));
  }
  for (const char* off : {"0", "false", "off"}) {
    EnvVar e(off);
    EXPECT_FALSE(env_flag(kVar, true)) << off;
  }
  EnvVar e("yes");
  expect_error([] { env_flag(kVar, true); }, "env", std::string(kVar) + " is 'yes'", "(or unset: 1)");
}

// ---- EnvSetting: a set() overrides the variable; a get() without one reads it once ----

enum class Pick : uint8_t { rows, phase };
Pick read_pick() { return env_choice(kVar, {"rows", "phase"}, "rows") == "phase" ? Pick::phase : Pick::rows; }

TEST(EnvSetting, SetOverridesABadValueThatGetAloneReports) {
  EnvVar e("Phase");  // a typo
  EnvSetting<Pick> s{read_pick};
  // Read without a set(): the error, every time (a bad value is never kept).
  for (int i = 0; i < 2; ++i)
    expect_error([&] { s.get(); }, "env",
                 std::string(kVar) + " is 'Phase'; expected one of: rows, phase");
  s.set(Pick::phase);
  EXPECT_EQ(s.get(), Pick::phase);
  s.set(Pick::rows);
  EXPECT_EQ(s.get(), Pick::rows);
}

TEST(EnvSetting, SetBeforeAnyGetNeverReadsTheVariable) {
  EnvVar e("nonsense");
  EnvSetting<bool> s{[] { return env_flag(kVar); }};
  s.set(true);
  EXPECT_TRUE(s.get());
}

TEST(EnvSetting, TheFirstReadIsKept) {
  EnvSetting<Pick> s{read_pick};
  {
    EnvVar e("phase");
    EXPECT_EQ(s.get(), Pick::phase);
  }
  EnvVar e("bogus");  // read once: a later change of the variable changes nothing
  EXPECT_EQ(s.get(), Pick::phase);
}

// ---- the real switches, each in a fresh process ----

// "" when f() throws an idem::Error containing `part`, else what happened instead.
std::string error_mismatch(const std::function<void()>& f, const std::string& part) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    return msg.find(part) == std::string::npos ? "error '" + msg + "' lacks '" + part + "'" : "";
  }
  return "no error; expected one containing '" + part + "'";
}

// Runs `check` in a new process, with `var`=`value` set there only: gtest's "threadsafe" death
// test style executes this test binary again, so the process-wide settings are unread there.
// check returns "" when all is well, else what went wrong (printed, and the exit code is 1).
void in_fresh_process(const char* var, const char* value, const std::function<std::string()>& check) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv(var, value, 1);
        std::string why;
        try {
          why = check();
        } catch (const std::exception& e) {
          why = std::string("unexpected exception: ") + e.what();
        }
        std::fprintf(stderr, "%s\n", why.empty() ? "check passed" : why.c_str());
        std::fflush(stderr);
        _exit(why.empty() ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "check passed")
      << var << "=" << value;
}

// With a bad IDEM_GEMM / IDEM_CPU_GEMM / IDEM_CONV / IDEM_DETERMINISTIC / IDEM_ANOMALY, reading
// the setting is the error that names the variable, and the setter still works (it used to
// throw: the slot read the variable first).
TEST(EnvSwitch, BackendSettersOverrideABadValue) {
  in_fresh_process("IDEM_GEMM", "cuBLAS", [] {
    std::string why = error_mismatch([] { gemm_backend(); },
                                     "[env] IDEM_GEMM is 'cuBLAS'; expected one of: hand, cublas");
    if (!why.empty()) return why;
    set_gemm_backend(GemmBackend::cublas);
    if (gemm_backend() != GemmBackend::cublas) return std::string("set_gemm_backend(cublas) ignored");
    set_gemm_backend(GemmBackend::hand);
    return std::string(gemm_backend() == GemmBackend::hand ? "" : "set_gemm_backend(hand) ignored");
  });
  in_fresh_process("IDEM_CONV", "cuDNN", [] {
    std::string why = error_mismatch([] { conv_backend(); },
                                     "[env] IDEM_CONV is 'cuDNN'; expected one of: hand, cudnn");
    if (!why.empty()) return why;
    set_conv_backend(ConvBackend::cudnn);
    return std::string(conv_backend() == ConvBackend::cudnn ? "" : "set_conv_backend ignored");
  });
  in_fresh_process("IDEM_CPU_GEMM", "avx512", [] {
    std::string why =
        error_mismatch([] { cpu_gemm(); }, "[env] IDEM_CPU_GEMM is 'avx512'; expected one of: packed, eigen");
    if (!why.empty()) return why;
    set_cpu_gemm(CpuGemm::eigen);
    return std::string(cpu_gemm() == CpuGemm::eigen ? "" : "set_cpu_gemm ignored");
  });
  // The on/off switches of the core, likewise.
  in_fresh_process("IDEM_DETERMINISTIC", "yes", [] {
    std::string why = error_mismatch([] { deterministic(); }, "[env] IDEM_DETERMINISTIC is 'yes'");
    if (!why.empty()) return why;
    set_deterministic(true);
    return std::string(deterministic() ? "" : "set_deterministic(true) ignored");
  });
  in_fresh_process("IDEM_ANOMALY", "2", [] {
    std::string why = error_mismatch([] { anomaly_mode(); }, "[env] IDEM_ANOMALY is '2'");
    if (!why.empty()) return why;
    set_anomaly_mode(false);
    return std::string(anomaly_mode() ? "set_anomaly_mode(false) ignored" : "");
  });
  in_fresh_process("IDEM_IT3_HEAD_STAGED", "staged", [] {
    std::string why = error_mismatch([] { it3_head_staging(); }, "[env] IDEM_IT3_HEAD_STAGED is 'staged'");
    if (!why.empty()) return why;
    set_it3_head_staging(true);
    return std::string(it3_head_staging() ? "" : "set_it3_head_staging(true) ignored");
  });
  in_fresh_process("IDEM_IT3_HEAD_STAGED", "off", [] {
    return std::string(it3_head_staging() ? "IDEM_IT3_HEAD_STAGED=off not read" : "");
  });
  in_fresh_process("IDEM_IT3_HEAD_STAGED", "", [] {  // empty is unset: staging is on by default
    return std::string(it3_head_staging() ? "" : "staging is off with IDEM_IT3_HEAD_STAGED unset");
  });
  // A good value is still what the backend reads.
  in_fresh_process("IDEM_GEMM", "cublas", [] {
    return std::string(gemm_backend() == GemmBackend::cublas ? "" : "IDEM_GEMM=cublas not read");
  });
}

// IDEM_POISON_ALLOC is an on/off switch (it used to be on for exactly "1" and silently off for
// anything else, "true" included). The flag is host state: no GPU needed, only the CUDA build's
// allocator (the CPU build's stub is always off).
TEST(EnvSwitch, PoisonAllocIsAnOnOffSwitch) {
#ifndef IDEM_WITH_CUDA
  GTEST_SKIP() << "CPU build: no CUDA allocator to poison";
#else
  for (const char* on : {"1", "true", "on"})
    in_fresh_process("IDEM_POISON_ALLOC", on, [] {
      return std::string(cuda::poison_allocations() ? "" : "poisoning is off");
    });
  in_fresh_process("IDEM_POISON_ALLOC", "off", [] {
    return std::string(cuda::poison_allocations() ? "poisoning is on" : "");
  });
  in_fresh_process("IDEM_POISON_ALLOC", "yes", [] {
    std::string why = error_mismatch([] { cuda::poison_allocations(); },
                                     "[env] IDEM_POISON_ALLOC is 'yes'; expected one of: 1, true, on, "
                                     "0, false, off");
    if (!why.empty()) return why;
    cuda::set_poison_allocations(true);  // the setter overrides the bad value
    return std::string(cuda::poison_allocations() ? "" : "set_poison_allocations(true) ignored");
  });
#endif
}

// A bad value throws at the first allocation on a GPU, before a block is taken.
TEST(EnvSwitchCuda, PoisonAllocBadValueFailsTheFirstAllocation) {
  IDEM_REQUIRE_GPU();
  in_fresh_process("IDEM_POISON_ALLOC", "2", [] {
    return error_mismatch([] { zeros({4}, {DType::f32, Device::cuda(0)}); },
                          "[env] IDEM_POISON_ALLOC is '2'");
  });
}

// IDEM_CUDA_SYNC is read at the first launch check: a bad value is an error there, naming the
// variable (not a crash at load time, not silently off); 1 and true both run with the sync on.
TEST(EnvSwitchCuda, CudaSyncIsAnOnOffSwitchCheckedAtTheFirstLaunch) {
  IDEM_REQUIRE_GPU();
  const auto add_one = [] {
    const Tensor x = zeros({8}, {DType::f32, Device::cuda(0)});
    return add(x, 1.0).to(Device::cpu()).to_vector<double>();
  };
  for (const char* on : {"1", "true"})
    in_fresh_process("IDEM_CUDA_SYNC", on, [add_one] {
      return std::string(add_one() == std::vector<double>(8, 1.0) ? "" : "wrong sum");
    });
  in_fresh_process("IDEM_CUDA_SYNC", "yes", [add_one] {
    std::string why = error_mismatch(
        [add_one] { add_one(); },
        "[env] IDEM_CUDA_SYNC is 'yes'; expected one of: 1, true, on, 0, false, off");
    if (!why.empty()) return why;
    // Still the error at the next launch: a bad value is never kept as off.
    return error_mismatch([add_one] { add_one(); }, "[env] IDEM_CUDA_SYNC is 'yes'");
  });
}

}  // namespace
}  // namespace idem
