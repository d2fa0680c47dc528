// Level L2: GraphSAGE's mean aggregation as ONE differentiable op over a CSR, without the
// (E, F) edge tensor of gather + segment sum (contract and rounding:
// core/kernels/csr_aggregate.h; L1 op: core/ops/csr_aggregate.h).
#pragma once
#include <cstdint>

#include "autograd/segment_functions.h"
#include "core/kernels/csr_aggregate.h"

namespace idem {

// out[v] = (1 / max(deg_v, 1)) · Σ_{sorted edges k of row v} x[col[k]] : x (U, ...) -> (V, ...)
// The same bits as segment_sum_csr(index_select(x, 0, col), row_ptr) · inv_in_degree, forward
// and backward, on the CPU and on CUDA (one launch each way there, against three and three).
// The backward (to x only; the index is constant) needs every field of `index`; they are
// checked when history is recorded. For a layers/ Graph g, mean_aggregate(x, g) passes
//   {c.row_ptr, c.src_sorted, s.row_ptr, s.perm, c.perm, g.dst(), g.src_groups_dst()},
//   c = g.csr(), s = g.src_groups() (without the last, optional field the backward is slower,
//   not different: see CsrAggregateIndex::group_dst).
Tensor csr_mean_aggregate(const Tensor& x, const CsrAggregateIndex& index);

// The index as a node keeps it: every field a detached alias (saved(), autograd/node.h).
CsrAggregateIndex saved_index(const CsrAggregateIndex& index);

// The index from edge lists (edges src[e] -> dst[e], both (E) i64): build_csr(dst, num_dst),
// col = src in that order, col grouped by source with build_csr(col, num_src), and group_dst.
// Builds (and on CUDA sorts) every call: cache the result for a fixed graph.
CsrAggregateIndex csr_aggregate_index(const Tensor& src, const Tensor& dst, int64_t num_dst,
                                      int64_t num_src);

}  // namespace idem
