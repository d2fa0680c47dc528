// Kernel contract: graph message passing as segment reductions over a CSR view.
//
// Every scatter is computed the same way: the edges are stably sorted by destination (build_csr
// gives row_ptr and the permutation), then one thread group owns one destination row and reduces
// that row's edges in sorted order. Sorted order = increasing original edge id inside a row, so
// the result is a fixed sequential sum: deterministic, no float atomics, and the CUDA result is
// bit-identical to the CPU one for sum/mean/max.
// Exception (CUDA sum/mean forward when E >= 64 V, i.e. few long rows such as global pooling):
// a block splits each row into fixed slices whose double partials are added in a fixed tree,
// still deterministic but not the CPU's order: both sum in double and round once, so the float
// results agree except, rarely, in the last bit (see cuda/kernels/segment.cu). The adjoints stay
// bit-identical.
//
// Canonical shapes: src is (E, F) (trailing dims flattened into F), out is (V, F).
// row_ptr (V+1) i64, perm (E) i64 or undefined (= identity: src already sorted by row).
// Integers arrive validated by the L1 op on CPU tensors; on CUDA tensors their values are not
// checked (see core/ops/segment.h); the kernels clip row_ptr to [0, E] and skip perm entries
// outside [0, E), so a bad value gives a wrong result, never an access outside src or out.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace idem {

enum class SegmentOp : uint8_t {
  sum,   // out[v] = Σ src[e]
  mean,  // out[v] = Σ src[e] / count (0 for an empty row)
  max,   // out[v] = max src[e] (0 for an empty row); argmax[v, f] = e (first max), -1 if empty
};
const char* segment_op_name(SegmentOp op);

struct SegmentShape {
  int64_t rows = 0;      // V: output rows (row_ptr has V+1 entries)
  int64_t edges = 0;     // E: source rows
  int64_t features = 1;  // F: elements per row
};

namespace cpu {
// Stable counting sort of `index` (E) i64 in [0, V): row_ptr (V+1) i64 with row_ptr[v] = number
// of edges with index < v; perm (E) i64 lists the edges of row 0, then row 1, ..., each row in
// increasing edge id.
void build_csr(const Tensor& row_ptr, const Tensor& perm, const Tensor& index, SegmentShape s);
// out (V, F): for each row v, reduces src[p(k)] over k in [row_ptr[v], row_ptr[v+1]), in
// increasing k, where p(k) = perm[k] (or k when perm is undefined). Sums accumulate in double.
// argmax (V, F) i64 is written for SegmentOp::max only (undefined otherwise).
void segment_reduce_fwd(const Tensor& out, const Tensor& argmax, const Tensor& src,
                        const Tensor& row_ptr, const Tensor& perm, SegmentShape s, SegmentOp op);
// The adjoint of sum/mean: out (E, F): out[p(k)] = g[v] (mean: g[v] / count of row v) for every
// k in row v. On validated input (row_ptr[V] = E, perm a permutation) every row of out is
// written exactly once; rows no k reaches are left unwritten.
void segment_expand(const Tensor& out, const Tensor& g, const Tensor& row_ptr, const Tensor& perm,
                    SegmentShape s, bool mean);
// The adjoint of max: out (E, F), zero-filled by the caller: out[argmax[v, f], f] = g[v, f] for
// argmax >= 0. Distinct (v, f) write distinct elements (every edge belongs to one row).
void segment_max_bwd(const Tensor& out, const Tensor& g, const Tensor& argmax, SegmentShape s);
}  // namespace cpu

namespace cuda {
// Stable LSD radix sort of (index, edge id) pairs (cub), then row_ptr[v] = lower_bound(v) in the
// sorted keys. No atomics at all, so the result is the same on every run.
// requires: E < 2^31, V < 2^32.
void build_csr(const Tensor& row_ptr, const Tensor& perm, const Tensor& index, SegmentShape s);
void segment_reduce_fwd(const Tensor& out, const Tensor& argmax, const Tensor& src,
                        const Tensor& row_ptr, const Tensor& perm, SegmentShape s, SegmentOp op);
void segment_expand(const Tensor& out, const Tensor& g, const Tensor& row_ptr, const Tensor& perm,
                    SegmentShape s, bool mean);
void segment_max_bwd(const Tensor& out, const Tensor& g, const Tensor& argmax, SegmentShape s);
}  // namespace cuda

}  // namespace idem
