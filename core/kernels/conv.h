// Kernel contract: 2-D convolution, NCHW, as PyTorch (cross-correlation, zero padding).
//
//   y[n, o, p, q] = Σ_{c<C/G, r<R, s<S} x[n, g·C/G + c, p·sh − ph + r·dh, q·sw − pw + s·dw]
//                                          · w[o, c, r, s]      (+ bias[o]),  g = o / (O/G)
//   x (N,C,H,W), w (O, C/G, R, S), y (N,O,P,Q); taps outside the input read zero.
//
// Three kernels cover conv2d and conv_transpose2d (the adjoint of conv2d in x):
//   fwd:        y  = conv(x, w) + bias                 (bias optional)
//   bwd_data:   dx = convᵀ(dy, w)   (the adjoint in x; also conv_transpose2d's forward)
//   bwd_weight: dw = Σ_n dy_n ⋆ x_n (the adjoint in w)
// Every kernel overwrites its whole output (it may hold garbage on entry).
// P and Q are given, not derived: conv_transpose2d with output_padding >= stride passes a P
// smaller than the conv formula would give, and the kernels only need every tap they read to
// be bounds-checked, which holds for any P, Q.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem {

// Stride, padding, dilation and groups of a convolution (the L1 ops' parameters).
struct ConvParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

// Every extent of one convolution, validated by the L1 op (all > 0, C % G == 0, O % G == 0).
struct ConvShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // x
  int64_t O = 0, R = 0, S = 0;         // w (O, C/G, R, S)
  int64_t P = 0, Q = 0;                // y (N, O, P, Q)
  ConvParams p;
  int64_t Cg() const { return C / p.groups; }
  int64_t Og() const { return O / p.groups; }
};

// Which CUDA convolution runs: hand-written kernels or cuDNN. Chosen at run time so both can be
// timed in one process: set_conv_backend(), or else IDEM_CONV=hand|cudnn, read at the first
// conv_backend() and kept (a bad value throws there; set_conv_backend() overrides it). Also
// declared for users in autograd/nn_functions.h.
enum class ConvBackend : uint8_t { hand, cudnn };
ConvBackend conv_backend();
void set_conv_backend(ConvBackend b);
const char* conv_backend_name(ConvBackend b);

enum class ConvDir : uint8_t { fwd, bwd_data, bwd_weight };

namespace cpu {
// requires: y (N,O,P,Q), x (N,C,H,W), w (O,C/G,R,S), bias (O) or undefined; one float dtype.
void conv2d_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
                const ConvShape& s);
// requires: dx (N,C,H,W), dy (N,O,P,Q), w (O,C/G,R,S).
void conv2d_bwd_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvShape& s);
// requires: dw (O,C/G,R,S), dy (N,O,P,Q), x (N,C,H,W). Sums over n in a fixed order (CPU: chunks of samples, core/cpu/conv.cpp).
void conv2d_bwd_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvShape& s);
}  // namespace cpu

namespace cuda {
// f32. Dispatch to the hand-written kernels or cuDNN according to conv_backend().
void conv2d_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
                const ConvShape& s);
void conv2d_bwd_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvShape& s);
void conv2d_bwd_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvShape& s);
// One direction of one implementation, with the operands of the functions above:
//   fwd:        out = y,  a = x,  b = w, bias (may be undefined)
//   bwd_data:   out = dx, a = dy, b = w  (bias unused)
//   bwd_weight: out = dw, a = dy, b = x  (bias unused)
// conv2d_hand: hand-written tiled, implicit-GEMM and direct kernels, deterministic (no
// atomics). conv2d_cudnn: cuDNN, FP32 math; throws idem::Error when idem was built without
// IDEM_CUDNN.
void conv2d_hand(ConvDir dir, const Tensor& out, const Tensor& a, const Tensor& b,
                 const Tensor& bias, const ConvShape& s);
void conv2d_cudnn(ConvDir dir, const Tensor& out, const Tensor& a, const Tensor& b,
                  const Tensor& bias, const ConvShape& s);
// Which hand-written kernel conv2d_hand runs for `dir` on `s` (host logic, no GPU needed):
// "tiled", "implicit_gemm" or "direct" for fwd and bwd_data, "implicit_gemm", "per_image" or
// "two_pass" for bwd_weight. The rule is described at the top of cuda/kernels/conv.cu. Throws idem::Error
// without CUDA.
const char* conv2d_hand_kernel_name(ConvDir dir, const ConvShape& s);
// For benchmarks and tests (CUDA builds only, no stub): bwd_weight by the two-pass kernels
// whatever the shape (the kernels the implicit GEMM replaced where it applies).
void conv2d_bwd_weight_two_pass(const Tensor& dw, const Tensor& dy, const Tensor& x,
                                const ConvShape& s);
}  // namespace cuda

}  // namespace idem
