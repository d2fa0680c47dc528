// Level L3: graph neural network layers — GCNConv, SAGEConv, GMMConv (MoNet) — and global
// pooling, following PyTorch Geometric's definitions, parameter names and initialization so
// results and checkpoints can be compared with PyG.
//
// Every layer aggregates with a segment sum over the graph's cached CSR (edges sorted by
// destination): deterministic, no atomics. x is (V, F_in); the result is (V, F_out).
#pragma once
#include <optional>

#include "core/kernels/csr_aggregate.h"  // CsrAggregateIndex
#include "core/kernels/fused.h"          // FusedAct
#include "layers/graph_batch.h"
#include "layers/linear.h"

namespace idem {

// A module whose forward takes node features and a graph.
class GraphLayer : public Module {
 public:
  using Module::forward;
  using Module::Module;
  using Module::operator();
  virtual Tensor forward(const Tensor& x, const Graph& g) = 0;
  Tensor operator()(const Tensor& x, const Graph& g) { return forward(x, g); }
};

// GCNConv (Kipf & Welling): out = D^-1/2 (A + I) D^-1/2 · (x Wᵀ) + b, with a self loop added
// for every node lacking one and D the (weighted) in-degree including the loops; uses
// g.edge_weight when defined (as a constant: no gradient flows to it). The normalized graph is
// built on the host once per Graph and cached (Graph::gcn_graph). Parameters as PyG:
// "lin.weight" (out, in, glorot), "bias" (zeros).
class GCNConv : public GraphLayer {
 public:
  GCNConv(int64_t in_channels, int64_t out_channels, bool bias = true, bool add_self_loops = true,
          Options options = {}, std::optional<uint64_t> seed = std::nullopt);
  Tensor forward(const Tensor& x, const Graph& g) override;
  std::string extra_repr() const override;
  const std::shared_ptr<Linear>& lin() const { return lin_; }
  const Tensor& bias() const { return bias_; }

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  int64_t in_, out_;
  bool self_loops_;
  std::shared_ptr<Linear> lin_;
  Tensor bias_;
};

// SAGEConv (Hamilton et al.) with mean aggregation, as PyG's default:
//   out_v = lin_l(mean_{u→v} x_u) + lin_r(x_v)
// lin_l (the neighbour transform) has the bias, lin_r (the root transform) none; nodes with no
// in-neighbours aggregate 0. Parameters "lin_l.weight", "lin_l.bias", "lin_r.weight" (PyG's
// names), PyTorch's Linear init. The two transforms, their sum and the bias run as one
// sage_linear op (autograd/sage_linear_function.h): 3 GPU launches instead of 5.
class SAGEConv : public GraphLayer {
 public:
  SAGEConv(int64_t in_channels, int64_t out_channels, bool bias = true, bool root_weight = true,
           Options options = {}, std::optional<uint64_t> seed = std::nullopt);
  // forward_act(x, g, FusedAct::none).
  Tensor forward(const Tensor& x, const Graph& g) override;
  // act(forward(x, g)) with the activation fused into the op (sage_conv, the aggregation and
  // both linear maps in one node; linear_act without root weight): what a model applying relu /
  // leaky_relu (slope >= 0) after the layer calls.
  Tensor forward_act(const Tensor& x, const Graph& g, FusedAct act, double slope = 0.01);
  std::string extra_repr() const override;
  const std::shared_ptr<Linear>& lin_neigh() const { return lin_l_; }
  const std::shared_ptr<Linear>& lin_root() const { return lin_r_; }  // null without root

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  int64_t in_, out_;
  bool bias_, root_;
  std::shared_ptr<Linear> lin_l_, lin_r_;
};

// GMMConv (MoNet, Monti et al.), PyG's GMMConv with separate_gaussians=False, mean aggregation:
//   w_k(e) = exp(−½ Σ_d (u_ed − μ_kd)² / (ε + σ_kd²)),  u = g.edge_attr (E, D), ε = 1e-15
//   out_v  = mean_{e: u→v} Σ_k w_k(e) · (x_u g)[k·M:(k+1)·M]  + x_v rootᵀ + b
// Parameters as PyG: "g" (F_in, K·M), "mu" (K, D), "sigma" (K, D) — all glorot —, "bias" (M,
// zeros), "root.weight" (M, F_in, glorot).
class GMMConv : public GraphLayer {
 public:
  GMMConv(int64_t in_channels, int64_t out_channels, int64_t dim, int64_t kernel_size,
          bool bias = true, bool root_weight = true, Options options = {},
          std::optional<uint64_t> seed = std::nullopt);
  Tensor forward(const Tensor& x, const Graph& g) override;
  std::string extra_repr() const override;
  const Tensor& g() const { return g_; }
  const Tensor& mu() const { return mu_; }
  const Tensor& sigma() const { return sigma_; }
  const Tensor& bias() const { return bias_; }
  const std::shared_ptr<Linear>& root() const { return root_; }  // null without root weight
  // The Gaussian weights w (E, K) of the edges in CSR order (exposed for tests and analysis).
  Tensor edge_weights(const Graph& g) const;

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  int64_t in_, out_, dim_, k_;
  bool root_weight_;
  Tensor g_, mu_, sigma_, bias_;
  std::shared_ptr<Linear> root_;
};

// Global pooling of node features into one row per graph: (V, F) -> (num_graphs, F).
enum class GraphPool : uint8_t { add, mean, max };
class GlobalPool : public GraphLayer {
 public:
  explicit GlobalPool(GraphPool kind = GraphPool::mean);
  Tensor forward(const Tensor& x, const Graph& g) override;
  std::string extra_repr() const override;
  GraphPool kind() const { return kind_; }

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  GraphPool kind_;
};

// Mean of x_src over each node's in-edges, (V, F) -> (V, F), via the cached CSR.
Tensor mean_aggregate(const Tensor& x, const Graph& g);
// The index mean_aggregate (and SAGEConv's fused op) aggregates with: the graph's cached CSR,
// source groups and their destinations (nothing is built).
CsrAggregateIndex mean_aggregate_index(const Graph& g);

}  // namespace idem
