// Segment family: hand-computed scatter/segment values and gradients on a 4-node graph, empty
// segments, build_csr on unsorted input, global pooling with nodes in any order, agreement with
// an independent naive loop (bit-exact in f32: both sum in double in edge order), bad input,
// and CUDA parity / run-to-run determinism (skipped without a GPU).
#include "core/ops/segment.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/segment_functions.h"
#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_close;
using testing::expect_error;

using DV = std::vector<double>;
using IV = std::vector<int64_t>;

Tensor idx(const IV& v, Device d = Device::cpu()) {
  return from_vector<int64_t>(v, {static_cast<int64_t>(v.size())}, d);
}
Tensor mat(const DV& v, int64_t rows, int64_t cols) {
  return from_vector<double>(v, {rows, cols});
}

// The 4-node graph used by the hand-computed tests. Node features x (4x2); edges src -> dst:
//   0->1, 1->0, 1->2, 2->1, 3->1, 0->2      (node 3 receives nothing)
// messages m = x[src] (6x2) = [1 2; 3 4; 3 4; 5 6; 7 8; 1 2].
struct Graph4 {
  Tensor x = mat({1, 2, 3, 4, 5, 6, 7, 8}, 4, 2);
  Tensor src = idx({0, 1, 1, 2, 3, 0});
  Tensor dst = idx({1, 0, 2, 1, 1, 2});
  Tensor messages() const { return index_select(x, 0, src); }
};

TEST(Graph, ScatterHandComputed) {
  Graph4 g;
  const Tensor m = g.messages();
  // row 0 <- edge 1; row 1 <- edges 0, 3, 4; row 2 <- edges 2, 5; row 3 <- none.
  EXPECT_EQ(scatter_add_rows(m, g.dst, 4).to_vector<double>(), (DV{3, 4, 13, 16, 4, 6, 0, 0}));
  const DV mean = scatter_mean_rows(m, g.dst, 4).to_vector<double>();
  const DV want_mean = {3, 4, 13.0 / 3, 16.0 / 3, 2, 3, 0, 0};
  ASSERT_EQ(mean.size(), want_mean.size());
  for (size_t i = 0; i < mean.size(); ++i) EXPECT_DOUBLE_EQ(mean[i], want_mean[i]) << i;
  EXPECT_EQ(scatter_max_rows(m, g.dst, 4).to_vector<double>(), (DV{3, 4, 7, 8, 3, 4, 0, 0}));
  EXPECT_EQ(scatter_add_rows(m, g.dst, 4).shape(), (Shape{4, 2}));
}

TEST(Graph, ScatterGradientsHandComputed) {
  Graph4 g;
  const Tensor gout = mat({1, 10, 2, 20, 3, 30, 4, 40}, 4, 2);
  {
    // dm[e] = gout[dst[e]]
    Tensor m = g.messages().detach().requires_grad_();
    scatter_add_rows(m, g.dst, 4).backward(gout);
    EXPECT_EQ(m.grad().to_vector<double>(), (DV{2, 20, 1, 10, 3, 30, 2, 20, 2, 20, 3, 30}));
  }
  {
    // dm[e] = gout[dst[e]] / count(dst[e]); counts 1, 3, 2, 0.
    Tensor m = g.messages().detach().requires_grad_();
    scatter_mean_rows(m, g.dst, 4).backward(gout);
    const DV want = {2.0 / 3, 20.0 / 3, 1,       10,       1.5, 15,
                     2.0 / 3, 20.0 / 3, 2.0 / 3, 20.0 / 3, 1.5, 15};
    const DV got = m.grad().to_vector<double>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_DOUBLE_EQ(got[i], want[i]) << i;
  }
  {
    // Maxima: row 0 edge 1, row 1 edge 4, row 2 edge 2; other edges get nothing.
    Tensor m = g.messages().detach().requires_grad_();
    scatter_max_rows(m, g.dst, 4).backward(gout);
    EXPECT_EQ(m.grad().to_vector<double>(), (DV{0, 0, 1, 10, 3, 30, 0, 0, 2, 20, 0, 0}));
  }
  {
    // Through the gather too: dx[n] = Σ_{e: src[e] = n} gout[dst[e]].
    Tensor x = g.x.detach().requires_grad_();
    scatter_add_rows(index_select(x, 0, g.src), g.dst, 4).backward(gout);
    // node 0: edges 0 (dst 1), 5 (dst 2); node 1: edges 1 (dst 0), 2 (dst 2);
    // node 2: edge 3 (dst 1); node 3: edge 4 (dst 1).
    EXPECT_EQ(x.grad().to_vector<double>(), (DV{5, 50, 4, 40, 2, 20, 2, 20}));
  }
}

TEST(Graph, MaxTiesRouteToFirstEdge) {
  // Edges 0..3 = [5 1], [5 7], [5 7], [5 7]; rows 0 <- edges 1, 3 and 1 <- edges 0, 2.
  Tensor src = mat({5, 1, 5, 7, 5, 7, 5, 7}, 4, 2).requires_grad_();
  Tensor dst = idx({1, 0, 1, 0});
  Tensor y = scatter_max_rows(src, dst, 2);
  EXPECT_EQ(y.to_vector<double>(), (DV{5, 7, 5, 7}));
  y.backward(mat({1, 2, 3, 4}, 2, 2));
  // row 0: both columns tie between edges 1 and 3 -> edge 1 gets [1 2];
  // row 1: column 0 ties between edges 0 and 2 -> edge 0 gets 3; column 1 max 7 at edge 2.
  EXPECT_EQ(src.grad().to_vector<double>(), (DV{3, 0, 1, 2, 0, 4, 0, 0}));
}

TEST(Graph, SegmentSumCsrHandComputed) {
  // 3 rows: row 0 = edge 0, row 1 empty, row 2 = edges 1, 2.
  Tensor row_ptr = idx({0, 1, 1, 3});
  Tensor src = mat({1, 2, 3, 4, 5, 6}, 3, 2).requires_grad_();
  Tensor y = segment_sum_csr(src, row_ptr);
  EXPECT_EQ(y.to_vector<double>(), (DV{1, 2, 0, 0, 8, 10}));
  // dsrc = g's rows repeated per edge.
  y.backward(mat({1, 2, 3, 4, 5, 6}, 3, 2));
  EXPECT_EQ(src.grad().to_vector<double>(), (DV{1, 2, 5, 6, 5, 6}));
}

TEST(Graph, BuildCsrUnsorted) {
  // dst 3 0 2 0 3 3 1 over 5 rows: counts 2 1 1 3 0.
  CsrIndex c = build_csr(idx({3, 0, 2, 0, 3, 3, 1}), 5);
  EXPECT_EQ(c.row_ptr.to_vector<int64_t>(), (IV{0, 2, 3, 4, 7, 7}));
  EXPECT_EQ(c.perm.to_vector<int64_t>(), (IV{1, 3, 6, 2, 0, 4, 5}));  // stable inside a row
  // The CSR reproduces the scatter.
  Tensor src = randn({7, 3}, 5, {DType::f64});
  Tensor sorted_src = index_select(src, 0, c.perm);
  EXPECT_EQ(segment_sum_csr(sorted_src, c.row_ptr).to_vector<double>(),
            scatter_add_rows(src, idx({3, 0, 2, 0, 3, 3, 1}), 5).to_vector<double>());
  // No edges.
  CsrIndex e = build_csr(idx({}), 3);
  EXPECT_EQ(e.row_ptr.to_vector<int64_t>(), (IV{0, 0, 0, 0}));
  EXPECT_EQ(e.perm.numel(), 0);
  // No rows and no edges.
  EXPECT_EQ(build_csr(idx({}), 0).row_ptr.to_vector<int64_t>(), (IV{0}));
}

TEST(Graph, EmptySegmentsGiveZero) {
  Tensor src = randn({3, 2}, 7, {DType::f64});
  Tensor dst = idx({4, 4, 1});  // rows 0, 2, 3, 5 receive nothing
  for (auto fn : {scatter_add_rows, scatter_mean_rows, scatter_max_rows}) {
    Tensor y = fn(src, dst, 6);
    ASSERT_EQ(y.shape(), (Shape{6, 2}));
    for (int64_t r : {0, 2, 3, 5})
      for (int64_t f = 0; f < 2; ++f) EXPECT_EQ(y.at({r, f}), 0.0) << r;
  }
  // No edges at all: zeros of (V, F).
  Tensor none = randn({0, 2}, 7, {DType::f64});
  for (auto fn : {scatter_add_rows, scatter_mean_rows, scatter_max_rows}) {
    Tensor y = fn(none, idx({}), 3);
    EXPECT_EQ(y.to_vector<double>(), DV(6, 0.0));
  }
  EXPECT_EQ(segment_sum_csr(none, idx({0, 0, 0})).to_vector<double>(), DV(4, 0.0));
  // Zero output rows.
  EXPECT_EQ(scatter_add_rows(none, idx({}), 0).shape(), (Shape{0, 2}));
}

// Independent reference: a loop over edges in id order, sums in double.
struct Naive {
  DV sum, mean, max;
  std::vector<int64_t> count;
};
Naive naive_scatter(const DV& x, const IV& dst, int64_t V, int64_t F) {
  const int64_t E = static_cast<int64_t>(dst.size());
  Naive r{DV(V * F, 0.0), DV(V * F, 0.0), DV(V * F, 0.0), IV(V, 0)};
  std::vector<bool> seen(V, false);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t v = dst[e];
    ++r.count[v];
    for (int64_t f = 0; f < F; ++f) {
      const double val = x[e * F + f];
      r.sum[v * F + f] += val;
      if (!seen[v] || val > r.max[v * F + f]) r.max[v * F + f] = val;
    }
    seen[v] = true;
  }
  for (int64_t v = 0; v < V; ++v)
    for (int64_t f = 0; f < F; ++f)
      if (r.count[v] > 0) r.mean[v * F + f] = r.sum[v * F + f] / static_cast<double>(r.count[v]);
  return r;
}

IV random_index(int64_t n, int64_t high, uint64_t seed) {
  const DV u = rand({n}, seed, {DType::f64}).to_vector<double>();
  IV out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int64_t>(u[i] * static_cast<double>(high));
  return out;
}

TEST(Graph, MatchesNaiveLoopBitExactF32) {
  const int64_t V = 37, E = 300, F = 5;
  const uint64_t seed = 21;
  const IV dst = random_index(E, V, seed);
  Tensor x = randn({E, F}, seed + 1);  // f32
  // The naive loop sees the same f32 values, widened.
  const std::vector<float> xf = x.to_vector<float>();
  const Naive ref = naive_scatter(DV(xf.begin(), xf.end()), dst, V, F);
  const std::vector<float> s = scatter_add_rows(x, idx(dst), V).to_vector<float>();
  const std::vector<float> m = scatter_mean_rows(x, idx(dst), V).to_vector<float>();
  const std::vector<float> mx = scatter_max_rows(x, idx(dst), V).to_vector<float>();
  for (int64_t i = 0; i < V * F; ++i) {
    EXPECT_EQ(s[i], static_cast<float>(ref.sum[i])) << "seed " << seed << " at " << i;
    EXPECT_EQ(m[i], static_cast<float>(ref.mean[i])) << "seed " << seed << " at " << i;
    EXPECT_EQ(mx[i], static_cast<float>(ref.max[i])) << "seed " << seed << " at " << i;
  }
}

TEST(Graph, GlobalPoolingNodesInAnyOrder) {
  // 3 graphs, nodes interleaved; graph 3 of 4 has no node.
  const IV batch = {2, 0, 1, 0, 2, 1, 0, 2};
  const int64_t N = 8, F = 3, G = 4;
  const uint64_t seed = 33;
  Tensor x = randn({N, F}, seed, {DType::f64});
  const Naive ref = naive_scatter(x.to_vector<double>(), batch, G, F);
  const DV add = global_add_pool(x, idx(batch), G).to_vector<double>();
  const DV mean = global_mean_pool(x, idx(batch), G).to_vector<double>();
  const DV mx = global_max_pool(x, idx(batch), G).to_vector<double>();
  for (int64_t i = 0; i < G * F; ++i) {
    EXPECT_DOUBLE_EQ(add[i], ref.sum[i]) << "seed " << seed << " at " << i;
    EXPECT_DOUBLE_EQ(mean[i], ref.mean[i]) << "seed " << seed << " at " << i;
    EXPECT_EQ(mx[i], ref.max[i]) << "seed " << seed << " at " << i;
  }
  // Same as pooling the nodes after sorting them by graph.
  CsrIndex c = build_csr(idx(batch), G);
  Tensor xs = index_select(x, 0, c.perm);
  Tensor bs = index_select(idx(batch), 0, c.perm);
  EXPECT_EQ(global_mean_pool(xs, bs, G).to_vector<double>(), mean);
  // Mean-pool gradient: each node gets g[graph] / nodes in its graph (3, 2, 3 nodes).
  Tensor xg = x.detach().requires_grad_();
  global_mean_pool(xg, idx(batch), G).backward(ones({G, F}, {DType::f64}));
  const DV gx = xg.grad().to_vector<double>();
  const double per_graph[3] = {1.0 / 3, 1.0 / 2, 1.0 / 3};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t f = 0; f < F; ++f) EXPECT_DOUBLE_EQ(gx[n * F + f], per_graph[batch[n]]) << n;
}

TEST(Graph, TrailingFeatureDimsAreKept) {
  Tensor src = randn({5, 2, 3}, 3, {DType::f64});
  Tensor dst = idx({1, 0, 1, 2, 1});
  Tensor y = scatter_add_rows(src, dst, 3);
  ASSERT_EQ(y.shape(), (Shape{3, 2, 3}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      EXPECT_DOUBLE_EQ(y.at({1, i, j}), src.at({0, i, j}) + src.at({2, i, j}) + src.at({4, i, j}));
  Tensor y1 = scatter_add_rows(from_vector<double>({1, 2, 3}, {3}), idx({1, 1, 0}), 2);
  EXPECT_EQ(y1.shape(), (Shape{2}));
  EXPECT_EQ(y1.to_vector<double>(), (DV{3, 3}));
}

TEST(Graph, NoGradientWhenNotRequired) {
  Graph4 g;
  Tensor y = scatter_mean_rows(g.messages(), g.dst, 4);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
}

TEST(Graph, BadInput) {
  const Tensor src = randn({4, 2}, 1, {DType::f64});
  const Tensor dst = idx({0, 1, 2, 1});
  // index dtype, rank, length, range.
  expect_error([&] { scatter_add_rows(src, dst.to(DType::f64), 3); }, "scatter_add_rows", "i64");
  expect_error(
      [&] {
        scatter_add_rows(src, from_vector<int64_t>({0, 1, 2, 1}, {2, 2}), 3);
      },
      "scatter_add_rows", "1-D");
  expect_error(
      [&] {
        scatter_add_rows(src, idx({0, 1, 2}), 3);
      },
      "scatter_add_rows", "same number of rows");
  expect_error(
      [&] {
        scatter_mean_rows(src, idx({0, 1, 3, 1}), 3);
      },
      "scatter_mean_rows", "index 3");
  expect_error(
      [&] {
        scatter_max_rows(src, idx({0, -1, 2, 1}), 3);
      },
      "scatter_max_rows", "index -1");
  expect_error([&] { scatter_add_rows(src, dst, -1); }, "scatter_add_rows", "num_rows");
  // src dtype and rank.
  expect_error([&] { scatter_add_rows(dst, dst, 3); }, "scatter_add_rows", "floating");
  expect_error([&] { scatter_add_rows(scalar_tensor(1.0), idx({0}), 3); }, "scatter_add_rows",
               "0-dim");
  expect_error([&] { scatter_add_rows(Tensor(), dst, 3); }, "scatter_add_rows", "undefined");
  // row_ptr.
  expect_error([&] { segment_sum_csr(src, idx({1, 2, 4})); }, "segment_sum_csr", "start at 0");
  expect_error(
      [&] {
        segment_sum_csr(src, idx({0, 3, 2, 4}));
      },
      "segment_sum_csr", "non-decreasing");
  expect_error([&] { segment_sum_csr(src, idx({0, 2, 3})); }, "segment_sum_csr", "end at E = 4");
  expect_error([&] { segment_sum_csr(src, idx({})); }, "segment_sum_csr", "V+1");
  expect_error(
      [&] {
        segment_sum_csr(src, from_vector<double>({0, 4}, {2}));
      },
      "segment_sum_csr", "i64");
  // build_csr.
  expect_error([&] { build_csr(dst, -2); }, "build_csr", "num_rows");
  expect_error([&] { build_csr(dst, 2); }, "build_csr", "index 2");
  expect_error([&] { build_csr(dst.to(DType::f32), 3); }, "build_csr", "i64");
  // Pooling names itself.
  expect_error([&] { global_mean_pool(src, idx({0, 0, 5, 1}), 2); }, "global_mean_pool", "index 5");
  expect_error(
      [&] {
        global_add_pool(src, idx({0, 0}), 2);
      },
      "global_add_pool", "same number of rows");
  // L1 adjoints.
  expect_error(
      [&] {
        ops::segment_expand(src, idx({0, 1}), Tensor(), 1, false);
      },
      "segment_sum_backward", "one more entry");
  expect_error(
      [&] {
        ops::segment_reduce(src, idx({0, 2, 4}), idx({0, 0, 1, 2}), SegmentOp::sum);
      },
      "segment_sum", "permutation");
}

// ---- CUDA ----------------------------------------------------------------------------------

class GraphCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    IDEM_REQUIRE_GPU();
  }
};

// F = 3 (scalar path), 64 (16-byte packs, 16 threads per row), 100 (packs, lanes idle),
// 130 (scalar, several features per thread).
TEST_F(GraphCuda, ParityWithCpuForwardAndBackward) {
  const Device gpu = Device::cuda(0);
  for (int64_t F : {3, 64, 100, 130}) {
    const int64_t V = 257, E = 3001;
    const uint64_t seed = 100 + F;
    const IV dst = random_index(E, V, seed);
    Tensor x = randn({E, F}, seed + 1);
    Tensor gout = randn({V, F}, seed + 2);
    const std::string tag = "F=" + std::to_string(F) + " seed " + std::to_string(seed);
    for (auto fn : {scatter_add_rows, scatter_mean_rows, scatter_max_rows}) {
      Tensor xc = x.detach().requires_grad_();
      Tensor yc = fn(xc, idx(dst), V);
      yc.backward(gout);
      Tensor xg = x.to(gpu).detach().requires_grad_();
      Tensor yg = fn(xg, idx(dst, gpu), V);
      yg.backward(gout.to(gpu));
      // Same order, same double accumulation: expected identical; allow rounding slack.
      expect_close(yg, yc, 1e-6, 1e-6, "forward " + tag, seed);
      expect_close(xg.grad(), xc.grad(), 1e-6, 1e-6, "backward " + tag, seed);
    }
    CsrIndex cc = build_csr(idx(dst), V), cg = build_csr(idx(dst, gpu), V);
    EXPECT_EQ(cg.row_ptr.to_vector<int64_t>(), cc.row_ptr.to_vector<int64_t>()) << tag;
    EXPECT_EQ(cg.perm.to_vector<int64_t>(), cc.perm.to_vector<int64_t>()) << tag;
    // segment_sum_csr without a perm, forward and backward.
    Tensor xs = x.detach().requires_grad_(), xsg = x.to(gpu).detach().requires_grad_();
    Tensor ys = segment_sum_csr(xs, cc.row_ptr), ysg = segment_sum_csr(xsg, cg.row_ptr);
    ys.backward(gout);
    ysg.backward(gout.to(gpu));
    expect_close(ysg, ys, 1e-6, 1e-6, "csr forward " + tag, seed);
    expect_close(xsg.grad(), xs.grad(), 1e-6, 1e-6, "csr backward " + tag, seed);
  }
}

TEST_F(GraphCuda, RunToRunBitIdentical) {
  const Device gpu = Device::cuda(0);
  const int64_t V = 5000, E = 100000, F = 64;
  Tensor x = randn({E, F}, 7, {DType::f32, gpu});
  Tensor dst = idx(random_index(E, V, 8), gpu);
  const std::vector<float> a = scatter_add_rows(x, dst, V).to_vector<float>();
  for (int rep = 0; rep < 3; ++rep) {
    const std::vector<float> b = scatter_add_rows(x, dst, V).to_vector<float>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "rep " << rep << " at " << i;
  }
}

TEST_F(GraphCuda, EmptyAndPooling) {
  const Device gpu = Device::cuda(0);
  Tensor none = empty({0, 4}, {DType::f32, gpu});
  EXPECT_EQ(scatter_mean_rows(none, idx({}, gpu), 3).to_vector<float>(),
            std::vector<float>(12, 0.0f));
  EXPECT_EQ(scatter_max_rows(none, idx({}, gpu), 3).to_vector<float>(),
            std::vector<float>(12, 0.0f));
  const IV batch = {2, 0, 1, 0, 2, 1, 0, 2};
  Tensor x = randn({8, 4}, 9);
  for (auto fn : {global_add_pool, global_mean_pool, global_max_pool})
    expect_close(fn(x.to(gpu), idx(batch, gpu), 4), fn(x, idx(batch), 4), 1e-6, 1e-6, "pool", 9);
}

TEST_F(GraphCuda, UncheckedBadIndexDropsEdgesWithoutFaulting) {
  // CUDA index values are not validated (no device->host sync); out-of-range destinations sort
  // into a sentinel bucket after the last row and are dropped.
  const Device gpu = Device::cuda(0);
  Tensor x = randn({5, 4}, 11);
  Tensor y = scatter_add_rows(x.to(gpu), idx({0, 7, 1, -3, 1}, gpu), 2);
  Tensor want = scatter_add_rows(index_select(x, 0, idx({0, 2, 4})), idx({0, 1, 1}), 2);
  expect_close(y, want, 1e-6, 1e-6, "dropped edges", 11);
  // f64 is CPU-only.
  expect_error(
      [&] {
        scatter_add_rows(x.to(DType::f64).to(gpu), idx({0, 1, 1, 0, 1}, gpu), 2);
      },
      "scatter_add_rows", "f64");
  // Mixed devices.
  expect_error(
      [&] {
        scatter_add_rows(x.to(gpu), idx({0, 1, 1, 0, 1}), 2);
      },
      "scatter_add_rows", "one device");
}

}  // namespace
}  // namespace idem
