// Level L2: SAGEConv's linear part as ONE differentiable op (docs/design.md#the-op-recipe: the
// contract core/kernels/fused.h — bias_act, act_bias_grad —, the L1 op ops::sage_linear in
// core/ops/fused.h, rows in tests/op_cases/fused_cases.cpp, tests/sage_linear_test.cpp).
#pragma once
#include "autograd/functions.h"
#include "core/kernels/fused.h"

namespace idem {

// y = act(a·Wlᵀ + x·Wrᵀ + b): lin_l(a) + lin_r(x) with lin_l's bias and the activation after
// it, as one node.
//   a (N, in_l) (SAGEConv: the mean-aggregated neighbours), weight_l (out, in_l), bias (out) or
//   undefined, x (N, in_r) (the root features), weight_r (out, in_r); y (N, out).
//   act: FusedAct::none, relu, leaky_relu (slope = the negative slope, >= 0).
// Launches on a GPU: forward 2 with the hand GEMM (GEMM y = x·Wrᵀ, GEMM y = a·Wlᵀ + y with
// beta = 1 whose store adds the bias and applies the activation); with cuBLAS 3 (a separate bias
// + activation pass; 2 without bias and act). Linear + Linear + add + activation costs 5.
// Backward: one pass writes gz = g ⊙ act'(y) and db (plus one small launch combining the row
// chunks' db sums when N > 256), then one GEMM per requested da, dWl, dx, dWr (so at most 6 —
// more where a GEMM itself takes several launches, e.g. hand split-K for dW at N >= 4096). The unfused backward adds the bias reduction, the activation backward
// and the add's pass-through. The result equals the unfused composition within f32 rounding
// (the sum is rounded as (a·Wlᵀ + x·Wrᵀ) + b instead of (a·Wlᵀ + b) + x·Wrᵀ).
// When a and x derive from one tensor (SAGEConv: a = mean_aggregate(x)), the autograd engine
// adds their gradients.
Tensor sage_linear(const Tensor& a, const Tensor& weight_l, const Tensor& bias, const Tensor& x,
                   const Tensor& weight_r, FusedAct act = FusedAct::none, double slope = 0.01);

}  // namespace idem
