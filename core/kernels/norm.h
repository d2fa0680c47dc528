// Kernel contract: normalization (batch_norm, layer_norm, group_norm) and dropout.
// cpu:: in core/cpu/norm.cpp, cuda:: in cuda/kernels/norm.cu, stubs in cuda/no_cuda.cpp.
//
// One canonical shape serves the three normalizations. The contiguous input x is seen twice:
//   statistics: x as (stat_outer, groups, stat_inner); group g normalizes the
//               R = stat_outer * stat_inner elements x[o, g, i] together;
//   affine:     x as (aff_outer, channels, aff_inner); weight/bias are indexed by channel.
//   batch_norm (N,C,S):  stats (N, C, S)          affine (N, C, S)
//   layer_norm (M,D):    stats (1, M, D)          affine (M, D, 1)
//   group_norm (N,C,S):  stats (1, N*G, C/G*S)    affine (N, C, S)
// With x̂ = (x - mean[g]) * rstd[g], the forward is y = x̂ * w[c] + b[c] (w = 1, b = 0 when the
// tensor is undefined), and the backward, with sums over the R elements of the group
//   batch statistics: dx = rstd/R * (R*g*w - Σ g*w - x̂ * Σ g*w*x̂)
//   fixed statistics: dx = g * w * rstd                    (batch_norm in evaluation mode)
//   dweight[c] = Σ_{elements of channel c} g * x̂,   dbias[c] = Σ_{elements of channel c} g.
//
// Common requires (checked by the L1 op): tensors contiguous, on one device; x, y, g, weight,
// bias, running stats of one floating dtype (f32 on CUDA); mean/rstd/running stats hold
// `groups` elements, weight/bias/dweight/dbias `channels` elements. An undefined optional
// tensor means "absent". Deterministic: fixed summation order (CPU: sequential in double;
// CUDA: one block per group or channel, or, for few large groups, per-chunk partials combined in
// a fixed order; fixed reduction trees, no atomics; the chunking depends on the shape only).
// On CUDA "the shape" is the whole tensor's: whether the split path is taken, and how a group
// is cut, depends on the number of groups too, so one row of a layer_norm or group_norm (whose
// groups are the rows) can come out with other last bits in a batch of another size. Reruns of
// the same shape give the same bits; the CPU path does not depend on the batch size.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem {

struct NormShape {
  int64_t stat_outer = 1, groups = 1, stat_inner = 1;
  int64_t aff_outer = 1, channels = 1, aff_inner = 1;
  int64_t numel() const { return stat_outer * groups * stat_inner; }
  int64_t group_size() const { return stat_outer * stat_inner; }  // R
  // The two views coincide (batch_norm): per-group sums are also per-channel sums, so the
  // backward computes dweight/dbias in the same pass as dx.
  bool affine_is_stats() const {
    return stat_outer == aff_outer && groups == channels && stat_inner == aff_inner;
  }
};

struct NormParams {
  double eps = 1e-5;
  double momentum = 0.1;  // running-stat update rate (batch_norm training only)
};

// Inverted dropout: element i is kept iff philox_uniform(philox_block(seed, i, offset)[0]) >= p,
// i.e. iff (r0 >> 8) >= keep_threshold with keep_threshold = ceil(p * 2^24) (exact, since the
// uniform is (r0 >> 8) / 2^24); kept values are multiplied by scale = 1 / (1 - p). The mask is
// the one rand(shape, seed, {}, offset) >= p gives, on the CPU and on the GPU.
struct DropoutParams {
  double p = 0.5;
  uint64_t seed = 0, offset = 0;
  uint32_t keep_threshold() const;  // ceil(p * 2^24)
  double scale() const { return 1.0 / (1.0 - p); }
};

namespace cpu {
// Batch statistics. ensures: mean[g] = mean over the group, rstd[g] = 1/sqrt(var_b + eps)
// (var_b biased), y = x̂ * w + b; when running_mean/running_var are defined (requires
// affine_is_stats): running_mean = (1-m)*running_mean + m*mean,
// running_var = (1-m)*running_var + m*var_b*R/(R-1) (unbiased), updated in place.
void norm_fwd(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
              const Tensor& running_var, const NormShape& s, const NormParams& p);
// Given statistics (batch_norm evaluation). ensures: mean = mean_in (a copy, so a later
// in-place running-stat update cannot change what backward sees), rstd = 1/sqrt(var_in + eps),
// y = x̂ * w + b.
void norm_fwd_stats(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor& mean_in, const Tensor& var_in, const Tensor& weight,
                    const Tensor& bias, const NormShape& s, const NormParams& p);
// Any of dx, dweight, dbias may be undefined (not wanted). batch_stats selects the dx formula.
void norm_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
              const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight,
              const NormShape& s, bool batch_stats);
// out = in * keep * scale (same shape). Also the backward: dx = dropout_apply(g) with the
// same params.
void dropout_apply(const Tensor& out, const Tensor& in, const DropoutParams& p);
}  // namespace cpu

namespace cuda {
void norm_fwd(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
              const Tensor& running_var, const NormShape& s, const NormParams& p);
void norm_fwd_stats(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor& mean_in, const Tensor& var_in, const Tensor& weight,
                    const Tensor& bias, const NormShape& s, const NormParams& p);
void norm_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
              const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight,
              const NormShape& s, bool batch_stats);
void dropout_apply(const Tensor& out, const Tensor& in, const DropoutParams& p);
}  // namespace cuda

// ceil(p * 2^24) for p in [0, 1); inline so host code of both backends shares it.
inline uint32_t DropoutParams::keep_threshold() const {
  const double t = p * 16777216.0;
  const uint32_t f = static_cast<uint32_t>(t);
  return static_cast<double>(f) < t ? f + 1 : f;
}

}  // namespace idem
