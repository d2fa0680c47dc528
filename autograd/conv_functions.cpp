// Differentiable convolutions. conv2d and conv_transpose2d are adjoint to each other in x, so
// the backward of each is built from the other's kernels (core/ops/conv.cpp); the bias gradient
// is the gradient summed over batch and plane. A node keeps x only when the weight needs a
// gradient and w only when x does, so a frozen layer holds no activations for its weight.
#include "autograd/nn_functions.h"
#include "core/ops/conv.h"
#include "core/ops/reduce.h"

namespace idem {

namespace {

ConvParams core_params(const Conv2dParams& p) {
  ConvParams c;
  c.stride_h = p.stride_h;
  c.stride_w = p.stride_w;
  c.pad_h = p.pad_h;
  c.pad_w = p.pad_w;
  c.dilation_h = p.dilation_h;
  c.dilation_w = p.dilation_w;
  c.groups = p.groups;
  return c;
}

ConvParams core_params(const ConvTranspose2dParams& p) {
  ConvParams c;
  c.stride_h = p.stride_h;
  c.stride_w = p.stride_w;
  c.pad_h = p.pad_h;
  c.pad_w = p.pad_w;
  c.dilation_h = p.dilation_h;
  c.dilation_w = p.dilation_w;
  c.groups = p.groups;
  return c;
}

class Conv2dNode : public Node {
 public:
  Conv2dNode(Tensor x, Tensor w, Shape x_shape, Shape w_shape, ConvParams p)
      : x_(std::move(x)),
        w_(std::move(w)),
        x_shape_(std::move(x_shape)),
        w_shape_(std::move(w_shape)),
        p_(p) {}
  const char* name() const override { return "conv2d"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    std::vector<Tensor> grads(3);
    // dx = convᵀ(g, w) : (N,O,P,Q)·(O,C/G,R,S) -> (N,C,H,W)
    if (needs_grad(0)) grads[0] = ops::conv2d_backward_data(g, w_, x_shape_, p_);
    // dw = Σ_n g_n ⋆ x_n : (N,O,P,Q)(N,C,H,W) -> (O,C/G,R,S)
    if (needs_grad(1)) grads[1] = ops::conv2d_backward_weight(g, x_, w_shape_, p_);
    // db = Σ_{n,p,q} g : (N,O,P,Q) -> (O)
    if (needs_grad(2)) grads[2] = ops::sum(g, {0, 2, 3});
    return grads;
  }

 private:
  Tensor x_, w_;  // each undefined unless the other operand's gradient needs it
  Shape x_shape_, w_shape_;
  ConvParams p_;
};

class ConvTranspose2dNode : public Node {
 public:
  ConvTranspose2dNode(Tensor x, Tensor w, Shape x_shape, Shape w_shape, ConvParams p, int64_t oph,
                      int64_t opw)
      : x_(std::move(x)),
        w_(std::move(w)),
        x_shape_(std::move(x_shape)),
        w_shape_(std::move(w_shape)),
        p_(p),
        oph_(oph),
        opw_(opw) {}
  const char* name() const override { return "conv_transpose2d"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    std::vector<Tensor> grads(3);
    // dx = conv(g, w) : (N,O,Ho,Wo)·(C_in,O/G,R,S) -> (N,C_in,H,W)
    if (needs_grad(0))
      grads[0] = ops::conv_transpose2d_backward_input(g, w_, x_shape_, p_, oph_, opw_);
    // dw = Σ_n x_n ⋆ g_n : (N,C_in,H,W)(N,O,Ho,Wo) -> (C_in,O/G,R,S)
    if (needs_grad(1))
      grads[1] = ops::conv_transpose2d_backward_weight(g, x_, w_shape_, p_, oph_, opw_);
    // db = Σ_{n,h,w} g : (N,O,Ho,Wo) -> (O)
    if (needs_grad(2)) grads[2] = ops::sum(g, {0, 2, 3});
    return grads;
  }

 private:
  Tensor x_, w_;
  Shape x_shape_, w_shape_;
  ConvParams p_;
  int64_t oph_, opw_;
};

bool wants_grad(const Tensor& t) {
  return t.defined() && t.requires_grad();
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dParams p) {
  const ConvParams cp = core_params(p);
  Tensor y = ops::conv2d(x, weight, bias, cp);
  if (needs_history({x, weight, bias})) {
    auto node = std::make_shared<Conv2dNode>(wants_grad(weight) ? saved(x) : Tensor(),
                                             wants_grad(x) ? saved(weight) : Tensor(), x.shape(),
                                             weight.shape(), cp);
    record(node, {x, weight, bias}, y);
  }
  return y;
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        ConvTranspose2dParams p) {
  const ConvParams cp = core_params(p);
  Tensor y = ops::conv_transpose2d(x, weight, bias, cp, p.output_pad_h, p.output_pad_w);
  if (needs_history({x, weight, bias})) {
    auto node = std::make_shared<ConvTranspose2dNode>(
        wants_grad(weight) ? saved(x) : Tensor(), wants_grad(x) ? saved(weight) : Tensor(),
        x.shape(), weight.shape(), cp, p.output_pad_h, p.output_pad_w);
    record(node, {x, weight, bias}, y);
  }
  return y;
}

}  // namespace idem
