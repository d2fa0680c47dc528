// Accuracy against cost per method (issue 17): pareto.svg, pareto.csv and the Pareto table of
// results.md. Each method is one point:
//   x  µs per sample: per seed the mean over every shift (the cost table's value), then the
//      mean ± 95 % CI over the seeds;
//   y  the metric (error % or MAE, lower is better) over every shift but clean (as results.md's
//      "mean over all shifts" line; clean when the run has nothing else), per seed, then the
//      mean ± 95 % CI over the seeds.
// A method is on the Pareto front when no other method is at least as good in both and
// better in one: no other is both as cheap (or cheaper) and as accurate (or more accurate)
// with one of the two strictly. Equal points do not dominate each other: both stay on it.
#pragma once
#include <string>
#include <vector>

#include "apps/idem/report.h"
#include "apps/idem/stats.h"

namespace idem::cli {

struct ParetoPoint {
  std::string method;
  stats::Summary cost;    // µs per sample (no interval with one seed)
  stats::Summary metric;  // over the shifts above
  bool on_front = false;
};

// Sets on_front for every point (a point with a non-finite cost or metric is never on the
// front and never dominates another).
void mark_pareto_front(std::vector<ParetoPoint>& points);
// One point per method of `rows` (first-seen order) with the front marked; a method that no
// seed ran on every shift is left out.
std::vector<ParetoPoint> pareto_points(const std::vector<ResultRow>& rows);
// method,us_per_sample,us_per_sample_ci95,metric,metric_ci95,seeds,on_front (CI cells empty
// with one seed; on_front 1 or 0).
std::string pareto_csv(const std::vector<ParetoPoint>& points);
// The table of results.md: method, µs / sample, metric mean ± CI, on the front (yes/no), one
// line per method, cheapest first.
std::string pareto_markdown(const std::vector<ParetoPoint>& points, const std::string& metric_name);
// pareto.svg: x = µs per sample on a log scale, y = the metric, one labelled point per method
// (class "point"), 95 % CI bars both ways with two or more seeds, and the front as a step line
// (class "front") through the front's points, which are drawn ringed.
std::string plot_pareto_svg(const std::vector<ParetoPoint>& points, const std::string& metric_name,
                            const std::string& title);

}  // namespace idem::cli
