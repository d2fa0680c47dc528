#include "apps/idem/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "apps/idem/tasks.h"
#include "core/error.h"

namespace idem::cli {

namespace {
std::string num(double v, int prec = 3) {
  char buf[64];
  if (!std::isfinite(v)) return "nan";
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}
std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}
// Methods and shifts in first-seen order.
std::vector<std::string> ordered(const std::vector<ResultRow>& rows, bool methods) {
  std::vector<std::string> out;
  for (const auto& r : rows) {
    const std::string& k = methods ? r.method : r.shift;
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  }
  return out;
}
const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
}  // namespace

std::string results_csv(const std::vector<ResultRow>& rows) {
  std::ostringstream os;
  os << "shift,method,metric,samples,batches,forwards_per_batch,backwards_per_batch,"
        "steps_per_batch,us_per_batch,us_per_sample,launches_per_batch,reset_bytes_per_batch,"
        "loss_before,loss_after\n";
  for (const auto& r : rows)
    os << r.shift << ',' << r.method << ',' << num(r.metric, 4) << ',' << r.samples << ','
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
  IDEM_CHECK(std::getline(is, line) && line.rfind("shift,method,metric", 0) == 0, "results.csv",
             "missing or wrong header");
  int lineno = 1;
  while (std::getline(is, line)) {
    ++lineno;
    if (line.empty()) continue;
    std::vector<std::string> c;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) c.push_back(cell);
    IDEM_CHECK(c.size() == 14, "results.csv", "line ", lineno, " has ", c.size(), " cells, expected 14");
    ResultRow r;
    r.shift = c[0], r.method = c[1];
    try {
      r.metric = std::stod(c[2]), r.samples = std::stoll(c[3]), r.batches = std::stoll(c[4]);
      r.forwards = std::stod(c[5]), r.backwards = std::stod(c[6]), r.steps = std::stod(c[7]);
      r.us_per_batch = std::stod(c[8]), r.us_per_sample = std::stod(c[9]);
      r.launches_per_batch = std::stod(c[10]), r.reset_bytes = std::stod(c[11]);
      r.loss_before = std::stod(c[12]), r.loss_after = std::stod(c[13]);
    } catch (const std::exception&) {
      fail("results.csv", "line ", lineno, " has a non-numeric cell");
    }
    rows.push_back(r);
  }
  return rows;
}

std::string results_markdown(const std::vector<ResultRow>& rows, const std::string& metric_name,
                             const std::string& title) {
  const auto methods = ordered(rows, true), shifts = ordered(rows, false);
  std::map<std::pair<std::string, std::string>, const ResultRow*> at;
  for (const auto& r : rows) at[{r.shift, r.method}] = &r;
  std::ostringstream os;
  os << "### " << title << "\n\n" << metric_name << " per shift (lower is better; best per row in bold)\n\n| shift |";
  for (const auto& m : methods) os << ' ' << m << " |";
  os << "\n|---|";
  for (size_t i = 0; i < methods.size(); ++i) os << "---:|";
  os << "\n";
  auto row_line = [&](const std::string& label, const std::vector<double>& vals) {
    double best = INFINITY;
    for (double v : vals) if (std::isfinite(v)) best = std::min(best, v);
    os << "| " << label << " |";
    for (double v : vals) {
      const bool b = std::isfinite(v) && v == best && vals.size() > 1;
      os << ' ' << (b ? "**" : "") << (std::isfinite(v) ? num(v, 3) : "–") << (b ? "**" : "") << " |";
    }
    os << "\n";
  };
  for (const auto& s : shifts) {
    std::vector<double> vals;
    for (const auto& m : methods) vals.push_back(at.count({s, m}) ? at[{s, m}]->metric : NAN);
    row_line(s, vals);
  }
  // Summaries: the mean over the non-clean shifts at each level, and over all non-clean ones.
  std::map<double, std::vector<std::string>> by_level;
  std::vector<std::string> shifted;
  for (const auto& s : shifts) {
    if (s == "clean") continue;
    shifted.push_back(s);
    by_level[Task::shift_family(s).second].push_back(s);
  }
  auto mean_over = [&](const std::vector<std::string>& ss) {
    std::vector<double> vals;
    for (const auto& m : methods) {
      double sum = 0;
      int n = 0;
      for (const auto& s : ss)
        if (at.count({s, m})) sum += at[{s, m}]->metric, ++n;
      vals.push_back(n ? sum / n : NAN);
    }
    return vals;
  };
  if (shifted.size() > 1) {
    if (by_level.size() > 1 || by_level.begin()->second.size() > 1)
      for (const auto& [lvl, ss] : by_level)
        if (ss.size() > 1) row_line("*mean, level " + num(lvl, lvl == std::floor(lvl) ? 0 : 2) + "*", mean_over(ss));
    row_line("*mean over all shifts*", mean_over(shifted));
  }
  os << "\nCost per batch (mean over shifts)\n\n| method | forwards | backwards | optimizer steps | µs / batch | µs / sample | GPU launches / batch | reset bytes / batch |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
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
  return os.str();
}

std::string plot_metric_svg(const std::vector<ResultRow>& rows, const std::string& metric_name,
                            const std::string& title) {
  const auto methods = ordered(rows, true);
  // method -> level -> (sum, n)
  std::map<std::string, std::map<double, std::pair<double, int>>> pts;
  double ymax = 0;
  std::set<double> levels;
  for (const auto& r : rows) {
    const double lvl = Task::shift_family(r.shift).second;
    auto& p = pts[r.method][lvl];
    p.first += r.metric, p.second += 1;
    levels.insert(lvl);
  }
  for (auto& [m, lv] : pts)
    for (auto& [l, p] : lv) ymax = std::max(ymax, p.first / p.second);
  if (ymax <= 0) ymax = 1;
  const double W = 640, H = 400, L = 70, R = 150, T = 40, B = 50;
  const double xmin = *levels.begin(), xmax = std::max(*levels.rbegin(), xmin + 1e-9);
  auto X = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (W - L - R); };
  auto Y = [&](double y) { return H - B - y / (ymax * 1.1) * (H - T - B); };
  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << xml_escape(title) << "</text>\n"
     << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n"
     << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n"
     << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">shift level (0 = clean)</text>\n"
     << "<text x=\"16\" y=\"" << (T + H - B) / 2 << "\" transform=\"rotate(-90 16 " << (T + H - B) / 2
     << ")\" text-anchor=\"middle\">" << xml_escape(metric_name) << "</text>\n";
  for (int i = 0; i <= 5; ++i) {
    const double y = ymax * 1.1 * i / 5;
    os << "<text x=\"" << L - 6 << "\" y=\"" << Y(y) + 4 << "\" text-anchor=\"end\">" << num(y, ymax < 1 ? 3 : 1) << "</text>\n";
  }
  for (double l : levels)
    os << "<text x=\"" << X(l) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << num(l, l == std::floor(l) ? 0 : 2) << "</text>\n";
  for (size_t mi = 0; mi < methods.size(); ++mi) {
    const char* col = kColors[mi % 8];
    std::string path;
    for (auto& [l, p] : pts[methods[mi]]) {
      path += (path.empty() ? "M" : " L") + num(X(l), 1) + "," + num(Y(p.first / p.second), 1);
      os << "<circle cx=\"" << X(l) << "\" cy=\"" << Y(p.first / p.second) << "\" r=\"3\" fill=\"" << col << "\"/>\n";
    }
    os << "<path d=\"" << path << "\" fill=\"none\" stroke=\"" << col << "\" stroke-width=\"2\"/>\n"
       << "<text x=\"" << W - R + 10 << "\" y=\"" << T + 16 * (mi + 1) << "\" fill=\"" << col << "\">"
       << xml_escape(methods[mi]) << "</text>\n";
  }
  os << "</svg>\n";
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
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << xml_escape(title) << "</text>\n"
     << "<text x=\"16\" y=\"" << (T + H - B) / 2 << "\" transform=\"rotate(-90 16 " << (T + H - B) / 2
     << ")\" text-anchor=\"middle\">µs per sample</text>\n";
  for (size_t i = 0; i < methods.size(); ++i) {
    const double h = us[i] / (ymax * 1.1) * (H - T - B), x = L + i * bw + bw * 0.15;
    os << "<rect x=\"" << x << "\" y=\"" << H - B - h << "\" width=\"" << bw * 0.7 << "\" height=\"" << h
       << "\" fill=\"" << kColors[i % 8] << "\"/>\n"
       << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << H - B - h - 4 << "\" text-anchor=\"middle\">" << num(us[i], 1) << "</text>\n"
       << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << xml_escape(methods[i]) << "</text>\n"
       << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << H - B + 32 << "\" text-anchor=\"middle\" fill=\"#555\">" << num(fb[i], 0) << " fwd+bwd</text>\n";
  }
  os << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - 20 << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n</svg>\n";
  return os.str();
}

}  // namespace idem::cli
