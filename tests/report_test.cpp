// The result tables of a run directory (apps/idem/report.h) on hand-made rows: the seed
// column of results.csv, mean ± CI per cell, paired Δ over none and bn, one seed without an
// interval, and the error bars of metric.svg.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "apps/idem/report.h"
#include "core/error.h"

using idem::cli::ResultRow;

namespace {

ResultRow row(uint64_t seed, const std::string& shift, const std::string& method, double metric) {
  ResultRow r;
  r.seed = seed, r.shift = shift, r.method = method, r.metric = metric;
  r.samples = 10, r.batches = 1, r.forwards = 1;
  return r;
}

// The line of `md` that starts with `prefix`, searching from the first occurrence of `after`.
std::string line_after(const std::string& md, const std::string& after, const std::string& prefix) {
  const size_t from = md.find(after);
  if (from == std::string::npos) return "";
  std::istringstream is(md.substr(from));
  for (std::string line; std::getline(is, line);)
    if (line.rfind(prefix, 0) == 0) return line;
  return "";
}

// Three seeds; on "clean": none {10, 12, 14}, bn {11, 11, 14}, it3 {9, 10, 14}.
std::vector<ResultRow> three_seeds() {
  std::vector<ResultRow> rows;
  const double none[] = {10, 12, 14}, bn[] = {11, 11, 14}, it3[] = {9, 10, 14};
  for (uint64_t s = 0; s < 3; ++s) {
    rows.push_back(row(s + 7, "clean", "none", none[s]));
    rows.push_back(row(s + 7, "clean", "bn", bn[s]));
    rows.push_back(row(s + 7, "clean", "it3", it3[s]));
    rows.push_back(row(s + 7, "zero:0.10", "none", none[s] + 2));
    rows.push_back(row(s + 7, "zero:0.10", "bn", bn[s] + 2));
    rows.push_back(row(s + 7, "zero:0.10", "it3", it3[s] + 1));
  }
  return rows;
}

}  // namespace

TEST(Report, CsvIsLongFormWithASeedColumnAndRoundTrips) {
  const auto rows = three_seeds();
  const std::string csv = idem::cli::results_csv(rows);
  EXPECT_EQ(csv.rfind("seed,shift,method,metric,samples,", 0), 0u) << csv;
  EXPECT_NE(csv.find("\n8,zero:0.10,it3,11.0000,10,"), std::string::npos) << csv;
  const auto back = idem::cli::parse_results_csv(csv);
  ASSERT_EQ(back.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(back[i].seed, rows[i].seed);
    EXPECT_EQ(back[i].shift, rows[i].shift);
    EXPECT_EQ(back[i].method, rows[i].method);
    EXPECT_DOUBLE_EQ(back[i].metric, rows[i].metric);
  }
  // The form before the seed column still reads (as seed 0); a bad seed cell does not.
  const auto old = idem::cli::parse_results_csv(
      "shift,method,metric,samples,batches,forwards_per_batch,backwards_per_batch,steps_per_batch,"
      "us_per_batch,us_per_sample,launches_per_batch,reset_bytes_per_batch,loss_before,loss_after\n"
      "clean,none,12.5,10,1,1,0,0,5,0.5,0,0,nan,nan\n");
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(old[0].seed, 0u);
  EXPECT_EQ(old[0].metric, 12.5);
  std::string bad = csv;
  bad.replace(bad.find("\n8,") + 1, 1, "x");
  EXPECT_THROW(idem::cli::parse_results_csv(bad), idem::Error);
}

TEST(Report, MarkdownHasMeanCiAndPairedDeltas) {
  const std::string md = idem::cli::results_markdown(three_seeds(), "error %", "t");
  EXPECT_NE(md.find("over 3 seeds (7, 8, 9; Student's t, 2 degrees of freedom)"), std::string::npos) << md;
  // none: mean 12, s = 2, half-width 4.3027·2/√3 = 4.968; bn: s = √3 → 4.303; it3: s = √7 → 6.572.
  EXPECT_EQ(line_after(md, "error % per shift", "| clean |"),
            "| clean | 12.000 ± 4.968 | 12.000 ± 4.303 | **11.000 ± 6.572** |") << md;
  // Δ it3 − none per seed {−1, −2, 0}: −1 ± 2.484; Δ bn − none {1, −1, 0}: 0 ± 2.484.
  EXPECT_EQ(line_after(md, "Δ over none", "| clean |"), "| clean | +0.000 ± 2.484 | -1.000 ± 2.484 |") << md;
  // Δ it3 − bn {−2, −1, 0}: −1 ± 2.484. none is not a column of the Δ bn table.
  EXPECT_EQ(line_after(md, "Δ over bn", "| shift |"), "| shift | it3 |") << md;
  EXPECT_EQ(line_after(md, "Δ over bn", "| clean |"), "| clean | -1.000 ± 2.484 |") << md;
  // zero:0.10 moves none and bn by +2 and it3 by +1: Δ it3 − none {−2, −3, −1}.
  EXPECT_EQ(line_after(md, "Δ over none", "| zero:0.10 |"), "| zero:0.10 | +0.000 ± 2.484 | -2.000 ± 2.484 |") << md;
  EXPECT_NE(md.find("mean over shifts and seeds"), std::string::npos);
}

TEST(Report, OneSeedPrintsNoInterval) {
  std::vector<ResultRow> rows;
  for (const auto& r : three_seeds())
    if (r.seed == 8) rows.push_back(r);
  const std::string md = idem::cli::results_markdown(rows, "error %", "t");
  EXPECT_NE(md.find("one seed (8): no confidence interval"), std::string::npos) << md;
  EXPECT_EQ(md.find("±"), std::string::npos) << md;
  EXPECT_EQ(line_after(md, "error % per shift", "| clean |"), "| clean | 12.000 | 11.000 | **10.000** |") << md;
  EXPECT_EQ(line_after(md, "Δ over none", "| clean |"), "| clean | -1.000 | -2.000 |") << md;
}

TEST(Report, MetricPlotHasErrorBarsOnlyWithSeveralSeeds) {
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
  };
  const auto rows = three_seeds();
  // 3 methods × 2 levels (clean, 0.10).
  EXPECT_EQ(count(idem::cli::plot_metric_svg(rows, "error %", "t"), "class=\"ci\""), 6u);
  std::vector<ResultRow> one;
  for (const auto& r : rows)
    if (r.seed == 7) one.push_back(r);
  EXPECT_EQ(count(idem::cli::plot_metric_svg(one, "error %", "t"), "class=\"ci\""), 0u);
}
