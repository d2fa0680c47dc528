// Differentiable fused functions: linear_act (Linear + bias + activation) and the l1/mse
// distances. Each records ONE node whose backward is one fused L1 call.
#include "autograd/fused_functions.h"

#include "core/ops/fused.h"

namespace idem {

namespace {

class LinearActNode : public Node {
 public:
  LinearActNode(Tensor x, Tensor w, Tensor y, bool bias, FusedAct act, double slope)
      : x_(std::move(x)),
        w_(std::move(w)),
        y_(std::move(y)),
        bias_(bias),
        act_(act),
        slope_(slope) {}
  const char* name() const override { return "linear_act"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // gz = g ⊙ act'(y)
    // dx = gz·W   : (N,out)(out,in) -> (N,in)
    // dW = gzᵀ·x  : (out,N)(N,in)   -> (out,in)
    // db = Σ_n gz : (N,out)         -> (out)
    ops::LinearActGrads r = ops::linear_act_backward(g, y_, x_, w_, bias_, act_, slope_,
                                                     needs_grad(0), needs_grad(1), needs_grad(2));
    return {r.dx, r.dweight, r.dbias};
  }

 private:
  Tensor x_, w_, y_;  // x as the 2-D rows the op saw; y is the output (act' is read from it)
  bool bias_;
  FusedAct act_;
  double slope_;
};

class DistanceNode : public Node {
 public:
  DistanceNode(Tensor a, Tensor b, DistanceKind k) : a_(std::move(a)), b_(std::move(b)), k_(k) {}
  const char* name() const override { return distance_name(k_); }
  std::vector<Tensor> backward(const Tensor& g) override {
    // da = d'(a − b)·g/n, db = −da : () -> a.shape
    ops::DistanceGrads r = ops::distance_backward(g, a_, b_, k_, needs_grad(0), needs_grad(1));
    return {r.da, r.db};
  }

 private:
  Tensor a_, b_;
  DistanceKind k_;
};

Tensor linear_act_2d(const Tensor& x, const Tensor& weight, const Tensor& bias, FusedAct act,
                     double slope) {
  Tensor y = ops::linear_act(x, weight, bias, act, slope);
  if (needs_history({x, weight, bias}))
    record(std::make_shared<LinearActNode>(saved(x), saved(weight), saved(y), bias.defined(), act,
                                           slope),
           {x, weight, bias}, y);
  return y;
}

Tensor distance_fn(const Tensor& a, const Tensor& b, DistanceKind k) {
  Tensor out = ops::distance(a, b, k);
  if (needs_history({a, b}))
    record(std::make_shared<DistanceNode>(saved(a), saved(b), k), {a, b}, out);
  return out;
}

}  // namespace

Tensor linear_act(const Tensor& x, const Tensor& weight, const Tensor& bias, FusedAct act,
                  double slope) {
  IDEM_CHECK(x.defined() && x.dim() >= 1, "linear_act",
             "expected x of shape (*, in_features), got ",
             x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  if (x.dim() == 2) return linear_act_2d(x, weight, bias, act, slope);
  IDEM_CHECK(weight.defined() && weight.dim() == 2, "linear_act",
             "expected weight of shape (out_features, in_features), got ",
             weight.defined() ? shape_str(weight.shape()) : std::string("an undefined tensor"));
  // Rows: (*, in) -> (rows, in), and back to (*, out) (views; the reshapes launch nothing).
  Tensor y = linear_act_2d(reshape(x, {-1, x.size(-1)}), weight, bias, act, slope);
  Shape out_shape = x.shape();
  out_shape.back() = weight.size(0);
  return reshape(y, out_shape);
}

Tensor l1_distance(const Tensor& a, const Tensor& b) {
  return distance_fn(a, b, DistanceKind::l1);
}

Tensor mse_distance(const Tensor& a, const Tensor& b) {
  return distance_fn(a, b, DistanceKind::mse);
}

}  // namespace idem
