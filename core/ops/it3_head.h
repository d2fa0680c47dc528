// L1 ops of the fused IT³ head (contract and formulas: core/kernels/it3_head.h): validate,
// allocate, dispatch. Not differentiable; autograd/it3_head_function.h wraps them.
#pragma once
#include <vector>

#include "core/kernels/it3_head.h"

namespace idem::ops {

// Validates the operands under `op`'s name and returns the kernel's parameters: h_f (B, n_0),
// s0 (B, C), f's 2L + 2 tensors E (n_0, C), e (n_0), W_l (n_l, n_{l−1}), b_l (n_l) with
// n_L = C; with `loss` also h_F (B, n_0) and F's tensors, of f's shapes. One floating dtype
// (CUDA: f32), one device; 1 <= B <= kIt3HeadMaxBatch, every width <= kIt3HeadMaxWidth.
It3HeadParams it3_head_params(const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                              const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                              const It3HeadSpec& spec, bool loss, const char* op);

struct It3HeadLossResult {
  Tensor loss;  // 0-dim
  Tensor y0, y1;  // (B, C): f(h_f, s0) and F(h_F, softmax(y0)), views of work
  Tensor work;  // the saved activations the backward reads (layout: it3_head_layout)
};
It3HeadLossResult it3_head_loss(const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                                const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                                const It3HeadSpec& spec);

struct It3HeadGrads {
  Tensor dh_f, dh_F;
  std::vector<Tensor> df;  // 2L + 2, f's order; undefined where not requested
};
// From g = ∂/∂L (0-dim, read on the device) and the forward's work: only the requested
// gradients (need_df: 2L + 2 flags in f's order).
It3HeadGrads it3_head_loss_backward(const Tensor& g, const Tensor& work, const Tensor& h_f,
                                    const Tensor& h_F, const Tensor& s0,
                                    const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                                    const It3HeadSpec& spec, bool need_dh_f, bool need_dh_F,
                                    const std::vector<bool>& need_df);

// y = layers(h + act_e(s·Eᵀ + e)) alone: the head's forward (a prediction), one launch on a GPU.
Tensor feature_head(const Tensor& h, const Tensor& s, const std::vector<Tensor>& net,
                    const It3HeadSpec& spec);

}  // namespace idem::ops
