// The airfoil dataset: ring graphs over the surface, per-seed determinism, the training and OOD
// sampling boxes, batching and targets.
#include "data/airfoil.h"

#include <gtest/gtest.h>

#include <cmath>

#include "data/panel_method.h"
#include "tests/test_util.h"

namespace idem::data {
namespace {

using idem::testing::bit_equal;
using idem::testing::expect_error;

constexpr double kPi = 3.14159265358979323846;

bool inside(const AirfoilSample& s, const AirfoilRanges& r) {
  return s.t >= r.t_min && s.t <= r.t_max && s.m >= r.m_min && s.m <= r.m_max && s.p >= r.p_min &&
         s.p <= r.p_max && s.alpha_deg >= r.alpha_min_deg && s.alpha_deg <= r.alpha_max_deg;
}

TEST(Airfoil, RingGraphOverTheSurface) {
  const int n = 8;
  const int64_t v = 2 * n;
  const std::vector<AirfoilSample> samples = generate_airfoils(3, train_ranges(), 1, n);
  ASSERT_EQ(samples.size(), size_t(3));
  for (const AirfoilSample& s : samples) {
    const Graph& g = s.graph;
    g.validate();
    EXPECT_EQ(g.num_nodes, v);
    EXPECT_EQ(g.num_edges(), 2 * v);
    ASSERT_EQ(g.x.shape(), (Shape{v, 5}));
    ASSERT_EQ(g.edge_attr.shape(), (Shape{2 * v, 2}));
    EXPECT_EQ(g.x.dtype(), DType::f32);
    EXPECT_EQ(s.cp.size(), size_t(v));
    const std::vector<int64_t> src = g.src().to_vector<int64_t>(),
                               dst = g.dst().to_vector<int64_t>();
    const std::vector<double> x = g.x.to_vector<double>(), attr = g.edge_attr.to_vector<double>();
    for (int64_t k = 0; k < v; ++k) {
      // Forward ring edge k: k -> k+1; backward edge V+k: k+1 -> k.
      EXPECT_EQ(src[k], k);
      EXPECT_EQ(dst[k], (k + 1) % v);
      EXPECT_EQ(src[v + k], (k + 1) % v);
      EXPECT_EQ(dst[v + k], k);
      // Features: position in the unit chord, unit outward normal, alpha in radians.
      const double* f = &x[k * 5];
      EXPECT_GE(f[0], 0.0);
      EXPECT_LE(f[0], 1.0);
      EXPECT_LT(std::abs(f[1]), 0.2);
      EXPECT_NEAR(std::hypot(f[2], f[3]), 1.0, 1e-6);
      EXPECT_NEAR(f[4], s.alpha_deg * kPi / 180, 1e-6);
    }
    for (int64_t e = 0; e < 2 * v; ++e) {
      EXPECT_NEAR(attr[2 * e], x[dst[e] * 5] - x[src[e] * 5], 1e-7) << "edge " << e;
      EXPECT_NEAR(attr[2 * e + 1], x[dst[e] * 5 + 1] - x[src[e] * 5 + 1], 1e-7) << "edge " << e;
    }
    // Node 0 is the trailing edge, node n the leading edge; normals point out there.
    EXPECT_EQ(x[0], 1.0);
    EXPECT_EQ(x[n * 5], 0.0);
    EXPECT_GT(x[2], 0.9);
    EXPECT_LT(x[n * 5 + 2], -0.9);
    EXPECT_LT(x[(n / 2) * 5 + 3], 0.0);      // lower surface normal points down
    EXPECT_GT(x[(3 * n / 2) * 5 + 3], 0.0);  // upper surface normal points up
  }
}

TEST(Airfoil, SamplesMatchTheSolverAndAreDeterministicPerSeed) {
  const std::vector<AirfoilSample> a = generate_airfoils(40, train_ranges(), 5, 8);
  const std::vector<AirfoilSample> b = generate_airfoils(40, train_ranges(), 5, 8);
  const std::vector<AirfoilSample> c = generate_airfoils(40, train_ranges(), 6, 8);
  // Sample i depends only on (seed, i), not on n or on how the work was split over threads.
  const std::vector<AirfoilSample> prefix = generate_airfoils(3, train_ranges(), 5, 8);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].cl, b[i].cl);
    EXPECT_TRUE(bit_equal(a[i].graph.x, b[i].graph.x));
    EXPECT_TRUE(bit_equal(a[i].graph.edge_attr, b[i].graph.edge_attr));
    EXPECT_EQ(a[i].cp, b[i].cp);
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    EXPECT_EQ(a[i].cl, prefix[i].cl);
    EXPECT_TRUE(bit_equal(a[i].graph.x, prefix[i].graph.x));
  }
  EXPECT_NE(a[0].cl, c[0].cl);
  // The stored CL is the panel method's for those parameters.
  const PanelSolution s =
      solve_panels(naca4(a[7].m, a[7].p, a[7].t, 8), a[7].alpha_deg * kPi / 180);
  EXPECT_DOUBLE_EQ(a[7].cl, s.cl);
  for (size_t k = 0; k < a[7].cp.size(); ++k) EXPECT_FLOAT_EQ(a[7].cp[k], float(s.cp_node[k]));
}

TEST(Airfoil, SamplesFallInsideTheirBoxes) {
  const AirfoilRanges train = train_ranges();
  EXPECT_EQ(train.t_min, 0.08);
  EXPECT_EQ(train.t_max, 0.15);
  EXPECT_EQ(train.m_max, 0.04);
  EXPECT_EQ(train.alpha_min_deg, -4.0);
  EXPECT_EQ(train.alpha_max_deg, 8.0);
  for (const AirfoilSample& s : generate_airfoils(50, train, 2, 6)) EXPECT_TRUE(inside(s, train));
  AirfoilRanges previous = train;
  for (int level = 1; level <= 4; ++level) {
    const AirfoilRanges r = ood_ranges(level);
    // Each level starts where the previous box ends: thicker, more cambered, higher alpha.
    EXPECT_NEAR(r.t_min, previous.t_max, 1e-12) << "level " << level;
    EXPECT_NEAR(r.m_min, previous.m_max, 1e-12) << "level " << level;
    EXPECT_NEAR(r.alpha_min_deg, previous.alpha_max_deg, 1e-12) << "level " << level;
    EXPECT_LE(r.alpha_max_deg, 14.0);
    double mean_cl = 0;
    for (const AirfoilSample& s : generate_airfoils(30, r, 3, 6)) {
      EXPECT_TRUE(inside(s, r)) << "level " << level << " t " << s.t << " m " << s.m << " alpha "
                                << s.alpha_deg;
      mean_cl += s.cl / 30;
    }
    EXPECT_GT(mean_cl, 1.0) << "level " << level;  // high alpha and camber: high lift
    previous = r;
  }
  EXPECT_NE(ranges_str(ood_ranges(2)).find("alpha [9.5, 11] deg"), std::string::npos)
      << ranges_str(ood_ranges(2));
}

TEST(Airfoil, BadLevelsAndRangesAreErrors) {
  expect_error([] { ood_ranges(0); }, "ood_ranges", "level must be 1, 2, 3 or 4, got 0");
  expect_error([] { ood_ranges(5); }, "ood_ranges", "got 5");
  AirfoilRanges r = train_ranges();
  r.t_min = 0.0;
  expect_error([&] { generate_airfoils(2, r, 0); }, "generate_airfoils", "thickness t");
  r = train_ranges();
  r.alpha_min_deg = 9;
  expect_error([&] { generate_airfoils(2, r, 0); }, "generate_airfoils", "angle of attack");
  expect_error([] { generate_airfoils(2, train_ranges(), 0, 2); }, "generate_airfoils",
               "panels_per_side");
  EXPECT_TRUE(generate_airfoils(0, train_ranges(), 0).empty());
}

TEST(Airfoil, BatchesTargetsAndScaler) {
  const int n = 6;
  const int64_t v = 2 * n;
  const std::vector<AirfoilSample> samples = generate_airfoils(5, train_ranges(), 4, n);
  const Graph g = batch_airfoils(samples, 1, 4);
  EXPECT_EQ(g.num_graphs, 3);
  EXPECT_EQ(g.num_nodes, 3 * v);
  EXPECT_EQ(g.num_edges(), 3 * 2 * v);
  EXPECT_EQ(g.x.shape(), (Shape{3 * v, 5}));
  EXPECT_EQ(g.edge_attr.shape(), (Shape{3 * 2 * v, 2}));
  const std::vector<int64_t> batch = g.batch_vector().to_vector<int64_t>();
  ASSERT_EQ(batch.size(), size_t(3 * v));
  for (int64_t i = 0; i < 3 * v; ++i) EXPECT_EQ(batch[i], i / v) << "node " << i;
  // Graph 1 of the batch is sample 2, its nodes offset by V.
  EXPECT_EQ(g.src().to_vector<int64_t>()[2 * v], v);
  EXPECT_TRUE(bit_equal(g.x.slice0(v, 2 * v), samples[2].graph.x));

  const TargetScaler sc = fit_target_scaler(samples);
  double mean = 0;
  for (const AirfoilSample& s : samples) mean += s.cl / 5;
  EXPECT_NEAR(sc.mean, mean, 1e-12);
  EXPECT_GT(sc.std, 0.0);
  const Tensor y = airfoil_targets(samples, 1, 4, sc);
  EXPECT_EQ(y.shape(), (Shape{3, 1}));
  EXPECT_EQ(y.dtype(), DType::f32);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(sc.unscale(y.at({i, 0})), samples[1 + i].cl, 1e-5);
  const Tensor all = airfoil_targets(samples, 0, 5, sc);
  double sum = 0;
  for (double e : all.to_vector<double>()) sum += e;
  EXPECT_NEAR(sum, 0.0, 1e-5);
  const Tensor cp = airfoil_cp_targets(samples, 1, 4);
  EXPECT_EQ(cp.shape(), (Shape{3 * v, 1}));
  EXPECT_FLOAT_EQ(float(cp.at({v, 0})), samples[2].cp[0]);

  expect_error([&] { batch_airfoils(samples, 2, 2); }, "batch_airfoils", "range [2, 2)");
  expect_error([&] { batch_airfoils(samples, 0, 6); }, "batch_airfoils", "outside the 5");
  expect_error([&] { airfoil_targets(samples, 3, 9, sc); }, "airfoil_targets", "range");
  expect_error([] { fit_target_scaler({}); }, "fit_target_scaler", "no training samples");
}

}  // namespace
}  // namespace idem::data
