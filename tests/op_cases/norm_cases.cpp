// Op-case rows for the norm family: batch_norm (training on 2-D and 4-D input, with and without
// affine, with running statistics; evaluation), layer_norm (1 and 2 normalized dims),
// group_norm, dropout in training.
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;
using Fn = std::function<Tensor(V)>;

OpCase norm_case(const std::string& name, std::vector<InputSpec> inputs, Fn fn) {
  OpCase c{name, "norm", std::move(inputs), std::move(fn)};
  c.parity_scale = 4.0;  // two reductions over the group, then a division by the std
  return c;
}
InputSpec data(Shape s) {
  return {std::move(s), InputKind::normal};
}
// Running statistics of evaluation rows: fixed data, not differentiated.
InputSpec stat(Shape s, InputKind kind) {
  return {std::move(s), kind, 0, false};
}
}  // namespace

std::vector<OpCase> norm_cases() {
  return {
      // ---- batch_norm, training (batch statistics). Running stats are undefined here, or
      // fresh inside fn, because gradcheck calls fn many times.
      norm_case("batch_norm_train_2d_affine", {data({6, 3}), data({3}), data({3})},
                [](V x) { return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true); }),
      norm_case("batch_norm_train_2d_plain", {data({5, 4})},
                [](V x) { return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true); }),
      norm_case("batch_norm_train_4d_affine", {data({3, 2, 3, 2}), data({2}), data({2})},
                [](V x) { return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true); }),
      norm_case("batch_norm_train_4d_plain", {data({2, 3, 2, 2})},
                [](V x) { return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true); }),
      norm_case("batch_norm_train_3d_weight_only", {data({4, 3, 2}), data({3})},
                [](V x) { return batch_norm(x[0], Tensor(), Tensor(), x[1], Tensor(), true); }),
      norm_case("batch_norm_train_running", {data({4, 3, 2}), data({3}), data({3})},
                [](V x) {
                  Tensor rm = zeros({3}, x[0].options());
                  Tensor rv = ones({3}, x[0].options());
                  return batch_norm(x[0], rm, rv, x[1], x[2], true, 0.1, 1e-5);
                }),
      // ---- batch_norm, evaluation (running statistics as fixed inputs).
      norm_case("batch_norm_eval_4d",
                {data({2, 3, 2, 2}), data({3}), data({3}), stat({3}, InputKind::normal),
                 stat({3}, InputKind::positive)},
                [](V x) { return batch_norm(x[0], x[3], x[4], x[1], x[2], false); }),
      norm_case("batch_norm_eval_2d_plain",
                {data({5, 3}), stat({3}, InputKind::normal), stat({3}, InputKind::positive)},
                [](V x) { return batch_norm(x[0], x[1], x[2], Tensor(), Tensor(), false); }),

      // ---- layer_norm
      norm_case("layer_norm_1dim", {data({4, 5}), data({5}), data({5})},
                [](V x) { return layer_norm(x[0], 1, x[1], x[2]); }),
      norm_case("layer_norm_2dims", {data({2, 3, 4}), data({3, 4}), data({3, 4})},
                [](V x) { return layer_norm(x[0], 2, x[1], x[2]); }),
      norm_case("layer_norm_plain", {data({3, 6})},
                [](V x) { return layer_norm(x[0], 1, Tensor(), Tensor()); }),

      // ---- group_norm
      norm_case("group_norm_3d", {data({2, 4, 3}), data({4}), data({4})},
                [](V x) { return group_norm(x[0], 2, x[1], x[2]); }),
      norm_case("group_norm_4d", {data({2, 6, 2, 2}), data({6}), data({6})},
                [](V x) { return group_norm(x[0], 3, x[1], x[2]); }),
      norm_case("group_norm_per_channel_plain", {data({2, 4, 5})},
                [](V x) { return group_norm(x[0], 4, Tensor(), Tensor()); }),

      // ---- dropout: the mask depends only on (seed, offset), so fn is deterministic.
      norm_case("dropout_train", {data({4, 5})},
                [](V x) { return dropout(x[0], 0.3, true, 1234); }),
      norm_case("dropout_train_offset_3d", {data({2, 3, 4})},
                [](V x) { return dropout(x[0], 0.3, true, 99, 17); }),
  };
}

}  // namespace idem::testing
