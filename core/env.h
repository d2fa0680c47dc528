// Run-time choices from environment variables that take one of a few named values
// (IDEM_GEMM, IDEM_CPU_GEMM, IDEM_CONV, IDEM_FUSED_KERNEL, IDEM_FUSED_SYNC) or are on/off
// switches (IDEM_ANOMALY, IDEM_DETERMINISTIC): one reader for each kind, so
// every such switch treats a bad value the same way, as an error that says what was expected,
// never as a silent fallback to the default (a typo in a comparison run would otherwise time
// the default twice).
#pragma once
#include <initializer_list>
#include <string>

namespace idem {

// The value of environment variable `name` when it is one of `allowed` (exact, case-sensitive);
// `fallback` when it is unset or empty. Any other value is an idem::Error naming the variable,
// the value and the allowed values, e.g.
//   [env] IDEM_GEMM is 'cuBLAS'; expected one of: hand, cublas (or unset: hand)
std::string env_choice(const char* name, std::initializer_list<const char*> allowed,
                       const char* fallback);

// An on/off switch (IDEM_ANOMALY, IDEM_DETERMINISTIC): true for 1, true or on; false for 0,
// false or off, and when unset or empty; anything else is an idem::Error, as for env_choice.
bool env_flag(const char* name);

}  // namespace idem
