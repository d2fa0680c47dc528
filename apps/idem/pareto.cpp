#include "apps/idem/pareto.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "apps/idem/row_index.h"
#include "apps/idem/svg.h"

namespace idem::cli {

using svg::num;

namespace {

bool finite(const ParetoPoint& p) { return std::isfinite(p.cost.mean) && std::isfinite(p.metric.mean); }

// a dominates b: at most b's cost and metric, and strictly below in one of them.
bool dominates(const ParetoPoint& a, const ParetoPoint& b) {
  return a.cost.mean <= b.cost.mean && a.metric.mean <= b.metric.mean &&
         (a.cost.mean < b.cost.mean || a.metric.mean < b.metric.mean);
}

// Indices of `points` by cost, then metric (the front's step order).
std::vector<size_t> by_cost(const std::vector<ParetoPoint>& points) {
  std::vector<size_t> order(points.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto &pa = points[a], &pb = points[b];
    return pa.cost.mean != pb.cost.mean ? pa.cost.mean < pb.cost.mean : pa.metric.mean < pb.metric.mean;
  });
  return order;
}

// The half-width of s's interval, 0 where it has none.
double half(const stats::Summary& s) { return s.has_interval() && std::isfinite(s.half_width) ? s.half_width : 0.0; }

}  // namespace

void mark_pareto_front(std::vector<ParetoPoint>& points) {
  for (auto& p : points) {
    p.on_front = finite(p);
    for (const auto& q : points)
      if (p.on_front && &q != &p && finite(q) && dominates(q, p)) p.on_front = false;
  }
}

std::vector<ParetoPoint> pareto_points(const std::vector<ResultRow>& rows) {
  const RowIndex idx(rows);
  const auto all_shifts = ordered(rows, false), metric_shifts = summary_shifts(rows);
  std::vector<ParetoPoint> points;
  for (const auto& m : ordered(rows, true)) {
    const auto cost = idx.cell(m, all_shifts, &ResultRow::us_per_sample);
    const auto metric = idx.cell(m, metric_shifts);
    if (!cost || !metric) continue;
    points.push_back({m, *cost, *metric, false});
  }
  mark_pareto_front(points);
  return points;
}

std::string pareto_csv(const std::vector<ParetoPoint>& points) {
  std::ostringstream os;
  os << "method,us_per_sample,us_per_sample_ci95,metric,metric_ci95,seeds,on_front\n";
  auto ci = [](const stats::Summary& s) { return s.has_interval() ? num(s.half_width, 4) : std::string(); };
  for (const auto& p : points)
    os << p.method << ',' << num(p.cost.mean, 3) << ',' << ci(p.cost) << ',' << num(p.metric.mean, 4) << ','
       << ci(p.metric) << ',' << p.metric.n << ',' << (p.on_front ? 1 : 0) << '\n';
  return os.str();
}

std::string pareto_markdown(const std::vector<ParetoPoint>& points, const std::string& metric_name) {
  const int n = points.empty() ? 0 : points.front().metric.n;
  std::ostringstream os;
  os << "Accuracy against cost (pareto.svg): " << metric_name
     << " over every shift but clean (clean when it is the only one), as in the line *mean over all "
        "shifts*, and µs per sample over every shift"
     << (n > 1 ? ", each mean ± 95 % confidence interval over the seeds" : ", one seed") << ". On the front: no "
        "other method is as cheap and as accurate with one of the two strictly better.\n\n"
     << "| method | µs / sample | " << metric_name << " | on the front |\n|---|---:|---:|:---:|\n";
  for (size_t i : by_cost(points)) {
    const auto& p = points[i];
    os << "| " << p.method << " | " << stats::format(p.cost, 1) << " | " << stats::format(p.metric, 3) << " | "
       << (p.on_front ? "yes" : "no") << " |\n";
  }
  return os.str();
}

std::string plot_pareto_svg(const std::vector<ParetoPoint>& points, const std::string& metric_name,
                            const std::string& title) {
  std::vector<size_t> shown;  // points with finite values; the rest are named in a note
  for (size_t i = 0; i < points.size(); ++i)
    if (finite(points[i])) shown.push_back(i);
  // x: log10 of µs per sample over whole decades around the points (a cost of 0 or below, which
  // a log axis cannot show, is drawn at the axis' left end).
  double xlo = INFINITY, xhi = 0, ylo = INFINITY, yhi = -INFINITY;
  for (size_t i : shown) {
    const auto& p = points[i];
    if (p.cost.mean - half(p.cost) > 0) xlo = std::min(xlo, p.cost.mean - half(p.cost));
    else if (p.cost.mean > 0) xlo = std::min(xlo, p.cost.mean);
    xhi = std::max(xhi, p.cost.mean + half(p.cost));
    ylo = std::min(ylo, p.metric.mean - half(p.metric));
    yhi = std::max(yhi, p.metric.mean + half(p.metric));
  }
  if (!(xhi > 0)) xlo = 1, xhi = 10;
  if (!std::isfinite(xlo)) xlo = xhi / 10;
  const double dlo = std::floor(std::log10(xlo)), dhi = std::max(std::ceil(std::log10(xhi)), dlo + 1);
  if (!std::isfinite(ylo)) ylo = 0, yhi = 1;
  const double pad = yhi > ylo ? 0.1 * (yhi - ylo) : std::max(0.05 * std::fabs(yhi), 0.5);
  ylo = std::max(0.0, ylo - pad), yhi += pad;

  const double W = 640, H = 440, L = 70, R = 30, T = 40, B = 90;
  auto X = [&](double us) {
    const double lx = us > 0 ? std::log10(us) : dlo;
    return L + (lx - dlo) / (dhi - dlo) * (W - L - R);
  };
  auto Y = [&](double y) { return H - B - (y - ylo) / (yhi - ylo) * (H - T - B); };
  std::ostringstream os;
  svg::open(os, W, H, title);
  svg::axes(os, L, T, W - R, H - B);
  svg::y_label(os, (T + H - B) / 2, metric_name + " (mean over shifts)");
  svg::y_ticks(os, L, ylo, yhi, Y);
  // Ticks at 1, 2 and 5 of every decade; whole decades labelled and gridded.
  for (double d = dlo; d <= dhi; ++d)
    for (double f : {1.0, 2.0, 5.0}) {
      const double us = f * std::pow(10.0, d);
      if (std::log10(us) > dhi + 1e-9) break;
      const double x = X(us);
      os << "<line x1=\"" << num(x, 1) << "\" y1=\"" << H - B << "\" x2=\"" << num(x, 1) << "\" y2=\""
         << (f == 1 ? T : H - B - 4) << "\" stroke=\"" << (f == 1 ? "#ddd" : "black") << "\"/>\n"
         << "<text x=\"" << num(x, 1) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\""
         << (f == 1 ? "" : " fill=\"#555\" font-size=\"10\"") << ">" << svg::num(us, us < 1 ? 2 : 0) << "</text>\n";
    }
  os << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - B + 36
     << "\" text-anchor=\"middle\">µs per sample (log scale)</text>\n";

  // The front: from the cheapest of its points, across to the next one's cost, then down to its
  // metric (the best metric reachable at each cost), and on to the right edge.
  std::string front;
  for (size_t i : by_cost(points)) {
    const auto& p = points[i];
    if (!p.on_front) continue;
    front += front.empty() ? "M" + num(X(p.cost.mean), 1) + "," + num(Y(p.metric.mean), 1)
                           : " H" + num(X(p.cost.mean), 1) + " V" + num(Y(p.metric.mean), 1);
  }
  if (!front.empty())
    os << "<path d=\"" << front << " H" << W - R << "\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\" "
       << "stroke-dasharray=\"5,3\" class=\"front\"/>\n";
  int nseeds = 0;
  for (size_t i : shown) {
    const auto& p = points[i];
    const char* col = svg::color(i);
    const double x = X(p.cost.mean), y = Y(p.metric.mean);
    nseeds = std::max(nseeds, p.metric.n);
    os << "<g class=\"point\">\n";
    if (half(p.metric) > 0)
      svg::error_bar(os, x, Y(p.metric.mean - half(p.metric)), x, Y(p.metric.mean + half(p.metric)), col);
    if (half(p.cost) > 0)
      svg::error_bar(os, X(p.cost.mean - half(p.cost)), y, X(p.cost.mean + half(p.cost)), y, col);
    if (p.on_front)
      os << "<circle cx=\"" << num(x, 1) << "\" cy=\"" << num(y, 1) << "\" r=\"7\" fill=\"none\" stroke=\"black\"/>\n";
    os << "<circle cx=\"" << num(x, 1) << "\" cy=\"" << num(y, 1) << "\" r=\"4\" fill=\"" << col << "\"/>\n"
       // Labels alternate above and below their points, so neighbours overlap less.
       << "<text x=\"" << num(x + 8, 1) << "\" y=\"" << num(i % 2 ? y + 18 : y - 8, 1) << "\" fill=\"" << col << "\">"
       << svg::escape(p.method) << "</text>\n</g>\n";
  }
  // The caption: what the axes average and what the bars and rings mean.
  std::vector<std::string> caption{
      "lower left is better; ringed points and the dashed steps: the Pareto front",
      nseeds > 1 ? "points: means over " + std::to_string(nseeds) + " seeds; bars: 95 % CI over the seeds (both axes)"
                 : "one seed: no confidence bars; x is the mean over shifts of µs per sample"};
  std::string missing;
  for (size_t i = 0; i < points.size(); ++i)
    if (!finite(points[i])) missing += (missing.empty() ? "" : ", ") + points[i].method;
  if (!missing.empty()) caption.push_back("not drawn (no finite value): " + missing);
  for (size_t i = 0; i < caption.size(); ++i)
    os << "<text x=\"" << L << "\" y=\"" << H - B + 56 + 14 * double(i) << "\" fill=\"#555\" font-size=\"11\">"
       << svg::escape(caption[i]) << "</text>\n";
  svg::close(os);
  return os.str();
}

}  // namespace idem::cli
