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

enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, abs, relu, leaky_relu, sigmoid, tanh, gelu,  // gelu: exact (erf) form
  add_scalar,   // x + alpha
  mul_scalar,   // x * alpha
  pow_scalar,   // x ^ alpha
  rsub_scalar,  // alpha - x
  rdiv_scalar,  // alpha / x
  square,       // x * x
};
const char* unary_name(UnaryOp op);

struct UnaryParams {
  double alpha = 0.0;  // leaky_relu slope or the scalar of the *_scalar ops
};

enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  eq, ne, lt, le, gt, ge,  // comparisons write u8 (1 = true)
};
const char* binary_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

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
// grad_in = grad_out * op'(in); `out` is the forward result (used by exp/sigmoid/tanh/sqrt).
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
