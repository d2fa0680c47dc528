// Op-case rows for the norm family: batch_norm (training on 2-D and 4-D input, with and without
// affine, with running statistics; evaluation), layer_norm (1 and 2 normalized dims),
// group_norm, dropout in training), and parity-only rows on shapes that take the CUDA split path
// for few large groups (cuda/kernels/norm.cu: fewer than 256 groups or channels of at least 4096
// elements), among them the bn_cnn demo's two BatchNorm layers at batch 128, a ragged last chunk,
// 2-D input, 255/256 channels on either side of the rule, groups of more than 256 chunks (whose
// partials are combined once) and groups cut at the chunk cap of 8 192 elements.
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
// Too many elements for the finite-difference check: parity (outputs and input gradients) and
// the benchmarks only.
OpCase parity_only(OpCase c) {
  c.gradcheck = false;
  c.grad_parity = true;
  return c;
}
InputSpec data(Shape s) {
  return {std::move(s), InputKind::normal};
}
// Running statistics of evaluation rows: fixed data, not differentiated.
InputSpec stat(Shape s, InputKind kind) {
  return {std::move(s), kind, 0, false};
}
// Parity-only batch_norm rows on input shape x with C = x[1] channels. Training, batch
// statistics, no running statistics: weight and bias, or the weight alone.
OpCase bn_train_row(const std::string& name, const Shape& x, bool with_bias = true) {
  const int64_t c = x[1];
  if (!with_bias)
    return parity_only(norm_case(name, {data(x), data({c})}, [](V v) {
      return batch_norm(v[0], Tensor(), Tensor(), v[1], Tensor(), true);
    }));
  return parity_only(norm_case(name, {data(x), data({c}), data({c})}, [](V v) {
    return batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true);
  }));
}
// Evaluation with given running statistics (a normal mean, a positive variance), affine.
OpCase bn_eval_row(const std::string& name, const Shape& x) {
  const int64_t c = x[1];
  return parity_only(norm_case(name,
                               {data(x), data({c}), data({c}), stat({c}, InputKind::normal),
                                stat({c}, InputKind::positive)},
                               [](V v) { return batch_norm(v[0], v[3], v[4], v[1], v[2], false); }));
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

      // ---- the CUDA split path (few large groups or channels), parity only.
      // bn_cnn's first BatchNorm (32 channels of 128·28·28) in training, with running stats:
      // split forward, split fused backward.
      parity_only(norm_case("batch_norm_split_bn_cnn1_train",
                            {data({128, 32, 28, 28}), data({32}), data({32})}, [](V x) {
                              Tensor rm = zeros({32}, x[0].options());
                              Tensor rv = ones({32}, x[0].options());
                              return batch_norm(x[0], rm, rv, x[1], x[2], true, 0.1, 1e-5);
                            })),
      // bn_cnn's second BatchNorm (64 channels of 128·14·14) in evaluation, as in an IT³
      // adaptation: split map forward, split fixed-statistics dx, split dweight/dbias.
      bn_eval_row("batch_norm_split_bn_cnn2_eval", {128, 64, 14, 14}),
      // R = 7·29·23 = 4669: three chunks of 1568, 1568, 1533 that start mid-row.
      bn_train_row("batch_norm_split_ragged_train", {7, 3, 29, 23}),
      bn_eval_row("batch_norm_split_ragged_eval", {7, 3, 29, 23}),
      // 2-D input: rows of one element (S = 1).
      bn_train_row("batch_norm_split_2d_train", {8192, 16}, false),
      // 255 channels of 4096 elements take the split path, 256 the block kernels.
      bn_train_row("batch_norm_split_255ch_train", {4, 255, 32, 32}),
      bn_train_row("batch_norm_block_256ch_train", {4, 256, 32, 32}),
      bn_eval_row("batch_norm_split_255ch_eval", {4, 255, 32, 32}),
      bn_eval_row("batch_norm_block_256ch_eval", {4, 256, 32, 32}),
      // A group of 4095 elements stays on the block kernels; 4096 splits into two chunks.
      bn_train_row("batch_norm_block_len_4095", {1, 3, 4095}, false),
      bn_train_row("batch_norm_split_len_4096", {1, 3, 4096}, false),
      // layer_norm over two long rows: split statistics (channel = inner index), non-fused
      // split backward; dweight/dbias over 8192 channels stay on the block kernel.
      parity_only(norm_case("layer_norm_split_two_rows", {data({2, 8192}), data({8192}),
                                                          data({8192})},
                            [](V x) { return layer_norm(x[0], 1, x[1], x[2]); })),
      // layer_norm over many short rows: 16 channels of 8192 elements take the split dweight/
      // dbias (group = the affine view's outer index).
      parity_only(norm_case("layer_norm_split_affine", {data({8192, 16}), data({16}),
                                                        data({16})},
                            [](V x) { return layer_norm(x[0], 1, x[1], x[2]); })),
      // More than 256 chunks a group: the partials are combined once by one block per group
      // (norm_*_split_combine_kernel). batch_norm: 2 groups of 550 000 in 269 chunks (forward
      // and fused backward); layer_norm: 2 rows of 600 000 in 293 chunks (non-fused backward).
      bn_train_row("batch_norm_split_combine_train", {550, 2, 1000}),
      parity_only(norm_case("layer_norm_split_combine", {data({2, 600000}), data({600000}),
                                                         data({600000})},
                            [](V x) { return layer_norm(x[0], 1, x[1], x[2]); })),
      // Chunks capped at 8 192 elements: 2 groups of 8·600·900 = 4 320 000 in 528 chunks (the
      // last one of 2 816), where the uncapped rule would cut 512 of 8 448.
      bn_train_row("batch_norm_split_capped_train", {8, 2, 600, 900}),
      // group_norm: 8 groups (2 per sample) of 4·32·32 and 8 channels of 4·32·32 elements, both
      // split; group_norm's channels map to groups by the kGroupOuter shortcut (a·gpa + c/cpg).
      parity_only(norm_case("group_norm_split", {data({4, 8, 32, 32}), data({8}), data({8})},
                            [](V x) { return group_norm(x[0], 2, x[1], x[2]); })),

      // ---- dropout: the mask depends only on (seed, offset), so fn is deterministic.
      norm_case("dropout_train", {data({4, 5})},
                [](V x) { return dropout(x[0], 0.3, true, 1234); }),
      norm_case("dropout_train_offset_3d", {data({2, 3, 4})},
                [](V x) { return dropout(x[0], 0.3, true, 99, 17); }),
  };
}

}  // namespace idem::testing
