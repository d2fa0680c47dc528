// L1 CSR mean aggregation (contract and rounding: core/kernels/csr_aggregate.h): validate,
// allocate, dispatch. Not differentiable; autograd/csr_aggregate_function.h wraps it.
//
// Checked always: dtypes (x / g floating, CUDA f32; indices i64), shapes, devices, and that a
// graph with edges has source and destination rows. Checked on CPU tensors only (as the other
// graph ops, core/ops/segment.h — on CUDA it would cost a synchronization and break CUDA-graph
// capture; the CUDA kernels clip instead): row_ptr / src_ptr start at 0, never decrease and end
// at E; col in [0, U); src_perm and perm are permutations; the source groups list the edges of
// each source (col[src_perm[j]] = u) in increasing order; dst[perm[k]] = v for every k of row v;
// group_dst, when given, is dst[perm[src_perm[j]]] entry for entry.
#pragma once
#include "core/kernels/csr_aggregate.h"

namespace idem::ops {

// The checks of csr_mean_aggregate's forward (x, row_ptr, col; values on CPU tensors), under
// `op`'s name, and the shape they give. ops::sage_conv validates its aggregation with it.
CsrAggregateShape csr_mean_aggregate_shape(const Tensor& x, const CsrAggregateIndex& idx,
                                            const char* op);

// out (V, ...) = mean over each row's edges of x[col[k]]; x (U, ...) keeps its trailing dims.
// Reads idx.row_ptr and idx.col only. V = row_ptr.numel() - 1, E = col.numel().
Tensor csr_mean_aggregate(const Tensor& x, const CsrAggregateIndex& idx);

// dx (num_src_rows, ...) from g = ∂L/∂out (V, ...). Needs every field of idx but col and the
// optional perm / group_dst (CPU validation reads col too); the kernel reads group_dst instead
// of src_perm / perm / dst when it is defined (core/kernels/csr_aggregate.h).
// With `add` defined (dx's shape, dtype and device): add + dx, in the same pass and with the
// bits of the separate add (what a node whose input's gradient is the sum of both asks for).
Tensor csr_mean_aggregate_backward(const Tensor& g, const CsrAggregateIndex& idx,
                                   int64_t num_src_rows, const Tensor& add = Tensor());

}  // namespace idem::ops
