// Op-case rows for the segment family: scatter add/mean/max by an unsorted index, segment sums
// over a CSR, global pooling, a gather-then-scatter message-passing step, the fused CSR mean
// aggregation (autograd/csr_aggregate_function.h), and build_csr itself
// (integer outputs: parity only). Tiny graphs (V ~ 5, E ~ 9, F ~ 3) keep gradcheck cheap; the
// F = 8 rows take the CUDA 16-byte-pack path in parity; the _long rows (>= 64 edges per row)
// the CUDA long-row path.
#include "autograd/csr_aggregate_function.h"
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;
using Fn = std::function<Tensor(V)>;

OpCase graph_case(const std::string& name, std::vector<InputSpec> inputs, Fn fn) {
  return {name, "segment", std::move(inputs), std::move(fn)};
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
// 260 edges over 4 rows (100, 0, 130, 30): 65 per row on average, so CUDA takes the long-row
// path (E >= 64 V, cuda/kernels/segment.cu), with an empty row.
Tensor long_row_ptr(const Tensor& like) {
  return from_vector<int64_t>({0, 100, 100, 230, 260}, {5}, like.device());
}
// csr_mean_aggregate of x = in[0] over the edges in[1] -> in[2] (source, destination).
Tensor mean_aggregate_case(V in, int64_t num_dst) {
  return csr_mean_aggregate(in[0], csr_aggregate_index(in[1], in[2], num_dst, in[0].size(0)));
}
}  // namespace

std::vector<OpCase> segment_cases() {
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
      // Long rows (E >= 64 V): the CUDA long-row sum/mean and its adjoint (global pooling).
      graph_case("global_mean_pool_long", {data({200, 3}), index({200}, 3)},
                 [](V x) { return global_mean_pool(x[0], x[1], 3); }),
      graph_case("segment_sum_csr_long_f8", {data({260, 8})},
                 [](V x) { return segment_sum_csr(x[0], long_row_ptr(x[0])); }),
      // One message-passing step: gather source rows per edge, scatter-add to destinations.
      graph_case("message_passing_add", {data({5, 3}), index({9}, 5), index({9}, 5)},
                 [](V x) { return scatter_add_rows(index_select(x[0], 0, x[1]), x[2], 5); }),
      graph_case("message_passing_mean", {data({5, 3}), index({9}, 5), index({9}, 5)},
                 [](V x) { return scatter_mean_rows(index_select(x[0], 0, x[1]), x[2], 5); }),
      // GraphSAGE's fused mean aggregation (x, src, dst): the forward gathers x rows per
      // destination directly, the backward per source through the source grouping. Random
      // edges, so some nodes have no in- or no out-edges; F = 8 and _w64 (F = 64) take the
      // 16-byte packs; U != V (7 sources, 5 destinations) in the bipartite row.
      graph_case("csr_mean_aggregate", {data({5, 3}), index({9}, 5), index({9}, 5)},
                 [](V x) { return mean_aggregate_case(x, 5); }),
      graph_case("csr_mean_aggregate_f8", {data({6, 8}), index({14}, 6), index({14}, 6)},
                 [](V x) { return mean_aggregate_case(x, 6); }),
      graph_case("csr_mean_aggregate_w64", {data({16, 64}), index({96}, 16), index({96}, 16)},
                 [](V x) { return mean_aggregate_case(x, 16); }),
      graph_case("csr_mean_aggregate_bipartite", {data({7, 2}), index({10}, 7), index({10}, 5)},
                 [](V x) { return mean_aggregate_case(x, 5); }),
  };
  // build_csr: integer outputs, compared in parity only.
  OpCase perm{"build_csr_perm",
              "segment",
              {index({11}, 6)},
              [](V x) { return build_csr(x[0], 6).perm; },
              /*gradcheck=*/false};
  OpCase row_ptr{"build_csr_row_ptr",
                 "segment",
                 {index({11}, 6)},
                 [](V x) { return build_csr(x[0], 6).row_ptr; },
                 /*gradcheck=*/false};
  rows.push_back(perm);
  rows.push_back(row_ptr);
  return rows;
}

}  // namespace idem::testing
