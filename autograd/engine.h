// The reverse-mode engine: walks the graph behind `root` in reverse topological order
// (iteratively: no recursion depth limit) and accumulates gradients into leaves.
// In anomaly mode (autograd/anomaly.h) every gradient flowing into and out of a node is checked
// for NaN/Inf, and the first non-finite one is reported with the op and where it was created.
#pragma once
#include "core/tensor.h"

namespace idem {

// grad_output may be undefined only when root has one element (then it is 1).
void run_backward(const Tensor& root, const Tensor& grad_output);

}  // namespace idem
