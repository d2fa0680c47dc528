// Deterministic mode: one process-wide switch that every code path with a faster but
// run-to-run non-deterministic variant must consult (float atomics, cuDNN/cuBLAS algorithm
// choices that are not bit-reproducible, timing-based autotuning).
//
// Today no kernel of idem has such a variant: every CPU and CUDA reduction, scatter and
// backward uses a fixed order (no float atomics; tests/determinism_test.cpp enforces that for
// the sources in cuda/), cuDNN is restricted to algorithms it reports as CUDNN_DETERMINISTIC,
// cuBLAS runs with its default CUBLAS_ATOMICS_NOT_ALLOWED and a fixed per-handle workspace.
// So turning the switch on changes no result; it is the promise's anchor: a new variant that
// trades reproducibility for speed is allowed only when `!deterministic()`. The promise and its
// limits are in docs/reliability.md.
//
// The initial value comes from the environment variable IDEM_DETERMINISTIC ("1", "true", "on");
// `--deterministic` on the command line calls set_deterministic(true).
#pragma once

namespace idem {

// requires: nothing; safe to call from any thread (an atomic flag).
void set_deterministic(bool on);
bool deterministic();

// Sets deterministic mode for its lifetime and restores the previous value.
class DeterministicGuard {
 public:
  explicit DeterministicGuard(bool on = true);
  ~DeterministicGuard();
  DeterministicGuard(const DeterministicGuard&) = delete;
  DeterministicGuard& operator=(const DeterministicGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace idem
