// The autograd members of Tensor (declared in core/tensor.h, level L2).
#include "autograd/engine.h"
#include "autograd/node.h"

namespace idem {

bool Tensor::requires_grad() const {
  const auto& m = impl().autograd;
  return m && m->requires_grad;
}

const Tensor& Tensor::requires_grad_(bool on) const {
  auto& m = impl().autograd;
  IDEM_CHECK(!(m && m->grad_fn), "requires_grad_",
             "can only change requires_grad of a leaf tensor; this one was produced by ",
             m->grad_fn->name(), " (use detach() first)");
  IDEM_CHECK(!on || is_floating(dtype()), "requires_grad_",
             "only floating tensors can require gradients, got ", dtype_name(dtype()), " ",
             shape_str(shape()));
  if (!m) m = std::make_shared<AutogradMeta>();
  m->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& m = impl().autograd;
  return m ? m->grad : Tensor();
}

void Tensor::zero_grad() const {
  const auto& m = impl().autograd;
  if (m) m->grad = Tensor();
}

bool Tensor::is_leaf() const {
  const auto& m = impl().autograd;
  return !m || !m->grad_fn;
}

std::shared_ptr<Node> Tensor::grad_fn() const {
  const auto& m = impl().autograd;
  return m ? m->grad_fn : nullptr;
}

Tensor Tensor::detach() const {
  auto v = std::make_shared<TensorImpl>(impl());
  v->autograd = nullptr;
  return Tensor(v);
}

void Tensor::backward(const Tensor& grad_output) const { run_backward(*this, grad_output); }

}  // namespace idem
