// Level L3: Graph — the connectivity that GNN layers run on, one graph or a batch of graphs.
//
// Edges go from edge_index[0] (source) to edge_index[1] (destination), as PyG's default
// "source_to_target" flow: a node aggregates messages from its in-neighbours. An undirected
// graph lists both directions. A batch of graphs is one big disconnected graph whose `batch`
// vector says which graph each node belongs to (batch_graphs builds it).
//
// The layers need the edges sorted by destination (a CSR) to aggregate deterministically
// without atomics; it is built once per graph on first use and cached. The cache follows the
// edge_index *tensor* (a new edge_index or num_nodes rebuilds it); if you overwrite edge_index's
// values in place, call invalidate_cache().
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/segment_functions.h"

namespace idem {

// Edges sorted by destination, on the graph's device.
struct GraphCsr {
  Tensor row_ptr;     // (V+1) i64: the edges of node v are [row_ptr[v], row_ptr[v+1])
  Tensor perm;        // (E) i64: sorted edge k is original edge perm[k]
  Tensor src_sorted;  // (E) i64: source of sorted edge k
};

// GCN's propagation graph: the edges plus a self loop for every node lacking one
// (add_remaining_self_loops), sorted by destination, with the symmetric normalization
// w_e = d_src^-1/2 · ew_e · d_dst^-1/2, d = weighted in-degree including the loops.
struct GcnGraph {
  Tensor row_ptr;     // (V+1) i64
  Tensor src_sorted;  // (E') i64
  Tensor norm;        // (E', 1) in the requested floating dtype
};

struct Graph {
  int64_t num_nodes = 0;
  Tensor edge_index;   // (2, E) i64: row 0 sources, row 1 destinations, values in [0, V)
  Tensor edge_attr;    // optional (E, D) floating: pseudo-coordinates / edge features
  Tensor edge_weight;  // optional (E) floating: scalar edge weights (GCNConv uses them)
  Tensor batch;        // optional (V) i64: graph of each node in [0, num_graphs); undefined = 0
  int64_t num_graphs = 1;
  Tensor x;  // optional (V, F) node features
  Tensor y;  // optional targets: (num_graphs, *) graph-level or (V, *) node-level

  Graph() = default;
  Graph(int64_t num_nodes_, Tensor edge_index_, Tensor edge_attr_ = Tensor());
  // From host edge lists: edges (src[k] -> dst[k]).
  static Graph from_edges(int64_t num_nodes, const std::vector<int64_t>& src,
                          const std::vector<int64_t>& dst, Device device = Device::cpu());

  int64_t num_edges() const { return edge_index.defined() ? edge_index.size(1) : 0; }
  Device device() const;
  // Rows of edge_index as (E) views.
  Tensor src() const;
  Tensor dst() const;
  // `batch`, or zeros (V) when undefined (a single graph); cached.
  Tensor batch_vector() const;

  // Throws idem::Error naming the bad field: shapes, dtypes, devices; index ranges are checked
  // for CPU tensors (a GPU graph's values are not read back).
  void validate() const;
  // A copy with every tensor on `device` (the cache is not carried over).
  Graph to(Device device) const;

  // ---- cached derived structure ----
  const GraphCsr& csr() const;
  // Groupings for index_select_grouped's backward, built once per graph: the CSR edges grouped
  // by source node (mean aggregation gathers x[src_sorted]) and the nodes grouped by graph
  // (a graph-level signal is gathered with batch).
  const CsrIndex& src_groups() const;
  // (E) i64 on the graph's device: the destination node of entry j of src_groups(), i.e.
  // dst()[csr().perm[src_groups().perm[j]]]. Mean aggregation's backward walks the edges by
  // source and reads it to find each gradient row with one load (CsrAggregateIndex::group_dst).
  const Tensor& src_groups_dst() const;
  const CsrIndex& batch_groups() const;
  // 1 / max(in-degree, 1) as (V, 1) of `dtype`: mean aggregation = segment sum · this.
  const Tensor& inv_in_degree(DType dtype) const;
  // edge_attr in CSR order (E, D) (cached unless edge_attr requires grad).
  Tensor edge_attr_sorted() const;
  // Built on the host once per graph (a GPU graph's edge_index is copied down once).
  const GcnGraph& gcn_graph(DType dtype, bool add_self_loops = true) const;
  void invalidate_cache() const;

 private:
  struct Cache;
  std::shared_ptr<Cache> cache() const;
  mutable std::shared_ptr<Cache> cache_;
};

// One disconnected graph holding all of `graphs`: node ids offset, batch vector set (a graph
// that is itself a batch keeps its sub-graphs), optional fields concatenated (x, y, edge_attr,
// edge_weight must be present in all graphs or in none). requires: non-empty, one device.
Graph batch_graphs(const std::vector<Graph>& graphs);

}  // namespace idem
