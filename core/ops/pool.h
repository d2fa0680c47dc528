// L1 pooling and upsampling over NCHW tensors: validate, allocate, dispatch. Not differentiable
// (autograd/pool_functions.cpp wraps them). Semantics as PyTorch: see core/kernels/pool.h.
#pragma once
#include <utility>

#include "core/kernels/pool.h"

namespace idem::ops {

// The window of max/avg pooling. requires: kernel > 0, stride > 0, 0 <= pad <= kernel / 2
// (PyTorch's limit), and the padded input at least as large as the kernel.
struct PoolWindow {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

// x (N,C,H,W) -> (out (N,C,P,Q), indices (N,C,P,Q) i64: flat h·W + w of each window's first
// maximum within its plane, as PyTorch's return_indices).
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const PoolWindow& win);
Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& x_shape,
                           const PoolWindow& win);
// max_pool2d followed by an activation, in one pass each way (launch-bound small CNNs: one
// launch instead of two): out = act(max over the window), indices as max_pool2d's. act: none,
// relu or leaky_relu with `slope` (its negative slope) finite and >= 0, since the backward
// reads act' from out. The forward and the backward give the bits of max_pool2d then the
// activation op (relu / leaky_relu) and of their two backward ops. CUDA: f32.
std::pair<Tensor, Tensor> max_pool2d_act(const Tensor& x, const PoolWindow& win, FusedAct act,
                                         double slope = 0.01);
// dx from grad_out and the forward's out and indices (all (N,C,P,Q)).
Tensor max_pool2d_act_backward(const Tensor& grad_out, const Tensor& out, const Tensor& indices,
                               const Shape& x_shape, const PoolWindow& win, FusedAct act,
                               double slope = 0.01);
// count_include_pad=True, ceil_mode=False.
Tensor avg_pool2d(const Tensor& x, const PoolWindow& win);
Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape, const PoolWindow& win);
// x (N,C,H,W) -> (N,C,out_h,out_w); out_h, out_w >= 1.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape);
// x (N,C,H,W) -> (N,C,out_h,out_w); align_corners only matters for bilinear.
Tensor upsample2d(const Tensor& x, int64_t out_h, int64_t out_w, UpsampleMode mode,
                  bool align_corners = false);
Tensor upsample2d_backward(const Tensor& grad_out, const Shape& x_shape, UpsampleMode mode,
                           bool align_corners = false);

}  // namespace idem::ops
