// L1 convolution ops (NCHW): validate, allocate, dispatch. Not differentiable
// (autograd/conv_functions.cpp wraps them). Semantics as PyTorch: see core/kernels/conv.h.
#pragma once
#include "core/kernels/conv.h"

namespace idem::ops {

// Validates a conv2d of x_shape (N,C,H,W) by w_shape (O, C/groups, R, S) and returns every
// extent, with P = ⌊(H + 2ph − dh(R−1) − 1)/sh⌋ + 1 (likewise Q). Errors name `op`.
ConvShape conv2d_shape(const Shape& x_shape, const Shape& w_shape, const ConvParams& p,
                       const char* op);

// y (N,O,P,Q) = conv2d(x, w) + bias; bias (O) may be undefined.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p);
// dx (x_shape) = the adjoint of conv2d in x applied to grad_out (N,O,P,Q).
Tensor conv2d_backward_data(const Tensor& grad_out, const Tensor& w, const Shape& x_shape,
                            const ConvParams& p);
// dw (w_shape) = the adjoint of conv2d in w applied to grad_out, for input x.
Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& w_shape,
                              const ConvParams& p);

// Transposed convolution: x (N, C_in, H, W), w (C_in, O/groups, R, S) -> y (N, O, Ho, Wo),
//   Ho = (H − 1)·sh − 2ph + dh(R − 1) + output_pad_h + 1   (likewise Wo),
// the adjoint in x of conv2d(y-shaped input, w); output_pad < stride or < dilation (PyTorch).
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p,
                        int64_t output_pad_h = 0, int64_t output_pad_w = 0);
// Its adjoints: in x (= conv2d(grad_out, w) cut to x's extent) and in w.
Tensor conv_transpose2d_backward_input(const Tensor& grad_out, const Tensor& w,
                                       const Shape& x_shape, const ConvParams& p,
                                       int64_t output_pad_h = 0, int64_t output_pad_w = 0);
Tensor conv_transpose2d_backward_weight(const Tensor& grad_out, const Tensor& x,
                                        const Shape& w_shape, const ConvParams& p,
                                        int64_t output_pad_h = 0, int64_t output_pad_w = 0);

}  // namespace idem::ops
