#include "apps/idem/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "apps/idem/pareto.h"
#include "apps/idem/row_index.h"
#include "apps/idem/stats.h"
#include "apps/idem/svg.h"
#include "apps/idem/tasks.h"
#include "core/error.h"
#include "io/file.h"

namespace idem::cli {

using svg::num;

std::string results_csv(const std::vector<ResultRow>& rows) {
  std::ostringstream os;
  os << "seed,shift,method,metric,samples,batches,forwards_per_batch,backwards_per_batch,"
        "steps_per_batch,us_per_batch,us_per_sample,launches_per_batch,reset_bytes_per_batch,"
        "loss_before,loss_after\n";
  for (const auto& r : rows)
    os << r.seed << ',' << r.shift << ',' << r.method << ',' << num(r.metric, 4) << ',' << r.samples << ','
       << r.batches << ',' << num(r.forwards, 2) << ',' << num(r.backwards, 2) << ','
       << num(r.steps, 2) << ',' << num(r.us_per_batch, 1) << ',' << num(r.us_per_sample, 2) << ','
       << num(r.launches_per_batch, 1) << ',' << num(r.reset_bytes, 0) << ','
       << num(r.loss_before, 6) << ',' << num(r.loss_after, 6) << '\n';
  return os.str();
}

std::vector<ResultRow> parse_results_csv(const std::string& text) {
  std::vector<ResultRow> rows;
  std::istringstream is(text);
  std::string line;
  IDEM_CHECK(std::getline(is, line), "results.csv", "empty file");
  // Runs before the seed column (issue 16) wrote the same columns without it.
  const bool seeded = line.rfind("seed,shift,method,metric", 0) == 0;
  IDEM_CHECK(seeded || line.rfind("shift,method,metric", 0) == 0, "results.csv",
             "wrong header (expected seed,shift,method,metric,...): ", line);
  const size_t first = seeded ? 1 : 0, cells = first + 14;
  int lineno = 1;
  while (std::getline(is, line)) {
    ++lineno;
    if (line.empty()) continue;
    std::vector<std::string> c;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) c.push_back(cell);
    IDEM_CHECK(c.size() == cells, "results.csv", "line ", lineno, " has ", c.size(), " cells, expected ", cells);
    ResultRow r;
    try {
      if (seeded) {
        size_t used = 0;
        r.seed = std::stoull(c[0], &used);
        if (used != c[0].size() || c[0][0] == '-') throw std::invalid_argument(c[0]);
      }
      const std::string* f = c.data() + first;
      r.shift = f[0], r.method = f[1];
      r.metric = std::stod(f[2]), r.samples = std::stoll(f[3]), r.batches = std::stoll(f[4]);
      r.forwards = std::stod(f[5]), r.backwards = std::stod(f[6]), r.steps = std::stod(f[7]);
      r.us_per_batch = std::stod(f[8]), r.us_per_sample = std::stod(f[9]);
      r.launches_per_batch = std::stod(f[10]), r.reset_bytes = std::stod(f[11]);
      r.loss_before = std::stod(f[12]), r.loss_after = std::stod(f[13]);
    } catch (const std::exception&) {
      fail("results.csv", "line ", lineno, " has a non-numeric cell");
    }
    rows.push_back(r);
  }
  return rows;
}

namespace {

std::string seed_list(const std::vector<uint64_t>& seeds) {
  std::string out;
  for (size_t i = 0; i < seeds.size(); ++i) out += (i ? ", " : "") + std::to_string(seeds[i]);
  return out;
}

}  // namespace

std::string results_markdown(const std::vector<ResultRow>& rows, const std::string& metric_name,
                             const std::string& title) {
  const auto methods = ordered(rows, true), shifts = ordered(rows, false);
  const RowIndex idx(rows);
  const size_t nseeds = idx.seeds.size();
  // The table's lines: each shift, then the mean over the non-clean shifts at each level (when
  // a level has several), then over all of them. Means are taken per seed, then summarized.
  std::vector<std::pair<std::string, std::vector<std::string>>> lines;
  for (const auto& s : shifts) lines.push_back({s, {s}});
  std::map<double, std::vector<std::string>> by_level;
  std::vector<std::string> shifted;
  for (const auto& s : shifts) {
    if (s == "clean") continue;
    shifted.push_back(s);
    by_level[Task::shift_family(s).second].push_back(s);
  }
  if (shifted.size() > 1) {
    if (by_level.size() > 1 || by_level.begin()->second.size() > 1)
      for (const auto& [lvl, ss] : by_level)
        if (ss.size() > 1) lines.push_back({"*mean, level " + num(lvl, lvl == std::floor(lvl) ? 0 : 2) + "*", ss});
    lines.push_back({"*mean over all shifts*", shifted});
  }

  std::ostringstream os;
  os << "### " << title << "\n\n";
  if (nseeds > 1)
    os << metric_name << " per shift: mean ± 95 % confidence interval over " << nseeds << " seeds ("
       << seed_list(idx.seeds) << "; Student's t, " << nseeds - 1
       << (nseeds == 2 ? " degree" : " degrees") << " of freedom). Lower is better; the best mean per row is in bold.\n\n";
  else
    os << metric_name << " per shift, one seed (" << seed_list(idx.seeds)
       << "): no confidence interval, which needs two or more seeds (--seeds). Lower is better; "
          "the best per row is in bold.\n\n";
  // One pivot: a line per entry of `lines`, a column per method in `cols`.
  auto pivot = [&](const std::vector<std::string>& cols, bool sign, bool bold,
                   const std::function<std::optional<stats::Summary>(const std::string&, const std::vector<std::string>&)>& value) {
    os << "| shift |";
    for (const auto& m : cols) os << ' ' << m << " |";
    os << "\n|---|";
    for (size_t i = 0; i < cols.size(); ++i) os << "---:|";
    os << "\n";
    for (const auto& [label, ss] : lines) {
      std::vector<std::optional<stats::Summary>> vals;
      double best = INFINITY;
      for (const auto& m : cols) {
        vals.push_back(value(m, ss));
        if (vals.back() && std::isfinite(vals.back()->mean)) best = std::min(best, vals.back()->mean);
      }
      os << "| " << label << " |";
      for (const auto& v : vals) {
        const bool b = bold && v && v->mean == best && vals.size() > 1;
        os << ' ' << (b ? "**" : "") << (v ? stats::format(*v, 3, sign) : "–") << (b ? "**" : "") << " |";
      }
      os << "\n";
    }
  };
  pivot(methods, false, true, [&](const std::string& m, const std::vector<std::string>& ss) { return idx.cell(m, ss); });
  // Δ over a baseline, paired per seed: the same trained model on both sides of each difference.
  for (const std::string base : {"none", "bn"}) {
    if (std::find(methods.begin(), methods.end(), base) == methods.end()) continue;
    std::vector<std::string> cols;
    for (const auto& m : methods)
      if (m != base && m != "none") cols.push_back(m);
    if (cols.empty()) continue;
    os << "\nΔ over " << base << ": per seed, method − " << base << ", then the mean"
       << (nseeds > 1 ? " ± 95 % confidence interval" : "") << " of the differences (negative = better than "
       << base << ")\n\n";
    pivot(cols, true, false, [&](const std::string& m, const std::vector<std::string>& ss) { return idx.delta(m, base, ss); });
  }
  os << "\nCost per batch (mean over shifts" << (nseeds > 1 ? " and seeds" : "")
     << ")\n\n| method | forwards | backwards | optimizer steps | µs / batch | µs / sample | GPU launches / batch | reset bytes / batch |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& m : methods) {
    ResultRow acc;
    int n = 0;
    for (const auto& r : rows)
      if (r.method == m) {
        acc.forwards += r.forwards, acc.backwards += r.backwards, acc.steps += r.steps;
        acc.us_per_batch += r.us_per_batch, acc.us_per_sample += r.us_per_sample;
        acc.launches_per_batch += r.launches_per_batch, acc.reset_bytes += r.reset_bytes;
        ++n;
      }
    const double k = n ? 1.0 / n : 0;
    os << "| " << m << " | " << num(acc.forwards * k, 1) << " | " << num(acc.backwards * k, 1) << " | "
       << num(acc.steps * k, 1) << " | " << num(acc.us_per_batch * k, 0) << " | "
       << num(acc.us_per_sample * k, 1) << " | " << num(acc.launches_per_batch * k, 0) << " | "
       << num(acc.reset_bytes * k, 0) << " |\n";
  }
  os << "\n" << pareto_markdown(pareto_points(rows), metric_name);
  return os.str();
}

std::string plot_metric_svg(const std::vector<ResultRow>& rows, const std::string& metric_name,
                            const std::string& title) {
  const auto methods = ordered(rows, true);
  const RowIndex idx(rows);
  std::map<double, std::vector<std::string>> at_level;  // level -> its shifts (0: clean)
  for (const auto& s : ordered(rows, false)) at_level[Task::shift_family(s).second].push_back(s);
  // method -> level -> mean ± CI over the seeds of the per-seed mean over the level's shifts.
  std::map<std::string, std::map<double, stats::Summary>> pts;
  double ymax = 0;
  std::set<double> levels;
  for (const auto& m : methods)
    for (const auto& [lvl, ss] : at_level)
      if (auto c = idx.cell(m, ss); c && std::isfinite(c->mean)) {
        pts[m][lvl] = *c;
        levels.insert(lvl);
        ymax = std::max(ymax, c->mean + (c->has_interval() && std::isfinite(c->half_width) ? c->half_width : 0.0));
      }
  if (levels.empty()) levels.insert(0);
  if (ymax <= 0) ymax = 1;
  const double W = 640, H = 400, L = 70, R = 150, T = 40, B = 50;
  const double xmin = *levels.begin(), xmax = std::max(*levels.rbegin(), xmin + 1e-9);
  auto X = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (W - L - R); };
  auto Y = [&](double y) { return H - B - y / (ymax * 1.1) * (H - T - B); };
  std::ostringstream os;
  svg::open(os, W, H, title);
  svg::axes(os, L, T, W - R, H - B);
  svg::y_label(os, (T + H - B) / 2, metric_name);
  os << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">shift level (0 = clean)</text>\n";
  svg::y_ticks(os, L, 0, ymax * 1.1, Y);
  for (double l : levels)
    os << "<text x=\"" << X(l) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << num(l, l == std::floor(l) ? 0 : 2) << "</text>\n";
  const size_t nseeds = idx.seeds.size();
  if (nseeds > 1)
    os << "<text x=\"" << W - R + 10 << "\" y=\"" << T + 16 * (methods.size() + 2) << "\" fill=\"#555\">bars: 95 % CI,</text>\n"
       << "<text x=\"" << W - R + 10 << "\" y=\"" << T + 16 * (methods.size() + 3) << "\" fill=\"#555\">" << nseeds << " seeds</text>\n";
  for (size_t mi = 0; mi < methods.size(); ++mi) {
    const char* col = svg::color(mi);
    std::string path;
    // A small sideways offset per method keeps overlapping error bars apart.
    const double dx = nseeds > 1 ? (double(mi) - 0.5 * double(methods.size() - 1)) * 3.0 : 0.0;
    for (const auto& [l, c] : pts[methods[mi]]) {
      const double x = X(l) + dx;
      path += (path.empty() ? "M" : " L") + num(x, 1) + "," + num(Y(c.mean), 1);
      os << "<circle cx=\"" << x << "\" cy=\"" << Y(c.mean) << "\" r=\"3\" fill=\"" << col << "\"/>\n";
      if (c.has_interval() && std::isfinite(c.half_width))
        svg::error_bar(os, x, Y(std::max(0.0, c.mean - c.half_width)), x, Y(c.mean + c.half_width), col);
    }
    os << "<path d=\"" << path << "\" fill=\"none\" stroke=\"" << col << "\" stroke-width=\"2\"/>\n"
       << "<text x=\"" << W - R + 10 << "\" y=\"" << T + 16 * (mi + 1) << "\" fill=\"" << col << "\">"
       << svg::escape(methods[mi]) << "</text>\n";
  }
  svg::close(os);
  return os.str();
}

std::string plot_cost_svg(const std::vector<ResultRow>& rows, const std::string& title) {
  const auto methods = ordered(rows, true);
  std::vector<double> us(methods.size(), 0), fb(methods.size(), 0);
  std::vector<int> n(methods.size(), 0);
  for (const auto& r : rows) {
    const size_t i = size_t(std::find(methods.begin(), methods.end(), r.method) - methods.begin());
    us[i] += r.us_per_sample, fb[i] += r.forwards + r.backwards, ++n[i];
  }
  double ymax = 0;
  for (size_t i = 0; i < methods.size(); ++i) {
    if (n[i]) us[i] /= n[i], fb[i] /= n[i];
    ymax = std::max(ymax, us[i]);
  }
  if (ymax <= 0) ymax = 1;
  const double W = 640, H = 400, L = 70, T = 40, B = 60, bw = (W - L - 20) / std::max<size_t>(1, methods.size());
  std::ostringstream os;
  svg::open(os, W, H, title);
  svg::y_label(os, (T + H - B) / 2, "µs per sample");
  for (size_t i = 0; i < methods.size(); ++i) {
    const double h = us[i] / (ymax * 1.1) * (H - T - B), x = L + i * bw + bw * 0.15;
    os << "<rect x=\"" << x << "\" y=\"" << H - B - h << "\" width=\"" << bw * 0.7 << "\" height=\"" << h
       << "\" fill=\"" << svg::color(i) << "\"/>\n"
       << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << H - B - h - 4 << "\" text-anchor=\"middle\">" << num(us[i], 1) << "</text>\n"
       << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << svg::escape(methods[i]) << "</text>\n"
       << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << H - B + 32 << "\" text-anchor=\"middle\" fill=\"#555\">" << num(fb[i], 0) << " fwd+bwd</text>\n";
  }
  os << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - 20 << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n";
  svg::close(os);
  return os.str();
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("idem", "cannot read ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  write_file_atomic(path, "idem run", [&](const ByteSink& sink) { sink(text.data(), text.size()); });
}

std::string write_report_files(const std::string& dir, const std::vector<ResultRow>& rows,
                               const std::string& metric_name, const std::string& title) {
  auto write = [&](const std::string& name, const std::string& text) { write_text(dir + "/" + name, text); };
  write("results.csv", results_csv(rows));
  const std::string md = results_markdown(rows, metric_name, title);
  write("results.md", md);
  write("metric.svg", plot_metric_svg(rows, metric_name, title));
  write("cost.svg", plot_cost_svg(rows, "cost per method: " + title));
  const std::vector<ParetoPoint> front = pareto_points(rows);
  write("pareto.csv", pareto_csv(front));
  write("pareto.svg", plot_pareto_svg(front, metric_name, "accuracy against cost: " + title));
  return md;
}

}  // namespace idem::cli
