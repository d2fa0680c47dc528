// The tabular regression task (docs/task_tabular.md): the built-in Friedman #1 table, train/test
// splits standardized with training statistics, the two covariate shifts (zeroed features,
// a quantile split on one feature) and the MAE metric.
//
// Every function is a pure function of its arguments (randomness from Philox with the given
// seed), so a run is reproducible from its seed alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/table.h"

namespace idem::data {

// Friedman #1 (Friedman 1991; scikit-learn's make_friedman1):
//   y = 10 sin(π x1 x2) + 20 (x3 − 0.5)² + 10 x4 + 5 x5 + noise · N(0, 1),   x ~ U(0, 1)^features
// (features beyond the fifth do not enter y). Columns x1..x<features>, then y; row-major.
// x is element i of a Philox U[0,1) draw with (seed, offset 0), the noise of one with offset 1,
// so the same (n, features, seed) always give the same table.
// requires: n ≥ 1, features ≥ 5, noise ≥ 0.
Table friedman1(int64_t n = 2000, int64_t features = 10, double noise = 1.0, uint64_t seed = 0);

// A train/test split ready for an MLP: f32 on the CPU, x (N, d), y (N, 1), both standardized
// with the TRAINING rows' mean and standard deviation (population std, ddof 0, as scikit-learn's
// StandardScaler). A constant training column gets std 1 (instead of a division by zero), so
// it becomes all zeros in standardized units.
struct TabularSplit {
  Tensor x_train, y_train, x_test, y_test;
  std::vector<double> x_mean, x_std;  // per feature, in feature order
  double y_mean = 0, y_std = 1;
  std::vector<std::string> feature_names;  // the table's header without the target
  std::string target_name;
  // Back to the table's units: y_std · y + y_mean (works on any tensor of standardized targets).
  Tensor unstandardize_y(const Tensor& y) const;
};

// The column index that `name_or_index` names: a header name, or an integer (negative counts
// from the end: -1 is the last column). Throws idem::Error naming it and the columns there are.
int resolve_column(const Table& t, const std::string& name_or_index);

// Train on the first ⌊train_fraction · rows⌋ rows and test on the rest (the reference code's
// first-90% / last-10% split), or on a seeded shuffle of the rows when `shuffle` is true.
// target_col: the target's index, negative from the end (-1 = last column); every other column
// is a feature, in table order.
// requires: a consistent table (values.size() == rows·cols, ≥ 2 columns, finite values), both
//           parts non-empty; throws idem::Error ([split_table]) naming the column or row.
TabularSplit split_table(const Table& t, int target_col = -1, double train_fraction = 0.9,
                         bool shuffle = false, uint64_t seed = 0);

// Shift (a): every entry of a standardized feature matrix set to 0 independently with
// probability p — zeroing in STANDARDIZED space, i.e. the feature is replaced by its training
// mean (a "missing value imputed by the mean"), which is what the IT³ reference does to its
// normalized inputs; a raw 0 would instead land (0 − mean)/std away, a different, unbounded
// shift that depends on each column's units. Entry i is zeroed when Philox U[0,1) with
// (seed, offset 0) at index i is < p. Returns a new tensor (same shape, dtype, device); p = 0
// returns an unchanged copy. requires: 0 ≤ p ≤ 1, a floating tensor.
Tensor zero_features(const Tensor& x_std_test, double p, uint64_t seed);

// Shift (b): train on the rows whose `column` value is ≤ its q-quantile (linear interpolation,
// NumPy's default), test on the rows above it, each side in table order; standardized with the
// training rows as split_table. `column` and `target_col` are indices, negative from the end;
// `column` must be a feature, not the target.
// requires: 0 < q < 1 and both sides non-empty (a column with many ties at the quantile can
// leave the test side empty: pick another q); throws idem::Error ([quantile_split]).
TabularSplit quantile_split(const Table& t, int column, double q = 0.8, int target_col = -1);

// Mean absolute error over all elements, times `scale`. Standardization is affine, so
// mae(pred, y) · y_std is the MAE in the target's original units: pass split.y_std (or an
// airfoil TargetScaler's std) as `scale` for those; 1 for standardized units.
// requires: same shape, floating, non-empty (any device; values are read on the host).
double mae(const Tensor& pred, const Tensor& target, double scale = 1.0);

}  // namespace idem::data
