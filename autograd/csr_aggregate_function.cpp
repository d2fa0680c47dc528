// Differentiable CSR mean aggregation: one node whose backward is one L1 call.
#include "autograd/csr_aggregate_function.h"

#include "core/ops/csr_aggregate.h"
#include "core/ops/index.h"

namespace idem {

CsrAggregateIndex saved_index(const CsrAggregateIndex& i) {
  return {saved(i.row_ptr), saved(i.col), saved(i.src_ptr),  saved(i.src_perm),
          saved(i.perm),    saved(i.dst), saved(i.group_dst)};
}

namespace {

class CsrMeanAggregateNode : public Node {
 public:
  CsrMeanAggregateNode(CsrAggregateIndex index, int64_t sources)
      : index_(std::move(index)), sources_(sources) {}
  const char* name() const override { return "csr_mean_aggregate"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[u] = Σ_{sorted edges k with col[k] = u} g[dst(k)] · inv(dst(k)) : (V, F) -> (U, F)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::csr_mean_aggregate_backward(g, index_, sources_)};
  }

 private:
  CsrAggregateIndex index_;
  int64_t sources_;
};

}  // namespace

Tensor csr_mean_aggregate(const Tensor& x, const CsrAggregateIndex& index) {
  Tensor y = ops::csr_mean_aggregate(x, index);
  if (needs_history({x})) {
    // Fail here, where the caller is, rather than in the middle of backward().
    IDEM_CHECK(index.src_ptr.defined() && index.src_perm.defined() && index.dst.defined(),
               "csr_mean_aggregate",
               "x requires grad, so the index needs its backward fields src_ptr, src_perm and "
               "dst (see csr_aggregate_index or Graph::src_groups)");
    record(std::make_shared<CsrMeanAggregateNode>(saved_index(index), x.size(0)), {x}, y);
  }
  return y;
}

CsrAggregateIndex csr_aggregate_index(const Tensor& src, const Tensor& dst, int64_t num_dst,
                                      int64_t num_src) {
  IDEM_CHECK(src.defined() && dst.defined() && src.dim() == 1 && dst.dim() == 1 &&
                 src.numel() == dst.numel(),
             "csr_aggregate_index", "src and dst must be (E) edge lists of one length, got ",
             src.defined() ? shape_str(src.shape()) : std::string("undefined"), " and ",
             dst.defined() ? shape_str(dst.shape()) : std::string("undefined"));
  CsrIndex rows = build_csr(dst, num_dst);
  Tensor col = ops::index_select(src, 0, rows.perm);
  CsrIndex groups = build_csr(col, num_src);
  // Destination of each source-group entry: dst in row order (= each sorted edge's row), then
  // in group order.
  Tensor group_dst = ops::index_select(ops::index_select(dst, 0, rows.perm), 0, groups.perm);
  return {rows.row_ptr, col, groups.row_ptr, groups.perm, rows.perm, dst, group_dst};
}

}  // namespace idem
