#include "core/determinism.h"

#include "core/env.h"

namespace idem {

namespace {

// Process-wide on purpose: determinism is a property of the whole run, and kernels deep in
// core/ and cuda/ read it without a context object to thread through. set_deterministic
// overrides IDEM_DETERMINISTIC, a bad value included (EnvSetting).
bool read_env() { return env_flag("IDEM_DETERMINISTIC"); }
EnvSetting<bool>& flag() {
  static EnvSetting<bool> on{read_env};
  return on;
}

}  // namespace

void set_deterministic(bool on) {
  flag().set(on);
}
bool deterministic() {
  return flag().get();
}

DeterministicGuard::DeterministicGuard(bool on) : prev_(deterministic()) {
  set_deterministic(on);
}
DeterministicGuard::~DeterministicGuard() {
  set_deterministic(prev_);
}

}  // namespace idem
