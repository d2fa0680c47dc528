// The op-case table (the ggml test-backend-ops idea): ONE list of op cases drives the gradient
// checks (tests/gradcheck_test.cpp), CPU-vs-CUDA parity (tests/parity_test.cpp) and the op-case
// benchmarks (bench/op_case_bench.cpp: idem_bench --benchmark_filter='^op_case/'). Each family
// adds its rows in tests/op_cases/<family>_cases.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "autograd/segment_functions.h"

namespace idem::testing {

// How a case's input is sampled. Inputs are random, fresh per seed, never all zeros.
enum class InputKind {
  normal,          // N(0,1)
  positive,        // U[0.5, 2): for log, sqrt, pow bases, divisors
  away_from_zero,  // ±U[0.2, 1.5): keeps ReLU/abs/leaky_relu away from the kink at 0
  index,           // i64 uniform in [0, index_high); never differentiable
  mask,            // u8 in {0,1}; never differentiable
};

struct InputSpec {
  Shape shape;
  InputKind kind = InputKind::normal;
  int64_t index_high = 0;     // InputKind::index only
  bool differentiable = true;  // false: gradcheck does not perturb it
};

struct OpCase {
  std::string name;  // unique; letters, digits and '_' (a GoogleTest parameter name)
  std::string family;  // "elementwise", "reduce", "matmul", "softmax", "index", ...
  std::vector<InputSpec> inputs;
  // The L2 call under test. Output may be any dtype; non-floating outputs are checked in
  // parity only (no gradient).
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  bool gradcheck = true;  // false for ops without a gradient (argmax, comparisons)
  // true on a row with gradcheck = false whose op has a gradient but too many elements for the
  // finite-difference check (the big conv rows): parity still compares its input gradients
  // and the benchmarks still time its fwd_bwd.
  bool grad_parity = false;
  // Extra relative tolerance factor for parity (grows with reduction length, set per row).
  double parity_scale = 1.0;
};

std::vector<OpCase> elementwise_cases();
std::vector<OpCase> reduce_cases();
std::vector<OpCase> matmul_cases();
std::vector<OpCase> softmax_cases();
std::vector<OpCase> index_cases();
std::vector<OpCase> conv_cases();   // conv2d, conv_transpose2d
std::vector<OpCase> pool_cases();   // pooling, upsampling
std::vector<OpCase> norm_cases();   // batch/layer/group norm, dropout
std::vector<OpCase> loss_cases();
std::vector<OpCase> segment_cases();  // scatter/segment ops, global pooling
std::vector<OpCase> fused_cases();  // linear_act, l1/mse distances
// Every row of every family, in a fixed order.
const std::vector<OpCase>& all_op_cases();

// GoogleTest prints a failing row by name instead of a byte dump.
inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.family << "/" << c.name; }

// Samples the inputs of `c` for (seed), as `dtype` floats on `device`; the same seed gives the
// same values on every device (drawn on the CPU in f64, then converted).
std::vector<Tensor> make_inputs(const OpCase& c, uint64_t seed, DType dtype, Device device);

}  // namespace idem::testing
