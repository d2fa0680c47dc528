// Differentiable batch_norm, layer_norm, group_norm and dropout. The three normalizations share
// one node: the forward kernel saves (mean, rstd) per group and the backward kernel recomputes
// x̂ from x, so nothing of the size of x is stored besides x itself.
#include "autograd/nn_functions.h"
#include "core/ops/norm.h"

namespace idem {

namespace {

class NormNode : public Node {
 public:
  NormNode(const char* name, Tensor x, Tensor mean, Tensor rstd, Tensor weight, Shape w_shape,
           Shape b_shape, NormShape s, bool batch_stats)
      : name_(name),
        x_(std::move(x)),
        mean_(std::move(mean)),
        rstd_(std::move(rstd)),
        weight_(std::move(weight)),
        w_shape_(std::move(w_shape)),
        b_shape_(std::move(b_shape)),
        s_(s),
        batch_stats_(batch_stats) {}
  const char* name() const override { return name_; }

  std::vector<Tensor> backward(const Tensor& g) override {
    // batch stats: dx = rstd/R·(R·g·w − Σg·w − x̂·Σ g·w·x̂) : x.shape -> x.shape
    // fixed stats: dx = g·w·rstd                          : x.shape -> x.shape
    // dweight = Σ g·x̂, dbias = Σ g over each channel's elements : x.shape -> weight.shape
    // A frozen module (weight/bias not requiring grad) gets dx only, in one kernel pass.
    ops::NormGrads r = ops::norm_backward(g, x_, mean_, rstd_, weight_, s_, batch_stats_,
                                          needs_grad(0), needs_grad(1), needs_grad(2));
    if (r.dweight.defined()) r.dweight = r.dweight.view_as_shape(w_shape_);
    if (r.dbias.defined()) r.dbias = r.dbias.view_as_shape(b_shape_);
    return {r.dx, r.dweight, r.dbias};
  }

 private:
  const char* name_;
  Tensor x_, mean_, rstd_, weight_;
  Shape w_shape_, b_shape_;
  NormShape s_;
  bool batch_stats_;
};

Tensor finish(const char* name, ops::NormOutputs out, const Tensor& x, const Tensor& weight,
              const Tensor& bias, bool batch_stats) {
  if (needs_history({x, weight, bias})) {
    auto node =
        std::make_shared<NormNode>(name, saved(x), std::move(out.mean), std::move(out.rstd),
                                   saved(weight), weight.defined() ? weight.shape() : Shape{},
                                   bias.defined() ? bias.shape() : Shape{}, out.shape, batch_stats);
    record(node, {x, weight, bias}, out.y);
  }
  return out.y;
}

class DropoutNode : public Node {
 public:
  DropoutNode(double p, uint64_t seed, uint64_t offset) : p_(p), seed_(seed), offset_(offset) {}
  const char* name() const override { return "dropout"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx = g·mask/(1−p) : the same Philox mask, recomputed from (seed, offset) : x.shape -> x.shape
    if (!needs_grad(0)) return {Tensor()};
    return {ops::dropout(g, p_, seed_, offset_)};
  }

 private:
  double p_;
  uint64_t seed_, offset_;
};

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  // The running statistics are buffers: updated in place (no grad mode needed), never
  // differentiated.
  ops::NormOutputs out =
      ops::batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps);
  return finish("batch_norm", std::move(out), x, weight, bias, training);
}

Tensor layer_norm(const Tensor& x, int64_t normalized_dims, const Tensor& weight,
                  const Tensor& bias, double eps) {
  ops::NormOutputs out = ops::layer_norm(x, normalized_dims, weight, bias, eps);
  return finish("layer_norm", std::move(out), x, weight, bias, true);
}

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                  double eps) {
  ops::NormOutputs out = ops::group_norm(x, groups, weight, bias, eps);
  return finish("group_norm", std::move(out), x, weight, bias, true);
}

Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset) {
  if (!training) {
    // Identity, as torch: but p is still validated so a bad value fails in eval mode too.
    IDEM_CHECK(x.defined(), "dropout", "x is an undefined tensor");
    IDEM_CHECK(p >= 0.0 && p < 1.0, "dropout", "p must be in [0, 1), got ", p, " (x ",
               shape_str(x.shape()), ")");
    return x;
  }
  Tensor y = ops::dropout(x, p, seed, offset);
  if (needs_history({x})) record(std::make_shared<DropoutNode>(p, seed, offset), {x}, y);
  return y;
}

}  // namespace idem
