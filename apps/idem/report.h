// Result tables (CSV, Markdown) and SVG plots of a run directory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace idem::cli {

// One (seed, shift, method) evaluation with its cost, averaged per batch. `seed` names the
// trained model (and its adaptation run); the tables pair rows of the same seed.
struct ResultRow {
  uint64_t seed = 0;
  std::string shift, method;
  double metric = 0;  // error % or MAE
  int64_t samples = 0, batches = 0;
  double forwards = 0, backwards = 0, steps = 0;  // per batch
  double us_per_batch = 0, us_per_sample = 0, launches_per_batch = 0, reset_bytes = 0;
  double loss_before = 0, loss_after = 0;  // mean adaptation loss at the first / last step
};

// Long form: one line per seed × shift × method, the seed first, then every cost column.
std::string results_csv(const std::vector<ResultRow>& rows);
// Over the seeds in `rows` (stats.h): a pivot (shift × method) of the metric as mean ± 95 %
// confidence interval, with summary lines (mean per severity/level, mean over all shifts,
// each averaged per seed first); then the paired Δ over `none` and Δ over `bn` in the same
// layout, when those methods are in `rows`; then a cost table per method; then the accuracy
// against cost table with the Pareto front (pareto.h). One seed prints means without an
// interval and says so.
std::string results_markdown(const std::vector<ResultRow>& rows, const std::string& metric_name,
                             const std::string& title);
// Metric vs shift level per method (the mean over families at each level; level 0 = clean),
// with 95 % confidence bars over the seeds when there are two or more.
std::string plot_metric_svg(const std::vector<ResultRow>& rows, const std::string& metric_name,
                            const std::string& title);
// µs per sample per method (bars, with forwards+backwards per batch in the label).
std::string plot_cost_svg(const std::vector<ResultRow>& rows, const std::string& title);
// Parses results_csv's output (used by the tests and `idem adapt` to check what it wrote).
// Also reads the older form without the seed column (every row then has seed 0).
std::vector<ResultRow> parse_results_csv(const std::string& text);

// A whole file as text (idem::Error naming the path when it cannot be read), and a text file
// written atomically: the run directory's reads and writes.
std::string read_text(const std::string& path);
void write_text(const std::string& path, const std::string& text);

// Writes the report files of a run into `dir` (each atomically): results.csv, results.md,
// metric.svg, cost.svg, pareto.csv and pareto.svg. Returns results.md's text.
std::string write_report_files(const std::string& dir, const std::vector<ResultRow>& rows,
                               const std::string& metric_name, const std::string& title);

}  // namespace idem::cli
