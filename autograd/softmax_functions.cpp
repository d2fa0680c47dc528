// Differentiable softmax and log_softmax. Both save only their output y: the backward
// formulas need y, not x (see core/kernels/softmax.h).
#include "autograd/functions.h"
#include "core/ops/softmax.h"

namespace idem {

namespace {

class SoftmaxNode : public Node {
 public:
  SoftmaxNode(Tensor y, int64_t dim, bool log) : y_(std::move(y)), dim_(dim), log_(log) {}
  const char* name() const override { return log_ ? "log_softmax" : "softmax"; }

  std::vector<Tensor> backward(const Tensor& g) override {
    // softmax:     dx = y ⊙ (g − Σ_D g⊙y)  : (…,D,…) -> (…,D,…)
    // log_softmax: dx = g − exp(y) ⊙ Σ_D g : (…,D,…) -> (…,D,…)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::softmax_backward(g, y_, dim_, log_)};
  }

 private:
  Tensor y_;
  int64_t dim_;
  bool log_;
};

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  Tensor y = ops::softmax(x, dim, log);
  // Saving y itself would make the node own its own output's impl (with the grad_fn that
  // points back at the node): saved() gives a detached alias of the same storage instead.
  if (needs_history({x})) record(std::make_shared<SoftmaxNode>(saved(y), dim, log), {x}, y);
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_impl(x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl(x, dim, true);
}

}  // namespace idem
