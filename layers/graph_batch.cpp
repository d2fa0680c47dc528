#include "layers/graph_batch.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace idem {

struct Graph::Cache {
  // What the cache was built from: a held reference (not a raw address) so a new tensor can
  // never be mistaken for the old one.
  std::shared_ptr<TensorImpl> edge_ref;
  int64_t num_nodes = -1;

  bool has_csr = false;
  GraphCsr csr;
  CsrIndex src_groups, batch_groups;
  Tensor src_groups_dst;
  std::map<DType, Tensor> inv_deg;
  Tensor batch_zeros;
  std::shared_ptr<TensorImpl> attr_ref;
  Tensor attr_sorted;
  struct GcnEntry {
    std::shared_ptr<TensorImpl> weight_ref;
    GcnGraph g;
  };
  std::map<std::pair<DType, bool>, GcnEntry> gcn;
};

namespace {

std::string field(const Tensor& t) {
  return t.defined() ? std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape()) + " on " +
                           t.device().str()
                     : std::string("undefined");
}

void check_range(const Tensor& t, int64_t high, const char* what) {
  if (!t.device().is_cpu() || t.numel() == 0) return;
  const int64_t* p = t.data<int64_t>();
  for (int64_t k = 0; k < t.numel(); ++k)
    IDEM_CHECK(p[k] >= 0 && p[k] < high, "Graph", what, " value ", p[k], " at position ", k,
               " is out of range [0, ", high, ")");
}

}  // namespace

Graph::Graph(int64_t num_nodes_, Tensor edge_index_, Tensor edge_attr_)
    : num_nodes(num_nodes_), edge_index(std::move(edge_index_)), edge_attr(std::move(edge_attr_)) {
  validate();
}

Graph Graph::from_edges(int64_t num_nodes, const std::vector<int64_t>& src,
                        const std::vector<int64_t>& dst, Device device) {
  IDEM_CHECK(src.size() == dst.size(), "Graph", "from_edges got ", src.size(), " sources and ",
             dst.size(), " destinations");
  std::vector<int64_t> ei(src);
  ei.insert(ei.end(), dst.begin(), dst.end());
  const int64_t e = static_cast<int64_t>(src.size());
  Graph g;
  g.num_nodes = num_nodes;
  g.edge_index = from_vector<int64_t>(ei, {2, e}, Device::cpu());
  g.validate();  // on the host, where the ranges can be checked
  if (device != Device::cpu()) g.edge_index = g.edge_index.to(device);
  return g;
}

Device Graph::device() const {
  return edge_index.defined() ? edge_index.device() : x.defined() ? x.device() : Device::cpu();
}

Tensor Graph::src() const {
  IDEM_CHECK(edge_index.defined(), "Graph", "edge_index is undefined");
  return edge_index.slice0(0, 1).view_as_shape({num_edges()});
}

Tensor Graph::dst() const {
  IDEM_CHECK(edge_index.defined(), "Graph", "edge_index is undefined");
  return edge_index.slice0(1, 2).view_as_shape({num_edges()});
}

void Graph::validate() const {
  IDEM_CHECK(num_nodes >= 0, "Graph", "num_nodes must be >= 0, got ", num_nodes);
  IDEM_CHECK(edge_index.defined() && edge_index.dtype() == DType::i64 && edge_index.dim() == 2 &&
                 edge_index.size(0) == 2,
             "Graph", "edge_index must be i64 (2, E), got ", field(edge_index));
  const int64_t e = num_edges();
  const Device dev = edge_index.device();
  check_range(edge_index, num_nodes, "edge_index");
  if (edge_attr.defined())
    IDEM_CHECK(is_floating(edge_attr.dtype()) && edge_attr.dim() == 2 && edge_attr.size(0) == e &&
                   edge_attr.device() == dev,
               "Graph", "edge_attr must be floating (E, D) with E = ", e, " on ", dev.str(),
               ", got ", field(edge_attr));
  if (edge_weight.defined())
    IDEM_CHECK(is_floating(edge_weight.dtype()) && edge_weight.dim() == 1 &&
                   edge_weight.size(0) == e && edge_weight.device() == dev,
               "Graph", "edge_weight must be floating (E) with E = ", e, " on ", dev.str(),
               ", got ", field(edge_weight));
  IDEM_CHECK(num_graphs >= 1, "Graph", "num_graphs must be >= 1, got ", num_graphs);
  if (batch.defined()) {
    IDEM_CHECK(batch.dtype() == DType::i64 && batch.dim() == 1 && batch.size(0) == num_nodes &&
                   batch.device() == dev,
               "Graph", "batch must be i64 (V) with V = ", num_nodes, " on ", dev.str(), ", got ",
               field(batch));
    check_range(batch, num_graphs, "batch");
  }
  if (x.defined())
    IDEM_CHECK(x.dim() >= 1 && x.size(0) == num_nodes && x.device() == dev, "Graph",
               "x must have V = ", num_nodes, " rows on ", dev.str(), ", got ", field(x));
  if (y.defined())
    IDEM_CHECK(
        y.dim() >= 1 && (y.size(0) == num_graphs || y.size(0) == num_nodes) && y.device() == dev,
        "Graph", "y must have num_graphs = ", num_graphs, " or V = ", num_nodes, " rows on ",
        dev.str(), ", got ", field(y));
}

Graph Graph::to(Device device) const {
  auto mv = [&](const Tensor& t) { return t.defined() ? t.to(device) : t; };
  Graph g;
  g.num_nodes = num_nodes;
  g.num_graphs = num_graphs;
  g.edge_index = mv(edge_index);
  g.edge_attr = mv(edge_attr);
  g.edge_weight = mv(edge_weight);
  g.batch = mv(batch);
  g.x = mv(x);
  g.y = mv(y);
  return g;
}

// ---- cache ----

std::shared_ptr<Graph::Cache> Graph::cache() const {
  IDEM_CHECK(edge_index.defined(), "Graph", "edge_index is undefined");
  if (!cache_ || cache_->edge_ref != edge_index.impl_ptr() || cache_->num_nodes != num_nodes) {
    cache_ = std::make_shared<Cache>();
    cache_->edge_ref = edge_index.impl_ptr();
    cache_->num_nodes = num_nodes;
  }
  return cache_;
}

void Graph::invalidate_cache() const {
  cache_.reset();
}

const GraphCsr& Graph::csr() const {
  auto c = cache();
  if (!c->has_csr) {
    NoGradGuard no_grad;
    CsrIndex idx = build_csr(dst(), num_nodes);
    c->csr.row_ptr = idx.row_ptr;
    c->csr.perm = idx.perm;
    c->csr.src_sorted = index_select(src(), 0, idx.perm);
    c->has_csr = true;
  }
  return c->csr;
}

const CsrIndex& Graph::src_groups() const {
  auto c = cache();
  if (!c->src_groups.row_ptr.defined()) {
    NoGradGuard no_grad;
    c->src_groups = build_csr(csr().src_sorted, num_nodes);
  }
  return c->src_groups;
}

const Tensor& Graph::src_groups_dst() const {
  auto c = cache();
  if (!c->src_groups_dst.defined()) {
    NoGradGuard no_grad;
    // dst in CSR order (sorted edge k's destination), then in source-group order.
    const Tensor dst_sorted = index_select(dst(), 0, csr().perm);
    c->src_groups_dst = index_select(dst_sorted, 0, src_groups().perm);
  }
  return c->src_groups_dst;
}

const CsrIndex& Graph::batch_groups() const {
  auto c = cache();
  if (!c->batch_groups.row_ptr.defined()) {
    NoGradGuard no_grad;
    c->batch_groups = build_csr(batch_vector(), num_graphs);
  }
  return c->batch_groups;
}

const Tensor& Graph::inv_in_degree(DType dtype) const {
  IDEM_CHECK(is_floating(dtype), "Graph", "inv_in_degree needs a floating dtype, got ",
             dtype_name(dtype));
  auto c = cache();
  Tensor& slot = c->inv_deg[dtype];
  if (!slot.defined()) {
    const Tensor& rp = csr().row_ptr;
    NoGradGuard no_grad;
    const int64_t v = num_nodes;
    // in-degree(v) = row_ptr[v+1] − row_ptr[v]; 1/max(deg, 1) so isolated nodes get 0, not NaN.
    Tensor deg = (narrow(rp, 0, 1, v) - narrow(rp, 0, 0, v)).to(dtype);
    deg = maximum(deg, full({1}, 1.0, {dtype, rp.device()}));
    slot = reshape(rdiv(1.0, deg), {v, 1});
  }
  return slot;
}

Tensor Graph::batch_vector() const {
  if (batch.defined()) return batch;
  auto c = cache();
  if (!c->batch_zeros.defined()) c->batch_zeros = zeros({num_nodes}, {DType::i64, device()});
  return c->batch_zeros;
}

Tensor Graph::edge_attr_sorted() const {
  IDEM_CHECK(edge_attr.defined(), "Graph", "edge_attr is undefined");
  const Tensor& perm = csr().perm;
  if (edge_attr.requires_grad()) return index_select(edge_attr, 0, perm);
  auto c = cache();
  if (c->attr_ref != edge_attr.impl_ptr()) {
    c->attr_sorted = index_select(edge_attr, 0, perm);
    c->attr_ref = edge_attr.impl_ptr();
  }
  return c->attr_sorted;
}

const GcnGraph& Graph::gcn_graph(DType dtype, bool add_self_loops) const {
  IDEM_CHECK(is_floating(dtype), "GCNConv", "needs a floating dtype, got ", dtype_name(dtype));
  auto c = cache();
  auto& entry = c->gcn[{dtype, add_self_loops}];
  const std::shared_ptr<TensorImpl> wref = edge_weight.defined() ? edge_weight.impl_ptr() : nullptr;
  if (entry.g.row_ptr.defined() && entry.weight_ref == wref) return entry.g;

  // On the host: edges + remaining self loops, weighted in-degrees, per-edge normalization.
  const int64_t v = num_nodes, e = num_edges();
  const std::vector<int64_t> ei = edge_index.to_vector<int64_t>();
  std::vector<double> ew =
      edge_weight.defined() ? edge_weight.to_vector<double>() : std::vector<double>(e, 1.0);
  std::vector<int64_t> src(ei.begin(), ei.begin() + e), dst(ei.begin() + e, ei.end());
  if (add_self_loops) {
    std::vector<char> has_loop(v, 0);
    for (int64_t k = 0; k < e; ++k)
      if (src[k] == dst[k]) has_loop[src[k]] = 1;
    for (int64_t n = 0; n < v; ++n)
      if (!has_loop[n]) src.push_back(n), dst.push_back(n), ew.push_back(1.0);
  }
  const int64_t ep = static_cast<int64_t>(src.size());
  std::vector<double> deg(v, 0.0);
  for (int64_t k = 0; k < ep; ++k) deg[dst[k]] += ew[k];
  std::vector<double> dis(v);
  for (int64_t n = 0; n < v; ++n) dis[n] = deg[n] > 0 ? 1.0 / std::sqrt(deg[n]) : 0.0;
  // Stable sort by destination, then CSR row pointers.
  std::vector<int64_t> order(ep);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return dst[a] < dst[b]; });
  std::vector<int64_t> row_ptr(v + 1, 0), src_sorted(ep);
  std::vector<double> norm(ep);
  for (int64_t k = 0; k < ep; ++k) {
    const int64_t o = order[k];
    src_sorted[k] = src[o];
    norm[k] = dis[src[o]] * ew[o] * dis[dst[o]];
    ++row_ptr[dst[o] + 1];
  }
  for (int64_t n = 0; n < v; ++n) row_ptr[n + 1] += row_ptr[n];

  const Device dev = device();
  entry.g.row_ptr = from_vector<int64_t>(row_ptr, {v + 1}, dev);
  entry.g.src_sorted = from_vector<int64_t>(src_sorted, {ep}, dev);
  entry.g.norm = from_vector<double>(norm, {ep, 1}, Device::cpu()).to(dtype).to(dev);
  entry.weight_ref = wref;
  return entry.g;
}

// ---- batching ----

Graph batch_graphs(const std::vector<Graph>& graphs) {
  IDEM_CHECK(!graphs.empty(), "batch_graphs", "no graphs given");
  const Device dev = graphs[0].device();
  auto all_or_none = [&](auto get, const char* name) {
    size_t n = 0;
    for (const Graph& g : graphs) n += get(g).defined() ? 1 : 0;
    IDEM_CHECK(n == 0 || n == graphs.size(), "batch_graphs", name, " is defined in ", n, " of ",
               graphs.size(), " graphs (it must be in all or none)");
    return n != 0;
  };
  const bool has_attr = all_or_none([](const Graph& g) { return g.edge_attr; }, "edge_attr");
  const bool has_w = all_or_none([](const Graph& g) { return g.edge_weight; }, "edge_weight");
  const bool has_x = all_or_none([](const Graph& g) { return g.x; }, "x");
  const bool has_y = all_or_none([](const Graph& g) { return g.y; }, "y");

  Graph out;
  std::vector<Tensor> ei, attr, w, batch, xs, ys;
  int64_t node_off = 0, graph_off = 0;
  for (size_t i = 0; i < graphs.size(); ++i) {
    const Graph& g = graphs[i];
    g.validate();
    IDEM_CHECK(g.device() == dev, "batch_graphs", "graph ", i, " is on ", g.device().str(),
               ", graph 0 on ", dev.str());
    {
      NoGradGuard no_grad;  // index arithmetic only
      ei.push_back(node_off == 0 ? g.edge_index
                                 : add(g.edge_index, scalar_tensor(static_cast<double>(node_off),
                                                                   {DType::i64, dev})));
      batch.push_back(g.batch.defined()
                          ? (graph_off == 0
                                 ? g.batch
                                 : add(g.batch, scalar_tensor(static_cast<double>(graph_off),
                                                              {DType::i64, dev})))
                          : full({g.num_nodes}, static_cast<double>(graph_off), {DType::i64, dev}));
    }
    if (has_attr) attr.push_back(g.edge_attr);
    if (has_w) w.push_back(g.edge_weight);
    if (has_x) xs.push_back(g.x);
    if (has_y) ys.push_back(g.y);
    node_off += g.num_nodes;
    graph_off += g.num_graphs;
  }
  out.num_nodes = node_off;
  out.num_graphs = graph_off;
  {
    NoGradGuard no_grad;
    out.edge_index = concat(ei, 1);
    out.batch = concat(batch, 0);
  }
  // Features keep their history: a batch built from differentiable inputs stays differentiable.
  if (has_attr) out.edge_attr = concat(attr, 0);
  if (has_w) out.edge_weight = concat(w, 0);
  if (has_x) out.x = concat(xs, 0);
  if (has_y) out.y = concat(ys, 0);
  out.validate();
  return out;
}

}  // namespace idem
