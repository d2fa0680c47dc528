// Kernel contract: elementwise ops (unary, binary with broadcasting, where, expand, cast,
// fills and the Philox RNG). cpu:: in core/cpu/elementwise.cpp, cuda:: in
// cuda/kernels/elementwise.cu, stubs in cuda/no_cuda.cpp.
//
// Common requires (checked by the L1 op, not here): outputs allocated, contiguous, on the
// kernel's device; CPU kernels take f32/f64, CUDA kernels f32 (integer dtypes where noted).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem {

// ---- the op lists ---------------------------------------------------------------------------
// One row per op. Each list generates the enum, the name table (unary_name, binary_name), the
// per-op properties below and the CUDA dispatch (cuda/kernels/elementwise.cu); the op-case rows
// (tests/op_cases/elementwise_cases.cpp) loop over it. An op's formula is its case in
// core/kernels/elementwise_math.h, where the switches have no default, so -Wswitch names a row
// that has no formula yet. A row may go anywhere in its list: nothing depends on the numeric
// enum values.
//
// Columns of a unary row X(name, grad_reads, domain):
//   grad_reads  input: the derivative (math::unary_grad) reads the forward input x;
//               output: it reads the forward output y (the CUDA backward then loads y, not x).
//   domain      where the op is smooth: real, positive, or off_zero (away from a kink at 0).
//               The gradient checks and parity rows sample their inputs there.
// UnaryParams::alpha is leaky_relu's slope and the scalar of the *_scalar ops. (Comments in the
// rows are block comments: a line comment would swallow the macro's line continuation.)
#define IDEM_UNARY_OPS(X)                                    \
  X(neg, input, real)                                        \
  X(exp, output, real)                                       \
  X(log, input, positive)                                    \
  X(sqrt, output, positive)                                  \
  X(abs, input, off_zero)                                    \
  X(relu, input, off_zero)                                   \
  X(leaky_relu, input, off_zero) /* alpha: negative slope */ \
  X(sigmoid, output, real)                                   \
  X(tanh, output, real)                                      \
  X(gelu, input, real)            /* exact (erf) form */     \
  X(add_scalar, input, real)      /* x + alpha */            \
  X(mul_scalar, input, real)      /* x * alpha */            \
  X(pow_scalar, input, positive)  /* x ^ alpha */            \
  X(rsub_scalar, input, real)     /* alpha - x */            \
  X(rdiv_scalar, input, positive) /* alpha / x */            \
  X(square, input, real)          /* x * x */

// Binary ops come in two lists, in this order in the enum: arithmetic ops (output dtype = input
// dtype, differentiable) and comparisons (output u8, 1 = true; no gradient). Which list a row is
// in is the comparison flag: is_comparison() and the kernels' output type are generated from it.
// Columns of an arithmetic row X(name, dtypes, a_domain, b_domain):
//   dtypes      any: every dtype; floating: integer inputs are rejected by ops::binary;
//   a_domain, b_domain   as a unary row's domain, per operand.
// The gradient of an arithmetic op is written by hand in BinaryNode
// (autograd/elementwise_functions.cpp), whose switch has no default either.
#define IDEM_BINARY_ARITH_OPS(X)   \
  X(add, any, real, real)          \
  X(sub, any, real, real)          \
  X(mul, any, real, real)          \
  X(div, floating, real, positive) \
  X(pow, floating, positive, real) \
  X(maximum, any, real, real)      \
  X(minimum, any, real, real)
#define IDEM_BINARY_COMPARE_OPS(X) X(eq) X(ne) X(lt) X(le) X(gt) X(ge)

// Where an op is smooth (the domain column above).
enum class OpDomain : uint8_t { real, positive, off_zero };

// The enum values, counts and value arrays. Each list gets its own helper macros (a macro with
// `...` may not be called with nothing for it in C++17, and the lists have different columns).
#define IDEM_EW_UNARY_ENUM(name, reads, domain) name,
#define IDEM_EW_ARITH_ENUM(name, dtypes, a_domain, b_domain) name,
#define IDEM_EW_CMP_ENUM(name) name,
#define IDEM_EW_UNARY_VALUE(name, reads, domain) UnaryOp::name,
#define IDEM_EW_ARITH_VALUE(name, dtypes, a_domain, b_domain) BinaryOp::name,
#define IDEM_EW_CMP_VALUE(name) BinaryOp::name,

enum class UnaryOp : uint8_t { IDEM_UNARY_OPS(IDEM_EW_UNARY_ENUM) };
// Every unary op in enum order (the op-case rows loop over it).
inline constexpr UnaryOp kUnaryOps[] = {IDEM_UNARY_OPS(IDEM_EW_UNARY_VALUE)};
inline constexpr int kUnaryOpCount = static_cast<int>(sizeof(kUnaryOps) / sizeof(kUnaryOps[0]));
const char* unary_name(UnaryOp op);

struct UnaryParams {
  double alpha = 0.0;  // leaky_relu slope or the scalar of the *_scalar ops
};

enum class BinaryOp : uint8_t {
  IDEM_BINARY_ARITH_OPS(IDEM_EW_ARITH_ENUM) IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP_ENUM)
};
// Every binary op in enum order, arithmetic ops first.
inline constexpr BinaryOp kBinaryOps[] = {IDEM_BINARY_ARITH_OPS(IDEM_EW_ARITH_VALUE)
                                              IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP_VALUE)};
inline constexpr int kBinaryOpCount = static_cast<int>(sizeof(kBinaryOps) / sizeof(kBinaryOps[0]));
const char* binary_name(BinaryOp op);

#undef IDEM_EW_UNARY_ENUM
#undef IDEM_EW_ARITH_ENUM
#undef IDEM_EW_CMP_ENUM
#undef IDEM_EW_UNARY_VALUE
#undef IDEM_EW_ARITH_VALUE
#undef IDEM_EW_CMP_VALUE

// Per-op properties, read off the columns. Each switch lists every row and has no default.

// The grad_reads column: true when math::unary_grad reads the forward output y, not x.
constexpr bool unary_grad_reads_output(UnaryOp op) {
#define IDEM_EW_READS_input false
#define IDEM_EW_READS_output true
#define IDEM_EW_CASE(name, reads, domain) \
  case UnaryOp::name:                     \
    return IDEM_EW_READS_##reads;
  switch (op) { IDEM_UNARY_OPS(IDEM_EW_CASE) }
#undef IDEM_EW_CASE
#undef IDEM_EW_READS_input
#undef IDEM_EW_READS_output
  return false;  // not reached
}

constexpr OpDomain unary_domain(UnaryOp op) {
#define IDEM_EW_CASE(name, reads, domain) \
  case UnaryOp::name:                     \
    return OpDomain::domain;
  switch (op) { IDEM_UNARY_OPS(IDEM_EW_CASE) }
#undef IDEM_EW_CASE
  return OpDomain::real;  // not reached
}

// Comparisons write u8 (1 = true) and have no gradient: the rows of IDEM_BINARY_COMPARE_OPS.
constexpr bool is_comparison(BinaryOp op) {
#define IDEM_EW_ARITH(name, dtypes, a_domain, b_domain) \
  case BinaryOp::name:                                  \
    return false;
#define IDEM_EW_CMP(name) \
  case BinaryOp::name:    \
    return true;
  switch (op) { IDEM_BINARY_ARITH_OPS(IDEM_EW_ARITH) IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP) }
#undef IDEM_EW_ARITH
#undef IDEM_EW_CMP
  return false;  // not reached
}

// The dtypes column: false for ops that ops::binary rejects on integer inputs.
constexpr bool binary_takes_integers(BinaryOp op) {
#define IDEM_EW_INTS_any true
#define IDEM_EW_INTS_floating false
#define IDEM_EW_ARITH(name, dtypes, a_domain, b_domain) \
  case BinaryOp::name:                                  \
    return IDEM_EW_INTS_##dtypes;
#define IDEM_EW_CMP(name) \
  case BinaryOp::name:    \
    return true;
  switch (op) { IDEM_BINARY_ARITH_OPS(IDEM_EW_ARITH) IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP) }
#undef IDEM_EW_ARITH
#undef IDEM_EW_CMP
#undef IDEM_EW_INTS_any
#undef IDEM_EW_INTS_floating
  return true;  // not reached
}

// The a_domain (operand 0) or b_domain (operand 1) column; comparisons take any real.
constexpr OpDomain binary_domain(BinaryOp op, int operand) {
#define IDEM_EW_ARITH(name, dtypes, a_domain, b_domain) \
  case BinaryOp::name:                                  \
    return operand == 0 ? OpDomain::a_domain : OpDomain::b_domain;
#define IDEM_EW_CMP(name) \
  case BinaryOp::name:    \
    return OpDomain::real;
  switch (op) { IDEM_BINARY_ARITH_OPS(IDEM_EW_ARITH) IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP) }
#undef IDEM_EW_ARITH
#undef IDEM_EW_CMP
  return OpDomain::real;  // not reached
}

enum class RandomDist : uint8_t { uniform, normal };

// Random fills use Philox 4x32-10 (core/philox.h). Element i of a draw with (seed, offset)
// uses only the block philox_block(seed, i, offset) = r[0..3]:
//   uniform: u = philox_uniform(r0) in [0,1)
//   normal:  u1 = 1 - philox_uniform(r0) in (0,1], u2 = philox_uniform(r1);
//            z = sqrt(-2 ln u1) * cos(2π u2), computed in double on both CPU and GPU and
//            rounded once to the output dtype (see math::philox_normal).

namespace cpu {
// out = op(in). Same shape, same floating dtype.
void unary_fwd(const Tensor& out, const Tensor& in, UnaryOp op, UnaryParams p);
// grad_in = grad_out * op'(in); `out` is the forward result (read when
// unary_grad_reads_output(op), e.g. exp, sigmoid).
void unary_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& in, const Tensor& out,
               UnaryOp op, UnaryParams p);
// out = a op b, a and b broadcast (NumPy) to out's shape. a, b same dtype; out that dtype or u8.
void binary_fwd(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op);
// out = cond ? a : b, all broadcast to out's shape; cond is u8.
void where_fwd(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
// out = in broadcast to out's shape (any dtype).
void expand_fwd(const Tensor& out, const Tensor& in);
// out = in converted to out's dtype (any dtypes, same numel).
void cast(const Tensor& out, const Tensor& in);
// out[i] = value (any dtype).
void fill(const Tensor& out, double value);
// out[i] = start + i * step (any dtype).
void arange_fill(const Tensor& out, double start, double step);
// out[i] = lo + (hi-lo)*U  or  lo + hi*N  (normal: lo = mean, hi = std). Floating dtypes.
void random_fill(const Tensor& out, RandomDist dist, double lo, double hi, uint64_t seed,
                 uint64_t offset);
}  // namespace cpu

namespace cuda {
void unary_fwd(const Tensor& out, const Tensor& in, UnaryOp op, UnaryParams p);
void unary_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& in, const Tensor& out,
               UnaryOp op, UnaryParams p);
void binary_fwd(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op);
void where_fwd(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
void expand_fwd(const Tensor& out, const Tensor& in);
void cast(const Tensor& out, const Tensor& in);
void fill(const Tensor& out, double value);
void arange_fill(const Tensor& out, double start, double step);
void random_fill(const Tensor& out, RandomDist dist, double lo, double hi, uint64_t seed,
                 uint64_t offset);
}  // namespace cuda

}  // namespace idem
