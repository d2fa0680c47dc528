// The fused IT³ MLP adaptation (it3/fused_adapt.h, core/kernels/fused_mlp_adapt.h): the one-call
// path gives the predictions of the op-by-op Adapter within the comparison gate (atol 1e-4 +
// rtol 1e-3) on the benchmark's MLP shapes, for every distance, optimizer and activation it
// takes; K = 0 is inference; it counts like the unfused path; ineligible models and batches say
// why and fall back. CUDA: the kernel against the CPU reference and the unfused CUDA Adapter at
// batch 8/64/256, K 0/1/3, one launch, the same bits on every call. GPU tests skip without a GPU.
#include "it3/fused_adapt.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/kernels/runtime.h"
#include "it3/adapt.h"
#include "it3/adapt_path.h"
#include "it3/models.h"
#include "layers/mlp.h"
#include "tests/test_util.h"

namespace idem::it3 {
namespace {

using idem::testing::expect_error;

// The comparison gate of bench/compare_pytorch.py: |got − want| <= 1e-4 + 1e-3·|want| for all
// but `allowed_share` of the elements (0: every one), and every value finite.
void expect_gate(const Tensor& got, const Tensor& want, const std::string& what,
                 double allowed_share = 0.0) {
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>();
  const std::vector<double> w = want.to(Device::cpu()).to_vector<double>();
  ASSERT_EQ(g.size(), w.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_TRUE(std::isfinite(g[i]) && std::isfinite(w[i])) << what << ": element " << i;
    if (!(std::fabs(g[i] - w[i]) <= 1e-4 + 1e-3 * std::fabs(w[i])) && bad++ < 3 && allowed_share == 0)
      ADD_FAILURE() << what << ": element " << i << " got " << g[i] << " want " << w[i];
  }
  EXPECT_LE(double(bad), allowed_share * double(g.size())) << what << ": elements outside the gate";
}

void expect_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  const std::vector<float> x = a.to(Device::cpu()).to_vector<float>();
  const std::vector<float> y = b.to(Device::cpu()).to_vector<float>();
  ASSERT_EQ(x.size(), y.size()) << what;
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << what << ": element " << i;
}

// The benchmark's shapes: mlp_tab 14→30→20→10→1 and mlp_256 14→256→256→256→1 (13 features
// plus the signal), ∅ = 50.
std::shared_ptr<RecursiveModel> bench_mlp(bool wide, Activation act = Activation::relu,
                                          uint64_t seed = 5) {
  const std::vector<int64_t> sizes = wide ? std::vector<int64_t>{14, 256, 256, 256, 1}
                                          : std::vector<int64_t>{14, 30, 20, 10, 1};
  MlpOptions mo;
  mo.activation = act;
  mo.leaky_slope = 0.1;
  return std::make_shared<ConcatModel>(std::make_shared<MLP>(sizes, mo, Options{}, seed),
                                       SignalSpec::regression(1, 50.0));
}

// A kernel description carrying what sizes the CUDA kernels' layouts: the widths, the batch and
// the optimizer's moments (2: Adam; 1: SGD with momentum; 0: plain SGD, or no steps; the
// layouts read only whether they exist).
FusedMlpAdaptParams sizing_params(const std::vector<int>& widths, int batch, int moments) {
  static float dummy = 0.0f;
  FusedMlpAdaptParams p;
  p.layers = int(widths.size()) - 1;
  for (size_t l = 0; l < widths.size(); ++l) p.widths[l] = widths[l];
  p.batch = batch;
  p.signal = widths.back();
  for (int l = 0; l < p.layers; ++l) {
    p.layer[l].mw = moments >= 1 ? &dummy : nullptr;
    p.layer[l].vw = moments >= 2 ? &dummy : nullptr;
  }
  return p;
}

// IDEM_FUSED_KERNEL as this process runs with it ("auto" when unset).
std::string fused_kernel_setting() {
  const char* env = std::getenv("IDEM_FUSED_KERNEL");
  return env ? env : "auto";
}

// Whether this process runs the cluster kernel (IDEM_FUSED_KERNEL=cluster: opt-in until it has
// run on a GPU; docs/performance.md, "The cluster kernel").
bool cluster_kernel_chosen() { return fused_kernel_setting() == "cluster"; }

// The kernel (and blocks) a net with a layer 64 or more wide takes at `batch` rows on device 0:
// the cluster kernel where it can run when chosen, else the phase kernel.
FusedMlpLaunch expected_wide_launch(const std::vector<int>& widths, int batch, int moments) {
  const FusedMlpAdaptParams p = sizing_params(widths, batch, moments);
  const int cluster = cluster_kernel_chosen() ? cuda::fused_mlp_cluster_blocks(p, 0) : 0;
  if (cluster > 0) return {FusedMlpKernel::cluster, cluster};
  return {FusedMlpKernel::phase, cuda::fused_mlp_adapt_grid(p, 0)};
}

struct Config {
  Distance distance = Distance::l1;
  OptimizerKind optimizer = OptimizerKind::adam;
  double momentum = 0.0;
  int steps = 1;
  // The optimizer's moments (sizing_params).
  int moments() const {
    if (steps == 0) return 0;
    return optimizer == OptimizerKind::adam ? 2 : momentum > 0 ? 1 : 0;
  }
  std::string str() const {
    return std::string(distance_name(distance)) + (optimizer == OptimizerKind::adam ? " adam" : " sgd") +
           " momentum " + std::to_string(momentum) + " K " + std::to_string(steps);
  }
};

AdaptOptions options_of(const Config& c, bool fused) {
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = c.steps;
  o.distance = c.distance;
  o.optimizer = c.optimizer;
  o.sgd_momentum = c.momentum;
  // SGD at 1e-3 would barely move the weights: a larger rate makes the test see the steps.
  o.lr = c.optimizer == OptimizerKind::sgd ? 1e-2 : 1e-3;
  o.fused = fused ? FusedMode::on : FusedMode::off;  // on: the CPU reference too
  return o;
}

// ---- CPU: the fused reference against the op-by-op Adapter ----

// The fused adaptation (`fused`, result rf) against the op-by-op one (`plain`, rp) on the CPU:
// the prediction, the adapted weights (the kernel works in place on the Adapter's θ; Adam's
// step is about lr·sign(g) whatever |g|, so a weight whose gradient is near zero can move by up
// to lr on rounding alone: a few in a thousand may leave the gate) and the last step's loss.
void expect_same_adaptation(const Adapter& fused, const AdaptResult& rf, const Adapter& plain,
                            const AdaptResult& rp, const std::string& what) {
  expect_gate(rf.prediction, rp.prediction, what + " prediction");
  for (size_t i = 0; i < fused.adapted_params().size(); ++i)
    expect_gate(fused.adapted_params()[i], plain.adapted_params()[i], what + " " + fused.adapted_names()[i], 3e-3);
  EXPECT_NEAR(rf.loss_after, rp.loss_after, 1e-4 + 1e-3 * std::fabs(rp.loss_after)) << what;
}

TEST(FusedAdapt, MatchesTheUnfusedAdapterOnTheCpu) {
  const std::vector<Config> configs{
      {Distance::l1, OptimizerKind::adam, 0.0, 1}, {Distance::l1, OptimizerKind::adam, 0.0, 3},
      {Distance::mse, OptimizerKind::adam, 0.0, 3}, {Distance::l1, OptimizerKind::sgd, 0.0, 3},
      {Distance::mse, OptimizerKind::sgd, 0.9, 3}};
  for (bool wide : {false, true})
    for (Activation act : {Activation::relu, Activation::leaky_relu}) {
      auto m = bench_mlp(wide, act);
      const Input x(randn({wide ? 16 : 24, 13}, 7));
      for (const Config& c : configs) {
        const std::string what = std::string(wide ? "mlp_256 " : "mlp_tab ") +
                                 (act == Activation::relu ? "relu " : "leaky ") + c.str();
        Adapter fused(m, options_of(c, true)), plain(m, options_of(c, false));
        ASSERT_TRUE(fused.uses_fused(x)) << what << ": " << fused.fused_reason();
        ASSERT_FALSE(plain.uses_fused(x)) << what;
        const AdaptResult rf = fused.predict(x), rp = plain.predict(x);
        expect_same_adaptation(fused, rf, plain, rp, what);
        EXPECT_NEAR(rf.loss_before, rp.loss_before, 1e-4 + 1e-3 * std::fabs(rp.loss_before)) << what;
        // Counted as the op-by-op path counts.
        EXPECT_EQ(rf.cost.forwards, rp.cost.forwards) << what;
        EXPECT_EQ(rf.cost.backwards, rp.cost.backwards) << what;
        EXPECT_EQ(rf.cost.optimizer_steps, rp.cost.optimizer_steps) << what;
        EXPECT_EQ(rf.cost.reset_bytes, rp.cost.reset_bytes) << what;
      }
    }
}

// Nets beside the bench's two (which the other tests cover), for both row kernels' layouts
// (FusedAdaptCuda.PaddedAndCompactRowKernelsMatchTheCpuReference says which kernel takes
// which) and the shapes the bench nets leave out: one layer with a 3-wide signal and one row
// (plain SGD), eight layers, a 2-wide signal with 33 rows (one warp of the row kernels takes two).
struct ShapeCase {
  std::vector<int64_t> sizes;  // n_0 = 13 features + the signal, …, n_L = the signal
  int64_t batch;
  Config config;
  Activation act = Activation::leaky_relu;
};
std::vector<ShapeCase> shape_cases() {
  return {{{14, 16, 8, 1}, 5, {Distance::mse, OptimizerKind::sgd, 0.9, 3}},
          {{14, 63, 20, 1}, 8, {Distance::l1, OptimizerKind::adam, 0.0, 2}},
          {{14, 63, 20, 1}, 64, {Distance::l1, OptimizerKind::adam, 0.0, 2}},
          {{14, 63, 20, 1}, 64, {Distance::mse, OptimizerKind::sgd, 0.0, 1}},
          {{16, 3}, 1, {Distance::l1, OptimizerKind::sgd, 0.0, 2}},
          {{14, 16, 16, 16, 16, 16, 16, 16, 1}, 9, {Distance::mse, OptimizerKind::adam, 0.0, 2}},
          {{15, 40, 2}, 33, {Distance::l1, OptimizerKind::sgd, 0.9, 3}, Activation::relu}};
}
std::shared_ptr<RecursiveModel> shape_model(const ShapeCase& c) {
  MlpOptions mo;
  mo.activation = c.act;
  mo.leaky_slope = 0.1;
  return std::make_shared<ConcatModel>(std::make_shared<MLP>(c.sizes, mo, Options{}, 6),
                                       SignalSpec::regression(c.sizes.back(), 50.0));
}
std::string shape_name(const ShapeCase& c) {
  std::string what;
  for (int64_t w : c.sizes) what += (what.empty() ? "" : " → ") + std::to_string(w);
  return what + ", B " + std::to_string(c.batch) + ", " + c.config.str();
}

TEST(FusedAdapt, ReferenceMatchesTheUnfusedAdapterOnOtherShapes) {
  for (const ShapeCase& c : shape_cases()) {
    const std::string what = shape_name(c);
    auto m = shape_model(c);
    const Input x(randn({c.batch, 13}, 15));
    Adapter fused(m, options_of(c.config, true)), plain(m, options_of(c.config, false));
    ASSERT_TRUE(fused.uses_fused(x)) << what << ": " << fused.fused_reason();
    const AdaptResult rf = fused.predict(x), rp = plain.predict(x);
    expect_same_adaptation(fused, rf, plain, rp, what);
  }
}

TEST(FusedAdapt, AdaptationChangesThePrediction) {
  // Guards against a fused path that silently skips the steps: K = 3 moves the prediction
  // away from inference, and the loss goes down.
  auto m = bench_mlp(false);
  const Input x(randn({8, 13}, 3));
  Adapter a(m, options_of({Distance::l1, OptimizerKind::adam, 0.0, 3}, true));
  ASSERT_TRUE(a.uses_fused(x));
  const AdaptResult r = a.predict(x);
  NoGradGuard ng;
  const Tensor inf = m->forward_neutral(x);
  double moved = 0;
  const auto p = r.prediction.to_vector<double>(), q = inf.to_vector<double>();
  for (size_t i = 0; i < p.size(); ++i) moved = std::max(moved, std::fabs(p[i] - q[i]));
  EXPECT_GT(moved, 1e-4);
  EXPECT_LT(r.loss_after, r.loss_before);
}

TEST(FusedAdapt, ZeroStepsIsInference) {
  for (bool wide : {false, true}) {
    auto m = bench_mlp(wide);
    const Input x(randn({32, 13}, 4));
    AdaptOptions o = AdaptOptions::for_method(Method::it3);
    o.steps = 0;
    o.fused = FusedMode::on;
    Adapter a(m, o);
    ASSERT_TRUE(a.uses_fused(x)) << a.fused_reason();
    const AdaptResult r = a.predict(x);
    NoGradGuard ng;
    const Tensor inf = m->forward_neutral(x);
    // Only the order of the sums differs from the library's GEMM.
    expect_gate(r.prediction, inf, wide ? "mlp_256" : "mlp_tab");
    EXPECT_EQ(r.cost.forwards, 1u);
    EXPECT_EQ(r.cost.optimizer_steps, 0u);
  }
}

TEST(FusedAdapt, RepeatedCallsGiveTheSameBits) {
  auto m = bench_mlp(true);
  const Input x(randn({8, 13}, 9));
  Adapter a(m, options_of({Distance::l1, OptimizerKind::adam, 0.0, 3}, true));
  const Tensor y1 = a.predict(x).prediction;
  const Tensor y2 = a.predict(x).prediction;  // the reset makes every batch start from Θ
  expect_bits(y1, y2, "cpu");
}

TEST(FusedAdapt, SaysWhyAModelOrBatchIsNotFused) {
  AdaptOptions it3 = AdaptOptions::for_method(Method::it3);
  EXPECT_EQ(it3.fused, FusedMode::automatic);  // the default
  // automatic leaves the CPU to the faster op-by-op path; on forces the CPU reference.
  EXPECT_NE(fused_ineligible_reason(*bench_mlp(false), it3).find("on the CPU"), std::string::npos);
  it3.fused = FusedMode::on;
  auto why = [&](const std::shared_ptr<RecursiveModel>& m, const AdaptOptions& o) {
    return fused_ineligible_reason(*m, o);
  };
  EXPECT_EQ(why(bench_mlp(false), it3), "");
  EXPECT_NE(why(make_small_cnn(10, {}, 1), it3), "");  // a CNN (classification, feature injection)
  {
    AdaptOptions o = it3;
    auto cnn_reg = std::make_shared<PlaneModel>(std::make_shared<Sequential>(), SignalSpec::regression());
    EXPECT_NE(why(cnn_reg, o).find("is not a ConcatModel over an MLP"), std::string::npos) << why(cnn_reg, o);
  }
  EXPECT_NE(why(make_mlp_model(13, {300}, SignalSpec::regression(1, 50.0), {}, 1), it3).find("width 300"),
            std::string::npos);
  {
    AdaptOptions o = it3;
    o.distance = Distance::js;
    EXPECT_NE(why(bench_mlp(false), o).find("distance js"), std::string::npos);
    o.distance = Distance::js_authors;
    EXPECT_NE(why(bench_mlp(false), o).find("distance js-authors"), std::string::npos) << why(bench_mlp(false), o);
    o = it3;
    o.persistent_moments = true;
    EXPECT_NE(why(bench_mlp(false), o).find("persistent"), std::string::npos);
    o = it3;
    o.readout_before_update = true;
    EXPECT_NE(why(bench_mlp(false), o).find("read-out before"), std::string::npos);
    o = it3;
    o.method = Method::random_step;
    EXPECT_NE(why(bench_mlp(false), o).find("random-step"), std::string::npos);
    o = it3;
    o.fused = FusedMode::off;
    EXPECT_NE(why(bench_mlp(false), o).find("off"), std::string::npos);
    o = it3;
    o.prediction = Prediction::anchor;
    EXPECT_NE(why(bench_mlp(false), o).find("prediction anchor"), std::string::npos);
    o = AdaptOptions::for_method(Method::it3_online);
    o.fused = FusedMode::on;  // past automatic's CPU reason, to the method's own reason
    EXPECT_NE(why(bench_mlp(false), o).find("it3-online"), std::string::npos);
    o = it3;
    o.anchor = Anchor::shared;
    EXPECT_NE(why(bench_mlp(false), o).find("anchor shared"), std::string::npos);
    o = it3;
    o.params = ParamSelection::last(1);
    EXPECT_NE(why(bench_mlp(false), o).find("last:1"), std::string::npos);
  }
  {
    MlpOptions mo;
    mo.activation = Activation::gelu;
    auto gelu = std::make_shared<ConcatModel>(std::make_shared<MLP>(std::vector<int64_t>{3, 4, 1}, mo),
                                              SignalSpec::regression());
    EXPECT_NE(why(gelu, it3).find("activation"), std::string::npos);
    mo = MlpOptions{};
    mo.norm = MlpNorm::layer;
    auto norm = std::make_shared<ConcatModel>(std::make_shared<MLP>(std::vector<int64_t>{3, 4, 1}, mo),
                                              SignalSpec::regression());
    EXPECT_NE(why(norm, it3).find("normalization"), std::string::npos);
  }
  // A batch over 256 falls back to the op-by-op path and still adapts.
  auto m = bench_mlp(false);
  Adapter a(m, it3);
  const Input big(randn({300, 13}, 1));
  ASSERT_NE(a.fused_plan(), nullptr);
  EXPECT_NE(a.fused_plan()->batch_reason(big).find("batch 300"), std::string::npos);
  EXPECT_FALSE(a.uses_fused(big));
  EXPECT_EQ(a.predict(big).prediction.size(0), 300);
  EXPECT_TRUE(a.uses_fused(Input(randn({256, 13}, 1))));
}

TEST(FusedAdapt, NonFiniteLossIsReported) {
  // LeakyReLU carries a NaN input through to the loss (idem's relu maps NaN to 0).
  auto m = bench_mlp(false, Activation::leaky_relu);
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.fused = FusedMode::on;
  Adapter a(m, o);
  Tensor x = randn({4, 13}, 1);
  x = x * std::nan("");
  expect_error([&] { a.predict(Input(x)); }, "anomaly", "fused adaptation");
}

TEST(FusedAdapt, PathFusedOnTheCommandLine) {
  // `--path fused` (it3::PathAdapter) runs the fused CPU reference and says so; auto on the CPU
  // stays op by op; naming fused for a model it cannot take is an error with the reason.
  auto m = bench_mlp(false);
  const Input x(randn({8, 13}, 2));
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 3;
  PathAdapter fused(m, o, {}, AdaptPath::fused), automatic(m, o);
  o.fused = FusedMode::off;
  Adapter plain(m, o);
  const AdaptResult a = fused.predict(x), b = automatic.predict(x), c = plain.predict(x);
  EXPECT_EQ(fused.path(), AdaptPath::fused);
  EXPECT_EQ(automatic.path(), AdaptPath::eager);
  expect_gate(a.prediction, c.prediction, "path fused");
  expect_bits(b.prediction, c.prediction, "path auto on the CPU");
  EXPECT_EQ(fused.total().optimizer_steps, 3u);
  // A batch over 256 rows runs op by op on the fused path, and says so.
  fused.predict(Input(randn({300, 13}, 3)));
  EXPECT_EQ(fused.path(), AdaptPath::eager);
  expect_error([&] { PathAdapter p(make_small_cnn(10, {}, 1), AdaptOptions::for_method(Method::it3), {},
                                   AdaptPath::fused); },
               "--path fused cannot run it3: a classification model");
}

// ---- CUDA: the kernel against the CPU reference and the unfused CUDA Adapter ----

// One model adapted on one batch twice: by the CPU reference and, on a copy moved to the GPU, by
// the fused kernel, with the checks every such test makes: the GPU takes the fused path, and
// its prediction and last loss agree with the reference's within the gate. The adapters stay
// for the caller's own checks.
struct GpuAgainstCpu {
  std::unique_ptr<Adapter> cpu_ref, fused;
  Input xg;  // the batch on the GPU
  AdaptResult want, got;
};

GpuAgainstCpu fused_gpu_against_cpu(const std::shared_ptr<RecursiveModel>& m, const Tensor& xc,
                                    const AdaptOptions& o, const std::string& what) {
  GpuAgainstCpu r;
  r.cpu_ref = std::make_unique<Adapter>(m, o);
  r.want = r.cpu_ref->predict(Input(xc));
  auto gm = std::dynamic_pointer_cast<RecursiveModel>(m->clone());
  gm->to(Device::cuda());
  r.fused = std::make_unique<Adapter>(gm, o);
  r.xg = Input(xc.to(Device::cuda()));
  EXPECT_TRUE(r.fused->uses_fused(r.xg)) << what << ": " << r.fused->fused_reason();
  r.got = r.fused->predict(r.xg);
  expect_gate(r.got.prediction, r.want.prediction, what);
  if (o.steps > 0)
    EXPECT_NEAR(r.got.loss_after, r.want.loss_after, 1e-4 + 1e-3 * std::fabs(r.want.loss_after)) << what;
  else  // K = 0 takes no step: no loss on either side
    EXPECT_TRUE(std::isnan(r.got.loss_after) && std::isnan(r.want.loss_after)) << what;
  return r;
}

// The adapted weights the kernel leaves in the model (the row kernel adapts a copy in shared
// memory and writes θ back at the end) against the reference's; the allowance as in the CPU
// test above.
void expect_adapted_params(const GpuAgainstCpu& r, const std::string& what) {
  for (size_t i = 0; i < r.fused->adapted_params().size(); ++i)
    expect_gate(r.fused->adapted_params()[i], r.cpu_ref->adapted_params()[i],
                what + " " + r.fused->adapted_names()[i], 3e-3);
}

TEST(FusedAdaptCuda, MatchesTheCpuReferenceAndTheUnfusedGpuPath) {
  IDEM_REQUIRE_GPU();
  for (bool wide : {false, true})
    for (int64_t batch : {8, 64, 256})
      for (int steps : {0, 1, 3}) {
        const std::string what = std::string(wide ? "mlp_256" : "mlp_tab") + " B " +
                                 std::to_string(batch) + " K " + std::to_string(steps);
        auto m = bench_mlp(wide);
        const Tensor xc = randn({batch, 13}, 11);
        AdaptOptions o = options_of({Distance::l1, OptimizerKind::adam, 0.0, steps}, true);
        o.check_finite = false;
        Adapter cpu_ref(m, o);
        ASSERT_TRUE(cpu_ref.uses_fused(Input(xc))) << cpu_ref.fused_reason();
        const Tensor want = cpu_ref.adapt_and_predict(Input(xc));
        auto gm = std::dynamic_pointer_cast<RecursiveModel>(m->clone());
        gm->to(Device::cuda());
        const Input xg(xc.to(Device::cuda()));
        AdaptOptions off = o;
        off.fused = FusedMode::off;
        // on: every size (the kernel's own check); which of them automatic takes is below.
        Adapter fused(gm, o), plain(gm, off);
        ASSERT_TRUE(fused.uses_fused(xg)) << fused.fused_reason();
        const uint64_t l0 = cuda::launch_count();
        const Tensor got = fused.adapt_and_predict(xg);
        EXPECT_EQ(cuda::launch_count() - l0, 1u) << what << ": one launch per adaptation";
        expect_gate(got, want, what + " vs the CPU reference");
        expect_gate(got, plain.adapt_and_predict(xg), what + " vs the unfused CUDA Adapter");
        expect_bits(fused.adapt_and_predict(xg), got, what + " repeated");
        if (!wide && batch == 8) EXPECT_EQ(fused.fused_plan()->last_grid(), 1) << what << ": one block";
        // automatic (the command line's auto on a GPU) takes what fused_mlp_auto_takes says
        // (its rule: FusedAdapt.AutomaticRule): of these, mlp_tab at batch 8 and 64, mlp_256 at 8.
        AdaptOptions gpu_auto = o;
        gpu_auto.fused = FusedMode::automatic;
        Adapter automatic(gm, gpu_auto);
        EXPECT_EQ(automatic.uses_fused(xg), batch <= (wide ? kFusedMlpAutoWideMaxBatch : kFusedMlpRowMaxBatch)) << what << ": " << automatic.fused_reason();
        // mlp_256: the phase kernel as a grid of at least one block per SM (the cluster kernel
        // at batch 8 and 64 with IDEM_FUSED_KERNEL=cluster on sm_90).
        if (wide) {
          const FusedMlpLaunch want = expected_wide_launch({14, 256, 256, 256, 1}, int(batch), steps > 0 ? 2 : 0);
          EXPECT_EQ(fused.fused_plan()->last_kernel(), want.kernel) << what;
          EXPECT_EQ(fused.fused_plan()->last_grid(), want.blocks) << what;
          if (want.kernel == FusedMlpKernel::phase)
            EXPECT_GE(fused.fused_plan()->last_grid(), cuda::device_properties(0).sm_count) << what << ": a grid of at least one block per SM";
        }
      }
}

TEST(FusedAdapt, AutomaticRule) {
  // automatic (GPU only, so checked on a card by FusedAdaptCuda above) takes every batch up to
  // 64 rows of a net whose widths are all under 64 (the row kernel: mlp_tab,
  // 14 → 30 → 20 → 10 → 1), a batch whose largest phase fits one block of the phase kernel
  // (B·n_l·n_{l−1} <= 256 threads × 64: mlp_tab up to batch 27, mlp_256 never), and a wide net
  // (mlp_256, 14 → 256 → 256 → …) up to kFusedMlpAutoWideMaxBatch rows.
  FusedMlpAdaptParams tab, wide, edge;
  tab.layers = wide.layers = edge.layers = 4;
  const int tw[] = {14, 30, 20, 10, 1}, ww[] = {14, 256, 256, 256, 1}, ew[] = {14, 63, 64, 10, 1};
  for (int l = 0; l <= 4; ++l) tab.widths[l] = tw[l], wide.widths[l] = ww[l], edge.widths[l] = ew[l];
  EXPECT_TRUE(fused_mlp_rows_eligible(tab));
  EXPECT_FALSE(fused_mlp_rows_eligible(wide));
  EXPECT_FALSE(fused_mlp_rows_eligible(edge)) << "a width of 64 needs the phase kernel's warp dot";
  edge.widths[2] = 63;
  EXPECT_TRUE(fused_mlp_rows_eligible(edge));
  EXPECT_TRUE(fused_mlp_rows_takes(tab, 64));
  EXPECT_FALSE(fused_mlp_rows_takes(tab, 65)) << "over kFusedMlpRowMaxBatch: the phase kernel";
  EXPECT_FALSE(fused_mlp_rows_takes(wide, 8));
  EXPECT_EQ(kFusedMlpSingleBlockMacs, 16384);
  EXPECT_EQ(kFusedMlpRowMaxBatch, 64);
  EXPECT_EQ(fused_mlp_largest_phase_macs(tab, 8), 8 * 30 * 20);
  EXPECT_LE(fused_mlp_largest_phase_macs(tab, 27), kFusedMlpSingleBlockMacs);
  EXPECT_GT(fused_mlp_largest_phase_macs(tab, 28), kFusedMlpSingleBlockMacs);
  EXPECT_EQ(fused_mlp_largest_phase_macs(wide, 1), 256 * 256);
  EXPECT_GT(fused_mlp_largest_phase_macs(wide, 1), kFusedMlpSingleBlockMacs);
  EXPECT_EQ(kFusedMlpAutoWideMaxBatch, 16);
  for (int64_t b : {1, 8, 27, 64}) EXPECT_TRUE(fused_mlp_auto_takes(tab, b)) << "mlp_tab B " << b;
  for (int64_t b : {65, 128, 256}) EXPECT_FALSE(fused_mlp_auto_takes(tab, b)) << "mlp_tab B " << b;
  for (int64_t b : {1, 8, 16}) EXPECT_TRUE(fused_mlp_auto_takes(wide, b)) << "mlp_256 B " << b;
  for (int64_t b : {17, 64, 256}) EXPECT_FALSE(fused_mlp_auto_takes(wide, b)) << "mlp_256 B " << b;
  // on ignores the rule: every batch up to 256 rows.
  Adapter on_wide(bench_mlp(true), options_of({Distance::l1, OptimizerKind::adam, 0.0, 1}, true));
  EXPECT_TRUE(on_wide.uses_fused(Input(randn({64, 13}, 1))));
  // The scratch holds f's per-layer gradients too (fd, the row kernel's), laid out as fa.
  const int64_t acts = 64 * (30 + 20 + 10 + 1);
  EXPECT_EQ(fused_mlp_scratch_floats(tab, 64), 3 * acts + 2 * 64 * 30 + 64 * 1);
  std::vector<float> scratch(size_t(fused_mlp_scratch_floats(tab, 64)));
  fused_mlp_carve_scratch(tab, scratch.data(), 64);
  EXPECT_EQ(tab.Fa - tab.fa, acts);
  EXPECT_EQ(tab.gy0 - tab.d0, 2 * 64 * 30);
  EXPECT_EQ(tab.fd + acts, scratch.data() + scratch.size());
}

TEST(FusedAdaptCuda, OtherDistancesOptimizersAndActivations) {
  IDEM_REQUIRE_GPU();
  const std::vector<Config> configs{{Distance::mse, OptimizerKind::adam, 0.0, 3},
                                    {Distance::l1, OptimizerKind::sgd, 0.0, 3},
                                    {Distance::mse, OptimizerKind::sgd, 0.9, 3}};
  for (bool wide : {false, true})
    for (Activation act : {Activation::relu, Activation::leaky_relu})
      for (const Config& c : configs) {
        const std::string what = std::string(wide ? "mlp_256 " : "mlp_tab ") +
                                 (act == Activation::relu ? "relu " : "leaky ") + c.str();
        const GpuAgainstCpu r =
            fused_gpu_against_cpu(bench_mlp(wide, act), randn({64, 13}, 12), options_of(c, true), what);
        expect_adapted_params(r, what);
        // The kernel alone: the loss read-back comes after the meter stops.
        EXPECT_EQ(r.got.cost.gpu_launches, 1u) << what;
      }
}

TEST(FusedAdaptCuda, PhaseKernelOneBlockAndGridMatchTheCpuReference) {
  IDEM_REQUIRE_GPU();
  // A 64-wide layer keeps the net off the row kernel, so the phase kernel takes these (the
  // cluster kernel with IDEM_FUSED_KERNEL=cluster, up to 64 rows): batch 2 fits one block;
  // batches 64 and 65 want 5 and 6 blocks (B·64·20 multiply-adds, 16 384 a block) and, the net
  // being wide, run as a cooperative grid of at least one block per SM (a narrow net's cluster
  // of the phase kernel is covered by mlp_tab at batch 256 above); batch 7 with a 3-wide signal
  // checks the tails. The 64-wide layer's input gradient (F's signal columns) takes a warp per
  // output at these batches.
  for (const auto& [batch, signal] : {std::pair<int64_t, int64_t>{2, 1}, {64, 1}, {65, 1}, {7, 3}}) {
    const std::vector<int64_t> sizes{13 + signal, 64, 20, signal};
    MlpOptions mo;
    mo.activation = Activation::leaky_relu;
    mo.leaky_slope = 0.1;
    auto m = std::make_shared<ConcatModel>(std::make_shared<MLP>(sizes, mo, Options{}, 9),
                                           SignalSpec::regression(signal, 50.0));
    const std::string what = "14 → 64 → 20 → " + std::to_string(signal) + ", B " + std::to_string(batch);
    const GpuAgainstCpu r = fused_gpu_against_cpu(
        m, randn({batch, 13}, 13), options_of({Distance::mse, OptimizerKind::adam, 0.0, 3}, true), what);
    const int grid = r.fused->fused_plan()->last_grid();
    const FusedMlpLaunch want = expected_wide_launch({13 + int(signal), 64, 20, int(signal)}, int(batch), 2);
    if (want.kernel == FusedMlpKernel::phase) EXPECT_EQ(grid > 1, batch >= 64) << what;
    EXPECT_EQ(r.fused->fused_plan()->last_kernel(), want.kernel) << what;
    EXPECT_EQ(grid, want.blocks) << what;
    if (want.kernel == FusedMlpKernel::phase && batch >= 64)
      EXPECT_GE(grid, cuda::device_properties(0).sm_count) << what << ": a grid of at least one block per SM";
    expect_bits(r.fused->predict(r.xg).prediction, r.got.prediction, what + " repeated");
  }
}

// The padded row kernel's shared-memory layout (core/kernels/fused_mlp_adapt.h): the width
// every buffer is padded to, and where θ, Θ, the per-row buffers and the optimizer state lie.
TEST(FusedAdapt, PaddedRowLayout) {
  FusedMlpAdaptParams tab;
  tab.layers = 4;
  const int tw[] = {14, 30, 20, 10, 1};
  for (int l = 0; l <= 4; ++l) tab.widths[l] = tw[l];
  float dummy = 0.0f;  // the layout reads only whether the moments exist
  for (int l = 0; l < 4; ++l) tab.layer[l].mw = tab.layer[l].vw = &dummy;
  FusedMlpPaddedLayout s = fused_mlp_padded_layout(tab, 64);
  EXPECT_EQ(s.pad, 32);
  EXPECT_EQ(s.stride, 36) << "float4 rows whose eight-lane quarters hit distinct banks";
  const int64_t block = 4 * (32 * 36 + 32);  // W and b of 4 layers
  EXPECT_EQ(s.theta, 0);
  EXPECT_EQ(s.anchor, block);
  EXPECT_EQ(s.rows, 2 * block);
  EXPECT_EQ(s.state, 2 * block + (4 + 3 * 4) * 64 * 32);
  EXPECT_EQ(s.total, s.state + 2 * 1291) << "Adam: both moments of the 1 291 parameters";
  EXPECT_EQ(s.state % 4, 0) << "the kernel zeroes [0, state) in float4 steps";
  // The launcher also counts the kernel's static shared memory (the loss tree's 256 doubles and
  // the optimizer's step scalars, about 2.1 KB) against the opt-in limit.
  EXPECT_LE(s.total * 4 + 4096, 227 * 1024) << "mlp_tab at batch 64 fits an H100 block";
  for (int l = 0; l < 4; ++l) tab.layer[l].vw = nullptr;  // SGD with momentum
  EXPECT_EQ(fused_mlp_padded_layout(tab, 64).total, s.state + 1291);
  for (int l = 0; l < 4; ++l) tab.layer[l].mw = nullptr;  // plain SGD
  EXPECT_EQ(fused_mlp_padded_layout(tab, 64).total, s.state);
  // The pad is the smallest of 16, 32, 64 at least every width; 64 wide is not row-eligible.
  FusedMlpAdaptParams narrow = tab;
  const int nw[] = {14, 16, 8, 1};
  narrow.layers = 3;
  for (int l = 0; l <= 3; ++l) narrow.widths[l] = nw[l];
  EXPECT_EQ(fused_mlp_padded_layout(narrow, 5).pad, 16);
  narrow.widths[1] = 63;
  EXPECT_EQ(fused_mlp_padded_layout(narrow, 5).pad, 64);
  EXPECT_EQ(fused_mlp_padded_layout(narrow, 5).stride, 68);
  narrow.widths[1] = 64;
  EXPECT_EQ(fused_mlp_padded_layout(narrow, 5).pad, 0);
}

TEST(FusedAdaptCuda, PaddedAndCompactRowKernelsMatchTheCpuReference) {
  IDEM_REQUIRE_GPU();
  // mlp_tab (pad 32) runs in the tests above. Here (shape_cases): a pad of 16; a pad of 64 at
  // batch 8 (about 150 KB of shared memory); the same net at batch 64, whose padded layout
  // (about 340 KB) does not fit a block, so the compact row kernel runs it in shared memory
  // (about 125 KB); then one layer (pad 16), eight layers (pad 16) and a pad of 64 with 33 rows.
  for (const ShapeCase& c : shape_cases()) {
    auto m = shape_model(c);
    const std::string what = shape_name(c);
    const GpuAgainstCpu r = fused_gpu_against_cpu(m, randn({c.batch, 13}, 15), options_of(c.config, true), what);
    expect_adapted_params(r, what);
    // One block: the row kernels (IDEM_FUSED_KERNEL=phase gives these nets 2 to 5 blocks).
    if (fused_kernel_setting() != "phase") EXPECT_EQ(r.fused->fused_plan()->last_grid(), 1) << what;
    // The padded kernel where its layout fits a block (227 KB of shared memory on sm_90 and
    // sm_100, less the kernel's own few KB): all but 14 → 63 → 20 → 1 at 64 rows (311 and 329
    // KB). Not checked where IDEM_FUSED_KERNEL=phase takes these nets from the row kernels.
    std::vector<int> widths(c.sizes.begin(), c.sizes.end());
    const int64_t padded_bytes =
        fused_mlp_padded_layout(sizing_params(widths, int(c.batch), c.config.moments()), c.batch).total * 4;
    const bool compact = fused_kernel_setting() == "compact" || padded_bytes > 200 * 1024;
    const int cc = cuda::device_properties(0).cc_major;
    if ((cc == 9 || cc == 10) && fused_kernel_setting() != "phase")
      EXPECT_EQ(r.fused->fused_plan()->last_kernel(), compact ? FusedMlpKernel::rows_compact : FusedMlpKernel::rows_padded)
          << what << ": " << padded_bytes << " bytes padded";
    expect_bits(r.fused->predict(r.xg).prediction, r.got.prediction, what + " repeated");
  }
}

TEST(FusedAdaptCuda, RowKernelFromGlobalMemoryWhenSharedMemoryIsShort) {
  IDEM_REQUIRE_GPU();
  // Seven 63-wide layers with Adam: θ and both moments are about 300 KB, over the 227 KB a
  // block can have, so the row kernel keeps them in the params' global buffers instead.
  std::vector<int64_t> sizes{14};
  for (int l = 0; l < 7; ++l) sizes.push_back(63);
  sizes.push_back(1);
  auto m = std::make_shared<ConcatModel>(std::make_shared<MLP>(sizes, MlpOptions{}, Options{}, 4),
                                         SignalSpec::regression(1, 50.0));
  const std::string what = "14 → 63×7 → 1, B 16";
  const GpuAgainstCpu r = fused_gpu_against_cpu(
      m, randn({16, 13}, 14), options_of({Distance::l1, OptimizerKind::adam, 0.0, 2}, true), what);
  expect_adapted_params(r, what);
  if (fused_kernel_setting() != "phase") EXPECT_EQ(r.fused->fused_plan()->last_grid(), 1);  // the row kernel
}


// ---- the cluster kernel (cuda/kernels/fused_mlp_cluster.cu) ----

TEST(FusedAdapt, ClusterLayout) {
  // mlp_256 with Adam as 16 blocks: each owns 16 units of the 256-wide layers and block 0 the
  // output; per section 16·15 + 2·16·257 + 1·257 floats; θ, Θ, m, v: about 136 KB a block.
  const FusedMlpAdaptParams wide = sizing_params({14, 256, 256, 256, 1}, 8, 2);
  const FusedMlpClusterLayout s = fused_mlp_cluster_layout(wide, 16);
  EXPECT_EQ(s.blocks, 16);
  const int rows[] = {16, 16, 16, 1};
  for (int l = 0; l < 4; ++l) EXPECT_EQ(s.rows[l], rows[l]) << "layer " << l + 1;
  EXPECT_EQ(s.woff[0], 0);
  EXPECT_EQ(s.woff[1], 16 * 15);
  EXPECT_EQ(s.woff[2], 16 * 15 + 16 * 257);
  EXPECT_EQ(s.woff[3], 16 * 15 + 2 * 16 * 257);
  EXPECT_EQ(s.section, 16 * 15 + 2 * 16 * 257 + 257);
  EXPECT_EQ(s.theta, 0);
  EXPECT_EQ(s.anchor, s.section);
  EXPECT_EQ(s.m, 2 * s.section);
  EXPECT_EQ(s.v, 3 * s.section);
  EXPECT_EQ(s.total, 4 * s.section);
  EXPECT_LE(s.total * 4, 227 * 1024) << "fits an H100 block";
  // As 8 blocks, twice the rows: Adam's four sections no longer fit a block, plain SGD's two do.
  EXPECT_GT(fused_mlp_cluster_layout(wide, 8).total * 4, 227 * 1024);
  const FusedMlpClusterLayout sgd = fused_mlp_cluster_layout(sizing_params({14, 256, 256, 256, 1}, 8, 0), 8);
  EXPECT_EQ(sgd.m, -1);
  EXPECT_EQ(sgd.v, -1);
  EXPECT_EQ(sgd.total, 2 * sgd.section);
  EXPECT_LE(sgd.total * 4, 227 * 1024);
  // Units that do not split evenly: 100 over 16 blocks is 7 a block; blocks 0–13 own 7 each,
  // block 14 the last 2 and block 15 none (the kernel clamps each share to the layer).
  EXPECT_EQ(fused_mlp_cluster_layout(sizing_params({14, 100, 3}, 8, 2), 16).rows[0], 7);
}

// Wide nets for the cluster kernel: mlp_256 at 1, 8 and 64 rows with each optimizer and
// distance; layers that do not split evenly over the blocks (100 and 70 units, a 3-wide signal,
// 33 rows); two layers (200 wide, 2-wide signal); seven layers; K = 0 (inference); one layer
// whose 64-wide signal is its output (the signal columns of F's input gradient spread over
// the blocks).
std::vector<ShapeCase> cluster_cases() {
  return {{{14, 256, 256, 256, 1}, 1, {Distance::l1, OptimizerKind::adam, 0.0, 1}, Activation::relu},
          {{14, 256, 256, 256, 1}, 8, {Distance::mse, OptimizerKind::adam, 0.0, 3}},
          {{14, 256, 256, 256, 1}, 64, {Distance::l1, OptimizerKind::sgd, 0.9, 2}, Activation::relu},
          {{14, 256, 256, 256, 1}, 16, {Distance::mse, OptimizerKind::sgd, 0.0, 3}},
          {{14, 256, 256, 256, 1}, 8, {Distance::l1, OptimizerKind::adam, 0.0, 0}},
          {{16, 100, 70, 3}, 33, {Distance::l1, OptimizerKind::adam, 0.0, 3}},
          {{15, 200, 2}, 9, {Distance::mse, OptimizerKind::adam, 0.0, 2}, Activation::relu},
          {{14, 64, 64, 64, 64, 64, 64, 1}, 16, {Distance::l1, OptimizerKind::sgd, 0.9, 2}},
          {{77, 64}, 8, {Distance::mse, OptimizerKind::adam, 0.0, 2}}};
}

TEST(FusedAdaptCuda, ClusterKernelMatchesTheCpuReference) {
  IDEM_REQUIRE_GPU();
  if (!cluster_kernel_chosen())
    GTEST_SKIP() << "the cluster kernel is opt-in (slower than the phase kernel on an H100): run with IDEM_FUSED_KERNEL=cluster";
  if (expected_wide_launch({14, 256, 256, 256, 1}, 8, 2).kernel != FusedMlpKernel::cluster)
    GTEST_SKIP() << "the cluster kernel does not run here: a GPU before sm_90, or no cluster of "
                    "8 blocks with room for mlp_256";
  for (const ShapeCase& c : cluster_cases()) {
    auto m = shape_model(c);
    const std::string what = shape_name(c);
    // Every case's largest phase is over one block of the phase kernel (mlp_256 at one row:
    // 256·256 multiply-adds, four blocks' worth), so the automatic rule meant for the cluster
    // kernel (fused_mlp_adapt.cu, use_cluster) would take them too. K = 0 builds no optimizer:
    // no moments in the layout.
    const FusedMlpLaunch want =
        expected_wide_launch(std::vector<int>(c.sizes.begin(), c.sizes.end()), int(c.batch), c.config.moments());
    ASSERT_EQ(want.kernel, FusedMlpKernel::cluster) << what;
    const GpuAgainstCpu r = fused_gpu_against_cpu(m, randn({c.batch, 13}, 16), options_of(c.config, true), what);
    if (c.config.steps > 0) expect_adapted_params(r, what);
    EXPECT_EQ(r.fused->fused_plan()->last_kernel(), FusedMlpKernel::cluster) << what;
    EXPECT_EQ(r.fused->fused_plan()->last_grid(), want.blocks) << what;
    EXPECT_EQ(r.got.cost.gpu_launches, 1u) << what;
    expect_bits(r.fused->predict(r.xg).prediction, r.got.prediction, what + " repeated");
  }
}

}  // namespace
}  // namespace idem::it3
