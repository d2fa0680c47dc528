// GNN layers against hand computations: GCN's symmetric normalization on a 3-node path, SAGE's
// mean aggregation, GMMConv's Gaussian kernels on a 2-edge graph; graph batching, the CSR
// cache, pooling modules and bad graphs.
#include "layers/gnn.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_near_all;
using testing::set;

// 0 — 1 — 2, both directions.
Graph path3() {
  return Graph::from_edges(3, {0, 1, 1, 2}, {1, 0, 2, 1});
}

TEST(GCNConv, SymmetricNormalizationOnAPath) {
  GCNConv conv(2, 2);
  // W = [[1, 0], [1, 1]] (out, in): h = x Wᵀ = (x0, x0 + x1); bias (0.5, −1).
  set(conv.lin()->weight(), {1, 0, 1, 1});
  set(conv.bias(), {0.5, -1});
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  // h = (1,3), (3,7), (5,11). Degrees with self loops: 2, 3, 2.
  // out0 = h0/2 + h1/√6, out1 = h0/√6 + h1/3 + h2/√6, out2 = h1/√6 + h2/2.
  const double r6 = 1 / std::sqrt(6.0);
  const double h[3][2] = {{1, 3}, {3, 7}, {5, 11}};
  std::vector<double> want;
  for (int f = 0, n = 0; n < 3; ++n)
    for (f = 0; f < 2; ++f) {
      double v = n == 0   ? h[0][f] / 2 + h[1][f] * r6
                 : n == 1 ? h[0][f] * r6 + h[1][f] / 3 + h[2][f] * r6
                          : h[1][f] * r6 + h[2][f] / 2;
      want.push_back(v + (f == 0 ? 0.5 : -1));
    }
  Graph g = path3();
  expect_near_all(conv.forward(x, g), want, 1e-5);
  // Parameter names as PyG.
  auto np = conv.named_parameters();
  ASSERT_EQ(np.size(), 2u);
  EXPECT_EQ(np[0].first, "bias");
  EXPECT_EQ(np[1].first, "lin.weight");
  // An existing self loop is kept, not doubled: adding 1→1 explicitly changes nothing.
  Graph g2 = Graph::from_edges(3, {0, 1, 1, 2, 1}, {1, 0, 2, 1, 1});
  expect_near_all(conv.forward(x, g2), want, 1e-5);
  // Edge weights enter the degrees and the messages.
  Graph gw = path3();
  gw.edge_weight = from_vector<float>({2, 2, 1, 1}, {4});  // 0→1 and 1→0 weigh 2
  // deg = 1+2 = 3, 1+2+1 = 4, 2; out0 = h0/3 + 2 h1/√12, ...
  Tensor yw = conv.forward(x, gw);
  expect_near_all(yw.slice0(0, 1),
                  {1.0 / 3 + 2 * 3 / std::sqrt(12.0) + 0.5, 3.0 / 3 + 2 * 7 / std::sqrt(12.0) - 1},
                  1e-5);
}

TEST(GCNConv, GradientsReachWeightsAndInputs) {
  GCNConv conv(3, 2);
  Graph g = path3();
  Tensor x = randn({3, 3}, 1);
  x.requires_grad_();
  sum(square(conv.forward(x, g))).backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(conv.lin()->weight().grad().defined());
  EXPECT_TRUE(conv.bias().grad().defined());
  EXPECT_THROW(conv.forward(randn({4, 3}, 1), g), Error);  // wrong V
  EXPECT_THROW(conv.forward(randn({3, 2}, 1), g), Error);  // wrong F
}

TEST(SAGEConv, MeanAggregationPlusRoot) {
  // Edges 1→0, 2→0, 2→1; node 2 has no in-neighbours.
  Graph g = Graph::from_edges(3, {1, 2, 2}, {0, 0, 1});
  SAGEConv conv(2, 1);
  set(conv.lin_neigh()->weight(), {1, -1});
  set(conv.lin_neigh()->bias(), {0.25});
  set(conv.lin_root()->weight(), {2, 0});
  Tensor x = from_vector<float>({1, 2, 3, 5, 7, 11}, {3, 2});
  // mean0 = ((3,5)+(7,11))/2 = (5,8) -> −3; mean1 = (7,11) -> −4; mean2 = 0 -> 0.
  // out = mean·(1,−1) + 0.25 + 2·x[:,0].
  expect_near_all(conv.forward(x, g), {-3 + 0.25 + 2, -4 + 0.25 + 6, 0 + 0.25 + 14}, 1e-5);
  std::vector<std::string> names;
  for (auto& [n, t] : conv.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"lin_l.weight", "lin_l.bias", "lin_r.weight"}));
  expect_near_all(mean_aggregate(x, g), {5, 8, 7, 11, 0, 0}, 1e-6);
}

TEST(GMMConv, GaussianKernelsOnTwoEdges) {
  // Edges 0→2 and 1→2 with pseudo-coordinates u (D = 2); K = 2 kernels, F_in = 2, M = 1.
  Graph g = Graph::from_edges(3, {0, 1}, {2, 2});
  g.edge_attr = from_vector<float>({0.5, -0.5, 1.0, 0.0}, {2, 2});
  GMMConv conv(2, 1, 2, 2);
  const std::vector<double> mu = {0, 0, 1, -1}, sigma = {1, 0.5, 2, 1};
  set(conv.mu(), mu);
  set(conv.sigma(), sigma);
  set(conv.g(), {1, -1, 2, 0.5});  // (F, K·M): column k is kernel k's projection
  set(conv.root()->weight(), {0.5, 0.25});
  set(conv.bias(), {0.1});
  Tensor x = from_vector<float>({1, 2, -1, 3, 4, 0}, {3, 2});
  const double xs[3][2] = {{1, 2}, {-1, 3}, {4, 0}};
  const double u[2][2] = {{0.5, -0.5}, {1.0, 0.0}};
  const int src[2] = {0, 1};
  double agg = 0;
  for (int e = 0; e < 2; ++e) {
    for (int k = 0; k < 2; ++k) {
      double ex = 0;
      for (int d = 0; d < 2; ++d) {
        const double diff = u[e][d] - mu[k * 2 + d], s = sigma[k * 2 + d];
        ex += -0.5 * diff * diff / (1e-15 + s * s);
      }
      const double proj =
          k == 0 ? xs[src[e]][0] * 1 + xs[src[e]][1] * 2 : xs[src[e]][0] * -1 + xs[src[e]][1] * 0.5;
      agg += std::exp(ex) * proj;
    }
  }
  agg /= 2;  // mean over node 2's two in-edges
  const std::vector<double> root = {0.5 * 1 + 0.25 * 2, 0.5 * -1 + 0.25 * 3, 0.5 * 4};
  expect_near_all(conv.forward(x, g), {root[0] + 0.1, root[1] + 0.1, root[2] + agg + 0.1}, 1e-5);
  // The Gaussian weights themselves, edge 0 kernel 0: exp(−½(0.25/1 + 0.25/0.25)).
  Tensor w = conv.edge_weights(g);
  EXPECT_EQ(w.shape(), (Shape{2, 2}));
  EXPECT_NEAR(w.at({0, 0}), std::exp(-0.5 * (0.25 + 1.0)), 1e-6);
  // All parameters, including μ and σ, receive gradients.
  x.requires_grad_();
  sum(square(conv.forward(x, g))).backward();
  for (auto& [n, t] : conv.named_parameters()) EXPECT_TRUE(t.grad().defined()) << n;
  EXPECT_TRUE(x.grad().defined());
  Graph no_attr = Graph::from_edges(3, {0, 1}, {2, 2});
  EXPECT_THROW(conv.forward(x, no_attr), Error);
}

TEST(GraphData, BatchingOffsetsNodesAndPools) {
  Graph a = path3();
  a.x = from_vector<float>({1, 2, 3}, {3, 1});
  Graph b = Graph::from_edges(2, {0}, {1});
  b.x = from_vector<float>({10, 20}, {2, 1});
  Graph ab = batch_graphs({a, b});
  EXPECT_EQ(ab.num_nodes, 5);
  EXPECT_EQ(ab.num_graphs, 2);
  EXPECT_EQ(ab.edge_index.to_vector<int64_t>(),
            (std::vector<int64_t>{0, 1, 1, 2, 3, 1, 0, 2, 1, 4}));
  EXPECT_EQ(ab.batch.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 1, 1}));
  expect_near_all(GlobalPool(GraphPool::mean).forward(ab.x, ab), {2, 15}, 1e-6);
  expect_near_all(GlobalPool(GraphPool::add).forward(ab.x, ab), {6, 30}, 1e-6);
  expect_near_all(GlobalPool(GraphPool::max).forward(ab.x, ab), {3, 20}, 1e-6);
  // A batch of batches keeps sub-graphs apart.
  Graph abb = batch_graphs({ab, b});
  EXPECT_EQ(abb.num_graphs, 3);
  EXPECT_EQ(abb.batch.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2}));
  // A single graph pools into one row.
  expect_near_all(GlobalPool(GraphPool::mean).forward(a.x, a), {2}, 1e-6);
  // x present in some graphs only.
  Graph c = Graph::from_edges(2, {0}, {1});
  EXPECT_THROW(batch_graphs({a, c}), Error);
  EXPECT_THROW(batch_graphs({}), Error);
}

TEST(GraphData, CsrCacheFollowsTheEdgeIndex) {
  Graph g = Graph::from_edges(3, {2, 0, 1}, {0, 1, 0});
  const GraphCsr& c = g.csr();
  EXPECT_EQ(c.row_ptr.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 3, 3}));
  EXPECT_EQ(c.perm.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 1}));
  EXPECT_EQ(c.src_sorted.to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(g.csr().row_ptr.raw_data(), c.row_ptr.raw_data());  // cached
  expect_near_all(g.inv_in_degree(DType::f32), {0.5, 1, 1}, 0);
  // A new edge_index rebuilds the cache.
  g.edge_index = from_vector<int64_t>({0, 1, 1, 2}, {2, 2});
  EXPECT_EQ(g.csr().row_ptr.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 2}));
}

TEST(GraphData, BadGraphsThrow) {
  EXPECT_THROW(Graph::from_edges(2, {0, 1}, {1, 2}), Error);  // node 2 of 2
  EXPECT_THROW(Graph::from_edges(2, {0}, {1, 0}), Error);
  EXPECT_THROW(Graph(3, from_vector<float>({0, 1}, {2, 1})), Error);  // float edge_index
  Graph g = path3();
  g.edge_attr = zeros({3, 2});  // 3 rows for 4 edges
  EXPECT_THROW(g.validate(), Error);
  g.edge_attr = Tensor();
  g.batch = from_vector<int64_t>({0, 1, 1}, {3});  // num_graphs is 1
  EXPECT_THROW(g.validate(), Error);
  g.num_graphs = 2;
  g.validate();
}

TEST(Gnn, PrintoutAndClone) {
  GMMConv conv(3, 4, 2, 5);
  EXPECT_EQ(conv.repr(),
            "GMMConv(\n  3, 4, dim=2, kernel_size=5\n  (root): Linear(in_features=3, "
            "out_features=4, bias=False)\n)");
  auto c = clone_as(conv);
  EXPECT_EQ(c->mu().to_vector<float>(), conv.mu().to_vector<float>());
  EXPECT_FALSE(c->mu().same_storage(conv.mu()));
  EXPECT_EQ(SAGEConv(3, 4).repr(),
            "SAGEConv(\n  3, 4, aggr=mean\n  (lin_l): Linear(in_features=3, out_features=4, "
            "bias=True)\n  (lin_r): Linear(in_features=3, out_features=4, bias=False)\n)");
}

TEST(GnnCuda, LayersMatchCpu) {
  IDEM_REQUIRE_GPU();
  Graph g = Graph::from_edges(5, {0, 1, 2, 3, 4, 1, 2, 3}, {1, 2, 3, 4, 0, 0, 1, 2});
  g.edge_attr = randn({8, 2}, 3);
  Tensor x = randn({5, 3}, 4);
  GCNConv gcn(3, 4);
  SAGEConv sage(3, 4);
  GMMConv gmm(3, 4, 2, 3);
  std::vector<Tensor> cpu = {gcn.forward(x, g), sage.forward(x, g), gmm.forward(x, g)};
  Graph gd = g.to(Device::cuda(0));
  Tensor xd = x.to(Device::cuda(0));
  gcn.to(Device::cuda(0)), sage.to(Device::cuda(0)), gmm.to(Device::cuda(0));
  std::vector<Tensor> gpu = {gcn.forward(xd, gd), sage.forward(xd, gd), gmm.forward(xd, gd)};
  for (size_t i = 0; i < 3; ++i)
    expect_near_all(gpu[i], cpu[i].to_vector<double>(), 1e-4, "layer " + std::to_string(i));
}

}  // namespace
}  // namespace idem
