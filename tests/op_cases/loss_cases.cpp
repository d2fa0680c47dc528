// Op-case rows for the loss family: every loss in every Reduction. Class targets are i64 index
// inputs; probability inputs (kl/js, soft targets, bce targets) are built inside fn from normal
// inputs (softmax / sigmoid), so they are valid for every perturbation.
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;
using LossFn = std::function<Tensor(V, Reduction)>;

InputSpec data(Shape s) {
  return {std::move(s), InputKind::normal};
}
InputSpec index(Shape s, int64_t high) {
  return {std::move(s), InputKind::index, high, false};
}

// One row per Reduction: <name>_mean, <name>_sum, <name>_none.
void add_rows(std::vector<OpCase>& out, const std::string& name, const std::vector<InputSpec>& in,
              const LossFn& fn) {
  const std::pair<const char*, Reduction> reductions[] = {
      {"mean", Reduction::mean}, {"sum", Reduction::sum}, {"none", Reduction::none}};
  for (const auto& [suffix, r] : reductions) {
    OpCase c{name + "_" + suffix, "loss", in, [fn, r = r](V x) { return fn(x, r); }};
    c.parity_scale = 4.0;  // a log/exp and a sum over the rows or elements
    out.push_back(std::move(c));
  }
}
}  // namespace

std::vector<OpCase> loss_cases() {
  std::vector<OpCase> rows;
  add_rows(rows, "mse_loss", {data({3, 4}), data({3, 4})},
           [](V x, Reduction r) { return mse_loss(x[0], x[1], r); });
  add_rows(rows, "l1_loss", {data({3, 4}), data({3, 4})},
           [](V x, Reduction r) { return l1_loss(x[0], x[1], r); });
  add_rows(rows, "smooth_l1_loss", {data({3, 4}), data({3, 4})},
           [](V x, Reduction r) { return smooth_l1_loss(x[0], x[1], 1.0, r); });
  add_rows(rows, "smooth_l1_loss_beta_half", {data({2, 5}), data({2, 5})},
           [](V x, Reduction r) { return smooth_l1_loss(x[0], x[1], 0.5, r); });
  add_rows(rows, "cross_entropy", {data({4, 5}), index({4}, 5)},
           [](V x, Reduction r) { return cross_entropy(x[0], x[1], 0.0, r); });
  add_rows(rows, "cross_entropy_smoothing", {data({4, 5}), index({4}, 5)},
           [](V x, Reduction r) { return cross_entropy(x[0], x[1], 0.1, r); });
  add_rows(rows, "cross_entropy_soft", {data({4, 5}), data({4, 5})},
           [](V x, Reduction r) { return cross_entropy_soft(x[0], softmax(x[1], 1), r); });
  add_rows(rows, "nll_loss", {data({4, 5}), index({4}, 5)},
           [](V x, Reduction r) { return nll_loss(x[0], x[1], r); });
  add_rows(rows, "bce_with_logits", {data({3, 4}), data({3, 4})},
           [](V x, Reduction r) { return bce_with_logits(x[0] * 3.0, sigmoid(x[1]), r); });
  add_rows(rows, "kl_div", {data({3, 5}), data({3, 5})},
           [](V x, Reduction r) { return kl_div(softmax(x[0]), softmax(x[1]), r); });
  add_rows(rows, "kl_div_3d", {data({2, 3, 4}), data({2, 3, 4})},
           [](V x, Reduction r) { return kl_div(softmax(x[0]), softmax(x[1]), r); });
  add_rows(rows, "js_div", {data({3, 5}), data({3, 5})},
           [](V x, Reduction r) { return js_div(softmax(x[0]), softmax(x[1]), r); });
  add_rows(rows, "js_div_3d", {data({2, 3, 4}), data({2, 3, 4})},
           [](V x, Reduction r) { return js_div(softmax(x[0]), softmax(x[1]), r); });
  return rows;
}

}  // namespace idem::testing
