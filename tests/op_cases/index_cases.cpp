// Op-case rows for the index/shape family: permute/transpose, concat/stack/split/narrow on
// several dims, index_select/gather with i64 index inputs, one_hot (parity only).
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;
using Fn = std::function<Tensor(V)>;

OpCase idx_case(const std::string& name, std::vector<InputSpec> inputs, Fn fn) {
  return {name, "index", std::move(inputs), std::move(fn)};
}
InputSpec data(Shape s) {
  return {std::move(s), InputKind::normal};
}
// An i64 index input in [0, high); never perturbed by gradcheck.
InputSpec index(Shape s, int64_t high) {
  return {std::move(s), InputKind::index, high, false};
}

// Split pieces reassembled in a different order with distinct scales, so a gradient routed
// to the wrong piece (or dropped) changes the result.
Tensor reassemble(const std::vector<Tensor>& pieces, int64_t dim) {
  std::vector<Tensor> parts;
  for (size_t i = pieces.size(); i-- > 0;) parts.push_back(pieces[i] * (1.0 + 0.5 * i));
  return concat(parts, dim);
}
}  // namespace

std::vector<OpCase> index_cases() {
  return {
      idx_case("permute_4d", {data({2, 3, 4, 5})},
               [](V x) {
                 return permute(x[0], {2, 0, 3, 1});
               }),
      idx_case("permute_3d_neg", {data({2, 3, 4})},
               [](V x) {
                 return permute(x[0], {-1, 0, 1});
               }),
      idx_case("transpose_2d", {data({3, 5})}, [](V x) { return transpose(x[0]); }),
      idx_case("transpose_3d_outer", {data({2, 3, 4})}, [](V x) { return transpose(x[0], 0, 2); }),

      idx_case("concat_dim0", {data({2, 3}), data({1, 3}), data({4, 3})},
               [](V x) {
                 return concat({x[0], x[1], x[2]}, 0);
               }),
      idx_case("concat_dim1", {data({2, 3}), data({2, 1}), data({2, 4})},
               [](V x) {
                 return concat({x[0], x[1], x[2]}, 1);
               }),
      idx_case("concat_last_3d", {data({2, 3, 1}), data({2, 3, 2})},
               [](V x) {
                 return concat({x[0], x[1]}, -1);
               }),
      idx_case("concat_repeated_input", {data({2, 3})},
               [](V x) {
                 return concat({x[0], x[0] * 2.0}, 0);
               }),

      idx_case("stack_dim0", {data({3, 4}), data({3, 4})},
               [](V x) {
                 return stack({x[0], x[1]}, 0);
               }),
      idx_case("stack_mid", {data({3, 4}), data({3, 4}), data({3, 4})},
               [](V x) {
                 return stack({x[0], x[1], x[2]}, 1);
               }),
      idx_case("stack_last", {data({2, 3}), data({2, 3})},
               [](V x) {
                 return stack({x[0], x[1]}, -1);
               }),

      idx_case("split_dim0", {data({5, 3})}, [](V x) { return reassemble(split(x[0], 2, 0), 0); }),
      idx_case("split_sizes_dim1", {data({3, 6})},
               [](V x) {
                 return reassemble(split(x[0], std::vector<int64_t>{1, 3, 2}, 1), 1);
               }),
      idx_case("split_last_3d", {data({2, 3, 5})},
               [](V x) { return reassemble(split(x[0], 3, -1), -1); }),

      idx_case("narrow_dim0", {data({5, 3})}, [](V x) { return narrow(x[0], 0, 1, 3); }),
      idx_case("narrow_dim1", {data({3, 6})}, [](V x) { return narrow(x[0], 1, 2, 3); }),
      idx_case("narrow_last_3d", {data({2, 3, 5})}, [](V x) { return narrow(x[0], -1, 1, 2); }),

      idx_case("index_select_dim0", {data({5, 3}), index({7}, 5)},
               [](V x) { return index_select(x[0], 0, x[1]); }),
      idx_case("index_select_dim1", {data({3, 6}), index({4}, 6)},
               [](V x) { return index_select(x[0], 1, x[1]); }),
      idx_case("index_select_mid", {data({2, 5, 3}), index({6}, 5)},
               [](V x) { return index_select(x[0], 1, x[1]); }),

      idx_case("gather_dim0", {data({4, 3}), index({5, 3}, 4)},
               [](V x) { return gather(x[0], 0, x[1]); }),
      idx_case("gather_dim1", {data({3, 5}), index({3, 4}, 5)},
               [](V x) { return gather(x[0], 1, x[1]); }),
      idx_case("gather_mid", {data({2, 5, 3}), index({2, 4, 3}, 5)},
               [](V x) { return gather(x[0], 1, x[1]); }),

      {"one_hot",
       "index",
       {index({6}, 4)},
       [](V x) { return one_hot(x[0], 4); },
       /*gradcheck=*/false},
  };
}

}  // namespace idem::testing
