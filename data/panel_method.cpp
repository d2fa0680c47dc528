// NACA 4-digit geometry and the linear-strength vortex panel method (see panel_method.h for the
// conventions). The influence coefficients are derived here in the panel's own frame; the
// derivation is short enough to keep next to the code.
#include "data/panel_method.h"

#include <Eigen/Core>
#include <Eigen/LU>
#include <cmath>

#include "core/error.h"

namespace idem::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

// NACA 4-digit half thickness with the closed-trailing-edge coefficient −0.1036 (y_t(1) = 0).
double half_thickness(double t, double x) {
  return 5.0 * t *
         (0.2969 * std::sqrt(x) - 0.1260 * x - 0.3516 * x * x + 0.2843 * x * x * x -
          0.1036 * x * x * x * x);
}

// Camber line y_c(x) and its slope: two parabolas meeting at the maximum (p, m).
void camber(double m, double p, double x, double& yc, double& slope) {
  if (m == 0.0) {
    yc = slope = 0.0;
  } else if (x < p) {
    yc = m / (p * p) * (2.0 * p * x - x * x);
    slope = 2.0 * m / (p * p) * (p - x);
  } else {
    const double q = (1.0 - p) * (1.0 - p);
    yc = m / q * ((1.0 - 2.0 * p) + 2.0 * p * x - x * x);
    slope = 2.0 * m / q * (p - x);
  }
}

// Velocity at local point (x, y) induced by a linear vortex on the panel [0, S] × {0} whose
// strength falls from 1 to 0 (part a) or rises from 0 to 1 (part b), in the panel's frame.
//
// A point vortex γ dξ at (ξ, 0), clockwise positive, induces
//   u = γ dξ/(2π) · y / r²,   v = −γ dξ/(2π) · (x − ξ) / r²,   r² = (x − ξ)² + y².
// With θ_k = atan2(y, x − x_k) (x_1 = 0, x_2 = S), Δθ = θ_2 − θ_1 and L = ln(r_1 / r_2):
//   ∫ y/r² dξ = Δθ,            ∫ (x−ξ)/r² dξ = L,
//   ∫ ξ y/r² dξ = xΔθ − yL,    ∫ ξ (x−ξ)/r² dξ = xL − S + yΔθ.
// So for the weight ξ/S (part b) and 1 − ξ/S (part a = constant − part b):
//   u_b = (xΔθ − yL) / (2πS),  v_b = −(xL − S + yΔθ) / (2πS),
//   u_a = Δθ/(2π) − u_b,       v_a = −L/(2π) − v_b.
// At the panel's own midpoint approached from outside (+y) Δθ = π and L = 0 exactly; that case
// is passed in rather than computed, so rounding in y cannot flip the side.
struct LocalInfluence {
  double ua, va, ub, vb;
};
LocalInfluence linear_vortex(double x, double y, double s, bool self) {
  double dtheta, log_ratio;
  if (self) {
    dtheta = kPi;
    log_ratio = 0.0;
  } else {
    // θ_2 − θ_1 is the angle from r_1 = (x, y) to r_2 = (x − S, y): atan2(r_1 × r_2, r_1 · r_2),
    // one atan2 instead of two, in (−π, π) off the panel itself.
    dtheta = std::atan2(y * s, x * (x - s) + y * y);
    log_ratio = 0.5 * std::log((x * x + y * y) / ((x - s) * (x - s) + y * y));
  }
  LocalInfluence r;
  r.ub = (x * dtheta - y * log_ratio) / (2.0 * kPi * s);
  r.vb = -(x * log_ratio - s + y * dtheta) / (2.0 * kPi * s);
  r.ua = dtheta / (2.0 * kPi) - r.ub;
  r.va = -log_ratio / (2.0 * kPi) - r.vb;
  return r;
}

void validate_airfoil(const Airfoil& a) {
  const size_t np = a.x.size();
  IDEM_CHECK(np == a.y.size(), "solve_panels", "airfoil has ", a.x.size(), " x and ", a.y.size(),
             " y coordinates; expected the same count");
  IDEM_CHECK(np >= 9, "solve_panels", "airfoil needs at least 8 panels (9 points), got ", np,
             " points");
  for (size_t k = 0; k < np; ++k)
    IDEM_CHECK(std::isfinite(a.x[k]) && std::isfinite(a.y[k]), "solve_panels", "point ", k,
               " is not finite (", a.x[k], ", ", a.y[k], ")");
  IDEM_CHECK(std::abs(a.x[0] - a.x[np - 1]) < 1e-12 && std::abs(a.y[0] - a.y[np - 1]) < 1e-12,
             "solve_panels", "airfoil must be closed (first point == last point at the trailing ",
             "edge), got (", a.x[0], ", ", a.y[0], ") and (", a.x[np - 1], ", ", a.y[np - 1], ")");
}

}  // namespace

Airfoil naca4(double m, double p, double t, int panels_per_side) {
  IDEM_CHECK(t > 0.0 && t <= 0.4, "naca4", "thickness t must be in (0, 0.4], got ", t);
  IDEM_CHECK(m >= 0.0 && m < 0.1, "naca4", "max camber m must be in [0, 0.1), got ", m);
  IDEM_CHECK(m == 0.0 || (p > 0.0 && p < 1.0), "naca4",
             "camber position p must be in (0, 1) for a cambered section (m = ", m, "), got ", p);
  IDEM_CHECK(panels_per_side >= 4 && panels_per_side <= 2048, "naca4",
             "panels_per_side must be in [4, 2048], got ", panels_per_side);
  const int n = panels_per_side;
  std::vector<double> xu(n + 1), yu(n + 1), xl(n + 1), yl(n + 1);
  for (int k = 0; k <= n; ++k) {
    const double xs = 0.5 * (1.0 - std::cos(kPi * k / n));
    double yc, slope;
    camber(m, p, xs, yc, slope);
    const double yt = half_thickness(t, xs);
    const double th = std::atan(slope);
    xu[k] = xs - yt * std::sin(th);
    yu[k] = yc + yt * std::cos(th);
    xl[k] = xs + yt * std::sin(th);
    yl[k] = yc - yt * std::cos(th);
  }
  // Both surfaces meet exactly at (0,0) and (1,0); pin them so rounding cannot open the ends.
  xu[0] = xl[0] = 0.0;
  yu[0] = yl[0] = 0.0;
  xu[n] = xl[n] = 1.0;
  yu[n] = yl[n] = 0.0;

  Airfoil a;
  a.x.reserve(2 * n + 1);
  a.y.reserve(2 * n + 1);
  for (int k = n; k >= 0; --k) {  // lower surface, trailing edge -> leading edge
    a.x.push_back(xl[k]);
    a.y.push_back(yl[k]);
  }
  for (int k = 1; k <= n; ++k) {  // upper surface, leading edge -> trailing edge
    a.x.push_back(xu[k]);
    a.y.push_back(yu[k]);
  }
  return a;
}

PanelSolution solve_panels(const Airfoil& a, double alpha_rad) {
  validate_airfoil(a);
  IDEM_CHECK(std::isfinite(alpha_rad), "solve_panels", "angle of attack is not finite");
  const int64_t n = a.num_panels();

  // Panel geometry: length, unit tangent (cos, sin), outward normal, midpoint.
  std::vector<double> len(n), ct(n), st(n);
  PanelSolution sol;
  sol.xc.resize(n);
  sol.yc.resize(n);
  sol.nx.resize(n);
  sol.ny.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    const double dx = a.x[j + 1] - a.x[j], dy = a.y[j + 1] - a.y[j];
    len[j] = std::hypot(dx, dy);
    IDEM_CHECK(len[j] > 1e-12, "solve_panels", "panel ", j, " has zero length (points ", j, " and ",
               j + 1, " coincide)");
    ct[j] = dx / len[j];
    st[j] = dy / len[j];
    sol.nx[j] = -st[j];
    sol.ny[j] = ct[j];
    sol.xc[j] = 0.5 * (a.x[j] + a.x[j + 1]);
    sol.yc[j] = 0.5 * (a.y[j] + a.y[j + 1]);
  }

  // normal(i, k) / tangential(i, k): velocity along n_i / t_i at collocation point i per unit
  // strength at point k. Panel j's part a belongs to point j, part b to point j + 1.
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Matrix normal = Matrix::Zero(n + 1, n + 1);
  Matrix tangential = Matrix::Zero(n, n + 1);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const double dx = sol.xc[i] - a.x[j], dy = sol.yc[i] - a.y[j];
      const double xl = dx * ct[j] + dy * st[j];
      const double yl = -dx * st[j] + dy * ct[j];
      const LocalInfluence f = linear_vortex(xl, yl, len[j], i == j);
      // Back to the global frame: (u, v) in panel axes -> (u cos − v sin, u sin + v cos).
      const double ua = f.ua * ct[j] - f.va * st[j], va = f.ua * st[j] + f.va * ct[j];
      const double ub = f.ub * ct[j] - f.vb * st[j], vb = f.ub * st[j] + f.vb * ct[j];
      normal(i, j) += ua * sol.nx[i] + va * sol.ny[i];
      normal(i, j + 1) += ub * sol.nx[i] + vb * sol.ny[i];
      tangential(i, j) += ua * ct[i] + va * st[i];
      tangential(i, j + 1) += ub * ct[i] + vb * st[i];
    }
  }
  const double vx = std::cos(alpha_rad), vy = std::sin(alpha_rad);
  Eigen::VectorXd rhs(n + 1);
  for (int64_t i = 0; i < n; ++i) rhs(i) = -(vx * sol.nx[i] + vy * sol.ny[i]);
  normal(n, 0) = 1.0;  // Kutta: γ_0 + γ_N = 0
  normal(n, n) = 1.0;
  rhs(n) = 0.0;

  Eigen::PartialPivLU<Matrix> lu(normal);
  const Eigen::VectorXd gamma = lu.solve(rhs);
  const double residual = (normal * gamma - rhs).norm();
  IDEM_CHECK(gamma.allFinite() && residual <= 1e-8 * (1.0 + rhs.norm()), "solve_panels",
             "the panel system (", n + 1, " unknowns) is singular or ill-conditioned (residual ",
             residual, "); check the airfoil geometry");

  sol.gamma.assign(gamma.data(), gamma.data() + n + 1);

  const Eigen::VectorXd vt = tangential * gamma;
  sol.cp.resize(n);
  // Chord and quarter-chord point from the geometry (1 and (0.25, 0) for naca4's sections).
  int64_t le = 0, te = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (a.x[k] < a.x[le]) le = k;
    if (a.x[k] > a.x[te]) te = k;
  }
  const double chord = a.x[te] - a.x[le];
  IDEM_CHECK(chord > 1e-12, "solve_panels", "airfoil has zero chord");
  const double x_ref = a.x[le] + 0.25 * chord, y_ref = a.y[le] + 0.25 * (a.y[te] - a.y[le]);
  double cx = 0, cy = 0, cm = 0, circulation = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double q = vt(i) + vx * ct[i] + vy * st[i];
    sol.cp[i] = 1.0 - q * q;
    // Pressure force on the panel, in free-stream units: −Cp · n · S.
    cx += -sol.cp[i] * sol.nx[i] * len[i];
    cy += -sol.cp[i] * sol.ny[i] * len[i];
    // Nose-up moment about the quarter chord of that force (nose-up is clockwise in x-aft,
    // y-up axes): −[(x − x_ref) F_y − (y − y_ref) F_x].
    cm += sol.cp[i] * len[i] * ((sol.xc[i] - x_ref) * sol.ny[i] - (sol.yc[i] - y_ref) * sol.nx[i]);
    circulation += 0.5 * (gamma(i) + gamma(i + 1)) * len[i];
  }
  // Node k lies between the midpoints of panels k−1 and k (node 0 between the last upper and
  // the first lower panel), at distances S_{k−1}/2 and S_k/2: interpolate linearly there.
  sol.cp_node.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t before = (k + n - 1) % n;
    sol.cp_node[k] = (len[k] * sol.cp[before] + len[before] * sol.cp[k]) / (len[before] + len[k]);
  }
  sol.circulation = circulation;
  sol.cl = 2.0 * circulation / chord;             // 2Γ / (V∞ c), V∞ = 1
  sol.cl_pressure = (cy * vx - cx * vy) / chord;  // the force component normal to V∞
  sol.cm = cm / (chord * chord);
  return sol;
}

}  // namespace idem::data
