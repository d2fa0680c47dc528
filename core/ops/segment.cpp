// L1 graph ops: validate, allocate, dispatch. See core/ops/segment.h for what is validated where
// (integer values on CPU tensors only).
#include "core/ops/segment.h"

#include <limits>
#include <vector>

#include "core/ops/checks.h"

namespace idem::ops {

namespace {

void check_i64_vector(const Tensor& t, const char* op, const char* what) {
  check_defined(t, op, what);
  check_dtype(t, DType::i64, op, what);
  IDEM_CHECK(t.dim() == 1, op, what, " must be 1-D, got ", shape_str(t.shape()));
}

void check_num_rows(int64_t n, const char* op) {
  IDEM_CHECK(n >= 0, op, "num_rows must be >= 0, got ", n);
}

// CPU only (see the header): every index in [0, num_rows).
void check_index_values(const Tensor& index, int64_t num_rows, const char* op) {
  if (!index.device().is_cpu()) return;
  const int64_t* p = index.data<int64_t>();
  for (int64_t k = 0; k < index.numel(); ++k)
    IDEM_CHECK(p[k] >= 0 && p[k] < num_rows, op, "index ", p[k], " (at position ", k,
               ") is out of range for num_rows ", num_rows);
}

// CPU only: row_ptr[0] = 0, non-decreasing, row_ptr[V] = E.
void check_row_ptr_values(const Tensor& row_ptr, int64_t edges, const char* op) {
  if (!row_ptr.device().is_cpu()) return;
  const int64_t* p = row_ptr.data<int64_t>();
  const int64_t n = row_ptr.numel();
  IDEM_CHECK(p[0] == 0, op, "row_ptr ", shape_str(row_ptr.shape()), " must start at 0, got ", p[0]);
  for (int64_t v = 0; v + 1 < n; ++v)
    IDEM_CHECK(p[v + 1] >= p[v], op, "row_ptr ", shape_str(row_ptr.shape()),
               " must be non-decreasing, but row_ptr[", v + 1, "] = ", p[v + 1], " < row_ptr[", v,
               "] = ", p[v]);
  IDEM_CHECK(p[n - 1] == edges, op, "row_ptr ", shape_str(row_ptr.shape()),
             " must end at E = ", edges, " (the number of source rows), got ", p[n - 1]);
}

// CPU only: perm is a permutation of [0, E).
void check_perm_values(const Tensor& perm, const char* op) {
  if (!perm.device().is_cpu()) return;
  const int64_t* p = perm.data<int64_t>();
  const int64_t n = perm.numel();
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (int64_t k = 0; k < n; ++k) {
    IDEM_CHECK(p[k] >= 0 && p[k] < n && !seen[p[k]], op, "perm ", shape_str(perm.shape()),
               " must be a permutation of [0, ", n, "), but perm[", k, "] = ", p[k]);
    seen[p[k]] = true;
  }
}

// The CUDA build_csr sorts 32-bit keys and 32-bit edge ids (cub takes an int item count).
void check_cuda_csr_sizes(const Tensor& index, int64_t num_rows, const char* op) {
  if (!index.device().is_cuda()) return;
  IDEM_CHECK(index.numel() < std::numeric_limits<int32_t>::max(), op, "index ",
             shape_str(index.shape()), " has too many entries for the CUDA sort (max 2^31 - 1)");
  IDEM_CHECK(num_rows <= std::numeric_limits<uint32_t>::max(), op, "num_rows ", num_rows,
             " is too large for the CUDA sort (max 2^32 - 1)");
}

Csr build_csr_unchecked(const Tensor& index, int64_t num_rows) {
  const Device dev = index.device();
  Csr c{empty({num_rows + 1}, {DType::i64, dev}), empty({index.numel()}, {DType::i64, dev})};
  const SegmentShape s{num_rows, index.numel(), 1};
  dispatch(
      index, [&] { cpu::build_csr(c.row_ptr, c.perm, index, s); },
      [&] { cuda::build_csr(c.row_ptr, c.perm, index, s); });
  return c;
}

Tensor segment_reduce_unchecked(const Tensor& src, const Tensor& row_ptr, const Tensor& perm,
                                SegmentOp op, Tensor* argmax_out) {
  const int64_t V = row_ptr.numel() - 1;
  const SegmentShape s{V, src.size(0), row_features(src.shape())};
  Tensor out = empty(with_rows(src.shape(), V), src.options());
  Tensor argmax;
  if (op == SegmentOp::max) argmax = empty({V, s.features}, {DType::i64, src.device()});
  if (out.numel() > 0)
    dispatch(
        src, [&] { cpu::segment_reduce_fwd(out, argmax, src, row_ptr, perm, s, op); },
        [&] { cuda::segment_reduce_fwd(out, argmax, src, row_ptr, perm, s, op); });
  if (argmax_out) *argmax_out = argmax;
  return out;
}

}  // namespace

Csr build_csr(const Tensor& index, int64_t num_rows, const char* op) {
  check_i64_vector(index, op, "index");
  check_num_rows(num_rows, op);
  check_cuda_csr_sizes(index, num_rows, op);
  check_index_values(index, num_rows, op);
  return build_csr_unchecked(index, num_rows);
}

Tensor segment_reduce(const Tensor& src, const Tensor& row_ptr, const Tensor& perm, SegmentOp op,
                      Tensor* argmax_out, const char* name) {
  const char* op_name = name ? name : segment_op_name(op);
  check_rows_tensor(src, op_name, "src");
  check_i64_vector(row_ptr, op_name, "row_ptr");
  check_same_device({&src, &row_ptr}, op_name);
  IDEM_CHECK(row_ptr.numel() >= 1, op_name, "row_ptr must have V+1 >= 1 entries, got ",
             shape_str(row_ptr.shape()));
  const int64_t E = src.size(0);
  if (perm.defined()) {
    check_i64_vector(perm, op_name, "perm");
    check_same_device({&src, &perm}, op_name);
    IDEM_CHECK(perm.numel() == E, op_name, "perm ", shape_str(perm.shape()), " and src ",
               shape_str(src.shape()), " must have the same number of rows (dim 0)");
    check_perm_values(perm, op_name);
  }
  check_row_ptr_values(row_ptr, E, op_name);
  return segment_reduce_unchecked(src, row_ptr, perm, op, argmax_out);
}

Tensor scatter_rows(const Tensor& src, const Tensor& index, int64_t num_rows, SegmentOp op,
                    Tensor* argmax_out, Csr* csr_out, const char* name) {
  const char* op_name = name ? name : segment_op_name(op);
  check_rows_tensor(src, op_name, "src");
  check_i64_vector(index, op_name, "index");
  check_same_device({&src, &index}, op_name);
  IDEM_CHECK(index.numel() == src.size(0), op_name, "src ", shape_str(src.shape()), " and index ",
             shape_str(index.shape()), " must have the same number of rows (dim 0): ", src.size(0),
             " vs ", index.numel());
  check_num_rows(num_rows, op_name);
  check_cuda_csr_sizes(index, num_rows, op_name);
  check_index_values(index, num_rows, op_name);
  Csr csr = build_csr_unchecked(index, num_rows);
  Tensor out = segment_reduce_unchecked(src, csr.row_ptr, csr.perm, op, argmax_out);
  if (csr_out) *csr_out = std::move(csr);
  return out;
}

Tensor segment_expand(const Tensor& g, const Tensor& row_ptr, const Tensor& perm,
                      int64_t num_src_rows, bool mean) {
  const char* op = mean ? "segment_mean_backward" : "segment_sum_backward";
  check_rows_tensor(g, op, "grad");
  check_i64_vector(row_ptr, op, "row_ptr");
  check_same_device({&g, &row_ptr}, op);
  IDEM_CHECK(row_ptr.numel() == g.size(0) + 1, op, "row_ptr ", shape_str(row_ptr.shape()),
             " must have one more entry than grad ", shape_str(g.shape()), " has rows");
  IDEM_CHECK(num_src_rows >= 0, op, "num_src_rows must be >= 0, got ", num_src_rows);
  if (perm.defined()) {
    check_i64_vector(perm, op, "perm");
    check_same_device({&g, &perm}, op);
    IDEM_CHECK(perm.numel() == num_src_rows, op, "perm ", shape_str(perm.shape()),
               " must have num_src_rows = ", num_src_rows, " entries");
    check_perm_values(perm, op);
  }
  check_row_ptr_values(row_ptr, num_src_rows, op);
  const SegmentShape s{g.size(0), num_src_rows, row_features(g.shape())};
  // Every output row is written exactly once on valid input: no zero fill needed.
  Tensor out = empty(with_rows(g.shape(), num_src_rows), g.options());
  if (out.numel() == 0) return out;
  dispatch(
      g, [&] { cpu::segment_expand(out, g, row_ptr, perm, s, mean); },
      [&] { cuda::segment_expand(out, g, row_ptr, perm, s, mean); });
  return out;
}

Tensor segment_max_backward(const Tensor& g, const Tensor& argmax, int64_t num_src_rows) {
  const char* op = "segment_max_backward";
  check_rows_tensor(g, op, "grad");
  check_defined(argmax, op, "argmax");
  check_dtype(argmax, DType::i64, op, "argmax");
  check_same_device({&g, &argmax}, op);
  const SegmentShape s{g.size(0), num_src_rows, row_features(g.shape())};
  IDEM_CHECK(argmax.dim() == 2 && argmax.size(0) == s.rows && argmax.size(1) == s.features, op,
             "argmax ", shape_str(argmax.shape()), " must be (V, F) = (", s.rows, "x", s.features,
             ") for grad ", shape_str(g.shape()));
  IDEM_CHECK(num_src_rows >= 0, op, "num_src_rows must be >= 0, got ", num_src_rows);
  if (argmax.device().is_cpu()) {
    const int64_t* a = argmax.data<int64_t>();
    for (int64_t k = 0; k < argmax.numel(); ++k)
      IDEM_CHECK(a[k] >= -1 && a[k] < num_src_rows, op, "argmax ", a[k], " (at flat position ", k,
                 ") is out of range for ", num_src_rows, " source rows");
  }
  Tensor out = zeros(with_rows(g.shape(), num_src_rows), g.options());
  if (out.numel() == 0 || g.numel() == 0) return out;
  dispatch(
      g, [&] { cpu::segment_max_bwd(out, g, argmax, s); },
      [&] { cuda::segment_max_bwd(out, g, argmax, s); });
  return out;
}

}  // namespace idem::ops
