// NACA 4-digit geometry and the linear-strength vortex panel method: geometry facts, known
// inviscid results (thin-airfoil theory with its thickness correction, NACA 2412 and 0012), the
// internal cross-checks (circulation vs pressure lift, stagnation Cp, convergence) and bad input.
#include "data/panel_method.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/test_util.h"

namespace idem::data {
namespace {

constexpr double kPi = 3.14159265358979323846;
double deg(double d) {
  return d * kPi / 180.0;
}

TEST(PanelMethod, Naca4IsClosedClockwiseAndCosineSpaced) {
  const int n = 16;
  const Airfoil a = naca4(0.02, 0.4, 0.12, n);
  ASSERT_EQ(a.x.size(), size_t(2 * n + 1));
  ASSERT_EQ(a.y.size(), size_t(2 * n + 1));
  EXPECT_EQ(a.num_panels(), 2 * n);
  EXPECT_EQ(a.x.front(), 1.0);
  EXPECT_EQ(a.y.front(), 0.0);
  EXPECT_EQ(a.x.back(), a.x.front());
  EXPECT_EQ(a.y.back(), a.y.front());
  EXPECT_EQ(a.x[n], 0.0);  // the leading edge is the middle point
  EXPECT_EQ(a.y[n], 0.0);
  // Clockwise: the shoelace area is negative.
  double area2 = 0;
  for (int k = 0; k < 2 * n; ++k) area2 += a.x[k] * a.y[k + 1] - a.x[k + 1] * a.y[k];
  EXPECT_LT(area2, 0.0);
  // The lower surface comes first.
  for (int k = 1; k < n; ++k) EXPECT_LT(a.y[k], 0.0) << "lower point " << k;
  for (int k = n + 1; k < 2 * n; ++k) EXPECT_GT(a.y[k], 0.0) << "upper point " << k;
}

TEST(PanelMethod, Naca0012HasItsThicknessAndIsSymmetric) {
  const int n = 64;
  const Airfoil a = naca4(0.0, 0.0, 0.12, n);
  double thickest = 0;
  for (int k = 0; k <= n; ++k) {
    // Point k (lower) and point 2n − k (upper) share a chord station.
    EXPECT_NEAR(a.x[k], a.x[2 * n - k], 1e-15);
    EXPECT_NEAR(a.y[k], -a.y[2 * n - k], 1e-15);
    thickest = std::max(thickest, a.y[2 * n - k] - a.y[k]);
  }
  EXPECT_NEAR(thickest, 0.12, 0.0012);  // the max of the sampled stations, within 1 %
}

TEST(PanelMethod, Naca2412CamberLineReachesItsMaximumAtP) {
  // Thickness is laid perpendicular to the camber line, so the mean of the two surfaces at one
  // station is close to (not exactly) y_c; at x = p the slope is 0 and it is exact.
  const int n = 40;  // cosine spacing with n = 40 puts no station exactly at 0.4: use a thin one
  const Airfoil a = naca4(0.02, 0.4, 0.0001, n);
  double best = 0;
  for (int k = 0; k <= n; ++k) best = std::max(best, 0.5 * (a.y[k] + a.y[2 * n - k]));
  EXPECT_NEAR(best, 0.02, 2e-4);
}

TEST(PanelMethod, Naca4RejectsBadParameters) {
  using idem::testing::expect_error;
  expect_error([] { naca4(0.0, 0.0, 0.0); }, "naca4", "thickness t");
  expect_error([] { naca4(0.0, 0.0, 0.5); }, "naca4", "thickness t");
  expect_error([] { naca4(-0.01, 0.4, 0.12); }, "naca4", "max camber m");
  expect_error([] { naca4(0.02, 0.0, 0.12); }, "naca4", "camber position p");
  expect_error([] { naca4(0.02, 1.0, 0.12); }, "naca4", "camber position p");
  expect_error([] { naca4(0.0, 0.0, 0.12, 3); }, "naca4", "panels_per_side");
}

TEST(PanelMethod, SymmetricAirfoilAtZeroAlphaHasNoLiftAndSymmetricCp) {
  const int n = 64;
  const PanelSolution s = solve_panels(naca4(0.0, 0.0, 0.12, n), 0.0);
  EXPECT_LT(std::abs(s.cl), 1e-6);
  EXPECT_LT(std::abs(s.cl_pressure), 1e-6);
  EXPECT_LT(std::abs(s.cm), 1e-6);
  const int panels = 2 * n;
  ASSERT_EQ(s.cp.size(), size_t(panels));
  ASSERT_EQ(s.cp_node.size(), size_t(panels));
  for (int k = 0; k < panels; ++k) {
    // Lower panel k mirrors upper panel 2n−1−k; lower node k mirrors upper node 2n−k.
    EXPECT_NEAR(s.cp[k], s.cp[panels - 1 - k], 1e-9) << "panel " << k;
    EXPECT_NEAR(s.cp_node[k], s.cp_node[(panels - k) % panels], 1e-9) << "node " << k;
    EXPECT_NEAR(s.yc[k], -s.yc[panels - 1 - k], 1e-12);
  }
  // Suction over the middle, stagnation at the nose.
  EXPECT_LT(s.cp_node[n / 2], 0.0);
  EXPECT_GT(s.cp_node[n], 0.9);
}

TEST(PanelMethod, LiftSlopeMatchesThinAirfoilTheoryWithThicknessCorrection) {
  // dCL/dα ≈ 2π (1 + 0.77 t) for a symmetric section in inviscid flow.
  const double t = 0.06;
  const Airfoil a = naca4(0.0, 0.0, t, 64);
  const double slope = (solve_panels(a, deg(2)).cl - solve_panels(a, deg(-2)).cl) / deg(4);
  const double expected = 2 * kPi * (1 + 0.77 * t);
  EXPECT_NEAR(slope, expected, 0.05 * expected) << "slope " << slope << " per rad";
  EXPECT_GE(slope, 2 * kPi);
  EXPECT_LE(slope, 1.15 * 2 * kPi);
}

TEST(PanelMethod, Naca2412AtFourDegrees) {
  // Thin-airfoil theory: α_L0 = −2.08° for a 2412, CL = 2π(4° + 2.08°) · (1 + 0.77·0.12) ≈ 0.73;
  // inviscid panel codes give 0.72–0.75. The moment about c/4 is nose-down, ≈ −0.05..−0.065.
  const PanelSolution s = solve_panels(naca4(0.02, 0.4, 0.12, 64), deg(4));
  EXPECT_GE(s.cl, 0.65);
  EXPECT_LE(s.cl, 0.80);
  EXPECT_LT(s.cm, -0.04);
  EXPECT_GT(s.cm, -0.075);
}

TEST(PanelMethod, Naca0012AtFiveDegrees) {
  // Known inviscid value ≈ 0.60–0.62.
  const PanelSolution s = solve_panels(naca4(0.0, 0.0, 0.12, 64), deg(5));
  EXPECT_NEAR(s.cl, 0.605, 0.02);
}

TEST(PanelMethod, CirculationLiftMatchesIntegratedPressure) {
  for (double alpha : {-3.0, 2.0, 6.0, 10.0}) {
    const PanelSolution s = solve_panels(naca4(0.03, 0.35, 0.10, 128), deg(alpha));
    EXPECT_NEAR(s.cl_pressure, s.cl, 0.01 * std::max(0.2, std::abs(s.cl))) << "alpha " << alpha;
  }
}

TEST(PanelMethod, StagnationCpIsOneWhenTheNodesAreDense) {
  for (double alpha : {0.0, 3.0, 7.0}) {
    const PanelSolution s = solve_panels(naca4(0.02, 0.4, 0.12, 128), deg(alpha));
    const double peak = *std::max_element(s.cp.begin(), s.cp.end());
    EXPECT_NEAR(peak, 1.0, 0.02) << "alpha " << alpha;
    const double node_peak = *std::max_element(s.cp_node.begin(), s.cp_node.end());
    EXPECT_NEAR(node_peak, 1.0, 0.02) << "alpha " << alpha;
  }
}

TEST(PanelMethod, ConvergesAsPanelsGrow) {
  const PanelSolution coarse = solve_panels(naca4(0.02, 0.4, 0.12, 64), deg(4));
  const PanelSolution fine = solve_panels(naca4(0.02, 0.4, 0.12, 128), deg(4));
  EXPECT_NEAR(coarse.cl, fine.cl, 0.01 * fine.cl);
  EXPECT_NEAR(coarse.cm, fine.cm, 0.02 * std::abs(fine.cm));
}

TEST(PanelMethod, KuttaConditionAndSolutionSizes) {
  const int n = 32;
  const PanelSolution s = solve_panels(naca4(0.04, 0.4, 0.15, n), deg(6));
  ASSERT_EQ(s.gamma.size(), size_t(2 * n + 1));
  EXPECT_NEAR(s.gamma.front() + s.gamma.back(), 0.0, 1e-12);
  for (const auto* v : {&s.xc, &s.yc, &s.nx, &s.ny}) ASSERT_EQ(v->size(), size_t(2 * n));
  for (int k = 0; k < 2 * n; ++k) EXPECT_NEAR(std::hypot(s.nx[k], s.ny[k]), 1.0, 1e-12);
  // Positive γ (clockwise) flows aft over the upper surface: upper speeds exceed lower ones.
  EXPECT_GT(s.gamma[n + n / 2], 0.0);
  EXPECT_LT(s.gamma[n / 2], 0.0);
  EXPECT_GT(s.circulation, 0.0);
}

TEST(PanelMethod, RejectsBadAirfoils) {
  using idem::testing::expect_error;
  Airfoil open = naca4(0.0, 0.0, 0.12, 8);
  open.y.back() = 0.01;
  expect_error([&] { solve_panels(open, 0.0); }, "solve_panels", "closed");
  Airfoil mismatched = naca4(0.0, 0.0, 0.12, 8);
  mismatched.y.pop_back();
  expect_error([&] { solve_panels(mismatched, 0.0); }, "solve_panels", "coordinates");
  Airfoil tiny;
  tiny.x = {1, 0, 1};
  tiny.y = {0, 0, 0};
  expect_error([&] { solve_panels(tiny, 0.0); }, "solve_panels", "at least 8 panels");
  Airfoil doubled = naca4(0.0, 0.0, 0.12, 8);
  doubled.x.insert(doubled.x.begin() + 3, doubled.x[3]);
  doubled.y.insert(doubled.y.begin() + 3, doubled.y[3]);
  expect_error([&] { solve_panels(doubled, 0.0); }, "solve_panels", "zero length");
  expect_error([] { solve_panels(naca4(0.0, 0.0, 0.12, 8), std::nan("")); }, "solve_panels",
               "not finite");
}

}  // namespace
}  // namespace idem::data
