// Differentiable graph ops: scatters by an unsorted index, segment sums over a CSR, global
// pooling. Every forward is a segment reduction over a stable CSR view (core/ops/segment.h); the
// backwards are data movement:
//   scatter_add:  dsrc = index_select(g, index)          (a gather, no sort needed)
//   segment_sum:  dsrc = g's rows repeated per edge      (segment_expand)
//   mean:         the same, divided by the row's count
//   max:          g routed to the saved argmax source row, zeros elsewhere.
// Pooling is a scatter over the batch vector, so nodes of one graph need not be contiguous.
#include "autograd/segment_functions.h"

#include "core/ops/index.h"
#include "core/ops/segment.h"

namespace idem {

namespace {

class ScatterAddNode : public Node {
 public:
  ScatterAddNode(const char* name, Tensor index) : name_(name), index_(std::move(index)) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dsrc[e] = g[index[e]] : (V, F) -> (E, F)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::index_select(g, 0, index_)};
  }

 private:
  const char* name_;
  Tensor index_;
};

// x[index] with a precomputed grouping of `index` for the backward.
class IndexSelectGroupedNode : public Node {
 public:
  explicit IndexSelectGroupedNode(CsrIndex groups) : groups_(std::move(groups)) {}
  const char* name() const override { return "index_select_grouped"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[r] = Σ_{j: index[j] = r} g[j], in increasing j : (J, F) -> (rows, F)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::segment_reduce(g, groups_.row_ptr, groups_.perm, SegmentOp::sum, nullptr,
                                "index_select_grouped backward")};
  }

 private:
  CsrIndex groups_;
};

// Sum or mean over a CSR (perm undefined: src rows already in row order).
class SegmentSumNode : public Node {
 public:
  SegmentSumNode(const char* name, Tensor row_ptr, Tensor perm, int64_t edges, bool mean)
      : name_(name),
        row_ptr_(std::move(row_ptr)),
        perm_(std::move(perm)),
        edges_(edges),
        mean_(mean) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // sum:  dsrc[p(k)] = g[v]             for k in [row_ptr[v], row_ptr[v+1]) : (V, F) -> (E, F)
    // mean: dsrc[p(k)] = g[v] / count(v)  (same shapes)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::segment_expand(g, row_ptr_, perm_, edges_, mean_)};
  }

 private:
  const char* name_;
  Tensor row_ptr_, perm_;
  int64_t edges_;
  bool mean_;
};

class SegmentMaxNode : public Node {
 public:
  SegmentMaxNode(const char* name, Tensor argmax, int64_t edges)
      : name_(name), argmax_(std::move(argmax)), edges_(edges) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dsrc[argmax[v, f], f] = g[v, f], 0 elsewhere : (V, F) -> (E, F)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::segment_max_backward(g, argmax_, edges_)};
  }

 private:
  const char* name_;
  Tensor argmax_;
  int64_t edges_;
};

Tensor scatter_add_impl(const Tensor& src, const Tensor& index, int64_t num_rows,
                        const char* name) {
  Tensor y = ops::scatter_rows(src, index, num_rows, SegmentOp::sum, nullptr, nullptr, name);
  if (needs_history({src})) record(std::make_shared<ScatterAddNode>(name, saved(index)), {src}, y);
  return y;
}

Tensor scatter_mean_impl(const Tensor& src, const Tensor& index, int64_t num_rows,
                         const char* name) {
  ops::Csr csr;
  Tensor y = ops::scatter_rows(src, index, num_rows, SegmentOp::mean, nullptr, &csr, name);
  if (needs_history({src}))
    record(std::make_shared<SegmentSumNode>(name, csr.row_ptr, csr.perm, src.size(0), true), {src},
           y);
  return y;
}

Tensor scatter_max_impl(const Tensor& src, const Tensor& index, int64_t num_rows,
                        const char* name) {
  Tensor argmax;
  Tensor y = ops::scatter_rows(src, index, num_rows, SegmentOp::max, &argmax, nullptr, name);
  if (needs_history({src}))
    record(std::make_shared<SegmentMaxNode>(name, argmax, src.size(0)), {src}, y);
  return y;
}

}  // namespace

Tensor scatter_add_rows(const Tensor& src, const Tensor& index, int64_t num_rows) {
  return scatter_add_impl(src, index, num_rows, "scatter_add_rows");
}

Tensor scatter_mean_rows(const Tensor& src, const Tensor& index, int64_t num_rows) {
  return scatter_mean_impl(src, index, num_rows, "scatter_mean_rows");
}

Tensor scatter_max_rows(const Tensor& src, const Tensor& index, int64_t num_rows) {
  return scatter_max_impl(src, index, num_rows, "scatter_max_rows");
}

Tensor segment_sum_csr(const Tensor& src, const Tensor& row_ptr) {
  const char* name = "segment_sum_csr";
  Tensor y = ops::segment_reduce(src, row_ptr, Tensor(), SegmentOp::sum, nullptr, name);
  if (needs_history({src}))
    record(std::make_shared<SegmentSumNode>(name, saved(row_ptr), Tensor(), src.size(0), false),
           {src}, y);
  return y;
}

CsrIndex build_csr(const Tensor& dst_index, int64_t num_rows) {
  ops::Csr c = ops::build_csr(dst_index, num_rows, "build_csr");
  return {c.row_ptr, c.perm};
}

Tensor global_add_pool(const Tensor& x, const Tensor& batch, int64_t num_graphs) {
  return scatter_add_impl(x, batch, num_graphs, "global_add_pool");
}

Tensor global_mean_pool(const Tensor& x, const Tensor& batch, int64_t num_graphs) {
  return scatter_mean_impl(x, batch, num_graphs, "global_mean_pool");
}

Tensor global_max_pool(const Tensor& x, const Tensor& batch, int64_t num_graphs) {
  return scatter_max_impl(x, batch, num_graphs, "global_max_pool");
}

Tensor index_select_grouped(const Tensor& x, const Tensor& index, const CsrIndex& groups) {
  IDEM_CHECK(x.dim() >= 1 && groups.row_ptr.defined() && groups.row_ptr.numel() == x.size(0) + 1 &&
                 groups.perm.defined() && groups.perm.numel() == index.numel(),
             "index_select_grouped", "groups (row_ptr ", shape_str(groups.row_ptr.shape()), ", perm ",
             shape_str(groups.perm.shape()), ") do not match x ", shape_str(x.shape()), " and index ",
             shape_str(index.shape()), ": build them with build_csr(index, x.size(0))");
  Tensor y = ops::index_select(x, 0, index);
  if (needs_history({x})) record(std::make_shared<IndexSelectGroupedNode>(groups), {x}, y);
  return y;
}

Tensor segment_mean_grouped(const Tensor& src, const CsrIndex& groups) {
  IDEM_CHECK(src.dim() >= 1 && groups.perm.defined() && groups.perm.numel() == src.size(0),
             "segment_mean_grouped", "groups cover ", groups.perm.defined() ? groups.perm.numel() : 0,
             " rows but src is ", shape_str(src.shape()));
  Tensor y = ops::segment_reduce(src, groups.row_ptr, groups.perm, SegmentOp::mean, nullptr,
                                 "segment_mean_grouped");
  if (needs_history({src}))
    record(std::make_shared<SegmentSumNode>("segment_mean_grouped", groups.row_ptr, groups.perm,
                                            src.size(0), true),
           {src}, y);
  return y;
}

}  // namespace idem
