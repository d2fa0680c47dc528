// The tabular task's data: Friedman #1, standardized splits, the zeroing and quantile shifts,
// column lookup and the MAE metric.
#include "data/tabular.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/test_util.h"

namespace idem::data {
namespace {

using idem::testing::bit_equal;
using idem::testing::expect_error;

constexpr double kPi = 3.14159265358979323846;

double friedman_y(const double* x) {
  return 10 * std::sin(kPi * x[0] * x[1]) + 20 * (x[2] - 0.5) * (x[2] - 0.5) + 10 * x[3] + 5 * x[4];
}

// Per-column mean and population std of an (N, d) tensor.
void column_stats(const Tensor& t, std::vector<double>& mean, std::vector<double>& stdev) {
  const int64_t n = t.size(0), d = t.size(1);
  const std::vector<double> v = t.to_vector<double>();
  mean.assign(d, 0.0);
  stdev.assign(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mean[j] += v[i * d + j] / n;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j)
      stdev[j] += (v[i * d + j] - mean[j]) * (v[i * d + j] - mean[j]) / n;
  for (double& s : stdev) s = std::sqrt(s);
}

// A small table: column c of row r is r·(c+1) + c (distinct, increasing with r).
Table ramp_table(int64_t rows, int64_t cols) {
  Table t;
  t.rows = rows;
  t.cols = cols;
  for (int64_t c = 0; c < cols; ++c) t.header.push_back("c" + std::to_string(c));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t.values.push_back(double(r * (c + 1) + c));
  return t;
}

TEST(Tabular, FriedmanRowsFollowTheFormula) {
  const Table t = friedman1(200, 10, 0.0, 3);
  EXPECT_EQ(t.rows, 200);
  EXPECT_EQ(t.cols, 11);
  ASSERT_EQ(t.header.size(), size_t(11));
  EXPECT_EQ(t.header.front(), "x1");
  EXPECT_EQ(t.header[9], "x10");
  EXPECT_EQ(t.header.back(), "y");
  ASSERT_EQ(t.values.size(), size_t(200 * 11));
  for (int64_t r = 0; r < t.rows; ++r) {
    const double* row = &t.values[r * t.cols];
    for (int c = 0; c < 10; ++c) {
      EXPECT_GE(row[c], 0.0);
      EXPECT_LT(row[c], 1.0);
    }
    EXPECT_NEAR(row[10], friedman_y(row), 1e-12) << "row " << r;
  }
}

TEST(Tabular, FriedmanNoiseIsStandardNormalTimesNoise) {
  const Table t = friedman1(4000, 6, 2.0, 11);
  double sum = 0, sum2 = 0;
  for (int64_t r = 0; r < t.rows; ++r) {
    const double e = t.values[r * t.cols + 6] - friedman_y(&t.values[r * t.cols]);
    sum += e;
    sum2 += e * e;
  }
  const double mean = sum / t.rows, sd = std::sqrt(sum2 / t.rows - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.1);
  EXPECT_NEAR(sd, 2.0, 0.1);
}

TEST(Tabular, FriedmanIsDeterministicPerSeed) {
  const Table a = friedman1(100, 10, 1.0, 7), b = friedman1(100, 10, 1.0, 7);
  const Table c = friedman1(100, 10, 1.0, 8);
  EXPECT_EQ(a.values, b.values);
  EXPECT_NE(a.values, c.values);
  expect_error([] { friedman1(10, 4); }, "friedman1", "at least 5 features");
  expect_error([] { friedman1(0); }, "friedman1", "n >= 1");
}

TEST(Tabular, SplitStandardizesWithTrainingStatistics) {
  const Table t = friedman1(2000, 10, 1.0, 0);
  const TabularSplit s = split_table(t);
  EXPECT_EQ(s.x_train.shape(), (Shape{1800, 10}));
  EXPECT_EQ(s.y_train.shape(), (Shape{1800, 1}));
  EXPECT_EQ(s.x_test.shape(), (Shape{200, 10}));
  EXPECT_EQ(s.y_test.shape(), (Shape{200, 1}));
  EXPECT_EQ(s.x_train.dtype(), DType::f32);
  EXPECT_EQ(s.feature_names.size(), size_t(10));
  EXPECT_EQ(s.target_name, "y");
  std::vector<double> mean, sd;
  column_stats(s.x_train, mean, sd);
  for (int j = 0; j < 10; ++j) {
    EXPECT_NEAR(mean[j], 0.0, 1e-5) << "feature " << j;
    EXPECT_NEAR(sd[j], 1.0, 1e-5) << "feature " << j;
    EXPECT_NEAR(s.x_mean[j], 0.5, 0.03);  // U(0,1)
    EXPECT_NEAR(s.x_std[j], std::sqrt(1.0 / 12), 0.02);
  }
  column_stats(s.y_train, mean, sd);
  EXPECT_NEAR(mean[0], 0.0, 1e-5);
  EXPECT_NEAR(sd[0], 1.0, 1e-5);
  // Not shuffled: the test set is the last 10 % in order, scaled with the training statistics.
  const Tensor x0 = s.x_test.slice0(0, 1);
  for (int j = 0; j < 10; ++j)
    EXPECT_NEAR(x0.at({0, j}), (t.values[1800 * 11 + j] - s.x_mean[j]) / s.x_std[j], 1e-5);
  EXPECT_NEAR(s.y_test.at({199, 0}), (t.values[1999 * 11 + 10] - s.y_mean) / s.y_std, 1e-5);
  // unstandardize_y undoes it.
  const Tensor y = s.unstandardize_y(s.y_test);
  EXPECT_NEAR(y.at({199, 0}), t.values[1999 * 11 + 10], 1e-4);
}

TEST(Tabular, ShuffledSplitIsASeededPermutation) {
  const Table t = ramp_table(50, 3);
  const TabularSplit a = split_table(t, -1, 0.8, true, 5), b = split_table(t, -1, 0.8, true, 5);
  const TabularSplit c = split_table(t, -1, 0.8, true, 6);
  EXPECT_EQ(a.y_train.size(0), 40);
  EXPECT_EQ(a.y_test.size(0), 10);
  EXPECT_TRUE(bit_equal(a.x_train, b.x_train));
  EXPECT_FALSE(bit_equal(a.x_train, c.x_train));
  // Every row appears exactly once: the raw targets are 3r + 2 for r = 0..49.
  std::vector<double> ys = a.unstandardize_y(a.y_train).to_vector<double>();
  const std::vector<double> yt = a.unstandardize_y(a.y_test).to_vector<double>();
  ys.insert(ys.end(), yt.begin(), yt.end());
  for (double& y : ys) y = std::round((y - 2) / 3);
  std::sort(ys.begin(), ys.end());
  for (int r = 0; r < 50; ++r) EXPECT_EQ(ys[r], r);
}

TEST(Tabular, TargetColumnAndConstantColumns) {
  Table t = ramp_table(20, 4);
  for (int64_t r = 0; r < t.rows; ++r) t.values[r * 4 + 2] = 7.0;  // a constant column
  const TabularSplit s = split_table(t, 0, 0.5);
  EXPECT_EQ(s.target_name, "c0");
  EXPECT_EQ(s.feature_names, (std::vector<std::string>{"c1", "c2", "c3"}));
  EXPECT_EQ(s.x_std[1], 1.0);  // constant: std 0 replaced by 1
  EXPECT_EQ(s.x_mean[1], 7.0);
  for (int64_t i = 0; i < s.x_test.size(0); ++i) EXPECT_EQ(s.x_test.at({i, 1}), 0.0);
  // Target = column 0 = r, training rows 0..9: mean 4.5.
  EXPECT_DOUBLE_EQ(s.y_mean, 4.5);
}

TEST(Tabular, BadTargetColumnIsAnErrorNamingIt) {
  const Table t = ramp_table(10, 5);
  expect_error([&] { split_table(t, 5); }, "split_table", "target column 5");
  expect_error([&] { split_table(t, -6); }, "split_table", "target column -6");
  expect_error([&] { split_table(t, -1, 1.0); }, "split_table", "train_fraction");
  expect_error([&] { split_table(t, -1, 0.05); }, "split_table", "both must be non-empty");
  Table bad = t;
  bad.values.pop_back();
  expect_error([&] { split_table(bad); }, "split_table", "inconsistent table");
  Table nan = t;
  nan.values[7] = std::nan("");
  expect_error([&] { split_table(nan); }, "split_table", "row 1, column 2");
}

TEST(Tabular, ResolveColumnByNameOrIndex) {
  const Table t = ramp_table(3, 4);
  EXPECT_EQ(resolve_column(t, "c2"), 2);
  EXPECT_EQ(resolve_column(t, "1"), 1);
  EXPECT_EQ(resolve_column(t, "-1"), 3);
  expect_error([&] { resolve_column(t, "price"); }, "resolve_column", "'price'", "c0, c1");
  expect_error([&] { resolve_column(t, "4"); }, "resolve_column", "'4'");
  Table no_header = t;
  no_header.header.clear();
  EXPECT_EQ(split_table(no_header).target_name, "col3");
}

TEST(Tabular, ZeroFeaturesZeroesAboutAFractionP) {
  const Tensor x = randn({4000, 10}, 21);  // no exact zeros
  for (double p : {0.05, 0.1, 0.2}) {
    const Tensor z = zero_features(x, p, 3);
    ASSERT_EQ(z.shape(), x.shape());
    ASSERT_EQ(z.dtype(), x.dtype());
    const std::vector<double> xv = x.to_vector<double>(), zv = z.to_vector<double>();
    int64_t zeroed = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      if (zv[i] == 0.0)
        ++zeroed;
      else
        EXPECT_EQ(zv[i], xv[i]) << "entry " << i;  // the rest untouched
    }
    const double fraction = double(zeroed) / xv.size();
    EXPECT_NEAR(fraction, p, 0.01) << "p " << p;
  }
  EXPECT_TRUE(bit_equal(zero_features(x, 0.1, 3), zero_features(x, 0.1, 3)));
  EXPECT_FALSE(bit_equal(zero_features(x, 0.1, 3), zero_features(x, 0.1, 4)));
  EXPECT_TRUE(bit_equal(zero_features(x, 0.0, 3), x));
  expect_error([&] { zero_features(x, 1.5, 0); }, "zero_features", "[0, 1]");
  expect_error([&] { zero_features(arange(4, {DType::i64}), 0.1, 0); }, "zero_features",
               "floating");
}

TEST(Tabular, QuantileSplitPutsRowsOnTheRightSide) {
  const Table t = friedman1(500, 6, 0.5, 9);
  const int column = 2;
  const TabularSplit s = quantile_split(t, column, 0.8);
  EXPECT_EQ(s.x_train.size(0) + s.x_test.size(0), 500);
  EXPECT_NEAR(double(s.x_test.size(0)), 100, 1);
  // Feature column 2 is feature 2 (the target is last); compare in raw units.
  double train_max = -1e300, test_min = 1e300;
  for (int64_t i = 0; i < s.x_train.size(0); ++i)
    train_max = std::max(train_max, s.x_train.at({i, column}) * s.x_std[column] + s.x_mean[column]);
  for (int64_t i = 0; i < s.x_test.size(0); ++i)
    test_min = std::min(test_min, s.x_test.at({i, column}) * s.x_std[column] + s.x_mean[column]);
  EXPECT_LT(train_max, test_min);
  // Standardized with the training side: its mean is 0, the test side's mean of that column > 0.
  std::vector<double> mean, sd;
  column_stats(s.x_train, mean, sd);
  EXPECT_NEAR(mean[column], 0.0, 1e-5);
  column_stats(s.x_test, mean, sd);
  EXPECT_GT(mean[column], 1.0);

  expect_error([&] { quantile_split(t, 6); }, "quantile_split", "is the target");
  expect_error([&] { quantile_split(t, 7); }, "quantile_split", "shift column 7");
  expect_error([&] { quantile_split(t, 0, 1.0); }, "quantile_split", "quantile q");
  Table flat = t;
  for (int64_t r = 0; r < flat.rows; ++r) flat.values[r * flat.cols] = 1.0;
  expect_error([&] { quantile_split(flat, 0); }, "quantile_split", "both must be non-empty");
}

TEST(Tabular, MaeInStandardizedAndOriginalUnits) {
  const Tensor pred = from_vector<float>({1, 2, 3, 4}, {4, 1});
  const Tensor target = from_vector<float>({1, 0, 4, 4}, {4, 1});
  EXPECT_DOUBLE_EQ(mae(pred, target), 0.75);
  EXPECT_DOUBLE_EQ(mae(pred, target, 2.0), 1.5);
  expect_error([&] { mae(pred, target.view_as_shape({1, 4})); }, "mae", "differ");
}

}  // namespace
}  // namespace idem::data
