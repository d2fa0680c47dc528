// L1 normalization and dropout: validate, allocate, dispatch. Not differentiable
// (autograd/norm_functions.cpp wraps them). Kernel contract: core/kernels/norm.h.
#pragma once
#include "core/kernels/norm.h"

namespace idem::ops {

// y and the statistics that backward needs (mean and 1/sqrt(var + eps), one per group).
struct NormOutputs {
  Tensor y, mean, rstd;
  NormShape shape;
};

// x (N,C) or (N,C,*). training: batch statistics; running_mean/var (C), when defined, are
// updated in place (momentum, unbiased variance). Evaluation: normalizes with the running
// statistics (which must then be defined). weight/bias (C) may be undefined.
NormOutputs batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight, const Tensor& bias, bool training, double momentum,
                       double eps);
// Statistics over the last `normalized_dims` dims; weight/bias have those dims' shape.
NormOutputs layer_norm(const Tensor& x, int64_t normalized_dims, const Tensor& weight,
                       const Tensor& bias, double eps);
// x (N,C,*), C divisible by `groups`; weight/bias (C).
NormOutputs group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                       double eps);

// Gradients of a normalization; each is computed only when its flag is set (undefined
// otherwise). dweight/dbias come back flat (channels); the caller views them as it needs.
struct NormGrads {
  Tensor dx, dweight, dbias;
};
NormGrads norm_backward(const Tensor& g, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                        const Tensor& weight, const NormShape& s, bool batch_stats, bool need_dx,
                        bool need_dweight, bool need_dbias);

// x * keep * 1/(1-p) with the Philox mask of (seed, offset); p in [0, 1).
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset);

}  // namespace idem::ops
