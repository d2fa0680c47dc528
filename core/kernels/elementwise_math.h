// The scalar formulas of every elementwise op, forward and derivative, written once and used by
// both the CPU kernels (core/cpu/elementwise.cpp) and the CUDA kernels
// (cuda/kernels/elementwise.cu). The CUDA kernels template on the op so the switch folds away.
// The ops themselves are listed in core/kernels/elementwise.h; no switch here has a default, so
// a listed op without its case here is a -Wswitch warning, not a silent zero.
#pragma once
#include <cmath>

#include "core/kernels/elementwise.h"
#include "core/philox.h"

namespace idem::math {

template <typename T>
IDEM_HOST_DEVICE inline T unary_apply(UnaryOp op, T x, T a) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return std::exp(x);
    case UnaryOp::log: return std::log(x);
    case UnaryOp::sqrt: return std::sqrt(x);
    case UnaryOp::abs: return std::fabs(x);
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::leaky_relu: return x > T(0) ? x : a * x;
    case UnaryOp::sigmoid: return T(1) / (T(1) + std::exp(-x));
    case UnaryOp::tanh: return std::tanh(x);
    case UnaryOp::gelu: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    case UnaryOp::add_scalar: return x + a;
    case UnaryOp::mul_scalar: return x * a;
    case UnaryOp::pow_scalar: return std::pow(x, a);
    case UnaryOp::rsub_scalar: return a - x;
    case UnaryOp::rdiv_scalar: return a / x;
    case UnaryOp::square: return x * x;
  }
  return x;  // not reached: the switch covers every UnaryOp
}

// d(op)/dx times g; y = op(x) is passed so exp/sigmoid/tanh/sqrt reuse the forward result. A case
// reads x or y, never both: the CUDA backward passes only the one named by the op's grad_reads
// column (unary_grad_reads_output), and 0 for the other.
template <typename T>
IDEM_HOST_DEVICE inline T unary_grad(UnaryOp op, T g, T x, T y, T a) {
  switch (op) {
    case UnaryOp::neg: return -g;
    case UnaryOp::exp: return g * y;
    case UnaryOp::log: return g / x;
    case UnaryOp::sqrt: return g * T(0.5) / y;
    case UnaryOp::abs: return x > T(0) ? g : (x < T(0) ? -g : T(0));
    case UnaryOp::relu: return x > T(0) ? g : T(0);
    case UnaryOp::leaky_relu: return x > T(0) ? g : a * g;
    case UnaryOp::sigmoid: return g * y * (T(1) - y);
    case UnaryOp::tanh: return g * (T(1) - y * y);
    case UnaryOp::gelu: {
      // d/dx [x Φ(x)] = Φ(x) + x φ(x)
      T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
      T pdf = std::exp(T(-0.5) * x * x) * T(0.39894228040143267794);
      return g * (cdf + x * pdf);
    }
    case UnaryOp::add_scalar: return g;
    case UnaryOp::mul_scalar: return g * a;
    case UnaryOp::pow_scalar: return g * a * std::pow(x, a - T(1));
    case UnaryOp::rsub_scalar: return -g;
    case UnaryOp::rdiv_scalar: return -g * a / (x * x);
    case UnaryOp::square: return T(2) * g * x;
  }
  return g;  // not reached
}

// Arithmetic binary ops (comparisons use binary_compare).
template <typename T>
IDEM_HOST_DEVICE inline T binary_apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::pow: return static_cast<T>(std::pow(a, b));
    case BinaryOp::maximum: return a > b ? a : b;
    case BinaryOp::minimum: return a < b ? a : b;
#define IDEM_EW_CMP(name) case BinaryOp::name:
      IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP)
#undef IDEM_EW_CMP
      break;  // comparisons go to binary_compare
  }
  return T(0);  // not reached: kernels call binary_compare when is_comparison(op)
}

template <typename T>
IDEM_HOST_DEVICE inline bool binary_compare(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::eq: return a == b;
    case BinaryOp::ne: return a != b;
    case BinaryOp::lt: return a < b;
    case BinaryOp::le: return a <= b;
    case BinaryOp::gt: return a > b;
    case BinaryOp::ge: return a >= b;
#define IDEM_EW_ARITH(name, dtypes, a_domain, b_domain) case BinaryOp::name:
      IDEM_BINARY_ARITH_OPS(IDEM_EW_ARITH)
#undef IDEM_EW_ARITH
      break;  // arithmetic ops go to binary_apply
  }
  return false;  // not reached: kernels call binary_apply unless is_comparison(op)
}

// Standard normal from one Philox block (see core/kernels/elementwise.h). Computed in double
// and rounded once, so the CPU (glibc) and the GPU (CUDA libdevice) agree on f32 draws except
// in the rare case where their double log/cos differ across a float rounding boundary.
IDEM_HOST_DEVICE inline double philox_normal(const uint32_t r[4]) {
  double u1 = 1.0 - static_cast<double>(philox_uniform(r[0]));  // (0, 1]
  double u2 = static_cast<double>(philox_uniform(r[1]));
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586476925 * u2);
}

}  // namespace idem::math
