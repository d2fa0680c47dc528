// Op-case rows for the graph family: scatter add/mean/max by an unsorted index, segment sums
// over a CSR, global pooling, a gather-then-scatter message-passing step, and build_csr itself
// (integer outputs: parity only). Tiny graphs (V ~ 5, E ~ 9, F ~ 3) keep gradcheck cheap; the
// F = 8 rows take the CUDA 16-byte-pack path in parity.
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;
using Fn = std::function<Tensor(V)>;

OpCase graph_case(const std::string& name, std::vector<InputSpec> inputs, Fn fn) {
  return {name, "graph", std::move(inputs), std::move(fn)};
}
InputSpec data(Shape s) {
  return {std::move(s), InputKind::normal};
}
// An i64 index input in [0, high); never perturbed by gradcheck.
InputSpec index(Shape s, int64_t high) {
  return {std::move(s), InputKind::index, high, false};
}

// A fixed, sorted destination vector for 9 edges over 5 rows (row 2 is empty), turned into a
// valid row_ptr on the input's device so segment_sum_csr always gets a well-formed CSR.
Tensor fixed_row_ptr(const Tensor& like) {
  const std::vector<int64_t> dst = {0, 0, 1, 3, 3, 3, 4, 4, 4};
  return build_csr(from_vector<int64_t>(dst, {9}, like.device()), 5).row_ptr;
}
}  // namespace

std::vector<OpCase> graph_cases() {
  std::vector<OpCase> rows = {
      graph_case("scatter_add_rows", {data({9, 3}), index({9}, 5)},
                 [](V x) { return scatter_add_rows(x[0], x[1], 5); }),
      graph_case("scatter_add_rows_1d", {data({7}), index({7}, 4)},
                 [](V x) { return scatter_add_rows(x[0], x[1], 4); }),
      graph_case("scatter_add_rows_3d", {data({6, 2, 3}), index({6}, 4)},
                 [](V x) { return scatter_add_rows(x[0], x[1], 4); }),
      graph_case("scatter_add_rows_f8", {data({12, 8}), index({12}, 6)},
                 [](V x) { return scatter_add_rows(x[0], x[1], 6); }),
      graph_case("scatter_mean_rows", {data({9, 3}), index({9}, 5)},
                 [](V x) { return scatter_mean_rows(x[0], x[1], 5); }),
      graph_case("scatter_mean_rows_f8", {data({12, 8}), index({12}, 6)},
                 [](V x) { return scatter_mean_rows(x[0], x[1], 6); }),
      // Normal floats: ties (where the max is not differentiable) have probability zero.
      graph_case("scatter_max_rows", {data({9, 3}), index({9}, 5)},
                 [](V x) { return scatter_max_rows(x[0], x[1], 5); }),
      graph_case("scatter_max_rows_f8", {data({12, 8}), index({12}, 6)},
                 [](V x) { return scatter_max_rows(x[0], x[1], 6); }),
      graph_case("segment_sum_csr", {data({9, 3})},
                 [](V x) { return segment_sum_csr(x[0], fixed_row_ptr(x[0])); }),
      graph_case("segment_sum_csr_f8", {data({9, 8})},
                 [](V x) { return segment_sum_csr(x[0], fixed_row_ptr(x[0])); }),
      // Nodes of the 3 graphs in random order (batch is a random index, not sorted).
      graph_case("global_add_pool", {data({7, 3}), index({7}, 3)},
                 [](V x) { return global_add_pool(x[0], x[1], 3); }),
      graph_case("global_mean_pool", {data({7, 3}), index({7}, 3)},
                 [](V x) { return global_mean_pool(x[0], x[1], 3); }),
      graph_case("global_max_pool", {data({7, 3}), index({7}, 3)},
                 [](V x) { return global_max_pool(x[0], x[1], 3); }),
      // One message-passing step: gather source rows per edge, scatter-add to destinations.
      graph_case("message_passing_add", {data({5, 3}), index({9}, 5), index({9}, 5)},
                 [](V x) { return scatter_add_rows(index_select(x[0], 0, x[1]), x[2], 5); }),
      graph_case("message_passing_mean", {data({5, 3}), index({9}, 5), index({9}, 5)},
                 [](V x) { return scatter_mean_rows(index_select(x[0], 0, x[1]), x[2], 5); }),
  };
  // build_csr: integer outputs, compared in parity only.
  OpCase perm{"build_csr_perm",
              "graph",
              {index({11}, 6)},
              [](V x) { return build_csr(x[0], 6).perm; },
              /*gradcheck=*/false};
  OpCase row_ptr{"build_csr_row_ptr",
                 "graph",
                 {index({11}, 6)},
                 [](V x) { return build_csr(x[0], 6).row_ptr; },
                 /*gradcheck=*/false};
  rows.push_back(perm);
  rows.push_back(row_ptr);
  return rows;
}

}  // namespace idem::testing
