// Level L4: what a test-time adaptation costs — counted, not estimated.
//
// Every Adapter::predict() returns a Cost for its batch and adds it to a running total, so an
// experiment table can show forwards, backwards, optimizer steps, reset bytes, GPU launches and
// microseconds per batch and per sample next to the error of each method.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "core/device.h"

namespace idem::it3 {

struct Cost {
  uint64_t batches = 0;
  uint64_t samples = 0;
  uint64_t forwards = 0;         // calls of f or F (each a full network forward)
  uint64_t backwards = 0;        // backward passes
  uint64_t optimizer_steps = 0;  // optimizer.step() calls
  uint64_t reset_bytes = 0;      // bytes written by resets (weights, buffers, optimizer state)
  uint64_t gpu_launches = 0;     // GPU operations issued (idem::cuda::launch_count delta; 0 on CPU)
  double wall_us = 0.0;          // wall-clock time, device synchronized at both ends

  double us_per_batch() const { return batches ? wall_us / double(batches) : 0.0; }
  double us_per_sample() const { return samples ? wall_us / double(samples) : 0.0; }
  double launches_per_batch() const { return batches ? double(gpu_launches) / double(batches) : 0.0; }
  Cost& operator+=(const Cost& o);
  std::string to_json() const;
};

// Measures one batch: synchronizes the device at start and stop so queued GPU work is inside
// the interval, and reads the launch counter at both ends.
class CostMeter {
 public:
  explicit CostMeter(Device device);
  // Fills wall_us and gpu_launches of `c` (adds to them).
  void stop(Cost& c);

 private:
  Device device_;
  uint64_t launches0_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace idem::it3
