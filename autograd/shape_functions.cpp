// Differentiable views: reshape, flatten, unsqueeze, squeeze. They share storage with their
// input; the backward reshapes the gradient back.
#include "autograd/functions.h"

namespace idem {

namespace {

class ReshapeNode : public Node {
 public:
  explicit ReshapeNode(Shape x_shape) : x_shape_(std::move(x_shape)) {}
  const char* name() const override { return "reshape"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    return {g.view_as_shape(x_shape_)};  // dx = g viewed as x's shape
  }

 private:
  Shape x_shape_;
};

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  IDEM_CHECK(x.defined(), "reshape", "input is an undefined tensor");
  Tensor y = x.view_as_shape(shape);
  if (needs_history({x})) record(std::make_shared<ReshapeNode>(x.shape()), {x}, y);
  return y;
}

Tensor flatten(const Tensor& x, int64_t start, int64_t end) {
  IDEM_CHECK(x.defined(), "flatten", "input is an undefined tensor");
  if (x.dim() == 0) return reshape(x, {1});
  start = wrap_dim(start, x.dim(), "flatten");
  end = wrap_dim(end, x.dim(), "flatten");
  IDEM_CHECK(start <= end, "flatten", "start dim ", start, " is after end dim ", end);
  Shape s;
  for (int64_t i = 0; i < start; ++i) s.push_back(x.shape()[i]);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= x.shape()[i];
  s.push_back(m);
  for (int64_t i = end + 1; i < x.dim(); ++i) s.push_back(x.shape()[i]);
  return reshape(x, s);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  IDEM_CHECK(x.defined(), "unsqueeze", "input is an undefined tensor");
  dim = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.shape();
  s.insert(s.begin() + dim, 1);
  return reshape(x, s);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  IDEM_CHECK(x.defined(), "squeeze", "input is an undefined tensor");
  dim = wrap_dim(dim, x.dim(), "squeeze");
  IDEM_CHECK(x.shape()[dim] == 1, "squeeze", "dim ", dim, " of ", shape_str(x.shape()),
             " has size ", x.shape()[dim], ", expected 1");
  Shape s = x.shape();
  s.erase(s.begin() + dim);
  return reshape(x, s);
}

Tensor Tensor::reshape(const Shape& s) const { return idem::reshape(*this, s); }
Tensor Tensor::flatten(int64_t start, int64_t end) const { return idem::flatten(*this, start, end); }

}  // namespace idem
