// Result tables (CSV, Markdown) and SVG plots of a run directory.
#pragma once
#include <string>
#include <vector>

namespace idem::cli {

// One (shift, method) evaluation with its cost, averaged per batch.
struct ResultRow {
  std::string shift, method;
  double metric = 0;  // error % or MAE
  int64_t samples = 0, batches = 0;
  double forwards = 0, backwards = 0, steps = 0;  // per batch
  double us_per_batch = 0, us_per_sample = 0, launches_per_batch = 0, reset_bytes = 0;
  double loss_before = 0, loss_after = 0;  // mean adaptation loss at the first / last step
};

std::string results_csv(const std::vector<ResultRow>& rows);
// A pivot (shift × method) of the metric, summary lines (mean per severity/level, mean over
// all shifts), then a cost table per method.
std::string results_markdown(const std::vector<ResultRow>& rows, const std::string& metric_name,
                             const std::string& title);
// Metric vs shift level per method (the mean over families at each level; level 0 = clean).
std::string plot_metric_svg(const std::vector<ResultRow>& rows, const std::string& metric_name,
                            const std::string& title);
// µs per sample per method (bars, with forwards+backwards per batch in the label).
std::string plot_cost_svg(const std::vector<ResultRow>& rows, const std::string& title);
// Parses results_csv's output (used by the tests and `idem adapt` to check what it wrote).
std::vector<ResultRow> parse_results_csv(const std::string& text);

}  // namespace idem::cli
