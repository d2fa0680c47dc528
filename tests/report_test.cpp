// The result tables of a run directory (apps/idem/report.h) on hand-made rows: the seed
// column of results.csv, mean ± CI per cell, paired Δ over none and bn, one seed without an
// interval, the error bars of metric.svg; the Pareto front, pareto.csv, the Pareto table and
// pareto.svg.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "apps/idem/pareto.h"
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

// ---- Accuracy against cost (apps/idem/pareto.h) ----

namespace {

idem::cli::ParetoPoint point(const std::string& m, double us, double metric) {
  idem::cli::ParetoPoint p;
  p.method = m;
  p.cost = idem::cli::stats::mean_ci({us});
  p.metric = idem::cli::stats::mean_ci({metric});
  return p;
}

std::vector<bool> front_of(std::vector<idem::cli::ParetoPoint> pts) {
  idem::cli::mark_pareto_front(pts);
  std::vector<bool> out;
  for (const auto& p : pts) out.push_back(p.on_front);
  return out;
}

size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(Pareto, FrontKeepsTheUndominatedOnly) {
  // b is cheaper and better than d; c is the most accurate; a the cheapest; e ties c's metric
  // at a higher cost (dominated); f equals b exactly (neither dominates the other).
  const std::vector<bool> f = front_of({point("a", 1, 30), point("b", 5, 20), point("c", 50, 10),
                                        point("d", 10, 25), point("e", 80, 10), point("f", 5, 20)});
  EXPECT_EQ(f, (std::vector<bool>{true, true, true, false, false, true}));
  // Equal cost: the lower metric wins; equal metric: the lower cost wins.
  EXPECT_EQ(front_of({point("a", 3, 12), point("b", 3, 11)}), (std::vector<bool>{false, true}));
  EXPECT_EQ(front_of({point("a", 3, 11), point("b", 2, 11)}), (std::vector<bool>{false, true}));
  // One method is its own front; a NaN is never on it and dominates nothing.
  EXPECT_EQ(front_of({point("it3", 40, 12)}), (std::vector<bool>{true}));
  EXPECT_EQ(front_of({point("a", 3, NAN), point("b", 4, 11)}), (std::vector<bool>{false, true}));
  EXPECT_EQ(front_of({}), (std::vector<bool>{}));
}

TEST(Pareto, PointsTableAndCsvFromThreeSeeds) {
  // Costs per sample: none 1, bn 2, it3 30 (it3: 20, 30, 40 over the seeds).
  auto rows = three_seeds();
  for (auto& r : rows)
    r.us_per_sample = r.method == "none" ? 1 : r.method == "bn" ? 2 : 20 + 10 * double(r.seed - 7);
  const auto pts = idem::cli::pareto_points(rows);
  ASSERT_EQ(pts.size(), 3u);
  // The metric is over zero:0.10 alone (the one non-clean shift): none {12, 14, 16}, bn {13, 13,
  // 16}, it3 {10, 11, 15}; the cost over both shifts.
  EXPECT_EQ(pts[0].method, "none");
  EXPECT_DOUBLE_EQ(pts[0].metric.mean, 14.0);
  EXPECT_NEAR(pts[0].metric.half_width, 4.302653 * 2 / std::sqrt(3.0), 1e-4);
  EXPECT_DOUBLE_EQ(pts[1].metric.mean, 14.0);
  EXPECT_DOUBLE_EQ(pts[2].metric.mean, 12.0);
  EXPECT_DOUBLE_EQ(pts[2].cost.mean, 30.0);
  EXPECT_NEAR(pts[2].cost.half_width, 4.302653 * 10 / std::sqrt(3.0), 1e-4);
  EXPECT_FALSE(pts[1].cost.half_width > 0);  // 2, 2, 2: a zero-width interval
  // bn costs more than none for the same mean metric: dominated.
  EXPECT_TRUE(pts[0].on_front);
  EXPECT_FALSE(pts[1].on_front);
  EXPECT_TRUE(pts[2].on_front);

  const std::string csv = idem::cli::pareto_csv(pts);
  EXPECT_EQ(csv,
            "method,us_per_sample,us_per_sample_ci95,metric,metric_ci95,seeds,on_front\n"
            "none,1.000,0.0000,14.0000,4.9683,3,1\n"
            "bn,2.000,0.0000,14.0000,4.3027,3,0\n"
            "it3,30.000,24.8414,12.0000,6.5724,3,1\n");
  const std::string md = idem::cli::results_markdown(rows, "error %", "t");
  EXPECT_EQ(line_after(md, "Accuracy against cost", "| none |"), "| none | 1.0 ± 0.0 | 14.000 ± 4.968 | yes |") << md;
  EXPECT_EQ(line_after(md, "Accuracy against cost", "| bn |"), "| bn | 2.0 ± 0.0 | 14.000 ± 4.303 | no |") << md;
  EXPECT_EQ(line_after(md, "Accuracy against cost", "| it3 |"), "| it3 | 30.0 ± 24.8 | 12.000 ± 6.572 | yes |") << md;

  // The plot: one labelled point per method, bars both ways where the interval is wider than 0
  // (none and bn: metric only; it3: both), the front's two points ringed and one step line.
  const std::string plot = idem::cli::plot_pareto_svg(pts, "error %", "t");
  EXPECT_EQ(plot.rfind("<svg", 0), 0u);
  EXPECT_EQ(count_of(plot, "<g class=\"point\">"), 3u);
  for (const char* m : {">none</text>", ">bn</text>", ">it3</text>"}) EXPECT_NE(plot.find(m), std::string::npos) << m;
  EXPECT_EQ(count_of(plot, "class=\"ci\""), 4u);
  EXPECT_EQ(count_of(plot, "class=\"front\""), 1u);
  EXPECT_EQ(count_of(plot, "r=\"7\""), 2u);
  EXPECT_NE(plot.find("bars: 95 % CI over the seeds"), std::string::npos);
}

TEST(Pareto, OneSeedHasNoBarsAndSaysTheCostIsAMean) {
  std::vector<ResultRow> rows;
  for (auto r : three_seeds())
    if (r.seed == 8) {
      r.us_per_sample = r.method == "it3" ? 50 : 1.5;
      rows.push_back(r);
    }
  const auto pts = idem::cli::pareto_points(rows);
  ASSERT_EQ(pts.size(), 3u);
  EXPECT_EQ(idem::cli::pareto_csv(pts),
            "method,us_per_sample,us_per_sample_ci95,metric,metric_ci95,seeds,on_front\n"
            "none,1.500,,14.0000,,1,0\n"
            "bn,1.500,,13.0000,,1,1\n"
            "it3,50.000,,11.0000,,1,1\n");
  const std::string plot = idem::cli::plot_pareto_svg(pts, "MAE", "t");
  EXPECT_EQ(count_of(plot, "<g class=\"point\">"), 3u);
  EXPECT_EQ(count_of(plot, "class=\"ci\""), 0u);
  EXPECT_NE(plot.find("one seed: no confidence bars; x is the mean over shifts of µs per sample"), std::string::npos);
  // A single method still draws (its own front).
  std::vector<ResultRow> single;
  for (const auto& r : rows)
    if (r.method == "it3") single.push_back(r);
  const auto one = idem::cli::pareto_points(single);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_TRUE(one[0].on_front);
  const std::string p1 = idem::cli::plot_pareto_svg(one, "MAE", "t");
  EXPECT_EQ(count_of(p1, "<g class=\"point\">"), 1u);
  EXPECT_EQ(count_of(p1, "class=\"front\""), 1u);
  EXPECT_EQ(p1.find("nan"), std::string::npos) << p1;
}
