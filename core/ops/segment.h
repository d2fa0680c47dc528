// L1 graph ops: CSR construction, segment reductions over it and their adjoints.
// Not differentiable (autograd/segment_functions.cpp wraps them).
//
// Shapes: src (E, ...) rows are edges (or nodes, for pooling); the trailing dims are the feature
// block F and are kept: out is (V, ...). Integer tensors (index, row_ptr, perm, argmax) are i64.
//
// Validation of integer VALUES (index range, row_ptr monotone and ending at E, perm a
// permutation) happens on CPU tensors only. On CUDA tensors it would cost a device->host copy
// and a synchronization per call and would break CUDA-graph capture of the IT³ step, so it is
// skipped (as for index_select): the CUDA kernels clip instead of trusting the values, so a bad
// value gives a wrong result but no out-of-bounds access. Dtypes, shapes and devices are always
// checked.
#pragma once
#include <cstdint>

#include "core/kernels/segment.h"

namespace idem::ops {

struct Csr {
  Tensor row_ptr;  // (V+1) i64
  Tensor perm;     // (E) i64: sorted edge k is original edge perm[k]; stable
};

// requires: index (E) i64 in [0, num_rows), num_rows >= 0. `op` names the caller in errors.
Csr build_csr(const Tensor& index, int64_t num_rows, const char* op = "build_csr");

// out (V, ...): reduces src[perm[k]] (src[k] when perm is undefined) over each row's range of
// row_ptr. argmax_out (SegmentOp::max only; may be null) receives (V, F) i64 source rows, -1 for
// empty rows.
Tensor segment_reduce(const Tensor& src, const Tensor& row_ptr, const Tensor& perm, SegmentOp op,
                      Tensor* argmax_out = nullptr, const char* name = nullptr);

// Scatter by an unsorted index: build_csr + segment_reduce. index (E) in [0, num_rows).
// When csr_out is given it receives the CSR that was built (for a backward that needs it).
Tensor scatter_rows(const Tensor& src, const Tensor& index, int64_t num_rows, SegmentOp op,
                    Tensor* argmax_out = nullptr, Csr* csr_out = nullptr,
                    const char* name = nullptr);

// Adjoint of segment sum/mean: g (V, ...) -> (E, ...) with row p(k) = g[v] (mean: / count).
// num_src_rows = E.
Tensor segment_expand(const Tensor& g, const Tensor& row_ptr, const Tensor& perm,
                      int64_t num_src_rows, bool mean);

// Adjoint of segment max: g (V, ...) and argmax (V, F) -> (E, ...) zeros with g routed to argmax.
Tensor segment_max_backward(const Tensor& g, const Tensor& argmax, int64_t num_src_rows);

}  // namespace idem::ops
