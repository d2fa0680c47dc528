// Differentiable elementwise functions: unary ops, binary ops with broadcasting (their
// backward sums the gradient back to each input's shape), comparisons and where.
#include "autograd/functions.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace idem {

namespace {

class UnaryNode : public Node {
 public:
  UnaryNode(Tensor x, Tensor y, UnaryOp op, UnaryParams p)
      : x_(std::move(x)), y_(std::move(y)), op_(op), p_(p) {}
  const char* name() const override { return unary_name(op_); }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx = g · op'(x) : same shape as x
    return {ops::unary_backward(g, x_, y_, op_, p_)};
  }

 private:
  Tensor x_, y_;
  UnaryOp op_;
  UnaryParams p_;
};

Tensor unary_fn(const Tensor& x, UnaryOp op, UnaryParams p = {}) {
  Tensor y = ops::unary(x, op, p);
  if (needs_history({x})) record(std::make_shared<UnaryNode>(saved(x), saved(y), op, p), {x}, y);
  return y;
}

// Mask of a (op) b as the dtype of the gradient.
Tensor mask_of(const Tensor& a, const Tensor& b, BinaryOp cmp, DType dtype) {
  return ops::cast(ops::binary(a, b, cmp), dtype);
}

// Saves only what its backward reads for the gradients that are wanted (an undefined Tensor
// otherwise: add and sub save nothing); the input shapes for sum_to come from the edges.
class BinaryNode : public Node {
 public:
  BinaryNode(Tensor a, Tensor b, Tensor y, BinaryOp op)
      : a_(std::move(a)), b_(std::move(b)), y_(std::move(y)), op_(op) {}
  const char* name() const override { return binary_name(op_); }
  std::vector<Tensor> backward(const Tensor& g) override {
    // Each gradient is computed at the broadcast shape of g, then summed back (sum_to).
    Tensor ga, gb;
    const bool wa = needs_grad(0), wb = needs_grad(1);
    using ops::binary;
    switch (op_) {
      case BinaryOp::add:  // da = g, db = g
        if (wa) ga = g;
        if (wb) gb = g;
        break;
      case BinaryOp::sub:  // da = g, db = -g
        if (wa) ga = g;
        if (wb) gb = ops::unary(g, UnaryOp::neg);
        break;
      case BinaryOp::mul:  // da = g·b, db = g·a
        if (wa) ga = binary(g, b_, BinaryOp::mul);
        if (wb) gb = binary(g, a_, BinaryOp::mul);
        break;
      case BinaryOp::div:  // da = g / b, db = -g·y / b
        if (wa) ga = binary(g, b_, BinaryOp::div);
        if (wb) gb = ops::unary(binary(binary(g, y_, BinaryOp::mul), b_, BinaryOp::div), UnaryOp::neg);
        break;
      case BinaryOp::pow:  // da = g·b·a^(b-1), db = g·y·ln a
        if (wa) {
          Tensor bm1 = ops::unary(b_, UnaryOp::add_scalar, {-1.0});
          ga = binary(binary(g, b_, BinaryOp::mul), binary(a_, bm1, BinaryOp::pow), BinaryOp::mul);
        }
        if (wb) {  // where a == 0 the term is 0·(−inf): define it as 0, as PyTorch does
          Tensor t = binary(binary(g, y_, BinaryOp::mul), ops::unary(a_, UnaryOp::log), BinaryOp::mul);
          Tensor zero = zeros({}, t.options());
          gb = ops::where(binary(a_, zero, BinaryOp::eq), zero, t);
        }
        break;
      case BinaryOp::maximum:  // the larger input takes g (a on ties)
      case BinaryOp::minimum: {
        BinaryOp pick_a = op_ == BinaryOp::maximum ? BinaryOp::ge : BinaryOp::le;
        BinaryOp pick_b = op_ == BinaryOp::maximum ? BinaryOp::lt : BinaryOp::gt;
        if (wa) ga = binary(g, mask_of(a_, b_, pick_a, g.dtype()), BinaryOp::mul);
        if (wb) gb = binary(g, mask_of(a_, b_, pick_b, g.dtype()), BinaryOp::mul);
        break;
      }
#define IDEM_EW_CMP(name) case BinaryOp::name:
        IDEM_BINARY_COMPARE_OPS(IDEM_EW_CMP)
#undef IDEM_EW_CMP
        fail(binary_name(op_), "comparisons have no gradient");
    }
    if (ga.defined()) ga = ops::sum_to(ga, next()[0].shape);
    if (gb.defined()) gb = ops::sum_to(gb, next()[1].shape);
    return {ga, gb};
  }

 private:
  Tensor a_, b_, y_;
  BinaryOp op_;
};

Tensor binary_fn(const Tensor& a, const Tensor& b, BinaryOp op) {
  Tensor y = ops::binary(a, b, op);
  if (!needs_history({a, b})) return y;
  // What BinaryNode::backward reads, per op and per wanted gradient (its switch).
  const bool wa = a.requires_grad(), wb = b.requires_grad();
  bool keep_a = false, keep_b = false, keep_y = false;
  switch (op) {
    case BinaryOp::add:
    case BinaryOp::sub:
      break;
    case BinaryOp::mul:
      keep_a = wb;
      keep_b = wa;
      break;
    case BinaryOp::div:
      keep_b = true;
      keep_y = wb;
      break;
    case BinaryOp::pow:
      keep_a = keep_b = true;
      keep_y = wb;
      break;
    default:  // maximum, minimum (comparisons have no history: ops::binary gave a u8 mask)
      keep_a = keep_b = true;
      break;
  }
  record(std::make_shared<BinaryNode>(keep_a ? saved(a) : Tensor(), keep_b ? saved(b) : Tensor(),
                                      keep_y ? saved(y) : Tensor(), op),
         {a, b}, y);
  return y;
}

class WhereNode : public Node {
 public:
  WhereNode(Tensor cond, Shape a_shape, Shape b_shape)
      : cond_(std::move(cond)), a_shape_(std::move(a_shape)), b_shape_(std::move(b_shape)) {}
  const char* name() const override { return "where"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // da = cond ? g : 0, db = cond ? 0 : g, each summed back to its input's shape
    Tensor z = zeros({}, g.options());
    Tensor ga, gb;
    if (needs_grad(1)) ga = ops::sum_to(ops::where(cond_, g, z), a_shape_);
    if (needs_grad(2)) gb = ops::sum_to(ops::where(cond_, z, g), b_shape_);
    return {Tensor(), ga, gb};
  }

 private:
  Tensor cond_;
  Shape a_shape_, b_shape_;
};

}  // namespace

Tensor unary_op(const Tensor& x, UnaryOp op, UnaryParams p) {
  return unary_fn(x, op, p);
}

Tensor binary_op(const Tensor& a, const Tensor& b, BinaryOp op) {
  return is_comparison(op) ? ops::binary(a, b, op) : binary_fn(a, b, op);
}

Tensor neg(const Tensor& x) { return unary_fn(x, UnaryOp::neg); }
Tensor exp(const Tensor& x) { return unary_fn(x, UnaryOp::exp); }
Tensor log(const Tensor& x) { return unary_fn(x, UnaryOp::log); }
Tensor sqrt(const Tensor& x) { return unary_fn(x, UnaryOp::sqrt); }
Tensor abs(const Tensor& x) { return unary_fn(x, UnaryOp::abs); }
Tensor relu(const Tensor& x) { return unary_fn(x, UnaryOp::relu); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary_fn(x, UnaryOp::leaky_relu, {slope}); }
Tensor sigmoid(const Tensor& x) { return unary_fn(x, UnaryOp::sigmoid); }
Tensor tanh(const Tensor& x) { return unary_fn(x, UnaryOp::tanh); }
Tensor gelu(const Tensor& x) { return unary_fn(x, UnaryOp::gelu); }
Tensor square(const Tensor& x) { return unary_fn(x, UnaryOp::square); }

Tensor add(const Tensor& a, const Tensor& b) { return binary_fn(a, b, BinaryOp::add); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_fn(a, b, BinaryOp::sub); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_fn(a, b, BinaryOp::mul); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_fn(a, b, BinaryOp::div); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary_fn(a, b, BinaryOp::pow); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary_fn(a, b, BinaryOp::maximum); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary_fn(a, b, BinaryOp::minimum); }

Tensor add(const Tensor& a, double s) { return unary_fn(a, UnaryOp::add_scalar, {s}); }
Tensor sub(const Tensor& a, double s) { return unary_fn(a, UnaryOp::add_scalar, {-s}); }
Tensor mul(const Tensor& a, double s) { return unary_fn(a, UnaryOp::mul_scalar, {s}); }
Tensor div(const Tensor& a, double s) {
  IDEM_CHECK(s != 0.0, "div", "division by the scalar 0");
  return unary_fn(a, UnaryOp::mul_scalar, {1.0 / s});
}
Tensor pow(const Tensor& a, double s) { return unary_fn(a, UnaryOp::pow_scalar, {s}); }
Tensor rsub(double s, const Tensor& a) { return unary_fn(a, UnaryOp::rsub_scalar, {s}); }
Tensor rdiv(double s, const Tensor& a) { return unary_fn(a, UnaryOp::rdiv_scalar, {s}); }

Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return div(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

Tensor eq(const Tensor& a, const Tensor& b) { return ops::binary(a, b, BinaryOp::eq); }
Tensor ne(const Tensor& a, const Tensor& b) { return ops::binary(a, b, BinaryOp::ne); }
Tensor lt(const Tensor& a, const Tensor& b) { return ops::binary(a, b, BinaryOp::lt); }
Tensor le(const Tensor& a, const Tensor& b) { return ops::binary(a, b, BinaryOp::le); }
Tensor gt(const Tensor& a, const Tensor& b) { return ops::binary(a, b, BinaryOp::gt); }
Tensor ge(const Tensor& a, const Tensor& b) { return ops::binary(a, b, BinaryOp::ge); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor y = ops::where(cond, a, b);
  if (needs_history({a, b}))
    record(std::make_shared<WhereNode>(saved(cond), a.shape(), b.shape()), {cond, a, b}, y);
  return y;
}

}  // namespace idem
