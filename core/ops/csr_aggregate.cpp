// L1 CSR mean aggregation: validate, allocate, dispatch. What is validated where: see
// core/ops/csr_aggregate.h.
#include "core/ops/csr_aggregate.h"

#include <vector>

#include "core/ops/checks.h"

namespace idem::ops {

namespace {

constexpr const char* kFwd = "csr_mean_aggregate";
constexpr const char* kBwd = "csr_mean_aggregate_backward";

// An i64 vector of n entries on `like`'s device.
void check_index(const Tensor& t, int64_t n, const Tensor& like, const char* op, const char* what) {
  check_defined(t, op, what);
  check_dtype(t, DType::i64, op, what);
  IDEM_CHECK(t.dim() == 1 && t.numel() == n, op, what, " must be (", n, "), got ",
             shape_str(t.shape()));
  IDEM_CHECK(t.device() == like.device(), op, what, " is on ", t.device().str(), " but the data ",
             shape_str(like.shape()), " on ", like.device().str());
}

// Shapes shared by both directions: row_ptr (V+1), col (E), and rows to aggregate edges over.
CsrAggregateShape check_forward_index(const CsrAggregateIndex& idx, const Tensor& like,
                                      int64_t sources, const char* op) {
  check_defined(idx.row_ptr, op, "row_ptr");
  check_defined(idx.col, op, "col");
  IDEM_CHECK(idx.row_ptr.numel() >= 1, op, "row_ptr must have V+1 >= 1 entries, got ",
             shape_str(idx.row_ptr.shape()));
  CsrAggregateShape s;
  s.rows = idx.row_ptr.numel() - 1;
  s.sources = sources;
  s.edges = idx.col.numel();
  check_index(idx.row_ptr, s.rows + 1, like, op, "row_ptr");
  check_index(idx.col, s.edges, like, op, "col");
  IDEM_CHECK(s.edges == 0 || (s.rows > 0 && s.sources > 0), op, "a graph with ", s.edges,
             " edges needs source and destination rows, got U = ", s.sources,
             " (x / dx rows) and V = ", s.rows, " (row_ptr ", shape_str(idx.row_ptr.shape()), ")");
  return s;
}

// ---- value checks (CPU tensors only) ----

// ptr starts at 0, never decreases, ends at E.
void check_ptr_values(const Tensor& ptr, int64_t edges, const char* op, const char* what) {
  if (!ptr.device().is_cpu()) return;
  const int64_t* p = ptr.data<int64_t>();
  const int64_t n = ptr.numel();
  IDEM_CHECK(p[0] == 0, op, what, " ", shape_str(ptr.shape()), " must start at 0, got ", p[0]);
  for (int64_t i = 0; i + 1 < n; ++i)
    IDEM_CHECK(p[i + 1] >= p[i], op, what, " ", shape_str(ptr.shape()),
               " must be non-decreasing, but ", what, "[", i + 1, "] = ", p[i + 1], " < ", what,
               "[", i, "] = ", p[i]);
  IDEM_CHECK(p[n - 1] == edges, op, what, " ", shape_str(ptr.shape()), " must end at E = ", edges,
             " (col's length), got ", p[n - 1]);
}

void check_col_values(const Tensor& col, int64_t sources, const char* op) {
  if (!col.device().is_cpu()) return;
  const int64_t* c = col.data<int64_t>();
  for (int64_t k = 0; k < col.numel(); ++k)
    IDEM_CHECK(c[k] >= 0 && c[k] < sources, op, "col ", c[k], " (at sorted edge ", k,
               ") is out of range for ", sources, " source rows");
}

void check_perm_values(const Tensor& perm, const char* op, const char* what) {
  if (!perm.device().is_cpu()) return;
  const int64_t* p = perm.data<int64_t>();
  const int64_t n = perm.numel();
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (int64_t k = 0; k < n; ++k) {
    IDEM_CHECK(p[k] >= 0 && p[k] < n && !seen[p[k]], op, what, " ", shape_str(perm.shape()),
               " must be a permutation of [0, ", n, "), but ", what, "[", k, "] = ", p[k]);
    seen[p[k]] = true;
  }
}

// The backward's structure agrees with the forward's (CPU only; the pieces are already checked
// one by one): group u lists edges whose source is u, and row v's edges have destination v.
void check_consistency(const CsrAggregateIndex& idx, CsrAggregateShape s, const char* op) {
  if (!idx.row_ptr.device().is_cpu()) return;
  const int64_t* col = idx.col.data<int64_t>();
  const int64_t* sp = idx.src_ptr.data<int64_t>();
  const int64_t* sperm = idx.src_perm.data<int64_t>();
  for (int64_t u = 0; u < s.sources; ++u)
    for (int64_t j = sp[u]; j < sp[u + 1]; ++j)
      IDEM_CHECK(col[sperm[j]] == u, op,
                 "src_ptr / src_perm do not group the edges by source: ", "entry ", j,
                 " of source ", u, " is sorted edge ", sperm[j], " whose source is ", col[sperm[j]],
                 " (build them with build_csr(col, U))");
  const int64_t* rp = idx.row_ptr.data<int64_t>();
  const int64_t* perm = idx.perm.defined() ? idx.perm.data<int64_t>() : nullptr;
  const int64_t* dst = idx.dst.data<int64_t>();
  for (int64_t v = 0; v < s.rows; ++v)
    for (int64_t k = rp[v]; k < rp[v + 1]; ++k) {
      const int64_t e = perm ? perm[k] : k;
      IDEM_CHECK(dst[e] == v, op, "dst / perm do not match row_ptr: sorted edge ", k, " (edge ", e,
                 ") lies in row ", v, " but dst says ", dst[e],
                 " (row_ptr and perm must be build_csr(dst, V))");
    }
  // The cached destinations are the chain's, entry for entry (the kernels read only them).
  if (!idx.group_dst.defined()) return;
  const int64_t* gdst = idx.group_dst.data<int64_t>();
  for (int64_t j = 0; j < s.edges; ++j) {
    const int64_t e = perm ? perm[sperm[j]] : sperm[j];
    IDEM_CHECK(gdst[j] == dst[e], op, "group_dst[", j, "] = ", gdst[j],
               " but the destination of that source-group entry is dst[perm[src_perm[", j,
               "]]] = ", dst[e],
               " (group_dst must be Graph::src_groups_dst() or "
               "csr_aggregate_index's)");
  }
}

}  // namespace

CsrAggregateShape csr_mean_aggregate_shape(const Tensor& x, const CsrAggregateIndex& idx,
                                            const char* op) {
  check_rows_tensor(x, op, "x");
  CsrAggregateShape s = check_forward_index(idx, x, x.size(0), op);
  s.features = row_features(x.shape());
  check_ptr_values(idx.row_ptr, s.edges, op, "row_ptr");
  check_col_values(idx.col, s.sources, op);
  return s;
}

Tensor csr_mean_aggregate(const Tensor& x, const CsrAggregateIndex& idx) {
  const CsrAggregateShape s = csr_mean_aggregate_shape(x, idx, kFwd);
  Tensor out = empty(with_rows(x.shape(), s.rows), x.options());
  if (out.numel() == 0) return out;
  dispatch(
      x, [&] { cpu::csr_mean_aggregate_fwd(out, x, idx, s); },
      [&] { cuda::csr_mean_aggregate_fwd(out, x, idx, s); });
  return out;
}

Tensor csr_mean_aggregate_backward(const Tensor& g, const CsrAggregateIndex& idx,
                                   int64_t num_src_rows, const Tensor& add) {
  check_rows_tensor(g, kBwd, "grad");
  IDEM_CHECK(num_src_rows >= 0, kBwd, "num_src_rows must be >= 0, got ", num_src_rows);
  CsrAggregateShape s = check_forward_index(idx, g, num_src_rows, kBwd);
  s.features = row_features(g.shape());
  IDEM_CHECK(g.size(0) == s.rows, kBwd, "grad ", shape_str(g.shape()), " must have V = ", s.rows,
             " rows (row_ptr ", shape_str(idx.row_ptr.shape()), ")");
  check_index(idx.src_ptr, num_src_rows + 1, g, kBwd, "src_ptr");
  check_index(idx.src_perm, s.edges, g, kBwd, "src_perm");
  check_index(idx.dst, s.edges, g, kBwd, "dst");
  if (idx.perm.defined()) check_index(idx.perm, s.edges, g, kBwd, "perm");
  if (idx.group_dst.defined()) check_index(idx.group_dst, s.edges, g, kBwd, "group_dst");
  check_ptr_values(idx.row_ptr, s.edges, kBwd, "row_ptr");
  check_ptr_values(idx.src_ptr, s.edges, kBwd, "src_ptr");
  check_col_values(idx.col, s.sources, kBwd);
  check_perm_values(idx.src_perm, kBwd, "src_perm");
  if (idx.perm.defined()) check_perm_values(idx.perm, kBwd, "perm");
  check_consistency(idx, s, kBwd);
  // Every row of dx is written by the kernel (0 for a source without out-edges).
  Tensor dx = empty(with_rows(g.shape(), num_src_rows), g.options());
  if (add.defined()) {
    IDEM_CHECK(add.shape() == dx.shape() && add.dtype() == dx.dtype() &&
                   add.device() == dx.device(),
               kBwd, "add must be the gradient's shape, dtype and device: expected ",
               dtype_name(dx.dtype()), " ", shape_str(dx.shape()), " on ", dx.device().str(),
               ", got ", dtype_name(add.dtype()), " ", shape_str(add.shape()), " on ",
               add.device().str());
  }
  if (dx.numel() == 0) return dx;
  dispatch(
      g, [&] { cpu::csr_mean_aggregate_bwd(dx, g, idx, s, add); },
      [&] { cuda::csr_mean_aggregate_bwd(dx, g, idx, s, add); });
  return dx;
}

}  // namespace idem::ops
