// Level L2: differentiable graph ops for message passing (autograd/segment_functions.cpp).
// Rows are nodes (V) or edges (E); features are the last dim (F). Gathering rows by an edge
// index is idem::index_select(x, 0, index). All scatters are deterministic (no float atomics).
#pragma once
#include <cstdint>

#include "autograd/functions.h"

namespace idem {

// out (num_rows, F): out[index[e]] += src[e]. index (E) i64 in [0, num_rows).
Tensor scatter_add_rows(const Tensor& src, const Tensor& index, int64_t num_rows);
// Mean over the rows scattered to each output row (0 for rows that receive none).
Tensor scatter_mean_rows(const Tensor& src, const Tensor& index, int64_t num_rows);
// Max over the rows scattered to each output row (0 for rows that receive none); the gradient
// goes to the (first) maximal source row.
Tensor scatter_max_rows(const Tensor& src, const Tensor& index, int64_t num_rows);

// Compressed rows: edges sorted by destination; row_ptr (V+1) i64 with row_ptr[0] = 0 and
// row_ptr[V] = E; the edges of row v are [row_ptr[v], row_ptr[v+1]).
// out (V, F): out[v] = Σ_{e in row v} src[e]. The fast path for a fixed graph.
Tensor segment_sum_csr(const Tensor& src, const Tensor& row_ptr);
// Builds row_ptr (V+1) and the permutation that sorts edges by destination (stable).
struct CsrIndex {
  Tensor row_ptr;  // (V+1) i64
  Tensor perm;     // (E) i64: sorted edge k is original edge perm[k]
};
CsrIndex build_csr(const Tensor& dst_index, int64_t num_rows);

// x[index] along dim 0 — index_select — whose backward sums the gradient rows that came from
// each source row through `groups` = build_csr(index, x.size(0)) (a segment sum, no sort)
// instead of index_add, which sorts the index on every call. For a fixed graph the grouping is
// built once and cached (Graph::src_groups, Graph::batch_groups), so GNN backward passes and
// CUDA-graph replays pay no radix sort.
Tensor index_select_grouped(const Tensor& x, const Tensor& index, const CsrIndex& groups);
// Mean of the rows of each group: out[r] = mean_{k in group r} src[perm[k]], (E, F) ->
// (groups, F); empty groups give 0. With groups = Graph::batch_groups() this is
// global_mean_pool without its per-call sort (forward and backward are one segment kernel each).
Tensor segment_mean_grouped(const Tensor& src, const CsrIndex& groups);

// Pooling nodes into graphs: batch (V) i64 gives each node's graph in [0, num_graphs).
Tensor global_add_pool(const Tensor& x, const Tensor& batch, int64_t num_graphs);
Tensor global_mean_pool(const Tensor& x, const Tensor& batch, int64_t num_graphs);
Tensor global_max_pool(const Tensor& x, const Tensor& batch, int64_t num_graphs);

}  // namespace idem
