// NACA 4-digit airfoils and a linear-strength vortex panel method (Katz & Plotkin, Low-Speed
// Aerodynamics, 2nd ed., sec. 11.4.2): inviscid, incompressible 2-D flow around an airfoil, with
// the Kutta condition at a closed trailing edge. The airfoil task (data/airfoil.h) computes its
// lift and pressure targets with it, so the data need no download and no external solver.
//
// Conventions (naca4 works in chord units, chord = 1; V∞ = 1):
// - the airfoil runs from the leading edge (0, 0) to the trailing edge (1, 0);
// - surface points go CLOCKWISE: from the trailing edge along the LOWER surface to the leading
//   edge, then back along the UPPER surface to the trailing edge; the first and the last point
//   are the same trailing-edge point (as Katz & Plotkin's program). With n panels per side there
//   are 2n panels, 2n+1 points and 2n distinct nodes (node k = point k, k < 2n);
// - walking clockwise, the body lies to the right, so a panel's outward normal is its tangent
//   turned 90° counter-clockwise: n = (−t_y, t_x);
// - positive circulation is clockwise, so positive Γ means positive lift (Kutta–Joukowski).
#pragma once
#include <cstdint>
#include <vector>

namespace idem::data {

struct Airfoil {
  std::vector<double> x, y;  // 2n+1 surface points, clockwise, x[0]==x[2n], y[0]==y[2n] (TE)
  int64_t num_panels() const { return static_cast<int64_t>(x.size()) - 1; }
};

// NACA 4-digit section "MPTT" with max camber m (fraction of chord, 0.02 for a 2412), its
// position p (0.4 for a 2412) and thickness t (0.12 for a 2412), sampled at cosine-spaced
// chord stations x_k = (1 − cos(π k / n)) / 2 (dense at both edges, where the flow changes
// fastest). The thickness polynomial uses −0.1036 for its x⁴ term, which closes the trailing
// edge exactly (the classic −0.1015 leaves a 0.25 % t gap that a Kutta condition at one point
// cannot represent). Thickness is laid perpendicular to the camber line, as NACA defines it.
// requires: 0 < t ≤ 0.4; 0 ≤ m < 0.1; 0 < p < 1 when m > 0 (p is ignored when m = 0);
//           4 ≤ panels_per_side ≤ 2048. Violations throw idem::Error ([naca4]).
Airfoil naca4(double m, double p, double t, int panels_per_side = 64);

// The flow solution. Per-PANEL quantities are at the collocation points (panel midpoints);
// per-NODE quantities at the 2n distinct surface points, in the Airfoil's order.
struct PanelSolution {
  std::vector<double> xc, yc;  // per panel: collocation point (panel midpoint)
  std::vector<double> nx, ny;  // per panel: outward unit normal
  std::vector<double> cp;      // per panel: 1 − (V_t / V∞)² at the collocation point, with V_t
                               // the tangential velocity just outside the surface
  std::vector<double> gamma;   // per point (2n+1): vortex sheet strength (clockwise positive),
                               // with gamma[0] = −gamma[2n] (Kutta). Away from the trailing edge
                               // it is the surface velocity along the panel direction (the inner
                               // flow is at rest); the two trailing-edge values only carry the
                               // Kutta pair and oscillate with n, so they are no surface speed.
  std::vector<double> cp_node;  // per node (2n): the per-panel Cp interpolated linearly (by arc
                                // length) to the node between two panel midpoints; node 0 (the
                                // trailing edge) between the first lower and the last upper panel.
                                // Slightly flattens the stagnation peak; converges with n.
  double circulation = 0;       // Γ = ∮ γ ds, clockwise positive
  double cl = 0;                // 2Γ / (V∞ c), Kutta–Joukowski
  double cl_pressure = 0;       // lift from integrating the per-panel Cp (a cross-check of cl)
  double cm = 0;                // pitching moment about the quarter chord (chord = max x − min x)
                                // from the per-panel Cp, positive nose-up
};

// Solves the flow at angle of attack alpha_rad (free stream (cos α, sin α), V∞ = 1): one
// zero-normal-velocity equation per collocation point plus the Kutta condition
// γ_0 + γ_2n = 0 (equal and opposite strengths at the two trailing-edge points, i.e. no net
// vorticity and equal speeds leaving the upper and lower surfaces), solved by Eigen's
// partial-pivoting LU. Cost: O(N²) influence coefficients plus an O(N³) solve for N = 2n panels
// (about 0.1 ms at n = 32). Thread-safe (no shared state).
// requires: a valid closed airfoil of ≥ 8 panels with no zero-length panel; throws
//           idem::Error ([solve_panels]) otherwise or when the system is singular.
PanelSolution solve_panels(const Airfoil& a, double alpha_rad);

}  // namespace idem::data
