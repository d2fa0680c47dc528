// Airfoil samples and graphs (see airfoil.h). The solves run in parallel into plain host
// vectors; tensors and graphs are made on the calling thread afterwards, so the parallel part
// touches no library state.
#include "data/airfoil.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/parallel.h"
#include "core/philox.h"
#include "data/panel_method.h"

namespace idem::data {
namespace {

constexpr double kPi = 3.14159265358979323846;
// Philox stream ("offset") of the sample parameters: keeps them apart from other draws that a
// caller might make with the same seed.
constexpr uint64_t kParamStream = 0xA1F0;
constexpr int kNodeFeatures = 5;  // x, y, nx, ny, alpha

// One solved airfoil before it becomes tensors.
struct RawSample {
  double m, p, t, alpha_deg, cl;
  std::vector<float> x;     // (V, 5) node features, row-major
  std::vector<float> attr;  // (E, 2) edge pseudo-coordinates
  std::vector<float> cp;    // (V)
};

// Ring edges of V nodes: k -> k+1 for k < V, then k+1 -> k (indices mod V).
void ring_edges(int64_t v, std::vector<int64_t>& src, std::vector<int64_t>& dst) {
  src.resize(static_cast<size_t>(2 * v));
  dst.resize(static_cast<size_t>(2 * v));
  for (int64_t k = 0; k < v; ++k) {
    src[k] = k;
    dst[k] = (k + 1) % v;
    src[v + k] = (k + 1) % v;
    dst[v + k] = k;
  }
}

RawSample solve_sample(const AirfoilRanges& r, uint64_t seed, int64_t index, int n) {
  uint32_t bits[4];
  philox_block(seed, static_cast<uint64_t>(index), kParamStream, bits);
  auto pick = [&](int k, double lo, double hi) { return lo + philox_uniform(bits[k]) * (hi - lo); };
  RawSample s;
  s.t = pick(0, r.t_min, r.t_max);
  s.m = pick(1, r.m_min, r.m_max);
  s.p = pick(2, r.p_min, r.p_max);
  s.alpha_deg = pick(3, r.alpha_min_deg, r.alpha_max_deg);
  const double alpha = s.alpha_deg * kPi / 180.0;

  const Airfoil a = naca4(s.m, s.p, s.t, n);
  const PanelSolution sol = solve_panels(a, alpha);
  s.cl = sol.cl;
  const int64_t v = a.num_panels();  // 2n distinct nodes = 2n panels
  s.x.resize(static_cast<size_t>(v * kNodeFeatures));
  s.cp.resize(static_cast<size_t>(v));
  for (int64_t k = 0; k < v; ++k) {
    // Node k joins panel k−1 (mod V) and panel k: its normal bisects theirs.
    const int64_t before = (k + v - 1) % v;
    double nx = sol.nx[before] + sol.nx[k], ny = sol.ny[before] + sol.ny[k];
    const double norm = std::hypot(nx, ny);
    nx /= norm;  // two outward normals of one closed curve never cancel
    ny /= norm;
    float* f = &s.x[k * kNodeFeatures];
    f[0] = static_cast<float>(a.x[k]);
    f[1] = static_cast<float>(a.y[k]);
    f[2] = static_cast<float>(nx);
    f[3] = static_cast<float>(ny);
    f[4] = static_cast<float>(alpha);
    s.cp[k] = static_cast<float>(sol.cp_node[k]);
  }
  std::vector<int64_t> src, dst;
  ring_edges(v, src, dst);
  s.attr.resize(src.size() * 2);
  for (size_t e = 0; e < src.size(); ++e) {
    s.attr[2 * e] = static_cast<float>(a.x[dst[e]] - a.x[src[e]]);
    s.attr[2 * e + 1] = static_cast<float>(a.y[dst[e]] - a.y[src[e]]);
  }
  return s;
}

void check_range(double lo, double hi, double low_bound, double high_bound, bool open_low,
                 const char* name) {
  const bool low_ok = open_low ? lo > low_bound : lo >= low_bound;
  IDEM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && low_ok && hi <= high_bound,
             "generate_airfoils", name, " range [", lo, ", ", hi, "] must satisfy ", low_bound,
             open_low ? " < " : " <= ", "min <= max <= ", high_bound);
}

void validate_ranges(const AirfoilRanges& r) {
  check_range(r.t_min, r.t_max, 0.0, 0.4, true, "thickness t");
  check_range(r.m_min, r.m_max, 0.0, 0.0999, false, "camber m");
  if (r.m_max > 0) check_range(r.p_min, r.p_max, 0.0, 0.999, true, "camber position p");
  check_range(r.alpha_min_deg, r.alpha_max_deg, -30.0, 30.0, false, "angle of attack (deg)");
}

}  // namespace

AirfoilRanges train_ranges() {
  return {0.08, 0.15, 0.0, 0.04, 0.3, 0.5, -4.0, 8.0};
}

AirfoilRanges ood_ranges(int level) {
  IDEM_CHECK(level >= 1 && level <= 4, "ood_ranges", "OOD level must be 1, 2, 3 or 4, got ", level);
  const double k = level - 1;  // level L covers step k = L − 1 beyond the training box
  AirfoilRanges r;
  r.t_min = 0.15 + 0.015 * k;
  r.t_max = 0.15 + 0.015 * (k + 1);
  r.m_min = 0.04 + 0.005 * k;
  r.m_max = 0.04 + 0.005 * (k + 1);
  r.p_min = 0.3;
  r.p_max = 0.5;
  r.alpha_min_deg = 8.0 + 1.5 * k;
  r.alpha_max_deg = 8.0 + 1.5 * (k + 1);
  return r;
}

std::string ranges_str(const AirfoilRanges& r) {
  std::ostringstream os;
  os << "t [" << r.t_min << ", " << r.t_max << "], m [" << r.m_min << ", " << r.m_max << "], p ["
     << r.p_min << ", " << r.p_max << "], alpha [" << r.alpha_min_deg << ", " << r.alpha_max_deg
     << "] deg";
  return os.str();
}

std::vector<AirfoilSample> generate_airfoils(int64_t n, const AirfoilRanges& r, uint64_t seed,
                                             int panels_per_side) {
  IDEM_CHECK(n >= 0, "generate_airfoils", "sample count must be >= 0, got ", n);
  IDEM_CHECK(panels_per_side >= 4 && panels_per_side <= 2048, "generate_airfoils",
             "panels_per_side must be in [4, 2048], got ", panels_per_side);
  validate_ranges(r);

  std::vector<RawSample> raw(static_cast<size_t>(n));
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>(
             {static_cast<int64_t>(num_threads()), 8, (n + 31) / 32}));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  auto work = [&](int64_t tid) {
    try {
      for (int64_t i = tid; i < n; i += threads) raw[i] = solve_sample(r, seed, i, panels_per_side);
    } catch (...) {
      errors[tid] = std::current_exception();
    }
  };
  if (threads == 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (int64_t tid = 0; tid < threads; ++tid) pool.emplace_back(work, tid);
    for (std::thread& th : pool) th.join();
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);

  const int64_t v = 2 * static_cast<int64_t>(panels_per_side);
  std::vector<int64_t> src, dst;
  ring_edges(v, src, dst);
  std::vector<AirfoilSample> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    RawSample& s = raw[i];
    AirfoilSample& o = out[i];
    o.m = s.m;
    o.p = s.p;
    o.t = s.t;
    o.alpha_deg = s.alpha_deg;
    o.cl = s.cl;
    o.cp = std::move(s.cp);
    o.graph = Graph::from_edges(v, src, dst);
    o.graph.x = from_vector<float>(s.x, {v, kNodeFeatures});
    o.graph.edge_attr = from_vector<float>(s.attr, {2 * v, 2});
  }
  return out;
}

Graph batch_airfoils(const std::vector<AirfoilSample>& samples, size_t begin, size_t end,
                     Device device) {
  IDEM_CHECK(begin < end && end <= samples.size(), "batch_airfoils", "range [", begin, ", ", end,
             ") is empty or outside the ", samples.size(), " samples");
  std::vector<Graph> graphs;
  graphs.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) graphs.push_back(samples[i].graph);
  Graph g = batch_graphs(graphs);
  return device == Device::cpu() ? g : g.to(device);
}

TargetScaler fit_target_scaler(const std::vector<AirfoilSample>& train) {
  IDEM_CHECK(!train.empty(), "fit_target_scaler", "no training samples");
  double sum = 0;
  for (const AirfoilSample& s : train) sum += s.cl;
  TargetScaler sc;
  sc.mean = sum / static_cast<double>(train.size());
  double ss = 0;
  for (const AirfoilSample& s : train) ss += (s.cl - sc.mean) * (s.cl - sc.mean);
  sc.std = std::sqrt(ss / static_cast<double>(train.size()));
  if (!(sc.std > 1e-12)) sc.std = 1.0;  // all CL equal: keep the targets finite
  return sc;
}

Tensor airfoil_targets(const std::vector<AirfoilSample>& samples, size_t begin, size_t end,
                       const TargetScaler& scaler, Device device) {
  IDEM_CHECK(begin < end && end <= samples.size(), "airfoil_targets", "range [", begin, ", ", end,
             ") is empty or outside the ", samples.size(), " samples");
  IDEM_CHECK(scaler.std > 0 && std::isfinite(scaler.mean), "airfoil_targets",
             "scaler std must be > 0, got ", scaler.std);
  std::vector<float> y;
  y.reserve(end - begin);
  for (size_t i = begin; i < end; ++i)
    y.push_back(static_cast<float>((samples[i].cl - scaler.mean) / scaler.std));
  return from_vector<float>(y, {static_cast<int64_t>(y.size()), 1}, device);
}

Tensor airfoil_cp_targets(const std::vector<AirfoilSample>& samples, size_t begin, size_t end,
                          Device device) {
  IDEM_CHECK(begin < end && end <= samples.size(), "airfoil_cp_targets", "range [", begin, ", ",
             end, ") is empty or outside the ", samples.size(), " samples");
  std::vector<float> cp;
  for (size_t i = begin; i < end; ++i)
    cp.insert(cp.end(), samples[i].cp.begin(), samples[i].cp.end());
  return from_vector<float>(cp, {static_cast<int64_t>(cp.size()), 1}, device);
}

}  // namespace idem::data
