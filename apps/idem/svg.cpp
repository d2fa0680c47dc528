#include "apps/idem/svg.h"

#include <cmath>
#include <cstdio>

namespace idem::cli::svg {

std::string num(double v, int prec) {
  char buf[64];
  if (!std::isfinite(v)) return "nan";
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

const char* color(size_t i) {
  static const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                  "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
  return kColors[i % 8];
}

void open(std::ostream& os, double W, double H, const std::string& title) {
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << escape(title) << "</text>\n";
}

void axes(std::ostream& os, double left, double top, double right, double bottom) {
  os << "<line x1=\"" << left << "\" y1=\"" << bottom << "\" x2=\"" << right << "\" y2=\"" << bottom << "\" stroke=\"black\"/>\n"
     << "<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\"" << bottom << "\" stroke=\"black\"/>\n";
}

void y_ticks(std::ostream& os, double left, double lo, double hi, const std::function<double(double)>& Y) {
  for (int i = 0; i <= 5; ++i) {
    const double y = lo + (hi - lo) * i / 5;
    os << "<text x=\"" << left - 6 << "\" y=\"" << Y(y) + 4 << "\" text-anchor=\"end\">" << num(y, hi - lo < 1.1 ? 3 : hi - lo < 11 ? 2 : 1)
       << "</text>\n";
  }
}

void y_label(std::ostream& os, double y_mid, const std::string& label) {
  os << "<text x=\"16\" y=\"" << y_mid << "\" transform=\"rotate(-90 16 " << y_mid
     << ")\" text-anchor=\"middle\">" << escape(label) << "</text>\n";
}

void error_bar(std::ostream& os, double x0, double y0, double x1, double y1, const char* col) {
  // The caps run across the bar: horizontal caps on a vertical bar and the other way round.
  const bool vertical = std::fabs(x1 - x0) < std::fabs(y1 - y0);
  const double cx = vertical ? 3 : 0, cy = vertical ? 0 : 3;
  os << "<path d=\"M" << num(x0, 1) << "," << num(y0, 1) << " L" << num(x1, 1) << "," << num(y1, 1)
     << " M" << num(x0 - cx, 1) << "," << num(y0 - cy, 1) << " L" << num(x0 + cx, 1) << "," << num(y0 + cy, 1)
     << " M" << num(x1 - cx, 1) << "," << num(y1 - cy, 1) << " L" << num(x1 + cx, 1) << "," << num(y1 + cy, 1)
     << "\" stroke=\"" << col << "\" stroke-width=\"1\" class=\"ci\"/>\n";
}

void close(std::ostream& os) { os << "</svg>\n"; }

}  // namespace idem::cli::svg
