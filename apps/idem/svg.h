// The pieces every plot of a run directory shares (metric.svg, cost.svg, pareto.svg): number
// formatting, escaping, the frame (white page, title, axis label), the colour of the i-th
// method, and a 95 % confidence bar with end caps. One place, so the plots look alike.
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace idem::cli::svg {

// v with `prec` decimals ("nan" for a non-finite value).
std::string num(double v, int prec = 3);
// s with <, > and & escaped for SVG text.
std::string escape(const std::string& s);
// The colour of the i-th method (a fixed palette of 8, repeated).
const char* color(size_t i);
// Opens a W × H drawing: the <svg> element, a white background and the centred title.
void open(std::ostream& os, double W, double H, const std::string& title);
// A y axis label, rotated, centred on y = `y_mid` at x = 16.
// The x axis from (left, bottom) to (right, bottom) and the y axis from (left, top) down.
void axes(std::ostream& os, double left, double top, double right, double bottom);
// Six labels lo, lo + (hi − lo)/5, ..., hi on a linear y axis left of x = `left`; Y maps a
// value to pixels.
void y_ticks(std::ostream& os, double left, double lo, double hi, const std::function<double(double)>& Y);
void y_label(std::ostream& os, double y_mid, const std::string& label);
// A confidence bar from (x0, y0) to (x1, y1) (vertical or horizontal) with 6-pixel end caps
// across it, class "ci" (tests count them).
void error_bar(std::ostream& os, double x0, double y0, double x1, double y1, const char* col);
void close(std::ostream& os);

}  // namespace idem::cli::svg
