// env_choice (core/env.h), the reader of every named-value environment switch (IDEM_GEMM,
// IDEM_CPU_GEMM, IDEM_CONV, IDEM_FUSED_KERNEL, IDEM_FUSED_SYNC): an allowed value is returned,
// unset or empty gives the default, anything else is an error naming the variable, the value
// and what is allowed. env_flag, the on/off switches' reader (IDEM_ANOMALY,
// IDEM_DETERMINISTIC), likewise. A variable of the test's own, so the real switches (read once per process)
// are left alone.
#include "core/env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

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

}  // namespace
}  // namespace idem
