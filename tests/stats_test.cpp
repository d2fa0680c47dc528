// The statistics behind the seed columns of results.md (apps/idem/stats.h): Student's t against
// table values, mean ± interval and paired differences against values computed by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "apps/idem/stats.h"
#include "core/error.h"

using namespace idem::cli::stats;

TEST(Stats, StudentTQuantileMatchesTables) {
  // Two-sided 95 %: the 0.975 quantile. df = 1 is tan(0.475 π); df = 2 is 0.95 / sqrt(0.04875).
  EXPECT_NEAR(student_t_quantile(0.975, 1), 12.7062047362, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 2), 4.3026527297, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 3), 3.1824463053, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 4), 2.7764451052, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 9), 2.2621571628, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 29), 2.0452296421, 1e-8);
  // Many degrees of freedom: the normal quantile 1.959964.
  EXPECT_NEAR(student_t_quantile(0.975, 1e6), 1.959966, 2e-6);
  // Other levels and the symmetry.
  EXPECT_NEAR(student_t_quantile(0.95, 2), 2.9199855804, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.995, 5), 4.0321429836, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.025, 2), -4.3026527297, 1e-8);
  EXPECT_EQ(student_t_quantile(0.5, 7), 0.0);
}

TEST(Stats, StudentTCdfAgreesWithClosedForms) {
  for (double t : {-3.0, -0.5, 0.0, 0.25, 1.0, 12.7062047362}) {
    EXPECT_NEAR(student_t_cdf(t, 1), 0.5 + std::atan(t) / M_PI, 1e-12) << t;  // Cauchy
    EXPECT_NEAR(student_t_cdf(t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-12) << t;
  }
  EXPECT_NEAR(student_t_cdf(student_t_quantile(0.9, 6.5), 6.5), 0.9, 1e-12);
}

TEST(Stats, MeanCiByHand) {
  // {1, 2, 3}: mean 2, s = 1, half-width t_{0.975,2} / sqrt(3).
  Summary s = mean_ci({1, 2, 3});
  EXPECT_EQ(s.n, 3);
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_NEAR(s.half_width, 4.3026527297 / std::sqrt(3.0), 1e-8);
  EXPECT_EQ(format(s, 3), "2.000 ± 2.484");
  // Two seeds: s = sqrt(2), so the half-width is t_{0.975,1} itself.
  s = mean_ci({10, 12});
  EXPECT_NEAR(s.half_width, 12.7062047362, 1e-8);
  // Equal values: a real zero-width interval.
  s = mean_ci({4, 4, 4, 4});
  EXPECT_EQ(s.half_width, 0.0);
  EXPECT_EQ(format(s, 2), "4.00 ± 0.00");
}

TEST(Stats, OneSeedHasNoInterval) {
  const Summary s = mean_ci({5.0});
  EXPECT_FALSE(s.has_interval());
  EXPECT_TRUE(std::isnan(s.half_width));  // never a fake 0
  EXPECT_EQ(format(s, 3), "5.000");
  EXPECT_EQ(format(paired_difference({5.0}, {6.5}), 2, true), "-1.50");
}

TEST(Stats, PairedDifferenceIsTheIntervalOfTheDifferences) {
  // Per seed a − b = {1, 2, 0}: mean 1, s = 1. Unpaired, the seeds' spread (9..14) would
  // swamp it.
  const Summary d = paired_difference({10, 12, 14}, {9, 10, 14});
  EXPECT_EQ(d.n, 3);
  EXPECT_DOUBLE_EQ(d.mean, 1.0);
  EXPECT_NEAR(d.half_width, 4.3026527297 / std::sqrt(3.0), 1e-8);
  EXPECT_EQ(format(d, 3, true), "+1.000 ± 2.484");
  EXPECT_LT(d.half_width, mean_ci({10, 12, 14}).half_width);
}

TEST(Stats, BadInputIsAnError) {
  EXPECT_THROW(mean_ci({}), idem::Error);
  EXPECT_THROW(mean_ci({1, 2}, 1.0), idem::Error);
  EXPECT_THROW(paired_difference({1, 2}, {1}), idem::Error);
  EXPECT_THROW(student_t_quantile(1.0, 3), idem::Error);
  EXPECT_THROW(student_t_quantile(0.975, 0), idem::Error);
  EXPECT_TRUE(std::isnan(mean_ci({1, NAN}).mean));
}
