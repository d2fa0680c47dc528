// Friedman #1, standardized train/test splits and the tabular shifts (see tabular.h).
#include "data/tabular.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/philox.h"

namespace idem::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

// A column's display name: the header's when the table has one per column, "col<k>" otherwise.
std::string column_name(const Table& t, int64_t c) {
  if (static_cast<int64_t>(t.header.size()) == t.cols) return t.header[c];
  return "col" + std::to_string(c);
}

void validate_table(const Table& t, const char* op) {
  IDEM_CHECK(t.rows >= 0 && t.cols >= 0 && static_cast<int64_t>(t.values.size()) == t.rows * t.cols,
             op, "inconsistent table: ", t.rows, " rows x ", t.cols, " columns but ",
             t.values.size(), " values");
  IDEM_CHECK(t.cols >= 2, op, "a table needs at least 2 columns (features and a target), got ",
             t.cols);
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < t.cols; ++c)
      IDEM_CHECK(std::isfinite(t.values[r * t.cols + c]), op, "value at row ", r, ", column ", c,
                 " ('", column_name(t, c), "') is not finite: ", t.values[r * t.cols + c]);
}

// Index in [0, cols) of a possibly negative column index; `what` names it in the error.
int64_t normalize_column(const Table& t, int64_t c, const char* op, const char* what) {
  IDEM_CHECK(c >= -t.cols && c < t.cols, op, what, " column ", c, " is out of range for a table",
             " with ", t.cols, " columns (valid: 0..", t.cols - 1, " or -1..-", t.cols, ")");
  return c < 0 ? c + t.cols : c;
}

struct Moments {
  double mean, std;
};
// Mean and population std of column c over `rows`; std 0 (a constant column) -> 1, see header.
Moments column_moments(const Table& t, int64_t c, const std::vector<int64_t>& rows) {
  double sum = 0;
  for (int64_t r : rows) sum += t.values[r * t.cols + c];
  const double mean = sum / static_cast<double>(rows.size());
  double ss = 0;
  for (int64_t r : rows) {
    const double d = t.values[r * t.cols + c] - mean;
    ss += d * d;
  }
  double std = std::sqrt(ss / static_cast<double>(rows.size()));
  // Relative threshold: a column constant up to rounding is still constant.
  if (!(std > 1e-12 * std::max(1.0, std::abs(mean)))) std = 1.0;
  return {mean, std};
}

// Builds the standardized split from explicit row lists (train statistics only).
TabularSplit make_split(const Table& t, int64_t target, const std::vector<int64_t>& train,
                        const std::vector<int64_t>& test) {
  const int64_t d = t.cols - 1;
  TabularSplit s;
  std::vector<int64_t> features;
  for (int64_t c = 0; c < t.cols; ++c)
    if (c != target) {
      features.push_back(c);
      s.feature_names.push_back(column_name(t, c));
    }
  s.target_name = column_name(t, target);
  for (int64_t c : features) {
    const Moments m = column_moments(t, c, train);
    s.x_mean.push_back(m.mean);
    s.x_std.push_back(m.std);
  }
  const Moments ym = column_moments(t, target, train);
  s.y_mean = ym.mean;
  s.y_std = ym.std;

  auto build = [&](const std::vector<int64_t>& rows, Tensor& x, Tensor& y) {
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<float> xv(static_cast<size_t>(n * d)), yv(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double* row = &t.values[rows[i] * t.cols];
      for (int64_t j = 0; j < d; ++j)
        xv[i * d + j] = static_cast<float>((row[features[j]] - s.x_mean[j]) / s.x_std[j]);
      yv[i] = static_cast<float>((row[target] - s.y_mean) / s.y_std);
    }
    x = from_vector<float>(xv, {n, d});
    y = from_vector<float>(yv, {n, 1});
  };
  build(train, s.x_train, s.y_train);
  build(test, s.x_test, s.y_test);
  return s;
}

// A uniform draw in [0, 1) with 53 bits from Philox block (seed, index, offset).
double philox_u53(uint64_t seed, uint64_t index, uint64_t offset) {
  uint32_t r[4];
  philox_block(seed, index, offset, r);
  const uint64_t bits = (static_cast<uint64_t>(r[0]) << 21) ^ (static_cast<uint64_t>(r[1]) >> 11);
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

}  // namespace

Tensor TabularSplit::unstandardize_y(const Tensor& y) const {
  std::vector<double> v = y.to_vector<double>();
  for (double& e : v) e = e * y_std + y_mean;
  Tensor out = from_vector<double>(v, y.shape()).to(y.dtype());
  return out.to(y.device());
}

Table friedman1(int64_t n, int64_t features, double noise, uint64_t seed) {
  IDEM_CHECK(n >= 1, "friedman1", "needs n >= 1 rows, got ", n);
  IDEM_CHECK(features >= 5, "friedman1", "needs at least 5 features (x1..x5 enter y), got ",
             features);
  IDEM_CHECK(noise >= 0 && std::isfinite(noise), "friedman1", "noise must be >= 0, got ", noise);
  const std::vector<double> x = rand({n, features}, seed, {DType::f64}).to_vector<double>();
  const std::vector<double> e = randn({n}, seed, {DType::f64}, 1).to_vector<double>();
  Table t;
  t.rows = n;
  t.cols = features + 1;
  for (int64_t j = 0; j < features; ++j) t.header.push_back("x" + std::to_string(j + 1));
  t.header.push_back("y");
  t.values.resize(static_cast<size_t>(t.rows * t.cols));
  for (int64_t i = 0; i < n; ++i) {
    const double* xi = &x[i * features];
    double* row = &t.values[i * t.cols];
    std::copy(xi, xi + features, row);
    row[features] = 10.0 * std::sin(kPi * xi[0] * xi[1]) + 20.0 * (xi[2] - 0.5) * (xi[2] - 0.5) +
                    10.0 * xi[3] + 5.0 * xi[4] + noise * e[i];
  }
  return t;
}

int resolve_column(const Table& t, const std::string& name_or_index) {
  for (size_t c = 0; c < t.header.size(); ++c)
    if (t.header[c] == name_or_index) return static_cast<int>(c);
  size_t used = 0;
  long long index = 0;
  bool numeric = false;
  try {
    index = std::stoll(name_or_index, &used);
    numeric = used == name_or_index.size() && !name_or_index.empty();
  } catch (const std::exception&) {
    numeric = false;
  }
  if (numeric && index >= -t.cols && index < t.cols)
    return static_cast<int>(index < 0 ? index + t.cols : index);
  std::string names;
  for (int64_t c = 0; c < t.cols; ++c) names += (c ? ", " : "") + column_name(t, c);
  fail("resolve_column", "no column '", name_or_index, "' in a table with ", t.cols, " columns (",
       names, "); give a header name or an index in 0..", t.cols - 1,
       " (negative counts from the end)");
}

TabularSplit split_table(const Table& t, int target_col, double train_fraction, bool shuffle,
                         uint64_t seed) {
  validate_table(t, "split_table");
  const int64_t target = normalize_column(t, target_col, "split_table", "target");
  IDEM_CHECK(train_fraction > 0 && train_fraction < 1, "split_table",
             "train_fraction must be in (0, 1), got ", train_fraction);
  const int64_t n_train = static_cast<int64_t>(std::floor(train_fraction * t.rows));
  IDEM_CHECK(n_train >= 1 && n_train < t.rows, "split_table", "a ", train_fraction, " split of ",
             t.rows, " rows leaves ", n_train, " training and ", t.rows - n_train,
             " test rows; both must be non-empty");
  std::vector<int64_t> order(static_cast<size_t>(t.rows));
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    // Fisher–Yates with Philox draws: the same permutation on every platform (std::shuffle's
    // algorithm is implementation-defined).
    for (int64_t i = t.rows - 1; i > 0; --i) {
      const int64_t j = std::min<int64_t>(
          i, static_cast<int64_t>(philox_u53(seed, static_cast<uint64_t>(i), 0) * (i + 1)));
      std::swap(order[i], order[j]);
    }
  }
  const std::vector<int64_t> train(order.begin(), order.begin() + n_train);
  const std::vector<int64_t> test(order.begin() + n_train, order.end());
  return make_split(t, target, train, test);
}

Tensor zero_features(const Tensor& x_std_test, double p, uint64_t seed) {
  IDEM_CHECK(x_std_test.defined(), "zero_features", "input tensor is undefined");
  IDEM_CHECK(is_floating(x_std_test.dtype()), "zero_features",
             "expected a floating feature matrix, got ", dtype_name(x_std_test.dtype()));
  IDEM_CHECK(p >= 0 && p <= 1, "zero_features", "probability p must be in [0, 1], got ", p);
  std::vector<double> v = x_std_test.to_vector<double>();
  if (p > 0) {
    // 24-bit uniforms as rand(): index i decides entry i, whatever the shape.
    for (size_t i = 0; i < v.size(); ++i) {
      uint32_t r[4];
      philox_block(seed, i, 0, r);
      if (philox_uniform(r[0]) < p) v[i] = 0.0;
    }
  }
  return from_vector<double>(v, x_std_test.shape()).to(x_std_test.dtype()).to(x_std_test.device());
}

TabularSplit quantile_split(const Table& t, int column, double q, int target_col) {
  validate_table(t, "quantile_split");
  const int64_t target = normalize_column(t, target_col, "quantile_split", "target");
  const int64_t col = normalize_column(t, column, "quantile_split", "shift");
  IDEM_CHECK(col != target, "quantile_split", "shift column ", column, " ('", column_name(t, col),
             "') is the target; pick a feature column");
  IDEM_CHECK(q > 0 && q < 1, "quantile_split", "quantile q must be in (0, 1), got ", q);
  std::vector<double> v(static_cast<size_t>(t.rows));
  for (int64_t r = 0; r < t.rows; ++r) v[r] = t.values[r * t.cols + col];
  std::sort(v.begin(), v.end());
  // NumPy's default "linear" quantile: position q·(n − 1) between sorted values.
  const double pos = q * static_cast<double>(t.rows - 1);
  const int64_t lo = static_cast<int64_t>(std::floor(pos));
  const int64_t hi = std::min<int64_t>(lo + 1, t.rows - 1);
  const double threshold = v[lo] + (pos - lo) * (v[hi] - v[lo]);
  std::vector<int64_t> train, test;
  for (int64_t r = 0; r < t.rows; ++r)
    (t.values[r * t.cols + col] <= threshold ? train : test).push_back(r);
  IDEM_CHECK(!train.empty() && !test.empty(), "quantile_split", "the ", q, "-quantile (", threshold,
             ") of column ", col, " ('", column_name(t, col), "') leaves ", train.size(),
             " training and ", test.size(),
             " test rows; both must be non-empty (many equal values? try another q)");
  return make_split(t, target, train, test);
}

double mae(const Tensor& pred, const Tensor& target, double scale) {
  IDEM_CHECK(pred.defined() && target.defined(), "mae", "undefined tensor");
  IDEM_CHECK(pred.shape() == target.shape(), "mae", "shapes ", shape_str(pred.shape()), " and ",
             shape_str(target.shape()), " differ");
  IDEM_CHECK(pred.numel() > 0, "mae", "empty tensors");
  IDEM_CHECK(is_floating(pred.dtype()) && is_floating(target.dtype()), "mae",
             "expected floating tensors, got ", dtype_name(pred.dtype()), " and ",
             dtype_name(target.dtype()));
  const std::vector<double> a = pred.to_vector<double>(), b = target.to_vector<double>();
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::abs(a[i] - b[i]);
  return scale * sum / static_cast<double>(a.size());
}

}  // namespace idem::data
