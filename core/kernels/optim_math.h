// The scalar formulas of the optimizer update (torch.optim's, core/kernels/optim.h), written once
// for every place that updates a parameter: the CPU optimizer (core/cpu/optim.cpp, including its
// AVX2 / AVX-512 variants, which are this code compiled for wider registers), the CUDA optimizer
// (cuda/kernels/optim.cu), the fused IT³ MLP adaptation's CPU reference
// (core/cpu/fused_mlp_adapt.cpp) and its two CUDA kernels (cuda/kernels/fused_mlp_device.cuh).
//
// Bits: each operation is rounded once, in the order written here. On the device the _rn
// intrinsics say so (nvcc may not contract them into an FMA); on the host the operators are
// plain, and the two host files that include this, core/cpu/optim.cpp and
// core/cpu/fused_mlp_adapt.cpp, are compiled with contraction off (CMakeLists.txt; a new host
// includer needs the same). So every caller computes the same bits from the same inputs (the
// determinism promise, docs/reliability.md).
#pragma once
#include <cmath>

#include "core/philox.h"  // IDEM_HOST_DEVICE

// Inlined into every caller: the CPU optimizer's vector variants must get this body compiled
// for their own instruction set, not a call to a baseline copy.
#if defined(__CUDACC__)
#define IDEM_HD_FORCEINLINE __host__ __device__ __forceinline__
#else
#define IDEM_HD_FORCEINLINE __attribute__((always_inline)) inline
#endif

namespace idem::math {

// Correctly rounded single operations, never fused with their neighbours: the _rn intrinsics
// in device code, plain operators on the host (float and double alike).
#if defined(__CUDA_ARCH__)
__device__ __forceinline__ float rn_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float rn_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float rn_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float rn_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ float rn_sqrt(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double rn_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double rn_sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double rn_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double rn_div(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ double rn_sqrt(double a) { return __dsqrt_rn(a); }
#else
template <typename T> IDEM_HD_FORCEINLINE T rn_add(T a, T b) { return a + b; }
template <typename T> IDEM_HD_FORCEINLINE T rn_sub(T a, T b) { return a - b; }
template <typename T> IDEM_HD_FORCEINLINE T rn_mul(T a, T b) { return a * b; }
template <typename T> IDEM_HD_FORCEINLINE T rn_div(T a, T b) { return a / b; }
template <typename T> IDEM_HD_FORCEINLINE T rn_sqrt(T a) { return std::sqrt(a); }
#endif

// Adam's bias corrections of step t, in double: step_size = lr / (1 − β1^t) and
// bc2_sqrt = sqrt(1 − β2^t).
struct AdamCorrections {
  double step_size, bc2_sqrt;
};
IDEM_HOST_DEVICE inline AdamCorrections adam_corrections(double lr, double beta1, double beta2, double t) {
  const double bc1 = 1.0 - std::pow(beta1, t);
  const double bc2 = 1.0 - std::pow(beta2, t);
  return {lr / bc1, std::sqrt(bc2)};
}

// Adam's per-step scalars in the parameter's type T, each converted once from double.
template <typename T>
struct AdamCoeffs {
  T w1, b2, w2;  // 1 − β1, β2, 1 − β2
  T step_size, bc2, eps;
};
template <typename T>
IDEM_HOST_DEVICE inline AdamCoeffs<T> adam_coeffs(double beta1, double beta2, double eps,
                                                  const AdamCorrections& c) {
  return {T(1.0 - beta1), T(beta2), T(1.0 - beta2), T(c.step_size), T(c.bc2_sqrt), T(eps)};
}

// One Adam update of one element: m and v from the gradient g (weight decay and maximize
// already applied by the caller), then w. In this order:
//   m ← m + (1 − β1)(g − m);  v ← β2·v + (1 − β2)·g²;  w ← w − step_size · m / (sqrt(v)/bc2 + eps)
template <typename T>
IDEM_HD_FORCEINLINE void adam_step(const AdamCoeffs<T>& c, T g, T& m, T& v, T& w) {
  const T mi = rn_add(m, rn_mul(c.w1, rn_sub(g, m)));
  const T vi = rn_add(rn_mul(c.b2, v), rn_mul(c.w2, rn_mul(g, g)));
  m = mi;
  v = vi;
  const T denom = rn_add(rn_div(rn_sqrt(vi), c.bc2), c.eps);
  w = rn_sub(w, rn_mul(c.step_size, rn_div(mi, denom)));
}

// SGD's per-step scalars in the parameter's type T. damp = 1 − dampening; first: step 1, where
// the momentum buffer starts as g.
template <typename T>
struct SgdCoeffs {
  T lr, momentum, damp;
  bool nesterov, first;
};

// One SGD update of one element from the gradient g (weight decay and maximize already applied
// by the caller): with momentum, buf ← first ? g : momentum·buf + damp·g and
// g ← nesterov ? g + momentum·buf : buf; then w ← w − lr·g. Without momentum buf is neither read
// nor written (callers with no buffer pass w there). A flag and a reference, not a nullable
// pointer: a pointer into a CUDA kernel's register array would put the array in local memory,
// and `buf ? *buf : a local` makes generic loads of global ones.
template <typename T>
IDEM_HD_FORCEINLINE void sgd_step(const SgdCoeffs<T>& c, T g, bool momentum, T& buf, T& w) {
  if (momentum) {
    const T b = c.first ? g : rn_add(rn_mul(c.momentum, buf), rn_mul(c.damp, g));
    buf = b;
    g = c.nesterov ? rn_add(g, rn_mul(c.momentum, b)) : b;
  }
  w = rn_sub(w, rn_mul(c.lr, g));
}

}  // namespace idem::math
