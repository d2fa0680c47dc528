// Anomaly mode (autograd/anomaly.h): a planted NaN/Inf is reported with the op that produced
// it and where that op was created; check_finite_loss stops a loop before the optimizer step.
#include "autograd/anomaly.h"

#include <cmath>
#include <limits>
#include <string>

#include "autograd/functions.h"
#include "core/kernels/runtime.h"
#include "layers/linear.h"
#include "layers/optim.h"
#include "tests/test_util.h"

namespace idem {

// Helpers with external linkage (not in the anonymous namespace below), kept out of line, so
// they are named frames of the creation site: -rdynamic exports only external symbols.
__attribute__((noinline)) Tensor anomaly_test_log_of_negative(const Tensor& x) {
  return log(x - 3.0);  // x in [0,1): every element of log(x - 3) is NaN
}
__attribute__((noinline)) Tensor anomaly_test_sum_sqrt(const Tensor& x) {
  return sum(sqrt(x));
}

namespace {

using testing::expect_error;

// The message of the idem::Error that f throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(Anomaly, OffByDefaultAndGuardRestores) {
  EXPECT_FALSE(anomaly_mode());
  {
    AnomalyGuard on;
    EXPECT_TRUE(anomaly_mode());
    {
      AnomalyGuard off(false);
      EXPECT_FALSE(anomaly_mode());
    }
    EXPECT_TRUE(anomaly_mode());
  }
  EXPECT_FALSE(anomaly_mode());
}

TEST(Anomaly, OffLetsNaNThroughSilently) {
  Tensor x = rand({4, 3}, 1).requires_grad_();
  Tensor y = anomaly_test_log_of_negative(x);
  EXPECT_TRUE(std::isnan(y.to_vector<double>()[0]));
  EXPECT_EQ(y.grad_fn()->creation_site(), nullptr);  // no capture when off
}

TEST(Anomaly, ForwardNaNNamesTheOpAndWhereItWasCreated) {
  AnomalyGuard on;
  Tensor x = rand({4, 3}, 1).requires_grad_();
  const std::string msg = error_of([&] { anomaly_test_log_of_negative(x); });
  EXPECT_TRUE(contains(msg, "[anomaly] forward of log (UnaryNode) produced NaN in its output"))
      << msg;
  EXPECT_TRUE(contains(msg, "f32 (4x3): 12 of 12 elements non-finite, first at index 0")) << msg;
  EXPECT_TRUE(contains(msg, "the op was created at:")) << msg;
  // The test executable is linked with -rdynamic, so the frames carry function names.
  EXPECT_TRUE(contains(msg, "anomaly_test_log_of_negative")) << msg;
  EXPECT_FALSE(contains(msg, "already held")) << msg;  // the sub before it was finite
}

TEST(Anomaly, ForwardReportsAnInputThatWasAlreadyNonFinite) {
  AnomalyGuard on;
  Tensor x = full({2, 2}, std::numeric_limits<double>::infinity()).requires_grad_();
  const std::string msg = error_of([&] { mul(x, 2.0); });
  EXPECT_TRUE(contains(msg, "forward of mul")) << msg;
  EXPECT_TRUE(contains(msg, "produced Inf")) << msg;
  EXPECT_TRUE(contains(msg, "its input 0 already held Inf")) << msg;
}

TEST(Anomaly, BackwardInfFromSqrtAtZero) {
  AnomalyGuard on;
  // sqrt(0) = 0 is finite; its gradient 1 / (2 sqrt(0)) is +Inf: only backward goes wrong.
  Tensor x = zeros({3}).requires_grad_();
  Tensor loss = anomaly_test_sum_sqrt(x);
  EXPECT_TRUE(std::isfinite(loss.item()));
  const std::string msg = error_of([&] { loss.backward(); });
  EXPECT_TRUE(contains(msg,
                       "[anomaly] backward of sqrt (UnaryNode) produced Inf in input 0's "
                       "gradient (f32 (3): 3 of 3 elements non-finite"))
      << msg;
  EXPECT_TRUE(contains(msg, "the op was created at:")) << msg;
  EXPECT_TRUE(contains(msg, "idem::anomaly_test_sum_sqrt(idem::Tensor const&)")) << msg;
  EXPECT_FALSE(x.grad().defined());  // nothing reached the leaf
}

TEST(Anomaly, BackwardOfDivNamesTheInputWhoseGradientOverflowed) {
  AnomalyGuard on;
  // a / b = 1e30 is a finite f32; d(a/b)/db = -a/b² = -1e60 is not: only input 1 goes wrong.
  Tensor a = ones({4, 3}).requires_grad_();
  Tensor b = full({4, 3}, 1e-30).requires_grad_();
  Tensor loss;
  {
    AnomalyScope outer("model");
    AnomalyScope inner("ratio head");
    loss = sum(div(a, b));
  }
  const std::string msg = error_of([&] { loss.backward(); });
  EXPECT_TRUE(contains(msg,
                       "backward of div (BinaryNode) produced -Inf in input 1's gradient "
                       "(f32 (4x3): 12 of 12 elements non-finite, first at index 0)"))
      << msg;
  EXPECT_TRUE(contains(msg, "in scope: model > ratio head")) << msg;
}

TEST(Anomaly, NodesRecordedBeforeTheModeSayNoCreationSite) {
  Tensor x = zeros({2}).requires_grad_();
  Tensor loss = sum(sqrt(x));  // recorded with the mode off
  AnomalyGuard on;
  const std::string msg = error_of([&] { loss.backward(); });
  EXPECT_TRUE(contains(msg, "backward of sqrt")) << msg;
  EXPECT_TRUE(contains(msg, "created before anomaly mode was turned on")) << msg;
}

TEST(Anomaly, NonFiniteGradOutputIsReportedAtTheRoot) {
  AnomalyGuard on;
  Tensor x = ones({2}).requires_grad_();
  Tensor y = mul(x, 3.0);
  Tensor g = from_vector<float>({1.f, std::numeric_limits<float>::quiet_NaN()}, {2});
  const std::string msg = error_of([&] { y.backward(g); });
  EXPECT_TRUE(contains(msg, "the gradient flowing into backward of mul")) << msg;
  EXPECT_TRUE(contains(msg, "holds NaN")) << msg;
}

TEST(Anomaly, CleanGraphPassesAndGradientsMatchModeOff) {
  Tensor x = rand({5, 4}, 7, {DType::f64});
  auto run = [&] {
    Tensor xl = x.clone_data().requires_grad_();
    Tensor loss = mean(square(tanh(xl) * 2.0 + 1.0));
    loss.backward();
    return xl.grad();
  };
  Tensor off = run();
  Tensor on;
  {
    AnomalyGuard guard;
    on = run();
  }
  EXPECT_TRUE(testing::bit_equal(off, on));
}

TEST(Anomaly, CheckFiniteLossStopsBeforeTheOptimizerStep) {
  Linear lin(3, 1, true, {}, 5);
  Adam opt(lin.parameters(), AdamOptions{});
  const Tensor before = lin.weight().clone_data();
  Tensor x = rand({4, 3}, 2);
  Tensor y = full({4, 1}, std::numeric_limits<double>::quiet_NaN());  // a planted NaN target
  try {
    for (int64_t step = 0; step < 3; ++step) {
      opt.zero_grad();
      Tensor loss = mean(square(lin.forward(x) - y));
      check_finite_loss(loss, step, "anomaly test loop");
      loss.backward();
      opt.step();
    }
    ADD_FAILURE() << "check_finite_loss did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(
        msg, "non-finite loss (nan) at step 0 in anomaly test loop; weights were not updated"))
        << msg;
  }
  EXPECT_TRUE(testing::bit_equal(before, lin.weight()));
}

TEST(Anomaly, CheckFiniteLossNamesInfAndCountsElements) {
  Tensor inf = full({}, std::numeric_limits<double>::infinity());
  expect_error([&] { check_finite_loss(inf, 12, "it3 adapt"); }, "anomaly",
               "non-finite loss (inf) at step 12 in it3 adapt");
  Tensor per_sample =
      from_vector<double>({1.0, -std::numeric_limits<double>::infinity(), 2.0}, {3});
  expect_error([&] { check_finite_loss(per_sample, 4, "train"); }, "anomaly",
               "non-finite loss (-inf) in 1 of 3 elements at step 4 in train");
  check_finite_loss(full({}, 0.5), 1, "train");                 // finite: no throw
  check_finite_loss(full({2}, 1.0, {DType::i64}), 1, "train");  // integers are finite
}

TEST(Anomaly, CudaForwardAndLossChecks) {
  IDEM_REQUIRE_GPU();
  AnomalyGuard on;
  const Device dev = Device::cuda(0);
  Tensor x = rand({8, 2}, 3, {DType::f32, dev}).requires_grad_();
  const std::string msg = error_of([&] { log(x - 3.0); });
  EXPECT_TRUE(contains(msg, "forward of log (UnaryNode) produced NaN")) << msg;
  Tensor nan_loss = full({}, std::nan(""), {DType::f32, dev});
  expect_error([&] { check_finite_loss(nan_loss, 9, "gpu loop"); }, "anomaly",
               "non-finite loss (nan) at step 9 in gpu loop");
}

}  // namespace
}  // namespace idem
