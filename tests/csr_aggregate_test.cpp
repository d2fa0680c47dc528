// csr_mean_aggregate: the fused GraphSAGE mean aggregation. It must give the SAME BITS as the
// unfused path it replaced in layers/gnn.cpp (kept below as old_mean_aggregate, built from the
// public ops), forward and backward, on the CPU (f32 and f64) and on CUDA; correct gradients
// (f64 gradcheck); the edge cases (isolated nodes, E = 0, V = 1, F = 1, F not a multiple of 4,
// bipartite U != V, an identity perm); clear errors for a bad index; one launch each way on CUDA.
// The backward's cached per-edge destinations (Graph::src_groups_dst, CsrAggregateIndex::
// group_dst) are checked against the edge list, and the backward must give the same bits with
// them as through the dst[perm[src_perm[j]]] chain.
#include "core/ops/csr_aggregate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "autograd/csr_aggregate_function.h"
#include "autograd/gradcheck.h"
#include "core/kernels/runtime.h"
#include "layers/gnn.h"
#include "layers/graph_batch.h"
#include "test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using testing::expect_error;

// The path mean_aggregate took before the fused op, verbatim:
//   segment_sum_csr(index_select_grouped(x, src_sorted, src_groups), row_ptr) · inv_in_degree.
Tensor old_mean_aggregate(const Tensor& x, const Graph& g) {
  const GraphCsr& c = g.csr();
  Tensor xj = index_select_grouped(x, c.src_sorted, g.src_groups());
  return segment_sum_csr(xj, c.row_ptr) * g.inv_in_degree(x.dtype());
}

// The same for a bare index (U may differ from V), with inv computed as Graph::inv_in_degree.
Tensor old_mean_aggregate(const Tensor& x, const CsrAggregateIndex& idx) {
  const int64_t v = idx.row_ptr.numel() - 1;
  Tensor xj = index_select_grouped(x, idx.col, {idx.src_ptr, idx.src_perm});
  Tensor deg = (narrow(idx.row_ptr, 0, 1, v) - narrow(idx.row_ptr, 0, 0, v)).to(x.dtype());
  deg = maximum(deg, full({1}, 1.0, {x.dtype(), x.device()}));
  Shape inv_shape(static_cast<size_t>(x.dim()), 1);  // (V, 1, ..., 1): broadcast over features
  inv_shape[0] = v;
  Tensor inv = reshape(rdiv(1.0, deg), inv_shape);
  return segment_sum_csr(xj, idx.row_ptr) * inv;
}

// A random graph: E edges between V nodes, every third node without in-edges (so isolated
// destinations are always present), plus a hub source with many out-edges.
Graph random_graph(int64_t nodes, int64_t edges, uint64_t seed, Device d = Device::cpu()) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, nodes - 1);
  std::vector<int64_t> src, dst;
  for (int64_t e = 0; e < edges; ++e) {
    int64_t t = pick(rng);
    if (nodes > 2 && t % 3 == 2) t -= 2;                // nodes 3m+2 get no in-edge
    src.push_back(e % 7 == 0 ? 1 % nodes : pick(rng));  // node 1 is a hub source
    dst.push_back(t);
  }
  return Graph::from_edges(nodes, src, dst, d);
}

// The index mean_aggregate uses (mean_aggregate_index), with the cached group_dst
// (chain = false) or without it.
CsrAggregateIndex graph_index(const Graph& g, bool chain) {
  CsrAggregateIndex idx = mean_aggregate_index(g);
  if (chain) idx.group_dst = Tensor();
  return idx;
}

// A graph with isolated nodes (3m+2 get no in-edge, the last node no edge at all) and every
// edge listed twice (so duplicate edges are always present), in a shuffled order.
Graph duplicate_edge_graph(int64_t nodes, int64_t edges, uint64_t seed, Device d = Device::cpu()) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, nodes - 2);
  std::vector<int64_t> src, dst;
  for (int64_t e = 0; e < edges; ++e) {
    int64_t t = pick(rng);
    if (t % 3 == 2) t -= 2;
    const int64_t u = pick(rng);
    for (int rep = 0; rep < 2; ++rep) src.push_back(u), dst.push_back(t);
  }
  std::vector<size_t> order(src.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int64_t> s2, d2;
  for (size_t i : order) s2.push_back(src[i]), d2.push_back(dst[i]);
  return Graph::from_edges(nodes, s2, d2, d);
}

// src_groups_dst, read on the host, against the edge list: group u's entries are exactly u's
// out-edges (the same multiset of destinations), and entry j is dst[perm[src_perm[j]]].
void expect_group_dst_correct(const Graph& g, const std::string& at) {
  const Tensor& gd = g.src_groups_dst();
  ASSERT_TRUE(gd.defined()) << at;
  EXPECT_EQ(gd.dtype(), DType::i64) << at;
  EXPECT_EQ(gd.device(), g.device()) << at;
  ASSERT_EQ(gd.shape(), (Shape{g.num_edges()})) << at;
  const std::vector<int64_t> got = gd.to_vector<int64_t>();
  const std::vector<int64_t> src = g.src().to_vector<int64_t>();
  const std::vector<int64_t> dst = g.dst().to_vector<int64_t>();
  const std::vector<int64_t> perm = g.csr().perm.to_vector<int64_t>();
  const std::vector<int64_t> sp = g.src_groups().row_ptr.to_vector<int64_t>();
  const std::vector<int64_t> sperm = g.src_groups().perm.to_vector<int64_t>();
  std::vector<std::vector<int64_t>> want(static_cast<size_t>(g.num_nodes)), have(want);
  for (size_t e = 0; e < src.size(); ++e) want[src[e]].push_back(dst[e]);
  for (int64_t u = 0; u < g.num_nodes; ++u)
    for (int64_t j = sp[u]; j < sp[u + 1]; ++j) {
      EXPECT_EQ(got[j], dst[perm[sperm[j]]]) << at << " entry " << j;
      have[u].push_back(got[j]);
    }
  for (int64_t u = 0; u < g.num_nodes; ++u) {
    std::sort(want[u].begin(), want[u].end());
    std::sort(have[u].begin(), have[u].end());
    EXPECT_EQ(have[u], want[u]) << at << " source " << u;
  }
}

struct Pass {
  Tensor out, dx;
};

// Forward, then backward with upstream gradient w; x is a fresh leaf each time.
template <typename Agg>
Pass run(const Tensor& x0, const Tensor& w, Agg&& agg) {
  Tensor x = x0.clone_data();
  x.requires_grad_();
  Tensor out = agg(x);
  out.backward(w);
  return {out.detach(), x.grad()};
}

std::string where(int64_t v, int64_t e, int64_t f, uint64_t seed, DType dt) {
  return "V=" + std::to_string(v) + " E=" + std::to_string(e) + " F=" + std::to_string(f) +
         " seed=" + std::to_string(seed) + " " + dtype_name(dt);
}

// ---- CPU: the same bits as the unfused path ----

TEST(CsrAggregate, BitEqualToUnfusedPathCpu) {
  struct Case {
    int64_t v, e, f;
  };
  const std::vector<Case> cases = {{9, 20, 1},   {9, 20, 3},      {40, 240, 4},
                                   {40, 240, 7}, {300, 1800, 64}, {50, 900, 16}};
  for (DType dt : {DType::f32, DType::f64})
    for (const Case& c : cases) {
      const uint64_t seed = 100 + c.v + c.f;
      Graph g = random_graph(c.v, c.e, seed);
      Tensor x = randn({c.v, c.f}, seed + 1, {dt});
      Tensor w = randn({c.v, c.f}, seed + 2, {dt});
      Pass a = run(x, w, [&](const Tensor& t) { return mean_aggregate(t, g); });
      Pass b = run(x, w, [&](const Tensor& t) { return old_mean_aggregate(t, g); });
      const std::string at = where(c.v, c.e, c.f, seed, dt);
      EXPECT_TRUE(bit_equal(a.out, b.out)) << "forward " << at;
      EXPECT_TRUE(bit_equal(a.dx, b.dx)) << "backward " << at;
    }
}

TEST(CsrAggregate, SrcGroupsDstIsCachedAndCorrect) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    Graph g = duplicate_edge_graph(37, 90, seed);
    expect_group_dst_correct(g, "seed=" + std::to_string(seed));
    // Built once per graph: the same tensor again; rebuilt for a new edge_index.
    EXPECT_EQ(g.src_groups_dst().impl_ptr(), g.src_groups_dst().impl_ptr());
    const auto first = g.src_groups_dst().impl_ptr();
    g.edge_index = g.edge_index.clone_data();
    EXPECT_NE(g.src_groups_dst().impl_ptr(), first);
    expect_group_dst_correct(g, "rebuilt, seed=" + std::to_string(seed));
  }
  // No edges: an empty (0) tensor. Hand-made: edges 0->2, 1->2, 3->2, 2->0, 2->0; grouped by
  // source (0, 1, 2, 2, 3) the destinations are 2, 2, 0, 0, 2.
  Graph empty = Graph::from_edges(4, {}, {});
  EXPECT_EQ(empty.src_groups_dst().shape(), (Shape{0}));
  Graph g = Graph::from_edges(4, {0, 1, 3, 2, 2}, {2, 2, 2, 0, 0});
  EXPECT_EQ(g.src_groups_dst().to_vector<int64_t>(), (std::vector<int64_t>{2, 2, 0, 0, 2}));
}

TEST(CsrAggregate, CachedGroupDstGivesTheChainsBitsCpu) {
  // Backward with group_dst == backward through dst[perm[src_perm[j]]] == the unfused path,
  // on graphs with duplicate edges and isolated nodes; csr_aggregate_index builds the same.
  for (DType dt : {DType::f32, DType::f64})
    for (int64_t f : {1, 3, 64}) {
      const uint64_t seed = 700 + f;
      const std::string at =
          "F=" + std::to_string(f) + " seed=" + std::to_string(seed) + " " + dtype_name(dt);
      Graph g = duplicate_edge_graph(60, 150, seed);
      Tensor x = randn({60, f}, seed + 1, {dt}), w = randn({60, f}, seed + 2, {dt});
      const CsrAggregateIndex cached = graph_index(g, false), chain = graph_index(g, true);
      Pass a = run(x, w, [&](const Tensor& t) { return csr_mean_aggregate(t, cached); });
      Pass b = run(x, w, [&](const Tensor& t) { return csr_mean_aggregate(t, chain); });
      Pass c = run(x, w, [&](const Tensor& t) { return old_mean_aggregate(t, g); });
      EXPECT_TRUE(bit_equal(a.out, c.out)) << "forward " << at;
      EXPECT_TRUE(bit_equal(a.dx, b.dx)) << "backward cached vs chain " << at;
      EXPECT_TRUE(bit_equal(a.dx, c.dx)) << "backward cached vs unfused " << at;
      const CsrAggregateIndex built = csr_aggregate_index(g.src(), g.dst(), 60, 60);
      EXPECT_TRUE(bit_equal(built.group_dst, g.src_groups_dst())) << at;
    }
}

TEST(CsrAggregate, MatchesHandComputedMeans) {
  // Edges 0->2, 1->2, 3->2, 2->0, 2->0 (a repeated edge counts twice); nodes 1 and 3 get nothing.
  Graph g = Graph::from_edges(4, {0, 1, 3, 2, 2}, {2, 2, 2, 0, 0});
  Tensor x = from_vector<double>({1, 10, 2, 20, 4, 40, 8, 80}, {4, 2}).to(DType::f32);
  Tensor out = mean_aggregate(x, g);
  testing::expect_near_all(out, {4, 40, 0, 0, (1 + 2 + 8) / 3.0, (10 + 20 + 80) / 3.0, 0, 0}, 1e-5);
  // dx[u] = Σ over u's out-edges of g[dst] / deg(dst): with g = 1, dx = (1/3, 1/3, 2/2, 1/3).
  Pass r = run(x, full({4, 2}, 1.0), [&](const Tensor& t) { return mean_aggregate(t, g); });
  testing::expect_near_all(r.dx, {1 / 3.0, 1 / 3.0, 1 / 3.0, 1 / 3.0, 1, 1, 1 / 3.0, 1 / 3.0},
                           1e-6);
}

TEST(CsrAggregate, EdgeCasesCpu) {
  // No edges at all: zeros out, zeros back.
  {
    Graph g = Graph::from_edges(5, {}, {});
    Tensor x = randn({5, 6}, 1);
    Pass a = run(x, randn({5, 6}, 2), [&](const Tensor& t) { return mean_aggregate(t, g); });
    EXPECT_TRUE(bit_equal(a.out, zeros({5, 6})));
    EXPECT_TRUE(bit_equal(a.dx, zeros({5, 6})));
  }
  // V = 1: a single node with three self loops; and V = 1 with none.
  for (int64_t loops : {3, 0}) {
    Graph g = Graph::from_edges(1, std::vector<int64_t>(loops, 0), std::vector<int64_t>(loops, 0));
    Tensor x = randn({1, 5}, 3), w = randn({1, 5}, 4);
    Pass a = run(x, w, [&](const Tensor& t) { return mean_aggregate(t, g); });
    Pass b = run(x, w, [&](const Tensor& t) { return old_mean_aggregate(t, g); });
    EXPECT_TRUE(bit_equal(a.out, b.out)) << loops;
    EXPECT_TRUE(bit_equal(a.dx, b.dx)) << loops;
  }
  // F = 0 features: empty outputs of the right shapes.
  {
    Graph g = Graph::from_edges(3, {0, 1}, {1, 2});
    Pass a =
        run(zeros({3, 0}), zeros({3, 0}), [&](const Tensor& t) { return mean_aggregate(t, g); });
    EXPECT_EQ(a.out.shape(), (Shape{3, 0}));
    EXPECT_EQ(a.dx.shape(), (Shape{3, 0}));
  }
}

TEST(CsrAggregate, BipartiteTrailingDimsAndIdentityPerm) {
  // U = 6 sources, V = 4 destinations (one empty), x (U, 2, 3): trailing dims are kept.
  const std::vector<int64_t> src = {5, 0, 3, 3, 1, 0, 4, 2};
  const std::vector<int64_t> dst = {1, 0, 3, 1, 0, 3, 1, 0};
  CsrAggregateIndex idx =
      csr_aggregate_index(from_vector<int64_t>(src, {8}), from_vector<int64_t>(dst, {8}), 4, 6);
  Tensor x = randn({6, 2, 3}, 7), w = randn({4, 2, 3}, 8);
  Pass a = run(x, w, [&](const Tensor& t) { return csr_mean_aggregate(t, idx); });
  Pass b = run(x, w, [&](const Tensor& t) { return old_mean_aggregate(t, idx); });
  EXPECT_EQ(a.out.shape(), (Shape{4, 2, 3}));
  EXPECT_TRUE(bit_equal(a.out, b.out));
  EXPECT_TRUE(bit_equal(a.dx, b.dx));
  // The same graph given with edges already in row order: perm undefined, dst = sorted dst.
  CsrAggregateIndex sorted = idx;
  sorted.dst = index_select(idx.dst, 0, idx.perm);
  sorted.perm = Tensor();
  sorted.group_dst = Tensor();  // through the chain dst[src_perm[j]] (a uses group_dst)
  Pass c = run(x, w, [&](const Tensor& t) { return csr_mean_aggregate(t, sorted); });
  EXPECT_TRUE(bit_equal(a.out, c.out));
  EXPECT_TRUE(bit_equal(a.dx, c.dx));
  // 1-D x (F = 1 without a feature dim): out is (V).
  Tensor x1 = randn({6}, 9), w1 = randn({4}, 10);
  Pass d = run(x1, w1, [&](const Tensor& t) { return csr_mean_aggregate(t, idx); });
  Pass e = run(x1, w1, [&](const Tensor& t) { return old_mean_aggregate(t, idx); });
  EXPECT_EQ(d.out.shape(), (Shape{4}));
  EXPECT_TRUE(bit_equal(d.out, e.out));
  EXPECT_TRUE(bit_equal(d.dx, e.dx));
}

TEST(CsrAggregate, Gradcheck) {
  Graph g = random_graph(7, 15, 11);
  Tensor x = randn({7, 3}, 12, {DType::f64});
  x.requires_grad_();
  auto r = gradcheck([&](const std::vector<Tensor>& in) { return mean_aggregate(in[0], g); }, {x});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.checked, 0);
}

// The adjoint with `add` (what sage_conv asks for when x's gradient is still empty): add + Aᵀg
// in one pass, the bits of the adjoint followed by a separate add, for f32 and f64, F that is
// and is not a multiple of 4, trailing dims, the cached and the chained index; and a clear
// error for an `add` of the wrong shape or dtype.
TEST(CsrAggregate, BackwardWithAddGivesTheSeparateAddsBitsCpu) {
  const Graph g = random_graph(61, 200, 71);
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& gs : {Shape{61, 64}, Shape{61, 5}, Shape{61, 2, 3}})
      for (bool chain : {false, true}) {
        const std::string at = std::string(dtype_name(dt)) + " " + shape_str(gs) +
                               (chain ? " chain" : " cached");
        const CsrAggregateIndex idx = graph_index(g, chain);
        const Tensor gr = randn(gs, 72, {dt}), add = randn(gs, 73, {dt});
        const Tensor sum = ops::csr_mean_aggregate_backward(gr, idx, 61, add);
        const Tensor want = ops::binary(add, ops::csr_mean_aggregate_backward(gr, idx, 61),
                                        BinaryOp::add);
        EXPECT_TRUE(bit_equal(sum, want)) << at;
      }
  const CsrAggregateIndex idx = graph_index(g, false);
  const Tensor gr = randn({61, 4}, 74);
  const char* bop = "csr_mean_aggregate_backward";
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, idx, 61, randn({60, 4}, 1)); }, bop,
               "expected f32 (61x4) on cpu, got f32 (60x4) on cpu");
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, idx, 61, randn({61, 4}, 1, {DType::f64})); },
               bop, "got f64 (61x4)");
}

TEST(CsrAggregate, BadIndexIsAClearError) {
  Graph g = Graph::from_edges(4, {0, 1, 2, 3}, {1, 2, 3, 1});
  const GraphCsr& c = g.csr();
  const CsrIndex& s = g.src_groups();
  const CsrAggregateIndex good{c.row_ptr, c.src_sorted, s.row_ptr, s.perm, c.perm, g.dst()};
  const Tensor x = randn({4, 3}, 1);
  const char* op = "csr_mean_aggregate";
  const char* bop = "csr_mean_aggregate_backward";
  const Tensor gr = randn({4, 3}, 2);
  EXPECT_NO_THROW(ops::csr_mean_aggregate_backward(gr, good, 4));

  expect_error([&] { ops::csr_mean_aggregate(x.to(DType::i64), good); }, op, "floating");
  CsrAggregateIndex bad = good;
  bad.col = c.src_sorted.to(DType::i32);
  expect_error([&] { ops::csr_mean_aggregate(x, bad); }, op, "col must be i64");
  bad = good;
  bad.row_ptr = narrow(c.row_ptr, 0, 0, 4);  // ends at 3, not E = 4
  expect_error([&] { ops::csr_mean_aggregate(x, bad); }, op, "must end at E = 4");
  // x with fewer rows than the sources col names.
  expect_error([&] { ops::csr_mean_aggregate(randn({2, 3}, 3), good); }, op, "out of range");
  // Edges but no source rows.
  expect_error([&] { ops::csr_mean_aggregate(zeros({0, 3}), good); }, op, "needs source");
  // Backward: groups that do not belong to col, dst that does not match row_ptr, wrong shapes.
  bad = good;
  bad.src_perm = from_vector<int64_t>({1, 0, 2, 3}, {4});
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, bad, 4); }, bop, "group");
  bad = good;
  bad.dst = from_vector<int64_t>({1, 2, 3, 0}, {4});
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, bad, 4); }, bop, "build_csr(dst, V)");
  bad = good;
  bad.perm = from_vector<int64_t>({0, 0, 1, 2}, {4});
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, bad, 4); }, bop, "permutation");
  // group_dst that is not the chain's destinations, or of the wrong length.
  EXPECT_NO_THROW(ops::csr_mean_aggregate_backward(gr, graph_index(g, false), 4));
  bad = graph_index(g, false);
  bad.group_dst = from_vector<int64_t>({1, 2, 3, 2}, {4});  // right: 1, 2, 3, 1
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, bad, 4); }, bop, "group_dst[3] = 2");
  bad.group_dst = from_vector<int64_t>({1, 2, 3}, {3});
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, bad, 4); }, bop, "group_dst must be (4)");
  expect_error(
      [&] {
        ops::csr_mean_aggregate_backward(randn({3, 3}, 4), good, 4);
      },
      bop, "V = 4 rows");
  expect_error([&] { ops::csr_mean_aggregate_backward(gr, good, 5); }, bop, "src_ptr must be (6)");
  // Recording history without the backward fields fails at the call, not in backward().
  bad = good;
  bad.src_ptr = Tensor();
  Tensor xg = x.clone_data();
  xg.requires_grad_();
  expect_error([&] { csr_mean_aggregate(xg, bad); }, op, "backward fields");
  EXPECT_NO_THROW(csr_mean_aggregate(x, bad));  // no history: the forward needs none of them
}

// ---- CUDA: the same bits as the CPU and as the unfused CUDA path; one launch each way ----

TEST(CsrAggregateCuda, BitEqualToUnfusedPathAndCpu) {
  IDEM_REQUIRE_GPU();
  struct Case {
    int64_t v, e, f;
  };
  // F = 64 (the sage benchmark's width: 16-byte packs, 16 lanes per row), 4, 3 and 1 (scalar
  // path), 96 (G = 32, two packs per lane), a larger graph with ~6 in-edges per node.
  const std::vector<Case> cases = {{9, 20, 1},      {40, 240, 3},    {40, 240, 4},
                                   {300, 1800, 64}, {300, 1500, 96}, {4096, 24576, 64},
                                   {513, 3000, 5}};
  const Device gpu = Device::cuda(0);
  for (const Case& c : cases) {
    const uint64_t seed = 500 + c.v + c.f;
    const std::string at = where(c.v, c.e, c.f, seed, DType::f32);
    Graph g = random_graph(c.v, c.e, seed);
    Graph gd = g.to(gpu);
    Tensor x = randn({c.v, c.f}, seed + 1), w = randn({c.v, c.f}, seed + 2);
    Tensor xd = x.to(gpu), wd = w.to(gpu);
    Pass cpu = run(x, w, [&](const Tensor& t) { return mean_aggregate(t, g); });
    Pass fused = run(xd, wd, [&](const Tensor& t) { return mean_aggregate(t, gd); });
    Pass old = run(xd, wd, [&](const Tensor& t) { return old_mean_aggregate(t, gd); });
    EXPECT_TRUE(bit_equal(fused.out, old.out)) << "forward vs unfused CUDA, " << at;
    EXPECT_TRUE(bit_equal(fused.dx, old.dx)) << "backward vs unfused CUDA, " << at;
    EXPECT_TRUE(bit_equal(fused.out, cpu.out)) << "forward vs CPU, " << at;
    EXPECT_TRUE(bit_equal(fused.dx, cpu.dx)) << "backward vs CPU, " << at;
    // The backward through the cached group_dst and through the chain: the same bits.
    const CsrAggregateIndex cached = graph_index(gd, false), chain = graph_index(gd, true);
    Pass a = run(xd, wd, [&](const Tensor& t) { return csr_mean_aggregate(t, cached); });
    Pass b = run(xd, wd, [&](const Tensor& t) { return csr_mean_aggregate(t, chain); });
    EXPECT_TRUE(bit_equal(a.dx, old.dx)) << "backward cached vs unfused CUDA, " << at;
    EXPECT_TRUE(bit_equal(b.dx, old.dx)) << "backward chain vs unfused CUDA, " << at;
  }
}

TEST(CsrAggregateCuda, SrcGroupsDstAndCachedBackward) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  // Duplicate edges, isolated nodes; F = 64 (packs), 5 (scalar path), and a larger graph with
  // ~6 in-edges per node (every source has 4+ entries, so the unrolled loop runs).
  struct Case {
    int64_t v, e, f;
  };
  for (const Case& c : {Case{61, 150, 64}, Case{61, 150, 5}, Case{2048, 6144, 64}}) {
    const uint64_t seed = 900 + c.v + c.f;
    const std::string at = where(c.v, 2 * c.e, c.f, seed, DType::f32);
    Graph g = duplicate_edge_graph(c.v, c.e, seed);
    Graph gd = g.to(gpu);
    expect_group_dst_correct(gd, at);
    EXPECT_TRUE(bit_equal(gd.src_groups_dst().to(Device::cpu()), g.src_groups_dst())) << at;
    Tensor x = randn({c.v, c.f}, seed + 1), w = randn({c.v, c.f}, seed + 2);
    const CsrAggregateIndex cached = graph_index(gd, false), chain = graph_index(gd, true);
    Pass cpu = run(x, w, [&](const Tensor& t) { return old_mean_aggregate(t, g); });
    Pass a =
        run(x.to(gpu), w.to(gpu), [&](const Tensor& t) { return csr_mean_aggregate(t, cached); });
    Pass b =
        run(x.to(gpu), w.to(gpu), [&](const Tensor& t) { return csr_mean_aggregate(t, chain); });
    EXPECT_TRUE(bit_equal(a.out, cpu.out)) << "forward " << at;
    EXPECT_TRUE(bit_equal(a.dx, cpu.dx)) << "backward cached vs CPU unfused " << at;
    EXPECT_TRUE(bit_equal(a.dx, b.dx)) << "backward cached vs chain " << at;
  }
  // csr_aggregate_index on the device builds the same group_dst as the CPU.
  Graph g = duplicate_edge_graph(40, 100, 5);
  const CsrAggregateIndex h = csr_aggregate_index(g.src(), g.dst(), 40, 40);
  const CsrAggregateIndex d = csr_aggregate_index(g.src().to(gpu), g.dst().to(gpu), 40, 40);
  EXPECT_TRUE(bit_equal(d.group_dst.to(Device::cpu()), h.group_dst));
}

TEST(CsrAggregateCuda, EdgeCasesAndIdentityPerm) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  // No edges; V = 1 with self loops; bipartite with an identity perm; 1-D x.
  std::vector<Graph> graphs = {Graph::from_edges(5, {}, {}),
                               Graph::from_edges(1, {0, 0, 0}, {0, 0, 0}),
                               Graph::from_edges(1, {}, {})};
  for (size_t i = 0; i < graphs.size(); ++i) {
    const Graph& g = graphs[i];
    Graph gd = g.to(gpu);
    Tensor x = randn({g.num_nodes, 8}, 20 + i), w = randn({g.num_nodes, 8}, 30 + i);
    Pass cpu = run(x, w, [&](const Tensor& t) { return mean_aggregate(t, g); });
    Pass dev = run(x.to(gpu), w.to(gpu), [&](const Tensor& t) { return mean_aggregate(t, gd); });
    EXPECT_TRUE(bit_equal(dev.out, cpu.out)) << "graph " << i;
    EXPECT_TRUE(bit_equal(dev.dx, cpu.dx)) << "graph " << i;
  }
  const std::vector<int64_t> src = {5, 0, 3, 3, 1, 0, 4, 2};
  const std::vector<int64_t> dst = {1, 0, 3, 1, 0, 3, 1, 0};
  CsrAggregateIndex idx =
      csr_aggregate_index(from_vector<int64_t>(src, {8}), from_vector<int64_t>(dst, {8}), 4, 6);
  CsrAggregateIndex idx_d = csr_aggregate_index(from_vector<int64_t>(src, {8}, gpu),
                                                from_vector<int64_t>(dst, {8}, gpu), 4, 6);
  idx_d.dst = index_select(idx_d.dst, 0, idx_d.perm);  // edges given in row order
  idx_d.perm = Tensor();
  idx_d.group_dst = Tensor();  // the chain with an identity perm (idx, on the CPU, has it)
  for (const Shape& xs : {Shape{6}, Shape{6, 2, 3}, Shape{6, 12}}) {
    Shape ws = xs;
    ws[0] = 4;
    Tensor x = randn(xs, 40), w = randn(ws, 41);
    Pass cpu = run(x, w, [&](const Tensor& t) { return csr_mean_aggregate(t, idx); });
    Pass dev =
        run(x.to(gpu), w.to(gpu), [&](const Tensor& t) { return csr_mean_aggregate(t, idx_d); });
    EXPECT_TRUE(bit_equal(dev.out, cpu.out)) << shape_str(xs);
    EXPECT_TRUE(bit_equal(dev.dx, cpu.dx)) << shape_str(xs);
  }
}

// The adjoint with `add` on the GPU: the CPU's bits, the separate add's bits, one launch; the
// vector (F = 64) and scalar (F = 5) layouts, cached and chained index, and F = 64 with `add`
// one float past a 16-byte boundary (the scalar layout for an aligned gradient).
TEST(CsrAggregateCuda, BackwardWithAddGivesTheSeparateAddsBits) {
  IDEM_REQUIRE_GPU();
  const testing::PoisonGuard no_poison(false);
  const Device gpu = Device::cuda(0);
  const Graph g = random_graph(2048, 6144, 81);
  const Graph gd = g.to(gpu);
  struct Case {
    int64_t f;
    bool shifted_add;
  };
  for (const Case k : {Case{64, false}, Case{5, false}, Case{64, true}})
    for (bool chain : {false, true}) {
      const int64_t f = k.f;
      const std::string at = "F " + std::to_string(f) + (chain ? " chain" : " cached") +
                             (k.shifted_add ? ", add misaligned" : "");
      const Tensor gr = randn({2048, f}, 82), add = randn({2048, f}, 83);
      const Tensor cpu = ops::csr_mean_aggregate_backward(gr, graph_index(g, chain), 2048, add);
      const CsrAggregateIndex idx = graph_index(gd, chain);
      const Tensor gadd = testing::shifted_copy(add, gpu, k.shifted_add ? 1 : 0);
      const Tensor ggr = gr.to(gpu);
      Tensor dev;
      EXPECT_EQ(testing::launches([&] { dev = ops::csr_mean_aggregate_backward(ggr, idx, 2048, gadd); }),
                1u)
          << at;
      EXPECT_TRUE(bit_equal(dev, cpu)) << at;
      const Tensor separate =
          ops::binary(gadd, ops::csr_mean_aggregate_backward(ggr, idx, 2048), BinaryOp::add);
      EXPECT_TRUE(bit_equal(dev, separate)) << at;
    }
}

TEST(CsrAggregateCuda, OneLaunchEachWay) {
  IDEM_REQUIRE_GPU();
  const bool poison = cuda::poison_allocations();
  cuda::set_poison_allocations(false);  // a poisoning memset would count as a launch
  Graph gd = random_graph(256, 1536, 3).to(Device::cuda(0));
  const CsrAggregateIndex idx = graph_index(gd, false);
  gd.src_groups_dst();  // built (2 launches) before counting
  Tensor x = randn({256, 64}, 4).to(Device::cuda(0));
  uint64_t before = cuda::launch_count();
  Tensor out = ops::csr_mean_aggregate(x, idx);
  EXPECT_EQ(cuda::launch_count() - before, 1u);
  before = cuda::launch_count();
  Tensor dx = ops::csr_mean_aggregate_backward(out, idx, 256);
  EXPECT_EQ(cuda::launch_count() - before, 1u);
  before = cuda::launch_count();
  Tensor dx_chain = ops::csr_mean_aggregate_backward(out, graph_index(gd, true), 256);
  EXPECT_EQ(cuda::launch_count() - before, 1u);
  // The whole mean_aggregate forward + backward through autograd (upstream gradient given, so
  // no ones-fill; x.grad takes dx without a copy): 2 launches. Unfused it was 6: gather,
  // segment sum, multiply; multiply, expand, segment sum.
  Tensor xl = x.clone_data();
  xl.requires_grad_();
  Tensor w = randn({256, 64}, 5).to(Device::cuda(0));
  before = cuda::launch_count();
  mean_aggregate(xl, gd).backward(w);
  EXPECT_EQ(cuda::launch_count() - before, 2u);
  cuda::set_poison_allocations(poison);
}

}  // namespace
}  // namespace idem
