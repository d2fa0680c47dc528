// index_select_grouped and segment_mean_grouped: the sort-free GNN gathers and pooling that use
// a grouping cached per graph. Same values as index_select / global_mean_pool, correct
// gradients (f64 gradcheck), and the same results on the GPU.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/segment_functions.h"
#include "core/kernels/runtime.h"
#include "layers/graph_batch.h"
#include "test_util.h"

using namespace idem;
using idem::testing::bit_equal;

namespace {
// A small graph with repeated sources, an isolated node and two graphs in the batch.
Graph small_graph(Device d = Device::cpu()) {
  Graph g = Graph::from_edges(6, {0, 0, 1, 2, 2, 2, 4}, {1, 2, 0, 0, 1, 4, 3}, d);
  g.batch = from_vector<int64_t>({0, 0, 0, 1, 1, 1}, {6}, d);
  g.num_graphs = 2;
  return g;
}
}  // namespace

TEST(GraphGrouped, MatchesIndexSelectAndMeanPool) {
  Graph g = small_graph();
  Tensor x = randn({6, 3}, 1);
  const Tensor& src = g.csr().src_sorted;
  EXPECT_TRUE(bit_equal(index_select_grouped(x, src, g.src_groups()), index_select(x, 0, src)));
  EXPECT_TRUE(bit_equal(segment_mean_grouped(x, g.batch_groups()),
                        global_mean_pool(x, g.batch_vector(), 2)));
  // The backward agrees with index_select's (index_add) backward.
  Tensor a = x.clone_data(), b = x.clone_data();
  a.requires_grad_(), b.requires_grad_();
  Tensor w = randn({src.numel(), 3}, 2);
  sum(index_select_grouped(a, src, g.src_groups()) * w).backward();
  sum(index_select(b, 0, src) * w).backward();
  idem::testing::expect_near_all(a.grad(), b.grad(), 1e-6);
}

TEST(GraphGrouped, Gradcheck) {
  Graph g = small_graph();
  Tensor x = randn({6, 3}, 3, {DType::f64});
  x.requires_grad_();
  auto r1 = gradcheck([&](const std::vector<Tensor>& in) {
    return index_select_grouped(in[0], g.csr().src_sorted, g.src_groups());
  }, {x});
  EXPECT_TRUE(r1.ok) << r1.message;
  auto r2 = gradcheck([&](const std::vector<Tensor>& in) {
    return segment_mean_grouped(in[0], g.batch_groups());
  }, {x});
  EXPECT_TRUE(r2.ok) << r2.message;
}

TEST(GraphGrouped, MismatchedGroupsAreAClearError) {
  Graph g = small_graph();
  Tensor x = randn({5, 3}, 1);
  idem::testing::expect_error([&] { index_select_grouped(x, g.csr().src_sorted, g.src_groups()); },
                              "index_select_grouped", "build_csr");
}

TEST(GraphGroupedCuda, MatchesTheCpu) {
  IDEM_REQUIRE_GPU();
  Graph gc = small_graph(), gg = small_graph(Device::cuda());
  Tensor x = randn({6, 3}, 4);
  Tensor xc = x.clone_data(), xg = x.to(Device::cuda());
  xc.requires_grad_(), xg.requires_grad_();
  Tensor pc = index_select_grouped(xc, gc.csr().src_sorted, gc.src_groups());
  Tensor pg = index_select_grouped(xg, gg.csr().src_sorted, gg.src_groups());
  idem::testing::expect_near_all(pg.to(Device::cpu()), pc, 0.0);
  sum(segment_mean_grouped(xc, gc.batch_groups())).backward();
  sum(segment_mean_grouped(xg, gg.batch_groups())).backward();
  idem::testing::expect_near_all(xg.grad().to(Device::cpu()), xc.grad(), 1e-6);
}
