// L1 fused ops (contract and formulas: core/kernels/fused.h): validate, allocate, dispatch.
// Not differentiable; autograd/fused_functions.h wraps them.
#pragma once
#include "core/kernels/fused.h"

namespace idem::ops {

// y = act(x·Wᵀ + b). x (N,in), weight (out,in), bias (out) or undefined; one floating dtype,
// one device (CUDA: f32). in >= 1; N may be 0. requires: slope >= 0 for leaky_relu (the
// backward reads act' from y). Throws idem::Error "[linear_act] ..." otherwise.
Tensor linear_act(const Tensor& x, const Tensor& weight, const Tensor& bias, FusedAct act,
                  double slope);

struct LinearActGrads {
  Tensor dx, dweight, dbias;  // undefined where not requested
};
// The gradients of linear_act from g = ∂L/∂y and its output y (the same x, weight as the
// forward). Only the requested ones are computed.
LinearActGrads linear_act_backward(const Tensor& g, const Tensor& y, const Tensor& x,
                                   const Tensor& weight, bool has_bias, FusedAct act, double slope,
                                   bool need_dx, bool need_dweight, bool need_dbias);

// y = act(a·Wlᵀ + x·Wrᵀ + b): SAGEConv's neighbour and root transforms, their sum, the bias
// and the activation in one op. a (N,in_l), weight_l (out,in_l), x (N,in_r), weight_r
// (out,in_r), bias (out) or undefined; act/slope as linear_act. Three kernels: y = x·Wrᵀ,
// y = a·Wlᵀ + 1·y (GEMM with beta = 1), bias_act in place (skipped without bias and act).
Tensor sage_linear(const Tensor& a, const Tensor& weight_l, const Tensor& bias, const Tensor& x,
                   const Tensor& weight_r, FusedAct act, double slope);

// Validates sage_linear's operands under `op`'s name: (a, Wl, b) and (x, Wr) as two linear_acts
// with one N, one out, one dtype and one device. Returns the parameters of the (a, Wl, b) half.
LinearActParams sage_linear_params(const Tensor& a, const Tensor& weight_l, const Tensor& bias,
                                   const Tensor& x, const Tensor& weight_r, FusedAct act,
                                   double slope, const char* op);

struct SageLinearGrads {
  Tensor da, dweight_l, dbias, dx, dweight_r;  // undefined where not requested
};
// From g = ∂L/∂y and the output y: gz = g ⊙ act'(y) and db = Σ_n gz (one act_bias_grad pass;
// none when act is none and db is not needed: gz is then g), da = gz·Wl, dWl = gzᵀ·a,
// dx = gz·Wr, dWr = gzᵀ·x — only the requested ones.
SageLinearGrads sage_linear_backward(const Tensor& g, const Tensor& y, const Tensor& a,
                                     const Tensor& weight_l, bool has_bias, const Tensor& x,
                                     const Tensor& weight_r, FusedAct act, double slope,
                                     bool need_da, bool need_dweight_l, bool need_dbias,
                                     bool need_dx, bool need_dweight_r);

// mean(|a − b|) or mean((a − b)²) as a 0-dim tensor. a, b: one shape (non-empty), one
// floating dtype, one device.
Tensor distance(const Tensor& a, const Tensor& b, DistanceKind k);
struct DistanceGrads {
  Tensor da, db;  // undefined where not requested
};
// ∂a = d'(a − b)·g/n, ∂b = −∂a; g is the 0-dim upstream gradient (read on the device).
DistanceGrads distance_backward(const Tensor& g, const Tensor& a, const Tensor& b, DistanceKind k,
                                bool need_da, bool need_db);

}  // namespace idem::ops
