// The adaptation's execution paths (it3/adapt_path.h): which path `auto` picks and why, clear
// errors when a named path cannot run, and — on a GPU — that a CUDA-graph replay predicts what
// the eager Adapter predicts, batch after batch, with the same counters and losses.
#include "it3/adapt_path.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/kernels/runtime.h"
#include "it3/models.h"
#include "tests/test_util.h"

namespace idem::it3 {
namespace {

using testing::expect_error;

std::shared_ptr<RecursiveModel> small_mlp(Device d = Device::cpu()) {
  auto m = make_mlp_model(6, {16, 12}, SignalSpec::regression(1, 5.0), {}, 3);
  m->to(d);
  return m;
}

Tensor batch(int64_t b, uint64_t seed, Device d) { return randn({b, 6}, seed).to(d); }

TEST(AdaptPath, NamesRoundTripAndBadNamesAreClear) {
  for (AdaptPath p : {AdaptPath::automatic, AdaptPath::fused, AdaptPath::graph, AdaptPath::eager})
    EXPECT_EQ(parse_adapt_path(adapt_path_name(p)), p);
  expect_error([] { parse_adapt_path("fast"); }, "expected auto, fused, graph or eager");
}

TEST(AdaptPath, BlockersNameTheReason) {
  AdaptOptions it3 = AdaptOptions::for_method(Method::it3);
  EXPECT_NE(graph_path_blocker(it3, Device::cpu()).find("needs a CUDA device"), std::string::npos);
  EXPECT_EQ(graph_path_blocker(it3, Device::cuda(0)), "");
  EXPECT_EQ(graph_path_blocker(AdaptOptions::for_method(Method::none), Device::cuda(0)), "");
  EXPECT_NE(graph_path_blocker(AdaptOptions::for_method(Method::it3_online), Device::cuda(0))
                .find("reset never"),
            std::string::npos);
  AdaptOptions persistent = it3;
  persistent.persistent_moments = true;
  EXPECT_NE(graph_path_blocker(persistent, Device::cuda(0)).find("step count"), std::string::npos);
  AdaptOptions random_null = AdaptOptions::for_method(Method::none);
  random_null.neutral = NeutralSignal::random_one_hot;
  EXPECT_NE(graph_path_blocker(random_null, Device::cuda(0)).find("random one-hot"), std::string::npos);
  EXPECT_NE(graph_path_blocker(AdaptOptions::for_method(Method::random_step), Device::cuda(0))
                .find("new direction"),
            std::string::npos);
  AdaptOptions deyo = AdaptOptions::for_method(Method::deyo);
  deyo.reset = ResetPolicy::per_batch;  // not the reset: the draws block it
  EXPECT_NE(graph_path_blocker(deyo, Device::cuda(0)).find("patch shuffle"), std::string::npos);
  EXPECT_NE(graph_path_blocker(AdaptOptions::for_method(Method::memo), Device::cuda(0)).find("augmentations"),
            std::string::npos);
  AdaptOptions eata = AdaptOptions::for_method(Method::eata);
  eata.reset = ResetPolicy::per_batch;
  EXPECT_NE(graph_path_blocker(eata, Device::cuda(0)).find("moving average"), std::string::npos);
  eata.steps = 0;  // K = 0 draws and keeps nothing
  EXPECT_EQ(graph_path_blocker(eata, Device::cuda(0)), "");
}

TEST(AdaptPath, OnTheCpuAutoRunsEagerAndEqualsTheAdapter) {
  auto model = small_mlp();
  AdaptOptions o = AdaptOptions::for_method(Method::it3);
  o.steps = 2;
  PathAdapter fast(model, o);
  Adapter plain(model, o);
  EXPECT_EQ(fast.path(), AdaptPath::eager);
  for (uint64_t s = 0; s < 3; ++s) {
    const Input x(batch(5, s, Device::cpu()));
    AdaptResult a = fast.predict(x), b = plain.predict(x);
    EXPECT_EQ(a.prediction.to_vector<float>(), b.prediction.to_vector<float>());
    EXPECT_EQ(a.loss_before, b.loss_before);
  }
  EXPECT_EQ(fast.total().batches, 3u);
  EXPECT_EQ(fast.total().optimizer_steps, 6u);
  EXPECT_EQ(fast.captures(), 0u);
}

TEST(AdaptPath, NamingTheGraphPathWhereItCannotRunIsAnError) {
  expect_error([] { PathAdapter p(small_mlp(), AdaptOptions::for_method(Method::it3), {}, AdaptPath::graph); },
               "needs a CUDA device");
}

// ---- GPU ----

// Runs the same batches through the eager Adapter and a PathAdapter on `path`; predictions,
// losses and counters must agree batch by batch. Two batch shapes: two captures.
void expect_graph_matches_eager(const std::shared_ptr<RecursiveModel>& model, AdaptOptions o,
                                const std::vector<Tensor>& xs, double tol) {
  PathAdapter fast(model, o, {}, AdaptPath::graph);
  AdaptOptions op_by_op = o;
  op_by_op.fused = FusedMode::off;  // the reference runs the ops the graph captured
  Adapter eager(model, op_by_op);
  for (size_t i = 0; i < xs.size(); ++i) {
    const Input x(xs[i]);
    const AdaptResult a = fast.predict(x);
    const AdaptResult b = eager.predict(x);
    EXPECT_EQ(fast.path(), AdaptPath::graph);
    testing::expect_near_all(a.prediction, b.prediction, tol, "batch " + std::to_string(i));
    if (std::isfinite(b.loss_before)) {
      EXPECT_NEAR(a.loss_before, b.loss_before, tol * (1 + std::fabs(b.loss_before))) << i;
      EXPECT_NEAR(a.loss_after, b.loss_after, tol * (1 + std::fabs(b.loss_after))) << i;
    } else {
      EXPECT_TRUE(std::isnan(a.loss_before));
    }
    EXPECT_EQ(a.cost.forwards, b.cost.forwards);
    EXPECT_EQ(a.cost.backwards, b.cost.backwards);
    EXPECT_EQ(a.cost.optimizer_steps, b.cost.optimizer_steps);
    EXPECT_EQ(a.cost.reset_bytes, b.cost.reset_bytes);
    // The input copy, the replay and the copy of the prediction.
    EXPECT_LE(a.cost.gpu_launches, 3u);
    EXPECT_LT(a.cost.gpu_launches, b.cost.gpu_launches);
  }
}

TEST(AdaptPathCuda, GraphReplaysPredictWhatEagerPredictsForAnMlp) {
  IDEM_REQUIRE_GPU();
  auto model = small_mlp(Device::cuda(0));
  const Device d = Device::cuda(0);
  std::vector<Tensor> xs{batch(8, 1, d), batch(8, 2, d), batch(5, 3, d), batch(8, 4, d)};
  for (int k : {0, 1, 3}) {
    AdaptOptions o = AdaptOptions::for_method(Method::it3);
    o.steps = k;
    SCOPED_TRACE("K " + std::to_string(k));
    expect_graph_matches_eager(model, o, xs, 1e-5);
  }
  AdaptOptions sgd = AdaptOptions::for_method(Method::it3);
  sgd.optimizer = OptimizerKind::sgd;
  sgd.distance = Distance::mse;
  expect_graph_matches_eager(model, sgd, xs, 1e-5);
  PathAdapter fast(model, AdaptOptions::for_method(Method::it3), {}, AdaptPath::graph);
  for (const Tensor& x : xs) fast.predict(Input(x));
  EXPECT_EQ(fast.captures(), 2u);  // batch 8 and batch 5
  EXPECT_GT(fast.setup_us(), 0.0);
  // auto takes the one-call fused path for this MLP: no capture at all.
  PathAdapter best(model, AdaptOptions::for_method(Method::it3));
  const AdaptResult r = best.predict(Input(xs[0]));
  EXPECT_EQ(best.path(), AdaptPath::fused);
  EXPECT_EQ(best.captures(), 0u);
  EXPECT_EQ(r.cost.gpu_launches, 1u);
  // A batch too large for one block of the kernel (200·16·7 multiply-adds > 16 384) goes to a
  // CUDA graph under auto, and predicts what the op-by-op path predicts; small ones stay fused.
  AdaptOptions op_by_op = AdaptOptions::for_method(Method::it3);
  op_by_op.fused = FusedMode::off;
  Adapter eager(model, op_by_op);
  const Tensor big = batch(200, 5, d);
  const AdaptResult rb = best.predict(Input(big));
  EXPECT_EQ(best.path(), AdaptPath::graph);
  EXPECT_EQ(best.captures(), 1u);
  testing::expect_near_all(rb.prediction, eager.predict(Input(big)).prediction, 1e-5, "auto, batch 200");
  best.predict(Input(xs[1]));
  EXPECT_EQ(best.path(), AdaptPath::fused);
}

TEST(AdaptPathCuda, GraphReplaysMatchEagerForEveryBatchNormMethod) {
  IDEM_REQUIRE_GPU();
  const Device d = Device::cuda(0);
  auto model = make_bn_cnn(10, 4, 8, {}, 7);
  model->to(d);
  std::vector<Tensor> xs{rand({6, 1, 28, 28}, 1).to(d), rand({6, 1, 28, 28}, 2).to(d),
                         rand({4, 1, 28, 28}, 3).to(d)};
  for (Method m : {Method::none, Method::bn, Method::tent, Method::it3}) {
    SCOPED_TRACE(method_name(m));
    AdaptOptions o = AdaptOptions::for_method(m);
    if (m == Method::it3) o.bn_mode = BnMode::batch;
    expect_graph_matches_eager(model, o, xs, 1e-4);
  }
}

TEST(AdaptPathCuda, AutoRunsGraphBatchesEagerlyAndGraphNamedIsAnError) {
  IDEM_REQUIRE_GPU();
  const Device d = Device::cuda(0);
  auto model = make_sage_model(2, 8, 2, SignalSpec::regression(1, 5.0), {}, 1);
  model->to(d);
  const Input g = grid_mesh_batch(2, 4, d);
  PathAdapter fast(model, AdaptOptions::for_method(Method::it3));
  Adapter eager(model, AdaptOptions::for_method(Method::it3));
  const AdaptResult a = fast.predict(g), b = eager.predict(g);
  EXPECT_EQ(fast.path(), AdaptPath::eager);
  testing::expect_near_all(a.prediction, b.prediction, 1e-6, "sage");
  PathAdapter named(model, AdaptOptions::for_method(Method::it3), {}, AdaptPath::graph);
  expect_error([&] { named.predict(g); }, "graph structure");
}

}  // namespace
}  // namespace idem::it3
