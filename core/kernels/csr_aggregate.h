// Kernel contract: CSR mean aggregation, GraphSAGE's mean over in-neighbours, WITHOUT the (E, F)
// edge tensor that gather + segment sum materializes.
//
//   out[v] = (Σ_{k in row v} x[col[k]]) · inv(v),   inv(v) = 1 / max(deg_v, 1)
//
// The rounding is the unfused path's, step for step, so the result is the same bits (the CPU
// path's; on CUDA the unfused segment sum takes a tree for rows of >= 64 edges on average, and
// there this op keeps the CPU's order instead):
//   index_select(x, col)      -> exact copies of x rows
//   segment_sum_csr(.., row_ptr) -> each row summed in double in increasing k, rounded once to T
//   · inv_in_degree           -> inv(v) = T(1) / T(max(deg_v, 1)) (Graph::inv_in_degree's
//                                formula), then ONE multiply in T.
// The adjoint (gradient g = ∂L/∂out (V, F)) is, again as the unfused backward computes it:
//   h[v]  = g[v] · inv(v)        in T (the multiply's backward)
//   dx[u] = Σ_{sorted edges k with col[k] = u} h[dst(k)], in double in increasing k (the
//           order of index_select_grouped's segment sum over Graph::src_groups()), rounded once.
// Neither direction writes an (E, F) tensor: a thread group owns an output row and reads the
// x (resp. g) rows it needs directly. No atomics: deterministic, and CUDA equals the CPU bit for
// bit (both sum in double in the same order; see cuda/kernels/csr_aggregate.cu).
//
// Canonical shapes: x (U, F) (trailing dims flattened into F), out (V, F), g (V, F), dx (U, F).
// All index tensors are i64 on the data's device. Their VALUES are validated by the L1 op on
// CPU tensors only (core/ops/csr_aggregate.h); the CUDA kernels clip every index into range,
// so a bad value gives a wrong result, never an out-of-bounds access.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem {

// The index structure of one graph for mean aggregation. For a layers/ Graph g:
//   {g.csr().row_ptr, g.csr().src_sorted, g.src_groups().row_ptr, g.src_groups().perm,
//    g.csr().perm, g.dst(), g.src_groups_dst()} — all cached or views, so an aggregation
//    builds nothing.
struct CsrAggregateIndex {
  // Forward: edges sorted by destination.
  Tensor row_ptr;  // (V+1): the sorted edges of row v are [row_ptr[v], row_ptr[v+1])
  Tensor col;      // (E): source row (of x) of sorted edge k
  // Backward: the sorted edges grouped by source, build_csr(col, U).
  Tensor src_ptr;   // (U+1): group u is [src_ptr[u], src_ptr[u+1])
  Tensor src_perm;  // (E): entry j of the groups is sorted edge src_perm[j] (increasing per group)
  // Backward: the destination of sorted edge k is dst[perm[k]] (dst[k] when perm is undefined).
  Tensor perm;  // (E) or undefined: sorted edge k is original edge perm[k] (build_csr's perm)
  Tensor dst;   // (E): destination row of original edge e (what row_ptr was built from)
  // Backward, optional but what makes it fast: the destination row of entry j of the source
  // groups, group_dst[j] = dst[perm[src_perm[j]]], cached per graph (Graph::src_groups_dst).
  // With it the backward finds each g row with ONE load instead of the dependent chain
  // src_perm -> perm -> dst; without it (undefined) the kernels walk that chain. Same bits.
  // (E) or undefined. The `{}` marks it optional: a six-field brace initializer (the chain
  // only) compiles without a missing-initializer warning.
  Tensor group_dst{};
};

struct CsrAggregateShape {
  int64_t rows = 0;      // V: output rows (row_ptr has V+1 entries)
  int64_t sources = 0;   // U: rows of x (src_ptr has U+1 entries)
  int64_t edges = 0;     // E
  int64_t features = 1;  // F: elements per row
};

namespace cpu {
// out (V, F) as above. Reads row_ptr and col only. CPU f32/f64.
void csr_mean_aggregate_fwd(const Tensor& out, const Tensor& x, const CsrAggregateIndex& idx,
                            CsrAggregateShape s);
// dx (U, F) as above; every row is written (0 for a source with no out-edge). Reads row_ptr,
// src_ptr and group_dst when it is defined, else row_ptr, src_ptr, src_perm, perm (if
// defined) and dst. With `add` defined ((U, F), dx's dtype and device, not overlapping dx):
// dx[u] = add[u] + T(sum), one add in T per element — the bits of the sum followed by a
// separate add — in the same pass.
void csr_mean_aggregate_bwd(const Tensor& dx, const Tensor& g, const CsrAggregateIndex& idx,
                            CsrAggregateShape s, const Tensor& add = Tensor());
}  // namespace cpu

namespace cuda {
// f32. One launch each; a group of G threads per output row, 16-byte loads when F % 4 == 0.
void csr_mean_aggregate_fwd(const Tensor& out, const Tensor& x, const CsrAggregateIndex& idx,
                            CsrAggregateShape s);
void csr_mean_aggregate_bwd(const Tensor& dx, const Tensor& g, const CsrAggregateIndex& idx,
                            CsrAggregateShape s, const Tensor& add = Tensor());
}  // namespace cuda

}  // namespace idem
