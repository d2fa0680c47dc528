// The rows of one run indexed by (seed, shift, method), and the per-seed means the tables and
// plots summarize (report.cpp, pareto.cpp). Internal to the run-directory writers.
#pragma once
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "apps/idem/report.h"
#include "apps/idem/stats.h"

namespace idem::cli {

// Methods (methods = true) or shifts in first-seen order.
inline std::vector<std::string> ordered(const std::vector<ResultRow>& rows, bool methods) {
  std::vector<std::string> out;
  for (const auto& r : rows) {
    const std::string& k = methods ? r.method : r.shift;
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  }
  return out;
}

// The shifts behind "mean over all shifts": every shift but clean; clean alone when a run has
// nothing else.
inline std::vector<std::string> summary_shifts(const std::vector<ResultRow>& rows) {
  std::vector<std::string> out;
  for (const auto& s : ordered(rows, false))
    if (s != "clean") out.push_back(s);
  return out.empty() ? ordered(rows, false) : out;
}

struct RowIndex {
  std::vector<uint64_t> seeds;  // first-seen order
  std::map<std::tuple<uint64_t, std::string, std::string>, const ResultRow*> at;
  explicit RowIndex(const std::vector<ResultRow>& rows) {
    for (const auto& r : rows) {
      if (std::find(seeds.begin(), seeds.end(), r.seed) == seeds.end()) seeds.push_back(r.seed);
      at[{r.seed, r.shift, r.method}] = &r;
    }
  }
  // Per seed, `field` (the metric unless named) of `method` averaged over `shifts`; a seed that
  // lacks one of them is left out (the tables never mix a partial seed into a mean).
  std::map<uint64_t, double> per_seed(const std::string& method, const std::vector<std::string>& shifts,
                                      double ResultRow::*field = &ResultRow::metric) const {
    std::map<uint64_t, double> out;
    for (uint64_t seed : seeds) {
      double sum = 0;
      size_t n = 0;
      for (const auto& s : shifts)
        if (auto it = at.find({seed, s, method}); it != at.end()) sum += it->second->*field, ++n;
      if (n == shifts.size() && n > 0) out[seed] = sum / double(n);
    }
    return out;
  }
  // mean ± CI over the seeds of `method` on `shifts`; nullopt when no seed has them all.
  std::optional<stats::Summary> cell(const std::string& method, const std::vector<std::string>& shifts,
                                     double ResultRow::*field = &ResultRow::metric) const {
    const auto v = per_seed(method, shifts, field);
    if (v.empty()) return std::nullopt;
    std::vector<double> xs;
    for (uint64_t seed : seeds)
      if (v.count(seed)) xs.push_back(v.at(seed));
    return stats::mean_ci(xs);
  }
  // The paired difference method − base over the seeds that have both.
  std::optional<stats::Summary> delta(const std::string& method, const std::string& base,
                                      const std::vector<std::string>& shifts) const {
    const auto a = per_seed(method, shifts), b = per_seed(base, shifts);
    std::vector<double> xa, xb;
    for (uint64_t seed : seeds)
      if (a.count(seed) && b.count(seed)) xa.push_back(a.at(seed)), xb.push_back(b.at(seed));
    if (xa.empty()) return std::nullopt;
    return stats::paired_difference(xa, xb);
  }
};

}  // namespace idem::cli
