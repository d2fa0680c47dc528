// Level L2: a SAGEConv layer (mean aggregation, root weight) as ONE differentiable op
// (docs/design.md#the-op-recipe: the contract core/kernels/sage_conv.h, the L1 op
// ops::sage_conv in core/ops/sage_conv.h, rows in tests/op_cases/fused_cases.cpp,
// tests/sage_conv_test.cpp).
#pragma once
#include "autograd/functions.h"
#include "core/kernels/sage_conv.h"

namespace idem {

// y = act(mean·Wlᵀ + x·Wrᵀ + b) with mean = csr_mean_aggregate(x, index): x (V, in) the node
// features (sources and destinations at once), weight_l, weight_r (out, in), bias (out) or
// undefined, act / slope as sage_linear. The forward is ops::sage_conv (on a GPU one fused
// kernel where sage_conv_path() allows it, else csr_mean_aggregate + sage_linear); it keeps
// the mean only when weight_l needs a gradient (dWl = gzᵀ·mean). The backward is that of the
// two ops it replaces, in one node: ops::sage_linear_backward, then the aggregation's adjoint
// of da; x is an input twice, so the engine adds the two terms to x's gradient in the order the
// two nodes did. Forward and gradients are the bits of csr_mean_aggregate followed by
// sage_linear (on CUDA's fused kernel too, but for the sign of an all-zero sum: see
// core/kernels/sage_conv.h).
Tensor sage_conv(const Tensor& x, const CsrAggregateIndex& index, const Tensor& weight_l,
                 const Tensor& bias, const Tensor& weight_r, FusedAct act = FusedAct::none,
                 double slope = 0.01);

}  // namespace idem
