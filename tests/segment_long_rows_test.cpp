// Few, long segments (global pooling of big graphs): the CUDA long-row path of segment sum/mean
// (taken when E >= 64 V, cuda/kernels/segment.cu) and of their adjoint segment_expand, against
// the CPU reference. The forward sums in a fixed tree of slices, not the CPU's order, so it is
// compared within 1e-6 relative (both sum in double and round once); the adjoint is a broadcast
// and must match bit for bit. Also: run-to-run bit equality, the dispatch boundary (avg 63 edges
// per row keeps the CPU-exact row-group path), and the same ops through autograd. The CUDA tests
// skip without a GPU; the CPU test pins the reference on the same shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "autograd/segment_functions.h"
#include "core/ops/segment.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using IV = std::vector<int64_t>;

// A CSR over rows of the given lengths. `index` lists each edge's row, shuffled (seeded), so
// `perm` (the stable sort of index, from build_csr) is a real gather, as in global_mean_pool.
struct LongRows {
  IV lengths;
  int64_t V = 0, E = 0;
  IV index;
  Tensor row_ptr, perm;  // CPU
};

LongRows make_rows(const IV& lengths, uint64_t seed) {
  LongRows r;
  r.lengths = lengths;
  r.V = static_cast<int64_t>(lengths.size());
  for (int64_t v = 0; v < r.V; ++v) r.index.insert(r.index.end(), lengths[v], v);
  r.E = static_cast<int64_t>(r.index.size());
  std::mt19937_64 rng(seed);
  std::shuffle(r.index.begin(), r.index.end(), rng);
  ops::Csr c = ops::build_csr(from_vector<int64_t>(r.index, {r.E}), r.V);
  r.row_ptr = c.row_ptr;
  r.perm = c.perm;
  return r;
}

// Unequal lengths (2 000 next to 1), empty rows first, in the middle and last; E / V = 600.
const IV kLengths = {0, 1000, 1500, 64, 999, 0, 2000, 1, 436, 0};
// F = 64: 16-byte packs, one tile of 16 lanes; 13: scalar loads; 1: one lane (slices raised to a
// warp); 260: 65 packs over 32 lanes, three tiles, the last with one busy lane.
const IV kFeatures = {64, 13, 1, 260};

std::string tag(const char* what, int64_t F, bool with_perm, uint64_t seed) {
  return std::string(what) + " F=" + std::to_string(F) + (with_perm ? " perm" : " no perm") +
         " seed " + std::to_string(seed);
}

// |got - want| <= 1e-6 (1 + |want|) everywhere (the tolerance of GraphCuda's parity test; the
// parity table allows 1e-5 + 1e-4 |want|); empty rows (length 0) must be exactly +0.
void expect_close_rows(const Tensor& got_t, const Tensor& want_t, int64_t F, const IV& lengths,
                       const std::string& what) {
  testing::expect_close(got_t, want_t, 1e-6, 1e-6, what);
  const std::vector<float> got = got_t.to(Device::cpu()).to_vector<float>();
  ASSERT_EQ(got.size(), lengths.size() * static_cast<size_t>(F)) << what;
  for (size_t v = 0; v < lengths.size(); ++v) {
    if (lengths[v] != 0) continue;
    for (int64_t f = 0; f < F; ++f) {
      const float x = got[v * F + f];
      EXPECT_TRUE(x == 0.0f && !std::signbit(x)) << what << ": empty row " << v << " gives " << x;
    }
  }
}

// The reference itself on these shapes: the CPU sums each row in sorted order in double, so it
// equals a naive double loop over the row's edges, bit for bit.
TEST(GraphLongSegments, CpuReferenceIsTheSequentialDoubleSum) {
  const uint64_t seed = 5;
  const LongRows r = make_rows(kLengths, seed);
  const int64_t F = 13;
  const Tensor x = randn({r.E, F}, seed + 1);
  const std::vector<float> xs = x.to_vector<float>();
  const IV rp = r.row_ptr.to_vector<int64_t>(), pm = r.perm.to_vector<int64_t>();
  const std::vector<float> sum =
      ops::segment_reduce(x, r.row_ptr, r.perm, SegmentOp::sum).to_vector<float>();
  const std::vector<float> mean =
      ops::segment_reduce(x, r.row_ptr, r.perm, SegmentOp::mean).to_vector<float>();
  for (int64_t v = 0; v < r.V; ++v) {
    ASSERT_EQ(rp[v + 1] - rp[v], r.lengths[v]) << "row " << v;
    for (int64_t f = 0; f < F; ++f) {
      double acc = 0.0;
      for (int64_t k = rp[v]; k < rp[v + 1]; ++k) acc += static_cast<double>(xs[pm[k] * F + f]);
      const double n = static_cast<double>(r.lengths[v]);
      EXPECT_EQ(sum[v * F + f], static_cast<float>(acc)) << "seed " << seed << " row " << v;
      EXPECT_EQ(mean[v * F + f], static_cast<float>(n > 0 ? acc / n : acc))
          << "seed " << seed << " row " << v;
    }
  }
}

TEST(GraphLongSegmentsCuda, ForwardSumAndMeanMatchTheCpu) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const uint64_t seed = 11;
  const LongRows r = make_rows(kLengths, seed);
  const Tensor rp_g = r.row_ptr.to(gpu), pm_g = r.perm.to(gpu);
  for (int64_t F : kFeatures) {
    const Tensor x = randn({r.E, F}, seed + F);
    const Tensor xg = x.to(gpu);
    for (bool with_perm : {true, false}) {
      const Tensor pc = with_perm ? r.perm : Tensor(), pg = with_perm ? pm_g : Tensor();
      for (SegmentOp op : {SegmentOp::sum, SegmentOp::mean}) {
        const Tensor want = ops::segment_reduce(x, r.row_ptr, pc, op);
        const Tensor got = ops::segment_reduce(xg, rp_g, pg, op);
        ASSERT_EQ(got.shape(), (Shape{r.V, F}));
        ASSERT_TRUE(got.device().is_cuda());
        expect_close_rows(got, want, F, r.lengths, tag(segment_op_name(op), F, with_perm, seed));
      }
    }
  }
}

TEST(GraphLongSegmentsCuda, ExpandMatchesTheCpuBitForBit) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const uint64_t seed = 12;
  const LongRows r = make_rows(kLengths, seed);
  const Tensor rp_g = r.row_ptr.to(gpu), pm_g = r.perm.to(gpu);
  for (int64_t F : kFeatures) {
    const Tensor g = randn({r.V, F}, seed + F);
    const Tensor gg = g.to(gpu);
    for (bool with_perm : {true, false}) {
      const Tensor pc = with_perm ? r.perm : Tensor(), pg = with_perm ? pm_g : Tensor();
      for (bool mean : {false, true}) {
        const Tensor want = ops::segment_expand(g, r.row_ptr, pc, r.E, mean);
        const Tensor got = ops::segment_expand(gg, rp_g, pg, r.E, mean);
        ASSERT_EQ(got.shape(), (Shape{r.E, F}));
        EXPECT_TRUE(bit_equal(got, want))
            << tag(mean ? "expand mean" : "expand sum", F, with_perm, seed);
      }
    }
  }
}

// The IT³ `sage` pooling shape: 64 graphs of 1 024 nodes, F = 64, nodes in shuffled order.
TEST(GraphLongSegmentsCuda, RunToRunBitIdentical) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const LongRows r = make_rows(IV(64, 1024), 21);
  const Tensor rp = r.row_ptr.to(gpu), pm = r.perm.to(gpu);
  for (int64_t F : {64, 13}) {
    const Tensor x = randn({r.E, F}, 22, {DType::f32, gpu});
    const Tensor g = randn({r.V, F}, 23, {DType::f32, gpu});
    for (SegmentOp op : {SegmentOp::sum, SegmentOp::mean}) {
      const Tensor a = ops::segment_reduce(x, rp, pm, op);
      const Tensor da = ops::segment_expand(g, rp, pm, r.E, op == SegmentOp::mean);
      for (int rep = 0; rep < 3; ++rep) {
        EXPECT_TRUE(bit_equal(ops::segment_reduce(x, rp, pm, op), a))
            << segment_op_name(op) << " F=" << F << " rep " << rep;
        EXPECT_TRUE(bit_equal(ops::segment_expand(g, rp, pm, r.E, op == SegmentOp::mean), da))
            << "expand " << segment_op_name(op) << " F=" << F << " rep " << rep;
      }
    }
  }
}

// 63 edges per row keeps the row-group path (the CPU's order: bit-identical); 64 takes the long
// path (within tolerance). Both with and without a perm.
TEST(GraphLongSegmentsCuda, DispatchBoundary) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const int64_t V = 32, F = 8;
  for (int64_t per_row : {63, 64}) {
    const uint64_t seed = 30 + static_cast<uint64_t>(per_row);
    const LongRows r = make_rows(IV(V, per_row), seed);
    const Tensor x = randn({r.E, F}, seed + 1);
    for (bool with_perm : {true, false}) {
      const Tensor pc = with_perm ? r.perm : Tensor();
      const Tensor pg = with_perm ? r.perm.to(gpu) : Tensor();
      for (SegmentOp op : {SegmentOp::sum, SegmentOp::mean}) {
        const Tensor want = ops::segment_reduce(x, r.row_ptr, pc, op);
        const Tensor got = ops::segment_reduce(x.to(gpu), r.row_ptr.to(gpu), pg, op);
        const std::string what =
            tag(segment_op_name(op), F, with_perm, seed) + " edges/row " + std::to_string(per_row);
        if (per_row < 64)
          EXPECT_TRUE(bit_equal(got, want)) << what << ": the row-group path is the CPU's order";
        else
          expect_close_rows(got, want, F, r.lengths, what);
      }
    }
  }
}

// Through autograd: global_mean_pool (scatter by a shuffled batch vector), segment_mean_grouped
// (the cached grouping the GNN models use) and global_add_pool, forward and backward.
TEST(GraphLongSegmentsCuda, PoolingThroughAutogradMatchesTheCpu) {
  IDEM_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const uint64_t seed = 40;
  const LongRows r = make_rows({300, 0, 257, 1000, 80, 511}, seed);
  const int64_t F = 64;
  const Tensor x = randn({r.E, F}, seed + 1);
  const Tensor w = randn({r.V, F}, seed + 2);
  const Tensor batch = from_vector<int64_t>(r.index, {r.E});
  const CsrIndex groups{r.row_ptr, r.perm}, groups_g{r.row_ptr.to(gpu), r.perm.to(gpu)};
  struct Way {
    const char* name;
    std::function<Tensor(const Tensor&, bool)> fn;
  };
  const std::vector<Way> ways = {
      {"global_mean_pool",
       [&](const Tensor& t, bool on_gpu) {
         return global_mean_pool(t, on_gpu ? batch.to(gpu) : batch, r.V);
       }},
      {"global_add_pool",
       [&](const Tensor& t, bool on_gpu) {
         return global_add_pool(t, on_gpu ? batch.to(gpu) : batch, r.V);
       }},
      {"segment_mean_grouped",
       [&](const Tensor& t, bool on_gpu) {
         return segment_mean_grouped(t, on_gpu ? groups_g : groups);
       }},
  };
  for (const Way& way : ways) {
    Tensor xc = x.clone_data(), xg = x.to(gpu);
    xc.requires_grad_();
    xg.requires_grad_();
    const Tensor yc = way.fn(xc, false), yg = way.fn(xg, true);
    expect_close_rows(yg, yc, F, r.lengths, std::string(way.name) + " forward");
    sum(yc * w).backward();
    sum(yg * w.to(gpu)).backward();
    // global_add_pool's backward is a gather (index_select), the others segment_expand: exact.
    EXPECT_TRUE(bit_equal(xg.grad(), xc.grad())) << way.name << " backward, seed " << seed;
  }
}

}  // namespace
}  // namespace idem
