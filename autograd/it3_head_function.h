// Level L2: the IT³ loss of a feature-injection head as ONE differentiable op, and the head's
// forward alone (docs/design.md#the-op-recipe: the contract core/kernels/it3_head.h, the L1 ops
// core/ops/it3_head.h, rows in tests/op_cases/fused_cases.cpp, tests/it3_head_test.cpp).
#pragma once
#include <vector>

#include "autograd/functions.h"
#include "core/ops/it3_head.h"

namespace idem {

struct It3HeadLoss {
  Tensor loss;  // 0-dim, differentiable in h_f, h_F and f's tensors
  Tensor y0, y1;  // (B, C) f(h_f, s0) and F(h_F, softmax(y0)), without history
};

// L = mean d(softmax(F(h_F, s)) − s) with s = softmax(f(h_f, s0)), where
// net(h, s) = layers(h + act_e(s·Eᵀ + e)) (core/kernels/it3_head.h). f, F: 2L + 2 tensors each
// (E, e, W_1, b_1, …, W_L, b_L). One node: its backward is one kernel that gives h_f's, h_F's
// and f's gradients, each only where needed (h_F and h_f may be the same tensor; the engine
// adds the two terms). s0 and F's tensors must not require grad (F is the frozen anchor):
// an idem::Error says so.
It3HeadLoss it3_head_loss(const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                          const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                          const It3HeadSpec& spec);

// net(h, s) alone, for predictions: records no history, so it refuses inputs that need it.
Tensor feature_head(const Tensor& h, const Tensor& s, const std::vector<Tensor>& net,
                    const It3HeadSpec& spec);

}  // namespace idem
