// Optimizers, learning-rate schedules and gradient clipping: updates against hand-computed
// numbers (torch.optim formulas), reset_state, per-parameter step counts, schedules against known
// sequences, clipping, bad input; on a GPU the fused CUDA update against the CPU one.
#include "layers/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "autograd/functions.h"
#include "autograd/node.h"
#include "core/kernels/matmul.h"
#include "core/kernels/optim.h"
#include "core/kernels/runtime.h"
#include "layers/lr_schedule.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;
using testing::expect_near_all;

using DV = std::vector<double>;

Tensor param(const DV& v, DType dt = DType::f64, Device dev = Device::cpu()) {
  Tensor t = from_vector<double>(v, {static_cast<int64_t>(v.size())}).to(dt).to(dev);
  t.requires_grad_();
  return t;
}

// Gives a leaf a gradient as backward() would (a fresh tensor each time).
void set_grad(const Tensor& p, const Tensor& g) {
  p.impl().autograd->grad = g;
}
void set_grad(const Tensor& p, const DV& g) {
  set_grad(p, from_vector<double>(g, p.shape()).to(p.dtype()).to(p.device()));
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW

TEST(Optim, AdamOneAndTwoStepsByHand) {
  Tensor p = param({1.0, -2.0});
  Adam opt({p}, AdamOptions{0.1});
  // Step 1, g = (0.5, -1): m = 0.1 g = (0.05, -0.1); v = 0.001 g² = (2.5e-4, 1e-3);
  // m̂ = m / 0.1 = g, v̂ = v / 0.001 = g², so p -= 0.1 · g / (|g| + 1e-8) ≈ 0.1 · sign(g).
  set_grad(p, {0.5, -1.0});
  opt.step();
  expect_near_all(opt.exp_avg(0), {0.05, -0.1}, 1e-15);
  expect_near_all(opt.exp_avg_sq(0), {2.5e-4, 1e-3}, 1e-18);
  expect_near_all(p, {1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 1.0 / (1.0 + 1e-8)}, 1e-14);
  EXPECT_NEAR(p.at({0}), 0.900000002, 1e-12);
  EXPECT_EQ(opt.step_count(0), 1);
  // Step 2, g = (0.25, 0.5): m = 0.9 m + 0.1 g = (0.07, -0.04);
  // v = 0.999 v + 0.001 g² = (3.1225e-4, 1.249e-3); bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001;
  // p -= 0.1/0.19 · m / (sqrt(v)/sqrt(0.001999) + 1e-8).
  set_grad(p, {0.25, 0.5});
  opt.step();
  expect_near_all(opt.exp_avg(0), {0.07, -0.04}, 1e-15);
  expect_near_all(opt.exp_avg_sq(0), {3.1225e-4, 1.249e-3}, 1e-17);
  const double bc2 = std::sqrt(0.001999);
  expect_near_all(p,
                  {0.900000002 - 0.1 / 0.19 * 0.07 / (std::sqrt(3.1225e-4) / bc2 + 1e-8),
                   -1.900000001 + 0.1 / 0.19 * 0.04 / (std::sqrt(1.249e-3) / bc2 + 1e-8)},
                  1e-12);
  EXPECT_NEAR(p.at({0}), 0.8067820404774624, 1e-12);
  EXPECT_NEAR(p.at({1}), -1.873366297370903, 1e-12);
}

TEST(Optim, AdamF32MatchesF64) {
  Tensor p64 = param({1.0, -2.0, 0.3}), p32 = param({1.0, -2.0, 0.3}, DType::f32);
  Adam a({p64}, AdamOptions{0.05, 0.8, 0.99, 1e-6, 0.01}),
      b({p32}, AdamOptions{0.05, 0.8, 0.99, 1e-6, 0.01});
  for (int s = 0; s < 4; ++s) {
    const DV g{0.5 - s, 0.25 * s, -1.5};
    set_grad(p64, g);
    set_grad(p32, g);
    a.step();
    b.step();
  }
  expect_near_all(p32, p64.to_vector<double>(), 2e-6);
}

TEST(Optim, AdamCoupledWeightDecayAndAdamWDecoupled) {
  // Adam: the decay enters the gradient, g' = g + wd·p = (0.5 + 0.1, -1 - 0.2) = (0.6, -1.2), so
  // the first step is still ≈ lr·sign(g').
  Tensor p = param({1.0, -2.0});
  Adam adam({p}, AdamOptions{0.1, 0.9, 0.999, 1e-8, 0.1});
  set_grad(p, {0.5, -1.0});
  adam.step();
  expect_near_all(p, {1.0 - 0.1 * 0.6 / (0.6 + 1e-8), -2.0 + 0.1 * 1.2 / (1.2 + 1e-8)}, 1e-14);
  expect_near_all(adam.exp_avg(0), {0.06, -0.12}, 1e-15);

  // AdamW: p *= 1 - lr·wd = 0.99 first, then the plain Adam step on g.
  Tensor q = param({1.0, -2.0});
  AdamW adamw({q}, AdamWOptions{0.1, 0.9, 0.999, 1e-8, 0.1});
  set_grad(q, {0.5, -1.0});
  adamw.step();
  expect_near_all(q, {0.99 - 0.1 * 0.5 / (0.5 + 1e-8), -1.98 + 0.1 * 1.0 / (1.0 + 1e-8)}, 1e-14);
  expect_near_all(adamw.exp_avg(0), {0.05, -0.1}, 1e-15);
  // Second AdamW step: decay applies to the current value again.
  set_grad(q, {0.5, -1.0});
  adamw.step();
  const double q0 = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8);
  // Same gradient twice: m̂ = g and v̂ = g², so the Adam part is again ≈ lr·sign(g).
  EXPECT_NEAR(q.at({0}), q0 * 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-12);
}

TEST(Optim, AdamWDefaultsAreTorchDefaults) {
  Tensor p = param({1.0});
  AdamW w({p});
  EXPECT_EQ(w.lr(), 1e-3);
  EXPECT_STREQ(w.name(), "AdamW");
  // One step from p = 1 with g = 1: p = 1·(1 - 1e-3·1e-2) - 1e-3·1/(1 + 1e-8).
  set_grad(p, {1.0});
  w.step();
  EXPECT_NEAR(p.item(), (1.0 - 1e-5) - 1e-3 / (1.0 + 1e-8), 1e-15);
}

TEST(Optim, AdamMaximize) {
  Tensor p = param({1.0, -2.0});
  AdamOptions o;
  o.lr = 0.1;
  o.maximize = true;
  Adam opt({p}, o);
  set_grad(p, {0.5, -1.0});
  opt.step();
  expect_near_all(p, {1.0 + 0.1 * 0.5 / (0.5 + 1e-8), -2.0 - 0.1 * 1.0 / (1.0 + 1e-8)}, 1e-14);
}

// ---------------------------------------------------------------------------------------------
// SGD

TEST(Optim, SgdPlainAndWeightDecay) {
  Tensor p = param({1.0, 2.0});
  SGD opt({p}, SGDOptions{0.1});
  set_grad(p, {0.1, -0.2});
  opt.step();
  expect_near_all(p, {0.99, 2.02}, 1e-15);
  expect_error([&] { opt.momentum_buffer(0); }, "SGD", "momentum is 0");
  EXPECT_FALSE(opt.state_buffer().defined());  // plain SGD keeps no state

  // wd = 0.01: g' = g + 0.01 p = (0.11, -0.18); p -= 0.1 g'.
  Tensor q = param({1.0, 2.0});
  SGDOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.01;
  SGD wd({q}, o);
  set_grad(q, {0.1, -0.2});
  wd.step();
  expect_near_all(q, {0.989, 2.018}, 1e-15);
}

TEST(Optim, SgdMomentumTwoSteps) {
  Tensor p = param({1.0, 2.0});
  SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  SGD opt({p}, o);
  // Step 1: buf = g (no dampening on the first step); p -= 0.1 buf.
  set_grad(p, {0.1, -0.2});
  opt.step();
  expect_near_all(opt.momentum_buffer(0), {0.1, -0.2}, 1e-15);
  expect_near_all(p, {0.99, 2.02}, 1e-15);
  // Step 2: buf = 0.9 buf + g = (0.39, -0.08); p -= 0.1 buf.
  set_grad(p, {0.3, 0.1});
  opt.step();
  expect_near_all(opt.momentum_buffer(0), {0.39, -0.08}, 1e-15);
  expect_near_all(p, {0.951, 2.028}, 1e-15);
}

TEST(Optim, SgdNesterovTwoSteps) {
  Tensor p = param({1.0, 2.0});
  SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.nesterov = true;
  SGD opt({p}, o);
  // Step 1: buf = g; update g + 0.9 buf = 1.9 g = (0.19, -0.38).
  set_grad(p, {0.1, -0.2});
  opt.step();
  expect_near_all(p, {0.981, 2.038}, 1e-15);
  // Step 2: buf = (0.39, -0.08); update g + 0.9 buf = (0.651, 0.028).
  set_grad(p, {0.3, 0.1});
  opt.step();
  expect_near_all(p, {0.981 - 0.0651, 2.038 - 0.0028}, 1e-14);
}

TEST(Optim, SgdDampeningAndMaximize) {
  Tensor p = param({1.0});
  SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.dampening = 0.5;
  o.maximize = true;
  SGD opt({p}, o);
  // maximize: g -> -g. Step 1: buf = -1 (dampening skipped); p += 0.1.
  set_grad(p, {1.0});
  opt.step();
  EXPECT_NEAR(p.item(), 1.1, 1e-15);
  // Step 2: buf = 0.9·(-1) + 0.5·(-2) = -1.9; p += 0.19.
  set_grad(p, {2.0});
  opt.step();
  EXPECT_NEAR(opt.momentum_buffer(0).item(), -1.9, 1e-15);
  EXPECT_NEAR(p.item(), 1.29, 1e-14);
}

// ---------------------------------------------------------------------------------------------
// State handling

TEST(Optim, ResetStateRestoresFirstStepExactly) {
  for (int kind = 0; kind < 3; ++kind) {
    SCOPED_TRACE(kind);
    const DV init{0.7, -1.3, 2.5}, g1{0.4, -0.6, 0.05};
    auto make = [&](const Tensor& p) -> std::unique_ptr<Optimizer> {
      if (kind == 0) {
        SGDOptions o;
        o.lr = 0.05;
        o.momentum = 0.9;
        o.nesterov = true;
        return std::make_unique<SGD>(std::vector<Tensor>{p}, o);
      }
      if (kind == 1) return std::make_unique<Adam>(std::vector<Tensor>{p}, AdamOptions{0.05});
      return std::make_unique<AdamW>(std::vector<Tensor>{p}, AdamWOptions{0.05});
    };
    Tensor fresh_p = param(init, DType::f32);
    auto fresh = make(fresh_p);
    set_grad(fresh_p, g1);
    fresh->step();

    Tensor p = param(init, DType::f32);
    auto opt = make(p);
    const void* state_ptr = opt->state_buffer().raw_data();
    for (int s = 0; s < 3; ++s) {
      set_grad(p, {1.0 + s, -2.0, 0.5 * s});
      opt->step();
    }
    EXPECT_EQ(opt->step_count(0), 3);
    opt->reset_state();
    EXPECT_EQ(opt->step_count(0), 0);
    EXPECT_EQ(opt->state_buffer().raw_data(), state_ptr);  // written in place, not reallocated
    for (double x : opt->state_buffer().to_vector<double>()) EXPECT_EQ(x, 0.0);
    // Episodic reset as in IT³: parameters back to the start, then one step.
    p.copy_(param(init, DType::f32));
    set_grad(p, g1);
    opt->step();
    EXPECT_EQ(p.to_vector<float>(), fresh_p.to_vector<float>());  // bit for bit
    EXPECT_EQ(opt->state_buffer().to_vector<float>(), fresh->state_buffer().to_vector<float>());
  }
}

TEST(Optim, ParametersWithoutGradientsAreSkipped) {
  Tensor a = param({1.0, 2.0}), b = param({-1.0});
  Adam opt({a, b}, AdamOptions{0.1});
  set_grad(a, {0.5, 0.5});
  opt.step();  // b has no gradient: untouched, its count stays 0
  EXPECT_EQ(opt.step_count(0), 1);
  EXPECT_EQ(opt.step_count(1), 0);
  EXPECT_EQ(b.item(), -1.0);
  EXPECT_EQ(opt.exp_avg(1).item(), 0.0);
  const uint64_t calls = opt.kernel_calls();
  // Now both: a takes its second step, b its first (bias corrections of t = 1), which needs two
  // kernel calls since the step counts differ.
  set_grad(a, {0.5, 0.5});
  set_grad(b, {2.0});
  opt.step();
  EXPECT_EQ(opt.kernel_calls(), calls + 2);
  EXPECT_EQ(opt.step_count(0), 2);
  EXPECT_EQ(opt.step_count(1), 1);
  EXPECT_NEAR(b.item(), -1.0 - 0.1 * 2.0 / (2.0 + 1e-8), 1e-14);
  // Same gradient twice: m̂ = g, v̂ = g², so a moved by ≈ 0.1 each time.
  expect_near_all(a, {1.0 - 2 * 0.1 * 0.5 / (0.5 + 1e-8), 2.0 - 2 * 0.1 * 0.5 / (0.5 + 1e-8)},
                  1e-12);
  // The counts stay one apart (as torch's per-parameter state['step']), so every later step
  // also takes two calls; after a reset they are equal again and one call does.
  opt.step();
  EXPECT_EQ(opt.kernel_calls(), calls + 4);
  opt.reset_state();  // one fill
  opt.step();
  EXPECT_EQ(opt.kernel_calls(), calls + 6);
}

TEST(Optim, ZeroGradAndSetLr) {
  Tensor p = param({1.0});
  SGD opt({p}, SGDOptions{0.1});
  set_grad(p, {1.0});
  opt.zero_grad();
  EXPECT_FALSE(p.grad().defined());
  opt.step();  // nothing to do
  EXPECT_EQ(p.item(), 1.0);
  opt.set_lr(0.5);
  EXPECT_EQ(opt.lr(), 0.5);
  set_grad(p, {1.0});
  opt.step();
  EXPECT_EQ(p.item(), 0.5);
  expect_error([&] { opt.set_lr(-1.0); }, "SGD", "learning rate");
  expect_error([&] { opt.set_lr(NAN); }, "SGD", "learning rate");
}

TEST(Optim, WorksWithAutogradGradients) {
  // Minimise sum((p - 3)²) with SGD; the gradients come from backward(), a fresh tensor each
  // time, which is why the fused kernel takes gradient pointers per step.
  Tensor p = param({0.0, 1.0});
  SGD opt({p}, SGDOptions{0.25});
  for (int s = 0; s < 30; ++s) {
    opt.zero_grad();
    sum(square(sub(p, 3.0))).backward();
    opt.step();
  }
  expect_near_all(p, {3.0, 3.0}, 1e-6);
}

TEST(Optim, BadInput) {
  expect_error([] { Adam({}); }, "Adam", "empty parameter list");
  expect_error([] { Adam({Tensor()}); }, "Adam", "undefined");
  expect_error([] { SGD({arange(3, {DType::i64})}); }, "SGD", "only floating");
  expect_error(
      [] {
        Adam({param({1.0}), param({1.0}, DType::f32)});
      },
      "Adam", "one dtype and one device");
  Tensor p = param({1.0});
  expect_error([&] { Adam({p, p}); }, "Adam", "same tensor as parameter 0");
  expect_error([&] { Adam({p}, AdamOptions{0.1, 1.0}); }, "Adam", "beta1");
  expect_error([&] { Adam({p}, AdamOptions{0.1, 0.9, -0.1}); }, "Adam", "beta2");
  expect_error([&] { Adam({p}, AdamOptions{-0.1}); }, "Adam", "learning rate");
  expect_error([&] { AdamW({p}, AdamWOptions{0.1, 0.9, 0.999, -1.0}); }, "AdamW", "epsilon");
  SGDOptions nest;
  nest.nesterov = true;
  expect_error([&] { SGD({p}, nest); }, "SGD", "Nesterov");
  nest.momentum = 0.9;
  nest.dampening = 0.1;
  expect_error([&] { SGD({p}, nest); }, "SGD", "Nesterov");

  Adam opt({p});
  set_grad(p, from_vector<double>({1.0, 2.0}, {2}));
  expect_error([&] { opt.step(); }, "Adam", "gradient of parameter 0");
  // A parameter whose storage was swapped out from under the optimizer.
  set_grad(p, {1.0});
  p.impl().storage = std::make_shared<Storage>(8, Device::cpu());
  expect_error([&] { opt.step(); }, "Adam", "no longer lives where it did");
  if (!cuda::available()) {
    // Without a GPU (or without CUDA) a CUDA optimizer cannot even get its parameters there.
    EXPECT_THROW(param({1.0}, DType::f32, Device::cuda()), Error);
  }
}

// ---------------------------------------------------------------------------------------------
// Schedules

TEST(LrSchedule, StepLR) {
  Tensor p = param({1.0});
  SGD opt({p}, SGDOptions{1.0});
  StepLR sched(opt, 2, 0.1);
  EXPECT_EQ(sched.last_epoch(), 0);
  EXPECT_EQ(opt.lr(), 1.0);
  const DV want{1.0, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001};  // epochs 1..7
  for (double w : want) {
    sched.step();
    EXPECT_NEAR(opt.lr(), w, 1e-15) << "epoch " << sched.last_epoch();
    EXPECT_EQ(sched.last_lr(), opt.lr());
  }
  expect_error([&] { StepLR(opt, 0); }, "StepLR", "step_size");
}

TEST(LrSchedule, CosineAnnealingFollowsTheClosedForm) {
  Tensor p = param({1.0});
  SGD opt({p}, SGDOptions{1.0});
  const double eta_min = 0.1, pi = std::acos(-1.0);
  CosineAnnealingLR sched(opt, 4, eta_min);
  // Known values for T_max = 4: 1, .8682, .55, .2318, .1 (the trough), then back up, periodic.
  const DV known{1.0, 0.1 + 0.9 * (1 + std::cos(pi / 4)) / 2, 0.55,
                 0.1 + 0.9 * (1 - std::cos(pi / 4)) / 2, 0.1};
  for (int e = 1; e <= 16; ++e) {
    sched.step();
    const double closed = eta_min + (1.0 - eta_min) * (1 + std::cos(pi * e / 4)) / 2;
    EXPECT_NEAR(opt.lr(), closed, 1e-12) << "epoch " << e;
    if (e < 5) {
      EXPECT_NEAR(opt.lr(), known[e], 1e-12);
    }
  }
  EXPECT_NEAR(opt.lr(), 1.0, 1e-12);  // epoch 16 = 4·T_max: back at the top of the wave
  expect_error([&] { CosineAnnealingLR(opt, 0); }, "CosineAnnealingLR", "T_max");
}

TEST(LrSchedule, ReduceLROnPlateauMin) {
  Tensor p = param({1.0});
  SGD opt({p}, SGDOptions{1.0});
  PlateauOptions o;
  o.patience = 2;
  o.factor = 0.5;
  o.cooldown = 1;
  o.min_lr = 0.2;
  ReduceLROnPlateau sched(opt, o);
  // Improvements at epochs 1-2, then a plateau: every 3rd bad epoch (> patience) halves the lr,
  // and the epoch after a reduction is a cooldown epoch that does not count; min_lr caps at 0.2.
  const DV metrics{1.0,  0.9,  0.95, 0.95, 0.95, 0.95, 0.95,
                   0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95};
  const DV lrs{1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2};
  for (size_t i = 0; i < metrics.size(); ++i) {
    sched.step(metrics[i]);
    EXPECT_DOUBLE_EQ(opt.lr(), lrs[i]) << "epoch " << i + 1;
  }
  EXPECT_EQ(sched.best(), 0.9);
  // A relative improvement smaller than the threshold (1e-4) is not an improvement.
  Tensor q = param({1.0});
  SGD opt2({q}, SGDOptions{1.0});
  PlateauOptions o2;
  o2.patience = 0;
  ReduceLROnPlateau s2(opt2, o2);
  s2.step(1.0);
  EXPECT_EQ(opt2.lr(), 1.0);
  s2.step(0.99995);  // not < 1.0 · (1 - 1e-4)
  EXPECT_NEAR(opt2.lr(), 0.1, 1e-15);
}

TEST(LrSchedule, ReduceLROnPlateauMaxAbs) {
  Tensor p = param({1.0});
  SGD opt({p}, SGDOptions{0.1});
  PlateauOptions o;
  o.mode = "max";
  o.threshold_mode = "abs";
  o.threshold = 0.1;
  o.patience = 1;
  ReduceLROnPlateau sched(opt, o);
  sched.step(0.5);   // best 0.5
  sched.step(0.55);  // not > 0.6: bad 1
  EXPECT_EQ(opt.lr(), 0.1);
  sched.step(0.7);  // better: bad 0
  sched.step(0.7);  // bad 1
  EXPECT_EQ(opt.lr(), 0.1);
  sched.step(0.75);  // bad 2 > patience: reduce
  EXPECT_NEAR(opt.lr(), 0.01, 1e-16);
  expect_error([&] { ReduceLROnPlateau(opt, PlateauOptions{"up"}); }, "ReduceLROnPlateau", "mode");
  PlateauOptions bad_factor;
  bad_factor.factor = 1.0;
  expect_error([&] { ReduceLROnPlateau(opt, bad_factor); }, "ReduceLROnPlateau", "factor");
}

// ---------------------------------------------------------------------------------------------
// Clipping

TEST(Clip, GradNorm) {
  Tensor a = param({0.0, 0.0}), b = param({0.0}), c = param({0.0});  // c has no gradient
  set_grad(a, {3.0, 4.0});
  set_grad(b, {-12.0});
  // Total 2-norm sqrt(9 + 16 + 144) = 13; coefficient 6.5 / (13 + 1e-6).
  Tensor total = clip_grad_norm_({a, b, c}, 6.5);
  EXPECT_EQ(total.dim(), 0);
  EXPECT_NEAR(total.item(), 13.0, 1e-12);
  const double coef = 6.5 / (13.0 + 1e-6);
  expect_near_all(a.grad(), {3.0 * coef, 4.0 * coef}, 1e-14);
  expect_near_all(b.grad(), {-12.0 * coef}, 1e-14);
  EXPECT_FALSE(c.grad().defined());
  // Below the limit: unchanged (the coefficient is clamped to 1), the norm is still returned.
  set_grad(a, {3.0, 4.0});
  set_grad(b, {-12.0});
  EXPECT_NEAR(clip_grad_norm_({a, b}, 100.0).item(), 13.0, 1e-12);
  expect_near_all(a.grad(), {3.0, 4.0}, 0.0);
  // Infinity norm = max |g| = 12; 1-norm = 19; 3-norm = (27 + 64 + 1728)^(1/3).
  EXPECT_NEAR(clip_grad_norm_({a, b}, 100.0, INFINITY).item(), 12.0, 1e-15);
  EXPECT_NEAR(clip_grad_norm_({a, b}, 100.0, 1.0).item(), 19.0, 1e-12);
  EXPECT_NEAR(clip_grad_norm_({a, b}, 100.0, 3.0).item(), std::cbrt(27.0 + 64.0 + 1728.0), 1e-12);
  clip_grad_norm_({a, b}, 6.0, INFINITY);
  expect_near_all(b.grad(), {-12.0 * 6.0 / (12.0 + 1e-6)}, 1e-13);
  // No gradients at all: norm 0.
  EXPECT_EQ(clip_grad_norm_({c}, 1.0).item(), 0.0);
}

TEST(Clip, GradNormNonFiniteAndBadInput) {
  Tensor a = param({1.0, NAN});
  set_grad(a, {1.0, NAN});
  expect_error([&] { clip_grad_norm_({a}, 1.0, 2.0, true); }, "clip_grad_norm_", "non-finite");
  EXPECT_TRUE(std::isnan(clip_grad_norm_({a}, 1.0).item()));  // scales anyway by default
  expect_error([&] { clip_grad_norm_({a}, 1.0, 0.0); }, "clip_grad_norm_", "norm_type");
  Tensor b = param({1.0}, DType::f32);
  set_grad(b, {1.0});
  set_grad(a, {1.0, 1.0});
  expect_error([&] { clip_grad_norm_({a, b}, 1.0); }, "clip_grad_norm_", "gradient of parameter 1");
}

TEST(Clip, GradValue) {
  Tensor a = param({0.0, 0.0, 0.0});
  set_grad(a, {-3.0, 0.25, 7.0});
  clip_grad_value_({a}, 0.5);
  expect_near_all(a.grad(), {-0.5, 0.25, 0.5}, 0.0);
  expect_error([&] { clip_grad_value_({a}, -1.0); }, "clip_grad_value_", "clip_value");
}

// ---------------------------------------------------------------------------------------------
// CUDA: the fused kernel against the CPU reference

std::unique_ptr<Optimizer> make_kind(int kind, const std::vector<Tensor>& ps) {
  switch (kind) {
    case 0: {
      SGDOptions o;
      o.lr = 0.05;
      return std::make_unique<SGD>(ps, o);
    }
    case 1: {
      SGDOptions o;
      o.lr = 0.05;
      o.momentum = 0.9;
      o.weight_decay = 0.01;
      o.nesterov = true;
      return std::make_unique<SGD>(ps, o);
    }
    case 2: {
      SGDOptions o;
      o.lr = 0.05;
      o.momentum = 0.8;
      o.dampening = 0.3;
      o.maximize = true;
      return std::make_unique<SGD>(ps, o);
    }
    case 3:
      return std::make_unique<Adam>(ps, AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.02});
    default:
      return std::make_unique<AdamW>(ps, AdamWOptions{0.01, 0.85, 0.99, 1e-6, 0.05});
  }
}

// |g - c| <= 1e-6 (|c| + 1), element by element.
void expect_parity(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  const std::vector<float> g = gpu.to_vector<float>(), c = cpu.to_vector<float>();
  ASSERT_EQ(g.size(), c.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < g.size() && bad < 5; ++i)
    if (!(std::fabs(g[i] - c[i]) <= 1e-6 * (std::fabs(c[i]) + 1.0))) {
      ADD_FAILURE() << what << " element " << i << ": cuda " << g[i] << " cpu " << c[i];
      ++bad;
    }
}

void run_parity(const std::vector<Shape>& shapes, uint64_t seed) {
  for (int kind = 0; kind < 5; ++kind) {
    SCOPED_TRACE("kind " + std::to_string(kind) + " seed " + std::to_string(seed));
    std::vector<Tensor> cpu_p, gpu_p;
    for (size_t i = 0; i < shapes.size(); ++i) {
      Tensor init = randn(shapes[i], seed + i, {DType::f32});
      cpu_p.push_back(init.clone_data());
      gpu_p.push_back(init.to(Device::cuda()));
      cpu_p.back().requires_grad_();
      gpu_p.back().requires_grad_();
    }
    auto cpu_opt = make_kind(kind, cpu_p), gpu_opt = make_kind(kind, gpu_p);
    for (int s = 0; s < 3; ++s) {
      for (size_t i = 0; i < shapes.size(); ++i) {
        if (s == 1 && i % 3 == 2) {  // some parameters skip a step: per-tensor step counts
          cpu_p[i].zero_grad();
          gpu_p[i].zero_grad();
          continue;
        }
        Tensor g = randn(shapes[i], seed + 1000 * (s + 1) + i, {DType::f32});
        set_grad(cpu_p[i], g);
        set_grad(gpu_p[i], g.to(Device::cuda()));
      }
      cpu_opt->step();
      gpu_opt->step();
    }
    for (size_t i = 0; i < shapes.size(); ++i)
      expect_parity(gpu_p[i], cpu_p[i], "param " + std::to_string(i));
    if (cpu_opt->state_buffer().defined())
      expect_parity(gpu_opt->state_buffer(), cpu_opt->state_buffer(), "state");
    gpu_opt->reset_state();
    for (float x : gpu_opt->state_buffer().defined() ? gpu_opt->state_buffer().to_vector<float>()
                                                     : std::vector<float>{})
      ASSERT_EQ(x, 0.0f);
  }
}

TEST(OptimCuda, FusedUpdateMatchesCpu) {
  IDEM_REQUIRE_GPU();
  // Sizes around the 2048-element block of the fused kernel, an empty tensor, a scalar.
  run_parity({{3, 5}, {2048}, {0}, {2049}, {}, {7, 1000}, {1}, {4096}}, 11);
}

TEST(OptimCuda, MoreTensorsThanOneLaunchHolds) {
  IDEM_REQUIRE_GPU();
  std::vector<Shape> shapes;
  for (int i = 0; i < 2 * kOptimMaxTensorsPerLaunch + 17; ++i)
    shapes.push_back({1 + (i * 37) % 300});
  run_parity(shapes, 29);
}

TEST(OptimCuda, StepAllocatesNothingAndIsOneLaunch) {
  IDEM_REQUIRE_GPU();
  std::vector<Tensor> ps, gs;
  for (int i = 0; i < 6; ++i) {
    ps.push_back(randn({64, 33 + i}, 100 + i, {DType::f32, Device::cuda()}));
    ps.back().requires_grad_();
    gs.push_back(randn({64, 33 + i}, 200 + i, {DType::f32, Device::cuda()}));
  }
  Adam opt(ps, AdamOptions{1e-3});
  for (size_t i = 0; i < ps.size(); ++i) set_grad(ps[i], gs[i]);
  opt.step();  // warm
  const auto before = cuda::allocator_stats(0);
  const uint64_t calls = opt.kernel_calls();
  for (int s = 0; s < 5; ++s) opt.step();
  opt.reset_state();
  opt.step();
  const auto after = cuda::allocator_stats(0);
  EXPECT_EQ(after.num_alloc, before.num_alloc);
  EXPECT_EQ(after.num_cuda_malloc, before.num_cuda_malloc);
  EXPECT_EQ(opt.kernel_calls(), calls + 7);  // 6 steps + 1 reset, one kernel each
}

TEST(OptimCuda, ClipGradNormMatchesCpu) {
  IDEM_REQUIRE_GPU();
  Tensor ca = param({0.0, 0.0}, DType::f32), cb = param({0.0}, DType::f32);
  Tensor ga = param({0.0, 0.0}, DType::f32, Device::cuda()),
         gb = param({0.0}, DType::f32, Device::cuda());
  for (const Tensor& t : {ca, ga}) set_grad(t, {3.0, 4.0});
  for (const Tensor& t : {cb, gb}) set_grad(t, {-12.0});
  const double tc = clip_grad_norm_({ca, cb}, 6.5).item();
  Tensor tg = clip_grad_norm_({ga, gb}, 6.5);
  EXPECT_TRUE(tg.device().is_cuda());
  EXPECT_NEAR(tg.item(), tc, 1e-5);
  expect_parity(ga.grad(), ca.grad(), "clipped a");
  clip_grad_value_({ga, gb}, 1.0);
  EXPECT_EQ(gb.grad().item(), -1.0);
}

}  // namespace
}  // namespace idem

namespace idem {
namespace {

// Review finding: a step that fails validation must leave the optimizer unchanged.
TEST(Optim, FailedStepChangesNothing) {
  Tensor p0 = param({1.0, 2.0}), p1 = param({1.0, 2.0, 3.0});
  Adam opt({p0, p1}, AdamOptions{0.1});
  set_grad(p0, {0.5, -1.0});
  set_grad(p1, from_vector<double>({1.0, 1.0}, {2}));  // wrong shape
  EXPECT_THROW(opt.step(), Error);
  EXPECT_EQ(opt.step_count(0), 0);
  EXPECT_EQ(opt.step_count(1), 0);
  EXPECT_EQ(p0.to_vector<double>(), (std::vector<double>{1.0, 2.0}));
}

// The f32 Adam loop runs in the widest instruction set the CPU has (core/cpu/optim.cpp): each
// variant must give the baseline loop's bits, for lengths that leave vector tails, with and
// without weight decay, AdamW, maximize, at a first and a later step, on values from 1e-30 to
// 1e3 (v near zero puts eps in charge of the denominator).
TEST(Optim, AdamF32VectorVariantsGiveTheBaselineBits) {
  std::mt19937 rng(14);
  std::uniform_real_distribution<float> unit(-1.f, 1.f), expo(-30.f, 3.f);
  auto value = [&] { return unit(rng) * std::pow(10.f, expo(rng)); };
  bool avx2 = false;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  avx2 = __builtin_cpu_supports("avx2");
#endif
  const bool avx512 = cpu::cpu_supports_avx512f();
  struct Variant {
    cpu::AdamIsa isa;
    bool available;
  };
  const Variant variants[] = {{cpu::AdamIsa::best, true},
                              {cpu::AdamIsa::avx2, avx2},
                              {cpu::AdamIsa::avx512, avx512}};
  int compared = 0;
  for (int64_t n : {1, 7, 15, 16, 17, 33, 1000, 40003}) {
    for (int config = 0; config < 5; ++config) {
      OptimStepParams p;
      p.kind = config == 2 ? OptimKind::adamw : OptimKind::adam;
      p.lr = 1e-3;
      p.weight_decay = config == 1 || config == 2 ? 0.01 : 0.0;
      p.maximize = config == 3;
      p.step = config == 4 ? 7 : 1;
      p.step_size = p.lr / (1.0 - std::pow(p.beta1, double(p.step)));
      p.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(p.beta2, double(p.step)));
      const size_t len = static_cast<size_t>(n);
      std::vector<float> w0(len), m0(len), v0(len), g(len);
      for (int64_t i = 0; i < n; ++i) {
        w0[size_t(i)] = value();
        m0[size_t(i)] = config == 4 ? value() : 0.f;
        v0[size_t(i)] = config == 4 ? std::fabs(value()) : 0.f;
        g[size_t(i)] = value();
      }
      auto run = [&](cpu::AdamIsa isa, std::vector<float>& w, std::vector<float>& m,
                     std::vector<float>& v) {
        w = w0, m = m0, v = v0;
        const std::vector<OptimTensorDesc> table{{w.data(), m.data(), v.data(), n}};
        const std::vector<const void*> grads{g.data()};
        cpu::optim_step(table, grads, DType::f32, p, isa);
      };
      std::vector<float> wb, mb, vb;
      run(cpu::AdamIsa::sse2, wb, mb, vb);
      for (const Variant& var : variants) {
        std::vector<float> w, m, v;
        if (!var.available) {
          EXPECT_THROW(run(var.isa, w, m, v), Error);
          continue;
        }
        run(var.isa, w, m, v);
        const std::string where = "isa " + std::to_string(int(var.isa)) + ", n " +
                                  std::to_string(n) + ", config " + std::to_string(config);
        EXPECT_EQ(std::memcmp(w.data(), wb.data(), wb.size() * 4), 0) << where;
        EXPECT_EQ(std::memcmp(m.data(), mb.data(), mb.size() * 4), 0) << where;
        EXPECT_EQ(std::memcmp(v.data(), vb.data(), vb.size() * 4), 0) << where;
        EXPECT_NE(std::memcmp(w.data(), w0.data(), w0.size() * 4), 0) << where;  // it did update
        ++compared;
      }
    }
  }
  EXPECT_GE(compared, 40);  // at least the `best` variant in every case
}

}  // namespace
}  // namespace idem
