// sage_conv: records ONE node for a SAGEConv layer's aggregation and linear part.
#include "autograd/sage_conv_function.h"

#include "autograd/anomaly.h"
#include "autograd/csr_aggregate_function.h"
#include "core/ops/csr_aggregate.h"
#include "core/ops/fused.h"
#include "core/ops/sage_conv.h"

namespace idem {

namespace {

class SageConvNode : public Node {
 public:
  SageConvNode(CsrAggregateIndex index, Tensor x, Tensor mean, Tensor wl, bool bias, Tensor wr,
               Tensor y, FusedAct act, double slope)
      : index_(std::move(index)),
        x_(std::move(x)),
        mean_(std::move(mean)),
        wl_(std::move(wl)),
        wr_(std::move(wr)),
        y_(std::move(y)),
        bias_(bias),
        act_(act),
        slope_(slope) {}
  const char* name() const override { return "sage_conv"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // gz = g ⊙ act'(y), db = Σ_v gz; da = gz·Wl, dWl = gzᵀ·mean; dx = gz·Wr, dWr = gzᵀ·x
    // (one sage_linear_backward), then Aᵀ·da, the mean aggregation's adjoint, for x as well.
    const bool need_x = needs_grad(0) || needs_grad(4);
    // mean is read only for dWl, and kept exactly when weight_l needed a gradient; without it
    // x (the same shape) stands in for the shape checks.
    const Tensor& a = mean_.defined() ? mean_ : x_;
    ops::SageLinearGrads r =
        ops::sage_linear_backward(g, y_, a, wl_, bias_, x_, wr_, act_, slope_, need_x,
                                  needs_grad(1), needs_grad(2), need_x, needs_grad(3));
    // x is recorded twice (edges 0 and 4), so the engine adds the root and the aggregation
    // terms to x's gradient one after the other, in the order the two replaced nodes did.
    // When x's gradient is still empty, and x is not also a weight or the bias (whose terms
    // the engine would add between the two), that is dx + Aᵀ·da alone: the aggregation's
    // adjoint then adds dx in its own pass (the same bits, one (V, F) add fewer: 13 µs a layer
    // at 65 536 nodes on an H100) and edge 4 gets nothing. Not in anomaly mode, whose checks
    // name the input a non-finite gradient came from.
    if (!need_x) return {Tensor(), r.dweight_l, r.dbias, r.dweight_r, Tensor()};
    if (gradient_starts_empty(0) && !same_input(0, 1) && !same_input(0, 2) &&
        !same_input(0, 3) && !anomaly_mode())
      return {ops::csr_mean_aggregate_backward(r.da, index_, x_.size(0), r.dx), r.dweight_l,
              r.dbias, r.dweight_r, Tensor()};
    return {r.dx, r.dweight_l, r.dbias, r.dweight_r,
            ops::csr_mean_aggregate_backward(r.da, index_, x_.size(0))};
  }

 private:
  CsrAggregateIndex index_;
  Tensor x_, mean_, wl_, wr_, y_;  // y is the output: act' is read from it
  bool bias_;
  FusedAct act_;
  double slope_;
};

}  // namespace

Tensor sage_conv(const Tensor& x, const CsrAggregateIndex& index, const Tensor& weight_l,
                 const Tensor& bias, const Tensor& weight_r, FusedAct act, double slope) {
  const bool history = needs_history({x, weight_l, bias, weight_r});
  if (history && x.requires_grad())
    // Fail here, where the caller is, rather than in the middle of backward().
    IDEM_CHECK(index.src_ptr.defined() && index.src_perm.defined() && index.dst.defined(),
               "sage_conv",
               "x requires grad, so the index needs its backward fields src_ptr, src_perm and "
               "dst (see csr_aggregate_index or Graph::src_groups)");
  const bool keep_mean = history && needs_history({weight_l});
  ops::SageConvResult r =
      ops::sage_conv(x, index, weight_l, bias, weight_r, act, slope, keep_mean);
  if (history)
    record(std::make_shared<SageConvNode>(saved_index(index), saved(x), saved(r.mean),
                                          saved(weight_l), bias.defined(), saved(weight_r),
                                          saved(r.y), act, slope),
           {x, weight_l, bias, weight_r, x}, r.y);
  return r.y;
}

}  // namespace idem
