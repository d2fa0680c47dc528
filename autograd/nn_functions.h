// Level L2: the differentiable neural-network functions that layers/ builds on (convolution,
// pooling, upsampling, normalization, dropout, losses). Each family follows the op recipe
// (docs/design.md#the-op-recipe): contract in core/kernels/<family>.h, CPU kernel, CUDA kernel,
// L1 op, node here, rows in tests/op_cases/<family>_cases.cpp.
#pragma once
#include <cstdint>

#include "autograd/functions.h"
#include "core/kernels/conv.h"
#include "core/kernels/fused.h"  // FusedAct (max_pool2d_act)

namespace idem {

// ---- convolution (autograd/conv_functions.cpp), NCHW, weight (O, C/groups, R, S) ----
struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};
// bias may be an undefined Tensor (no bias).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dParams p = {});
// Transposed convolution (the adjoint of conv2d in x); weight (C_in, O/groups, R, S) as PyTorch.
struct ConvTranspose2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t output_pad_h = 0, output_pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        ConvTranspose2dParams p = {});
// Which CUDA convolution implementation runs: hand-written or cuDNN. Chosen at run time
// (set_conv_backend, or else IDEM_CONV=hand|cudnn) so both can be timed in one process.
// enum class ConvBackend { hand, cudnn } is defined in core/kernels/conv.h (the kernels read it).
ConvBackend conv_backend();
void set_conv_backend(ConvBackend b);

// ---- pooling and upsampling (autograd/pool_functions.cpp), NCHW ----
// stride 0 means stride = kernel.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
// max_pool2d(x, kernel, stride, padding) followed by an activation as ONE op each way (one
// launch instead of two on a GPU): act FusedAct::none, relu, or leaky_relu with `slope` (its
// negative slope) finite and >= 0. The same output bits as max_pool2d then relu / leaky_relu,
// and the same gradient bits as their two backward ops (ops::max_pool2d_act).
Tensor max_pool2d_act(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding,
                      FusedAct act, double slope = 0.01);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor global_avg_pool2d(const Tensor& x);  // (N,C,H,W) -> (N,C)
Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor upsample_bilinear2d(const Tensor& x, int64_t out_h, int64_t out_w,
                           bool align_corners = false);

// ---- normalization and dropout (autograd/norm_functions.cpp) ----
// x (N,C) or (N,C,*). training: normalizes with batch statistics and, when running_mean/var
// are defined, updates them in place (momentum, unbiased variance, as PyTorch); evaluation:
// uses the running statistics. weight/bias (C) may be undefined.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);
// Normalizes over the last `normalized_dims` dims; weight/bias have those dims' shape.
Tensor layer_norm(const Tensor& x, int64_t normalized_dims, const Tensor& weight,
                  const Tensor& bias, double eps = 1e-5);
// x (N,C,*): C split into `groups` groups, each normalized over (C/groups, *).
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);
// Inverted dropout with a Philox mask: element i is kept iff uniform(seed, offset, i) >= p.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset = 0);

// ---- losses (autograd/loss_functions.cpp) ----
enum class Reduction : uint8_t { mean, sum, none };
Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction r = Reduction::mean);
Tensor l1_loss(const Tensor& pred, const Tensor& target, Reduction r = Reduction::mean);
Tensor smooth_l1_loss(const Tensor& pred, const Tensor& target, double beta = 1.0,
                      Reduction r = Reduction::mean);
// logits (N,C), target (N) i64 class indices.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0,
                     Reduction r = Reduction::mean);
// logits (N,C), target (N,C) probabilities (soft labels, e.g. one-hot).
Tensor cross_entropy_soft(const Tensor& logits, const Tensor& target_probs,
                          Reduction r = Reduction::mean);
// log_probs (N,C), target (N) i64.
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction r = Reduction::mean);
Tensor bce_with_logits(const Tensor& logits, const Tensor& target, Reduction r = Reduction::mean);
// Divergences between distributions p, q (probabilities) along the last dim, per row then
// reduced: KL(p‖q) = Σ p log(p/q); JS(p,q) = ½KL(p‖m) + ½KL(q‖m), m = (p+q)/2.
Tensor kl_div(const Tensor& p, const Tensor& q, Reduction r = Reduction::mean);
Tensor js_div(const Tensor& p, const Tensor& q, Reduction r = Reduction::mean);

}  // namespace idem
