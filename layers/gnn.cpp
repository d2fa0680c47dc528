#include "layers/gnn.h"

#include "autograd/csr_aggregate_function.h"
#include "autograd/fused_functions.h"
#include "autograd/sage_conv_function.h"
#include "layers/init.h"

namespace idem {

namespace {

// x must be (V, in) on the graph's device, V = g.num_nodes.
void check_node_input(const char* op, const Tensor& x, const Graph& g, int64_t in) {
  IDEM_CHECK(x.defined() && x.dim() == 2 && x.size(0) == g.num_nodes && (in < 0 || x.size(1) == in),
             op, "expected node features (", g.num_nodes, ", ",
             in < 0 ? std::string("F") : std::to_string(in), "), got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  IDEM_CHECK(g.edge_index.defined() && x.device() == g.device(), op, "node features on ",
             x.device().str(), " but the graph's edge_index on ",
             g.edge_index.defined() ? g.device().str() : std::string("(undefined)"));
}

}  // namespace

CsrAggregateIndex mean_aggregate_index(const Graph& g) {
  const GraphCsr& c = g.csr();
  const CsrIndex& s = g.src_groups();
  return {c.row_ptr, c.src_sorted, s.row_ptr, s.perm, c.perm, g.dst(), g.src_groups_dst()};
}

Tensor mean_aggregate(const Tensor& x, const Graph& g) {
  // mean_v = (Σ_{e in row v} x[src_e]) / max(deg_v, 1) : (V,F) -> (V,F), one fused op with the
  // bits of segment_sum_csr(index_select_grouped(x, c.src_sorted, s), c.row_ptr) ·
  // g.inv_in_degree(x.dtype()) and no (E,F) edge tensor (tests/csr_aggregate_test.cpp).
  return csr_mean_aggregate(x, mean_aggregate_index(g));
}

// ---- GCNConv ----

GCNConv::GCNConv(int64_t in_channels, int64_t out_channels, bool bias, bool add_self_loops,
                 Options options, std::optional<uint64_t> seed)
    : GraphLayer("GCNConv"), in_(in_channels), out_(out_channels), self_loops_(add_self_loops) {
  const uint64_t s = init::resolve_seed(seed);
  // PyG registers bias on the layer and the weight inside `lin` (glorot, no bias).
  if (bias) bias_ = register_parameter("bias", zeros({out_}, options));
  lin_ = register_module("lin", std::make_shared<Linear>(in_, out_, false, options, s));
  init::glorot_(lin_->weight(), s, 2);
}

Tensor GCNConv::forward(const Tensor& x, const Graph& g) {
  check_node_input("GCNConv", x, g, in_);
  const GcnGraph& gg = g.gcn_graph(x.dtype(), self_loops_);
  Tensor h = lin_->forward(x);  // (V, out)
  // out_v = Σ_{e: u→v} norm_e · h_u : (E',out)·(E',1) -> segment sum -> (V,out)
  Tensor out = segment_sum_csr(index_select(h, 0, gg.src_sorted) * gg.norm, gg.row_ptr);
  return bias_.defined() ? out + bias_ : out;
}

std::string GCNConv::extra_repr() const {
  return std::to_string(in_) + ", " + std::to_string(out_);
}

std::shared_ptr<Module> GCNConv::clone_impl() const {
  return std::make_shared<GCNConv>(in_, out_, bias_.defined(), self_loops_,
                                   Options{lin_->weight().dtype()}, 0);
}

// ---- SAGEConv ----

SAGEConv::SAGEConv(int64_t in_channels, int64_t out_channels, bool bias, bool root_weight,
                   Options options, std::optional<uint64_t> seed)
    : GraphLayer("SAGEConv"),
      in_(in_channels),
      out_(out_channels),
      bias_(bias),
      root_(root_weight) {
  const uint64_t s = init::resolve_seed(seed);
  lin_l_ = register_module(
      "lin_l", std::make_shared<Linear>(in_, out_, bias, options, init::derive_seed(s, 0)));
  if (root_weight)
    lin_r_ = register_module(
        "lin_r", std::make_shared<Linear>(in_, out_, false, options, init::derive_seed(s, 1)));
}

Tensor SAGEConv::forward(const Tensor& x, const Graph& g) {
  return forward_act(x, g, FusedAct::none);
}

Tensor SAGEConv::forward_act(const Tensor& x, const Graph& g, FusedAct act, double slope) {
  check_node_input("SAGEConv", x, g, in_);
  // act(lin_l(mean) + lin_r(x)) : (V,in) -> (V,out), bias = lin_l's (lin_r has none). With the
  // root weight: one op for the aggregation and both linear maps (on a GPU one kernel where
  // sage_conv_path() allows); without: the aggregation, then linear_act.
  if (!lin_r_) return linear_act(mean_aggregate(x, g), lin_l_->weight(), lin_l_->bias(), act, slope);
  return sage_conv(x, mean_aggregate_index(g), lin_l_->weight(), lin_l_->bias(), lin_r_->weight(),
                   act, slope);
}

std::string SAGEConv::extra_repr() const {
  return std::to_string(in_) + ", " + std::to_string(out_) + ", aggr=mean";
}

std::shared_ptr<Module> SAGEConv::clone_impl() const {
  return std::make_shared<SAGEConv>(in_, out_, bias_, root_, Options{lin_l_->weight().dtype()}, 0);
}

// ---- GMMConv ----

GMMConv::GMMConv(int64_t in_channels, int64_t out_channels, int64_t dim, int64_t kernel_size,
                 bool bias, bool root_weight, Options options, std::optional<uint64_t> seed)
    : GraphLayer("GMMConv"),
      in_(in_channels),
      out_(out_channels),
      dim_(dim),
      k_(kernel_size),
      root_weight_(root_weight) {
  IDEM_CHECK(in_ > 0 && out_ > 0 && dim_ > 0 && k_ > 0, "GMMConv",
             "in_channels, out_channels, dim and kernel_size must be positive, got ", in_, ", ",
             out_, ", ", dim_, ", ", k_);
  const uint64_t s = init::resolve_seed(seed);
  g_ = register_parameter("g", empty({in_, k_ * out_}, options));
  mu_ = register_parameter("mu", empty({k_, dim_}, options));
  sigma_ = register_parameter("sigma", empty({k_, dim_}, options));
  init::glorot_(g_, s, 0);
  init::glorot_(mu_, s, 1);
  init::glorot_(sigma_, s, 2);
  if (bias) bias_ = register_parameter("bias", zeros({out_}, options));
  if (root_weight) {
    root_ = register_module("root", std::make_shared<Linear>(in_, out_, false, options, s));
    init::glorot_(root_->weight(), s, 3);
  }
}

Tensor GMMConv::edge_weights(const Graph& g) const {
  IDEM_CHECK(g.edge_attr.defined() && g.edge_attr.dim() == 2 && g.edge_attr.size(1) == dim_ &&
                 g.edge_attr.dtype() == mu_.dtype(),
             "GMMConv", "expected edge_attr ", dtype_name(mu_.dtype()), " (E, ", dim_, "), got ",
             g.edge_attr.defined() ? std::string(dtype_name(g.edge_attr.dtype())) + " " +
                                         shape_str(g.edge_attr.shape())
                                   : std::string("undefined"));
  Tensor u = g.edge_attr_sorted();  // (E, D)
  const int64_t e = u.size(0);
  // −½ (u_ed − μ_kd)² / (ε + σ_kd²) : (E,1,D) − (1,K,D) -> (E,K,D); Σ_d, exp -> (E,K)
  Tensor diff = reshape(u, {e, 1, dim_}) - reshape(mu_, {1, k_, dim_});
  Tensor expo = (square(diff) * -0.5) / (square(reshape(sigma_, {1, k_, dim_})) + 1e-15);
  return exp(sum(expo, {2}));
}

Tensor GMMConv::forward(const Tensor& x, const Graph& g) {
  check_node_input("GMMConv", x, g, in_);
  const GraphCsr& c = g.csr();
  const int64_t e = g.num_edges();
  Tensor w = edge_weights(g);                                // (E, K)
  Tensor xj = index_select(matmul(x, g_), 0, c.src_sorted);  // (V,F)(F,K·M) -> gather -> (E,K·M)
  // message_e = Σ_k w_ek · xj_e[k] : (E,K,M)·(E,K,1) -> Σ_k -> (E,M)
  Tensor msg = sum(reshape(xj, {e, k_, out_}) * reshape(w, {e, k_, 1}), {1});
  Tensor out = segment_sum_csr(msg, c.row_ptr) * g.inv_in_degree(x.dtype());
  if (root_) out = out + root_->forward(x);
  return bias_.defined() ? out + bias_ : out;
}

std::string GMMConv::extra_repr() const {
  return std::to_string(in_) + ", " + std::to_string(out_) + ", dim=" + std::to_string(dim_) +
         ", kernel_size=" + std::to_string(k_);
}

std::shared_ptr<Module> GMMConv::clone_impl() const {
  return std::make_shared<GMMConv>(in_, out_, dim_, k_, bias_.defined(), root_weight_,
                                   Options{g_.dtype()}, 0);
}

// ---- global pooling ----

GlobalPool::GlobalPool(GraphPool kind)
    : GraphLayer(kind == GraphPool::add    ? "GlobalAddPool"
                 : kind == GraphPool::mean ? "GlobalMeanPool"
                                           : "GlobalMaxPool"),
      kind_(kind) {}

Tensor GlobalPool::forward(const Tensor& x, const Graph& g) {
  check_node_input(type_name().c_str(), x, g, -1);
  const Tensor b = g.batch_vector();
  switch (kind_) {
    case GraphPool::add:
      return global_add_pool(x, b, g.num_graphs);
    case GraphPool::mean:
      return global_mean_pool(x, b, g.num_graphs);
    case GraphPool::max:
      return global_max_pool(x, b, g.num_graphs);
  }
  fail(type_name(), "unknown pooling kind");
}

std::string GlobalPool::extra_repr() const {
  return "";
}

std::shared_ptr<Module> GlobalPool::clone_impl() const {
  return std::make_shared<GlobalPool>(kind_);
}

}  // namespace idem
