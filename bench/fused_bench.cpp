// Fused-op benchmarks (Google Benchmark): what the fused paths of issue 7 save on a GPU, where a
// small IT³ step is bound by kernel launches (docs/design.md#measuring).
//
//   fused/linear_act/<shape>/<fused|unfused>/<fwd|fwd_bwd>
//       linear_act(x, W, b, relu) against relu(matmul(x, W, trans_b) + b); fwd_bwd adds
//       sum(y).backward() with x, W, b requiring grad (the same extra work on both lines).
//   fused/mlp4/<fused|unfused>/fwd_bwd
//       the IT³ tabular MLP 14→30→20→10→1 (ReLU) at batch 8: MLP::forward (linear_act per
//       layer) against its modules run one by one (layers()->forward_unfused), then sum +
//       backward.
//   fused/distance/<n>/<l1_distance|l1_loss>/<fwd|fwd_bwd>
//       l1_distance(a, b) against l1_loss(a, b) (sub, abs, mean and their backward).
//   fused/reset/<multi_copy|per_tensor>
//       the IT³ episodic reset of the MLP above with Adam: one MultiTensorCopy::run() against a
//       copy_ per parameter plus one fill of the optimizer state.
//   fused/it3_adapt/<mlp_tab|mlp_256>/b<B>/k<K>/<eager|fused>
//       one whole IT³ adaptation (reset, K Adam steps with the L1 distance, prediction) of the
//       benchmark's MLPs (`idem bench it3`: 13 features, ∅ = 50) through it3::Adapter op by op
//       (fused off) against the one-call fused kernel (it3/fused_adapt.h).
//
// Timing: the whole L2/L3 call, host work included (that is what a launch-bound step pays):
// each iteration makes `reps` back-to-back calls and one synchronization, timed with a steady
// host clock (manual time); us/call is per call. launches/call is idem's launch counter
// (core/kernels/runtime.h) over one call. One untimed warm-up call first (module load, allocator
// cache). Read the _median lines; ratios are against the other line of the same case, on the
// same GPU, in the same process. Without a GPU every line skips.
#include <benchmark/benchmark.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/fused_functions.h"
#include "autograd/nn_functions.h"
#include "bench/bench_common.h"
#include "core/kernels/runtime.h"
#include "core/ops/elementwise.h"
#include "core/ops/multi_copy.h"
#include "it3/adapt.h"
#include "it3/models.h"
#include "layers/mlp.h"
#include "layers/optim.h"

namespace {

using idem::Tensor;

constexpr int kReps = 50;

idem::Options gpu() {
  return {idem::DType::f32, idem::Device::cuda(0)};
}

// Times `call` as the header comment says.
void run_timed(benchmark::State& state, const std::function<void()>& call) {
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  uint64_t per_call_launches = 0;
  try {
    call();  // warm-up
    idem::cuda::synchronize(0);
    const uint64_t before = idem::cuda::launch_count();
    call();
    per_call_launches = idem::cuda::launch_count() - before;
    idem::cuda::synchronize(0);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kReps; ++r) call();
    idem::cuda::synchronize(0);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(s);
    total += s / kReps;
  }
  state.counters["us/call"] = total / static_cast<double>(state.iterations()) * 1e6;
  state.counters["launches/call"] = static_cast<double>(per_call_launches);
  state.SetLabel(idem::bench::gpu_name());
}

// ---- linear_act ----

struct LinShape {
  const char* name;
  int64_t N, in, out;
};
const LinShape kLinShapes[] = {{"it3_8x14x30", 8, 14, 30}, {"mlp_256x256x256", 256, 256, 256}};

void bm_linear_act(benchmark::State& state, LinShape s, bool fused, bool backward) {
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  Tensor x = idem::randn({s.N, s.in}, 1, gpu()).requires_grad_(backward);
  Tensor w = idem::randn({s.out, s.in}, 2, gpu()).requires_grad_(backward);
  Tensor b = idem::randn({s.out}, 3, gpu()).requires_grad_(backward);
  run_timed(state, [&] {
    Tensor y = fused ? idem::linear_act(x, w, b, idem::FusedAct::relu)
                     : idem::relu(idem::matmul(x, w, false, true) + b);
    if (backward) {
      x.zero_grad();
      w.zero_grad();
      b.zero_grad();
      idem::sum(y).backward();
    }
  });
}

// ---- the IT³ tabular MLP ----

void bm_mlp4(benchmark::State& state, bool fused) {
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  idem::MLP mlp({14, 30, 20, 10, 1}, {}, {}, 5);
  mlp.to(idem::Device::cuda(0));
  Tensor x = idem::randn({8, 14}, 6, gpu());
  run_timed(state, [&] {
    mlp.zero_grad();
    Tensor y = fused ? mlp.forward(x) : mlp.layers()->forward_unfused(x);
    idem::sum(y).backward();
  });
}

// ---- distances ----

void bm_distance(benchmark::State& state, int64_t n, bool fused, bool backward) {
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  Tensor a = idem::randn({n}, 7, gpu()).requires_grad_(backward);
  Tensor b = idem::randn({n}, 8, gpu());
  run_timed(state, [&] {
    Tensor d = fused ? idem::l1_distance(a, b) : idem::l1_loss(a, b);
    if (backward) {
      a.zero_grad();
      d.backward();
    }
  });
}

// ---- the episodic reset ----

void bm_reset(benchmark::State& state, bool fused) {
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  idem::MLP anchor({14, 30, 20, 10, 1}, {}, {}, 9);
  anchor.to(idem::Device::cuda(0));
  auto working = idem::clone_as(anchor);
  idem::Adam opt(working->parameters());
  const std::vector<Tensor> dst = working->parameters(), src = anchor.parameters();
  idem::MultiTensorCopy reset(idem::copy_pairs(dst, src), {opt.state_buffer()});
  run_timed(state, [&] {
    if (fused) {
      reset.run();
      opt.reset_step_counts();
    } else {
      for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
      opt.reset_state();
    }
  });
}

// ---- the whole IT³ adaptation ----

void bm_it3_adapt(benchmark::State& state, bool wide, int64_t batch, int steps, bool fused) {
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  namespace it3 = idem::it3;
  const std::vector<int64_t> hidden = wide ? std::vector<int64_t>{256, 256, 256} : std::vector<int64_t>{30, 20, 10};
  auto model = it3::make_mlp_model(13, hidden, it3::SignalSpec::regression(1, 50.0), {}, 5);
  model->to(idem::Device::cuda(0));
  it3::AdaptOptions o = it3::AdaptOptions::for_method(it3::Method::it3);
  o.steps = steps;
  o.check_finite = false;
  o.fused = fused ? it3::FusedMode::on : it3::FusedMode::off;
  it3::Adapter adapter(model, o);
  const it3::Input x(idem::randn({batch, 13}, 6, gpu()));
  if (fused && !adapter.uses_fused(x)) {
    state.SkipWithError(("not fused: " + adapter.fused_reason()).c_str());
    return;
  }
  run_timed(state, [&] { adapter.adapt_and_predict(x); });
}

benchmark::internal::Benchmark* setup(benchmark::internal::Benchmark* b, bool gpu) {
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
  if (gpu)
    b->MinTime(0.1)->Repetitions(5)->ReportAggregatesOnly(true);
  else
    b->Iterations(1);  // skips at once: one line each
  return b;
}

// Unfused first, so each pair reads top to bottom as before -> after.
const bool g_registered = [] {
  const bool gpu = idem::cuda::available();
  for (const LinShape& s : kLinShapes)
    for (bool backward : {false, true})
      for (bool fused : {false, true}) {
        const std::string name = std::string("fused/linear_act/") + s.name + "/" +
                                 (fused ? "fused" : "unfused") + "/" +
                                 (backward ? "fwd_bwd" : "fwd");
        setup(benchmark::RegisterBenchmark(name.c_str(),
                                           [s, fused, backward](benchmark::State& st) {
                                             bm_linear_act(st, s, fused, backward);
                                           }),
              gpu);
      }
  for (bool fused : {false, true})
    setup(benchmark::RegisterBenchmark(
              (std::string("fused/mlp4/") + (fused ? "fused" : "unfused") + "/fwd_bwd").c_str(),
              [fused](benchmark::State& st) { bm_mlp4(st, fused); }),
          gpu);
  for (int64_t n : {int64_t{8}, int64_t{640}, int64_t{1} << 20})
    for (bool backward : {false, true})
      for (bool fused : {false, true}) {
        const std::string name = "fused/distance/" + std::to_string(n) + "/" +
                                 (fused ? "l1_distance" : "l1_loss") + "/" +
                                 (backward ? "fwd_bwd" : "fwd");
        setup(benchmark::RegisterBenchmark(name.c_str(),
                                           [n, fused, backward](benchmark::State& st) {
                                             bm_distance(st, n, fused, backward);
                                           }),
              gpu);
      }
  for (bool fused : {false, true})
    setup(benchmark::RegisterBenchmark(
              (std::string("fused/reset/") + (fused ? "multi_copy" : "per_tensor")).c_str(),
              [fused](benchmark::State& st) { bm_reset(st, fused); }),
          gpu);
  for (bool wide : {false, true})
    for (int64_t batch : {int64_t{8}, int64_t{64}, int64_t{256}})
      for (int steps : {1, 3})
        for (bool fused : {false, true}) {
          const std::string name = std::string("fused/it3_adapt/") + (wide ? "mlp_256" : "mlp_tab") + "/b" +
                                   std::to_string(batch) + "/k" + std::to_string(steps) + "/" +
                                   (fused ? "fused" : "eager");
          setup(benchmark::RegisterBenchmark(name.c_str(),
                                             [wide, batch, steps, fused](benchmark::State& st) {
                                               bm_it3_adapt(st, wide, batch, steps, fused);
                                             }),
                gpu);
        }
  return true;
}();

}  // namespace
