// Kernel contract: fused ops that cut the kernel-launch count of a small IT³ step (a small
// step is bound by launches, not by FLOPs or bytes). cpu:: in core/cpu/fused.cpp, cuda:: in
// cuda/kernels/fused.cu, stubs in cuda/no_cuda.cpp.
//
//  - linear_act: y = act(x·Wᵀ + b), the Linear layer with its bias and activation fused.
//      x (N,in), W (out,in) as PyTorch, b (out) or none, y (N,out).
//      Backward from g = ∂L/∂y:  gz = g ⊙ act'(y)  (act' read from the OUTPUT y: with a
//      leaky slope >= 0, y > 0 exactly when the pre-activation z > 0, so z need not be kept)
//        dx = gz·W   : (N,out)(out,in) -> (N,in)
//        dW = gzᵀ·x  : (out,N)(N,in)   -> (out,in)
//        db = Σ_n gz : (N,out)         -> (out)
//  - bias_act / act_bias_grad: the epilogues of linear_act on their own, for ops that form
//      z with GEMMs of their own (ops::sage_linear: z = a·Wlᵀ + x·Wrᵀ by two GEMMs into one
//      output, the second with beta = 1; on the CPU and on cuBLAS — the hand CUDA GEMM folds
//      bias_act into its store, cuda::sage_linear_fwd).
//      bias_act: y = act(y + b) in place, y (N,out).
//      act_bias_grad: gz = g ⊙ act'(y) and db = Σ_n gz, from g and the output y (N,out).
//  - distance: the mean over all elements of |a − b| (l1) or (a − b)² (mse), a 0-dim result,
//      and its gradient ∂a = d'(a − b)·g/n, ∂b = −∂a with the upstream g read from memory.
//
// Common requires (checked by the L1 op, not here): outputs allocated and contiguous on the
// inputs' device; CPU f32/f64, CUDA f32; every extent < 2^31 on CUDA.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/philox.h"  // IDEM_HOST_DEVICE
#include "core/tensor.h"

namespace idem {

// The activations that fold into a GEMM epilogue, one row each: the list generates the enum,
// fused_act_name, kFusedActList and the cases of with_fused_act below; the formulas are
// math::fused_act / fused_act_grad below (no default there: -Wswitch names a missing case).
// The others (sigmoid, tanh, gelu) run as their own elementwise op after linear_act(none);
// layers/activation.h maps a layer's Activation to its FusedAct (fused_act_code).
#define IDEM_FUSED_ACTS(X) X(none) X(relu) X(leaky_relu)

#define IDEM_FUSED_ACT_ENUM(name) name,
enum class FusedAct : uint8_t { IDEM_FUSED_ACTS(IDEM_FUSED_ACT_ENUM) };
#undef IDEM_FUSED_ACT_ENUM
#define IDEM_FUSED_ACT_COUNT(name) +1
inline constexpr int kFusedActCount = 0 IDEM_FUSED_ACTS(IDEM_FUSED_ACT_COUNT);
#undef IDEM_FUSED_ACT_COUNT
const char* fused_act_name(FusedAct a);
// "none, relu, leaky_relu": the rows of IDEM_FUSED_ACTS for error messages (each row adds
// ", name"; + 2 drops the first separator).
#define IDEM_FUSED_ACT_LIST(name) ", " #name
inline constexpr const char* kFusedActList = IDEM_FUSED_ACTS(IDEM_FUSED_ACT_LIST) + 2;
#undef IDEM_FUSED_ACT_LIST

// Calls f(std::integral_constant<FusedAct, a>{}) for the run-time activation `a`, so a kernel or
// loop takes the activation as a template argument and the switch of math::fused_act /
// fused_act_grad folds away (a switch on a run-time FusedAct kept the CPU epilogue loops
// scalar: about a fifth of an mlp_256 training step on the CPU). One case per row of
// IDEM_FUSED_ACTS. The one dispatch of the CPU and CUDA kernels of linear_act and
// max_pool2d_act; host code, compiled by g++ and nvcc. A value outside the enum (the L1 ops
// reject it first, ops::check_fused_act) throws idem::Error naming `op`.
template <typename F>
void with_fused_act(FusedAct a, const char* op, F&& f) {
  switch (a) {
#define IDEM_FUSED_ACT_CASE(name)                          \
  case FusedAct::name:                                     \
    f(std::integral_constant<FusedAct, FusedAct::name>{}); \
    return;
    IDEM_FUSED_ACTS(IDEM_FUSED_ACT_CASE)
#undef IDEM_FUSED_ACT_CASE
  }
  fail(op, "unknown activation ", static_cast<int>(a), " (expected one of ", kFusedActList, ")");
}

struct LinearActParams {
  int64_t N = 0, in = 0, out = 0;  // x (N,in), W (out,in), y (N,out)
  FusedAct act = FusedAct::none;
  double slope = 0.01;  // leaky_relu's negative slope; requires slope >= 0
  bool bias = false;    // b present
};

enum class DistanceKind : uint8_t { l1, mse };
const char* distance_name(DistanceKind k);

namespace math {

// act(z). relu and leaky_relu exactly as UnaryOp::relu / leaky_relu (elementwise_math.h), so a
// fused layer gives the same bits as matmul + add + activation.
template <typename T>
IDEM_HOST_DEVICE inline T fused_act(FusedAct a, T z, T slope) {
  switch (a) {
    case FusedAct::relu:
      return z > T(0) ? z : T(0);
    case FusedAct::leaky_relu:
      return z > T(0) ? z : slope * z;
    case FusedAct::none:
      return z;
  }
  return z;  // not reached
}

// g · act'(z), computed from y = act(z): y > 0 <=> z > 0 for slope >= 0. At z = 0 the
// derivative is that of the negative side, as UnaryOp::relu / leaky_relu's.
template <typename T>
IDEM_HOST_DEVICE inline T fused_act_grad(FusedAct a, T g, T y, T slope) {
  switch (a) {
    case FusedAct::relu:
      return y > T(0) ? g : T(0);
    case FusedAct::leaky_relu:
      return y > T(0) ? g : slope * g;
    case FusedAct::none:
      return g;
  }
  return g;  // not reached
}

// d'(a − b) as a factor of g/n: sign(d) for l1 (0 at d = 0, as torch.sign), 2d for mse.
template <typename T>
IDEM_HOST_DEVICE inline T distance_grad_factor(DistanceKind k, T d) {
  if (k == DistanceKind::mse) return T(2) * d;
  return d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0));
}

template <typename T>
IDEM_HOST_DEVICE inline T distance_term(DistanceKind k, T d) {
  return k == DistanceKind::mse ? d * d : (d < T(0) ? -d : d);
}

}  // namespace math

namespace cpu {
// y = act(x·Wᵀ + b): one GEMM (cpu::matmul_fwd) and one epilogue pass.
// b undefined iff !p.bias.
void linear_act_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b,
                    const LinearActParams& p);
// The gradients above from g (N,out) and the forward output y (N,out). Each of dx (N,in),
// dw (out,in), db (out) may be undefined: it is then not computed. N may be 0 (dw, db zero).
void linear_act_bwd(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& g,
                    const Tensor& y, const Tensor& x, const Tensor& w, const LinearActParams& p);
// y = act(y + b) in place (the loop of linear_act_fwd after its GEMM). Uses p.N, p.out, p.act,
// p.slope, p.bias (b undefined iff !p.bias); p.in is ignored.
void bias_act(const Tensor& y, const Tensor& b, const LinearActParams& p);
// gz = g ⊙ act'(y) (when gz is defined) and db = Σ_n gz in double and row order (when db is
// defined), as linear_act_bwd. N may be 0 (db zero).
void act_bias_grad(const Tensor& gz, const Tensor& db, const Tensor& g, const Tensor& y,
                   const LinearActParams& p);
// out (0-dim) = Σ term(a_i − b_i) / n, accumulated in double in index order. n = a.numel() >= 1.
void distance_fwd(const Tensor& out, const Tensor& a, const Tensor& b, DistanceKind k);
// da = factor(a − b)·(g/n), db = −da; g is 0-dim. Either output may be undefined.
void distance_bwd(const Tensor& da, const Tensor& db, const Tensor& g, const Tensor& a,
                  const Tensor& b, DistanceKind k);
}  // namespace cpu

namespace cuda {
// Hand GEMM backend and a small product (in <= 16 or N·out <= 8192, the shapes where
// matmul_hand uses its one-thread/one-warp-per-output kernels): ONE launch, the bias and the
// activation applied in the GEMM's epilogue — the same summation order as matmul_hand, so the
// result is bit-identical to matmul + add + activation there. Otherwise, hand backend: ONE
// launch too, the tiled GEMM with the bias and the activation in its store
// (matmul_hand_epilogue), again the bits of matmul + add + activation; cuBLAS: the GEMM plus one
// epilogue launch (none when there is neither bias nor activation).
void linear_act_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b,
                    const LinearActParams& p);
// Hand GEMM backend and small (N·in·out <= 2^20, N <= 1024, out <= 1024): ONE launch computes
// every requested dx, dw and db element (16×16 output tiles, gz formed as it is staged; each
// element one sequential sum). Otherwise one launch writes gz and db (a deterministic column
// sum; a second small launch when N > 256 rows and db is wanted), then one GEMM for dx and one
// for dw.
void linear_act_bwd(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& g,
                    const Tensor& y, const Tensor& x, const Tensor& w, const LinearActParams& p);
// ops::sage_linear's forward y = act(a·Wlᵀ + x·Wrᵀ + b): a (N,p.in), wl (out,p.in), x (N,in_r),
// wr (out,in_r), b (out) undefined iff !p.bias. GEMM y = x·Wrᵀ, then GEMM y = a·Wlᵀ + y.
// Hand backend: the second GEMM adds the bias and applies the activation in its store
// (matmul_hand_epilogue): 2 launches, the bits of the two hand GEMMs followed by bias_act. cuBLAS
// backend: the two GEMMs and bias_act (3 launches; 2 without bias and activation).
void sage_linear_fwd(const Tensor& y, const Tensor& a, const Tensor& wl, const Tensor& b,
                     const Tensor& x, const Tensor& wr, const LinearActParams& p);
// ONE launch (the epilogue kernel of linear_act's cuBLAS path); none when there is neither
// bias nor activation, or y is empty.
void bias_act(const Tensor& y, const Tensor& b, const LinearActParams& p);
// linear_act_bwd's general-path epilogue: gz and a deterministic column sum for db (zeros when
// N = 0) in one launch, two when N > 256 rows and db is wanted; none when neither output is
// requested or out = 0.
void act_bias_grad(const Tensor& gz, const Tensor& db, const Tensor& g, const Tensor& y,
                   const LinearActParams& p);
// ONE launch, deterministic (fixed summation tree, double accumulation, no float atomics):
// n <= 16384 in one block; larger n in up to 1024 blocks whose partials the last block to finish
// combines in a fixed order (a per-device counter that the last block resets to 0). The counter
// and partials live in a per-device scratch buffer allocated by the first large call, which
// synchronizes: make that call (a warm-up) before capturing a CUDA graph. The scratch is shared
// by the calls of one device, which idem issues on one stream, so they never overlap.
void distance_fwd(const Tensor& out, const Tensor& a, const Tensor& b, DistanceKind k);
// ONE launch writing da and/or db; g is read on the device (no host synchronization).
void distance_bwd(const Tensor& da, const Tensor& db, const Tensor& g, const Tensor& a,
                  const Tensor& b, DistanceKind k);
}  // namespace cuda

}  // namespace idem
