// sage_linear: records ONE node whose backward is one ops::sage_linear_backward call.
#include "autograd/sage_linear_function.h"

#include "core/ops/fused.h"

namespace idem {

namespace {

class SageLinearNode : public Node {
 public:
  SageLinearNode(Tensor a, Tensor wl, bool bias, Tensor x, Tensor wr, Tensor y, FusedAct act,
                 double slope)
      : a_(std::move(a)),
        wl_(std::move(wl)),
        x_(std::move(x)),
        wr_(std::move(wr)),
        y_(std::move(y)),
        bias_(bias),
        act_(act),
        slope_(slope) {}
  const char* name() const override { return "sage_linear"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // gz = g ⊙ act'(y), db = Σ_n gz     : (N,out) -> (N,out), (out)
    // da = gz·Wl,  dWl = gzᵀ·a          : (N,in_l), (out,in_l)
    // dx = gz·Wr,  dWr = gzᵀ·x          : (N,in_r), (out,in_r)
    ops::SageLinearGrads r =
        ops::sage_linear_backward(g, y_, a_, wl_, bias_, x_, wr_, act_, slope_, needs_grad(0),
                                  needs_grad(1), needs_grad(2), needs_grad(3), needs_grad(4));
    return {r.da, r.dweight_l, r.dbias, r.dx, r.dweight_r};
  }

 private:
  Tensor a_, wl_, x_, wr_, y_;  // y is the output: act' is read from it
  bool bias_;
  FusedAct act_;
  double slope_;
};

}  // namespace

Tensor sage_linear(const Tensor& a, const Tensor& weight_l, const Tensor& bias, const Tensor& x,
                   const Tensor& weight_r, FusedAct act, double slope) {
  Tensor y = ops::sage_linear(a, weight_l, bias, x, weight_r, act, slope);
  if (needs_history({a, weight_l, bias, x, weight_r}))
    record(std::make_shared<SageLinearNode>(saved(a), saved(weight_l), bias.defined(), saved(x),
                                            saved(weight_r), saved(y), act, slope),
           {a, weight_l, bias, x, weight_r}, y);
  return y;
}

}  // namespace idem
