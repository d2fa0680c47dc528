#include "core/determinism.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace idem {

namespace {

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return false;
  return std::strcmp(v, "1") == 0 || std::strcmp(v, "true") == 0 || std::strcmp(v, "on") == 0;
}

// Process-wide on purpose: determinism is a property of the whole run, and kernels deep in
// core/ and cuda/ read it without a context object to thread through.
std::atomic<bool>& flag() {
  static std::atomic<bool> on{env_on("IDEM_DETERMINISTIC")};
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
