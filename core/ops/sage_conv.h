// L1 SAGEConv forward (contract and rounding: core/kernels/sage_conv.h): validate, allocate,
// dispatch. Not differentiable; autograd/sage_conv_function.h wraps it.
#pragma once
#include "core/kernels/sage_conv.h"

namespace idem::ops {

struct SageConvResult {
  Tensor y;     // (V, out)
  Tensor mean;  // (V, in) when keep_mean, else undefined
};

// y = act(mean·Wlᵀ + x·Wrᵀ + b) with mean = csr_mean_aggregate(x, idx): x (V, in) is both the
// sources and the destinations (row_ptr has V + 1 entries), weight_l and weight_r (out, in),
// bias (out) or undefined, act / slope as linear_act. The checks are csr_mean_aggregate's and
// sage_linear's, under the name "sage_conv". On CUDA, sage_conv_path() == fused, f32, in and
// out <= 64 and the hand GEMM backend take the one fused kernel; otherwise (and on the CPU) it
// is csr_mean_aggregate then sage_linear, with the same bits either way (but for the sign of an
// all-zero sum, core/kernels/sage_conv.h).
SageConvResult sage_conv(const Tensor& x, const CsrAggregateIndex& idx, const Tensor& weight_l,
                         const Tensor& bias, const Tensor& weight_r, FusedAct act, double slope,
                         bool keep_mean);

// Whether sage_conv takes the fused kernel for these operands (after its checks passed).
bool sage_conv_takes_fused(const Tensor& x, int64_t out);

}  // namespace idem::ops
