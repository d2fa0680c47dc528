// Level L2: fused differentiable functions — fewer, larger kernels for the launch-bound small
// steps of IT³ (docs/design.md#measuring). Each follows docs/design.md#the-op-recipe: contract in
// core/kernels/fused.h, CPU reference core/cpu/fused.cpp, CUDA cuda/kernels/fused.cu, L1 op in
// core/ops/fused.h, rows in tests/op_cases/fused_cases.cpp.
#pragma once
#include "autograd/functions.h"
#include "core/kernels/fused.h"

namespace idem {

// y = act(x·Wᵀ + b): a Linear layer and its activation in one op.
//   x (*, in) (leading dims are flattened into rows, as Linear), weight (out, in) (PyTorch
//   layout), bias (out) or an undefined Tensor; y (*, out).
//   act: FusedAct::none, relu, leaky_relu (slope = the negative slope, >= 0).
// Launches on a GPU (hand GEMM backend): 1 forward and 1 backward for small layers (the IT³
// MLPs); otherwise GEMM + 1 epilogue forward and 1 + 2 GEMMs backward. Unfused, Linear +
// activation costs 3 forward and 4 backward. Outputs equal matmul + add + activation to the
// last bit in the forward (CPU; GPU small shapes); gradients agree within f32 rounding.
// The weight/bias/x gradients are computed only where needed (a frozen layer still passes
// gradients to x).
Tensor linear_act(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  FusedAct act = FusedAct::none, double slope = 0.01);

// mean(|a − b|) over all elements as a 0-dim tensor (l1_loss with Reduction::mean), in ONE
// deterministic launch; its backward is ONE launch writing ∂a = sign(a − b)·g/n and ∂b = −∂a
// (sign(0) = 0, as torch.sign), reading g on the device. a and b: one shape, non-empty.
Tensor l1_distance(const Tensor& a, const Tensor& b);
// mean((a − b)²) likewise; ∂a = 2(a − b)·g/n.
Tensor mse_distance(const Tensor& a, const Tensor& b);

}  // namespace idem
