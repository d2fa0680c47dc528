#include "apps/idem/stats.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace idem::cli::stats {

namespace {

// The continued fraction of the incomplete beta function (modified Lentz's method); converges
// quickly for x < (a + 1) / (a + b + 2), which regularized_beta arranges.
double beta_fraction(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-15;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 1000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < eps) break;
  }
  return h;
}

// I_x(a, b), the regularized incomplete beta function.
double regularized_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) +
                                b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_fraction(a, b, x) / a;
  return 1 - front * beta_fraction(b, a, 1 - x) / b;
}

}  // namespace

double student_t_cdf(double t, double df) {
  IDEM_CHECK(df > 0 && std::isfinite(df), "student_t_cdf", "degrees of freedom must be > 0, got ", df);
  if (std::isnan(t)) return NAN;
  if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
  // P(|T| > |t|) = I_{df / (df + t²)}(df / 2, 1 / 2).
  const double tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t));
  return t > 0 ? 1 - tail : tail;
}

double student_t_quantile(double p, double df) {
  IDEM_CHECK(p > 0 && p < 1, "student_t_quantile", "p must be in (0, 1), got ", p);
  IDEM_CHECK(df > 0 && std::isfinite(df), "student_t_quantile", "degrees of freedom must be > 0, got ", df);
  if (p == 0.5) return 0;
  if (p < 0.5) return -student_t_quantile(1 - p, df);
  // The CDF is increasing: bracket the quantile by doubling, then bisect to machine precision.
  double lo = 0, hi = 2;
  while (student_t_cdf(hi, df) < p) lo = hi, hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

Summary mean_ci(const std::vector<double>& xs, double level) {
  IDEM_CHECK(!xs.empty(), "mean_ci", "no values (a cell needs at least one seed)");
  IDEM_CHECK(level > 0 && level < 1, "mean_ci", "the confidence level must be in (0, 1), got ", level);
  Summary s;
  s.n = int(xs.size());
  s.level = level;
  double sum = 0;
  for (double x : xs) sum += x;
  s.mean = sum / s.n;
  if (s.n < 2) {
    s.half_width = NAN;
    return s;
  }
  double ss = 0;
  for (double x : xs) ss += (x - s.mean) * (x - s.mean);
  const double sd = std::sqrt(ss / (s.n - 1));
  s.half_width = student_t_quantile(0.5 + level / 2, s.n - 1) * sd / std::sqrt(double(s.n));
  return s;
}

Summary paired_difference(const std::vector<double>& a, const std::vector<double>& b, double level) {
  IDEM_CHECK(a.size() == b.size() && !a.empty(), "paired_difference",
             "needs the same number (> 0) of values on both sides, got ", a.size(), " and ", b.size());
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return mean_ci(d, level);
}

std::string format(const Summary& s, int precision, bool sign) {
  auto num = [&](double v, bool with_sign) {
    if (!std::isfinite(v)) return std::string("nan");
    char buf[64];
    std::snprintf(buf, sizeof buf, with_sign ? "%+.*f" : "%.*f", precision, v);
    return std::string(buf);
  };
  std::string out = num(s.mean, sign);
  if (s.has_interval()) out += " ± " + num(s.half_width, false);
  return out;
}

}  // namespace idem::cli::stats
