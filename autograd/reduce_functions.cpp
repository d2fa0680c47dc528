// Differentiable reductions. sum/mean/max have nodes; var is composed from them.
#include "autograd/functions.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace idem {

namespace {

class SumNode : public Node {
 public:
  SumNode(Shape x_shape, std::vector<int64_t> dims, double scale)
      : x_shape_(std::move(x_shape)), dims_(std::move(dims)), scale_(scale) {}
  const char* name() const override { return scale_ == 1.0 ? "sum" : "mean"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx = expand(g) · scale : g (kept dims as 1) -> x's shape
    Tensor gk = g.view_as_shape(ops::keepdim_shape(x_shape_, dims_));
    Tensor dx = ops::expand(gk, x_shape_);
    // A pass-through of g (sum over nothing) is fine: the engine copies a leaf's first
    // gradient when it shares the upstream buffer (autograd/engine.cpp).
    if (scale_ != 1.0) dx = ops::unary(dx, UnaryOp::mul_scalar, {scale_});
    return {dx};
  }

 private:
  Shape x_shape_;
  std::vector<int64_t> dims_;
  double scale_;
};

class MaxNode : public Node {
 public:
  MaxNode(Tensor x, Tensor y, std::vector<int64_t> dims)
      : x_(std::move(x)), y_(std::move(y)), dims_(std::move(dims)) {}
  const char* name() const override { return "max"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx = g · [x == max] / #ties : the gradient is split evenly between tied maxima
    Shape k = ops::keepdim_shape(x_.shape(), dims_);
    Tensor mask = ops::cast(ops::binary(x_, y_.view_as_shape(k), BinaryOp::eq), g.dtype());
    Tensor count = ops::sum(mask, dims_, /*keepdim=*/true);
    Tensor share = ops::binary(g.view_as_shape(k), count, BinaryOp::div);
    return {ops::binary(mask, share, BinaryOp::mul)};
  }

 private:
  Tensor x_, y_;
  std::vector<int64_t> dims_;
};

class ExpandNode : public Node {
 public:
  explicit ExpandNode(Shape x_shape) : x_shape_(std::move(x_shape)) {}
  const char* name() const override { return "expand"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    return {ops::sum_to(g, x_shape_)};  // dx = sum of g over the broadcast dims
  }

 private:
  Shape x_shape_;
};

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = ops::sum(x, dims, keepdim);
  if (needs_history({x})) record(std::make_shared<SumNode>(x.shape(), dims, 1.0), {x}, y);
  return y;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = ops::mean(x, dims, keepdim);
  if (needs_history({x})) {
    const double n = static_cast<double>(ops::reduced_count(x.shape(), dims));
    record(std::make_shared<SumNode>(x.shape(), dims, 1.0 / n), {x}, y);
  }
  return y;
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = ops::amax(x, dims, keepdim);
  if (needs_history({x})) record(std::make_shared<MaxNode>(saved(x), saved(y), dims), {x}, y);
  return y;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return ops::argmax(x, dim, keepdim); }

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  IDEM_CHECK(x.defined(), "var", "input is an undefined tensor");
  const int64_t n = ops::reduced_count(x.shape(), dims);
  IDEM_CHECK(n - correction > 0, "var", "needs more than ", correction,
             " element(s) per reduction, got ", n, " for input ", shape_str(x.shape()));
  Tensor centered = sub(x, mean(x, dims, /*keepdim=*/true));
  return div(sum(square(centered), dims, keepdim), static_cast<double>(n - correction));
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Tensor y = ops::expand(x, shape);
  if (y.same_storage(x)) y = y.detach().view_as_shape(shape);  // no-op expand: still a new node
  if (needs_history({x})) record(std::make_shared<ExpandNode>(x.shape()), {x}, y);
  return y;
}

}  // namespace idem
