// Statistics over seeds for the result tables: Student's t quantiles, mean ± confidence
// interval, and paired differences (report.cpp uses them for every cell of results.md).
//
// Why Student's t: a demo trains 3 to 10 models, so the standard deviation over seeds is itself
// uncertain; the normal quantile 1.96 would understate the interval by a factor of 2.2 at three
// seeds (t_{0.975, 2} = 4.303).
#pragma once
#include <string>
#include <vector>

namespace idem::cli::stats {

// P(T <= t) for Student's t with `df` > 0 degrees of freedom (regularized incomplete beta).
double student_t_cdf(double t, double df);
// The p-quantile of Student's t with `df` > 0 degrees of freedom, p in (0, 1); accurate to
// about 1e-9 relative. Throws idem::Error for p outside (0, 1) or df <= 0.
double student_t_quantile(double p, double df);

// The mean of n values and the half-width of its two-sided confidence interval,
// t_{(1+level)/2, n-1} · s / sqrt(n) with s the sample standard deviation.
struct Summary {
  int n = 0;
  double mean = 0;
  double half_width = 0;  // NaN when n < 2: one value has no interval (never a fake 0)
  double level = 0.95;
  bool has_interval() const { return n >= 2; }
};

// Mean ± interval of `xs` (at least one value; throws idem::Error on an empty list or a level
// outside (0, 1)). A non-finite value makes the mean and the interval NaN.
Summary mean_ci(const std::vector<double>& xs, double level = 0.95);
// The paired difference a[i] − b[i] (same seed i on both sides), then mean_ci of the
// differences. Pairing removes the variation that both methods share through the trained
// model, which is why Δ columns are computed this way and not as mean(a) − mean(b) ± both CIs.
// Throws idem::Error when the sizes differ or are zero.
Summary paired_difference(const std::vector<double>& a, const std::vector<double>& b,
                          double level = 0.95);

// "12.345 ± 0.678", or "12.345" when there is no interval (n = 1); `sign` prints "+" for
// positive means (for differences); NaN prints "nan".
std::string format(const Summary& s, int precision, bool sign = false);

}  // namespace idem::cli::stats
