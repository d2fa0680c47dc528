#include "core/determinism.h"

#include <atomic>

#include "core/env.h"

namespace idem {

namespace {

// Process-wide on purpose: determinism is a property of the whole run, and kernels deep in
// core/ and cuda/ read it without a context object to thread through.
std::atomic<bool>& flag() {
  static std::atomic<bool> on{env_flag("IDEM_DETERMINISTIC")};
  return on;
}

}  // namespace

void set_deterministic(bool on) {
  flag().store(on, std::memory_order_relaxed);
}
bool deterministic() {
  return flag().load(std::memory_order_relaxed);
}

DeterministicGuard::DeterministicGuard(bool on) : prev_(deterministic()) {
  set_deterministic(on);
}
DeterministicGuard::~DeterministicGuard() {
  set_deterministic(prev_);
}

}  // namespace idem
