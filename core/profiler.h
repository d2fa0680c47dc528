// An op-level profile of a short piece of work (one IT³ adaptation step, a training step):
// which op, in which direction, how many GPU launches, how many microseconds, how many bytes,
// and its share — so a researcher sees where the cost of test-time training goes without an
// external profiler (`idem bench it3 --profile`, `idem adapt --profile`).
//
// How it measures: every mark() records a timestamp (a CUDA event on the current stream on a
// GPU, the steady clock on the CPU) and charges the interval since the previous mark, and the
// GPU launches issued in it, to the op being marked. The autograd engine marks after every
// recorded forward op (autograd/node.cpp record()) and after every backward node
// (autograd/engine.cpp); the it3 Adapter marks its reset, its optimizer step and its final
// prediction. So:
// - GPU time includes the idle gaps while the host issues the next launch, which is the true
//   cost when a step is launch-bound (small models); it is not the kernel's execution time;
// - work that records no autograd node (an op none of whose inputs requires grad, e.g. the
//   first layer of the frozen anchor F) is charged to the next op that does.
// Bytes are the sizes of the op's inputs and output (forward) or of its upstream gradient and
// the gradients it returns (backward): what the op must at least read and write.
// One profile at a time, from one thread; off by default (one relaxed load per hook).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"

namespace idem::profiler {

struct Row {
  std::string op, dir;  // e.g. "matmul", "forward" | "backward" | "update" | "reset"
  uint64_t calls = 0, launches = 0;
  double us = 0, bytes = 0;
};

// Starts a profile on `device` (a GPU synchronizes first). requires: no profile running.
void start(Device device);
bool active();
// Charges the work since the previous mark to (op, dir); `bytes` as described above.
void mark(const char* op, const char* dir, double bytes = 0);
// Ends the profile (a GPU synchronizes) and returns one row per (op, dir), by time, largest first.
// The profile is over afterwards even when this throws.
std::vector<Row> stop();
// Ends a profile without a report (after an exception in the profiled work). Never throws.
void abort() noexcept;
// Runs fn under a profile and returns its rows; an exception from fn aborts the profile and
// propagates.
template <typename F>
std::vector<Row> profile(Device device, F&& fn) {
  start(device);
  try {
    fn();
  } catch (...) {
    abort();
    throw;
  }
  return stop();
}
// A Markdown table: op, direction, calls, launches, µs, bytes, share of the total.
std::string table(const std::vector<Row>& rows, const std::string& title);

}  // namespace idem::profiler
