// Train a recursive-input MLP f(x, s) with the IT³ objective on a synthetic regression, adapt
// it at test time on shifted batches (x·scale + offset) and compare with no adaptation: the
// error, the idempotence loss at the first and last adaptation step, and what adapting cost.
//   it3_adapt [--device cpu|cuda[:N]] [--steps K] [--lr LR] [--scale S] [--offset O]
// Try --scale 1 (no shift: adapting gains nothing) and --lr 1e-2 (too large a step: the
// idempotence loss rises instead of falling).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/kernels/runtime.h"
#include "it3/adapt.h"
#include "it3/models.h"
#include "it3/training.h"

using namespace idem;

// y = Σ_j tanh(w_j·x_j) + x0·x1/2 with w = (0.5, 0.75, 1, 1.25).
Tensor target(const Tensor& x) {
  Tensor w = from_vector<float>({0.5f, 0.75f, 1.0f, 1.25f}, {1, 4}).to(x.device());
  return sum(tanh(x * w), {1}, /*keepdim=*/true) + narrow(x, 1, 0, 1) * narrow(x, 1, 1, 1) * 0.5;
}

int main(int argc, char** argv) {
  try {
    Device device = cuda::available() ? Device::cuda(0) : Device::cpu();
    it3::AdaptOptions adapt = it3::AdaptOptions::for_method(it3::Method::it3);
    adapt.steps = 10;  // K gradient steps per test batch (default 1)
    adapt.lr = 3e-3;   // Adam's learning rate while adapting (default 1e-3)
    double scale = 2.0, offset = 0.0;  // test inputs spread twice as wide as the training ones
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--device" && i + 1 < argc) device = Device::parse(argv[++i]);
      else if (a == "--steps" && i + 1 < argc) adapt.steps = std::atoi(argv[++i]);
      else if (a == "--lr" && i + 1 < argc) adapt.lr = std::atof(argv[++i]);
      else if (a == "--scale" && i + 1 < argc) scale = std::atof(argv[++i]);
      else if (a == "--offset" && i + 1 < argc) offset = std::atof(argv[++i]);
      else {
        std::fputs("usage: it3_adapt [--device D] [--steps K] [--lr LR] [--scale S] [--offset O]\n",
                   stderr);
        return a == "--help" || a == "-h" ? 0 : 2;
      }
    }
    const Options opt{DType::f32, device};

    // f(x, s) = MLP(concat(x, s)): (4+1) -> 32 -> 32 -> 1, ReLU. ∅ = 5, outside y's range.
    auto model = it3::make_mlp_model(4, {32, 32}, it3::SignalSpec::regression(1, 5.0), opt, 1);
    // L = ℓ(f(x,∅), y) + ℓ(f(x,s), y). On half of the batches s is the model's own prediction
    // plus noise (not the true y), so it learns to correct s instead of copying it.
    it3::TrainOptions train = it3::TrainOptions::for_task(it3::TaskKind::regression);
    train.p_feed = 0.5;
    train.source = it3::SignalSource::self_detached;
    train.signal_noise = 0.1;
    Adam optim(model->parameters(), AdamOptions{3e-3});
    std::printf("training f(x, s) on %s, x ~ N(0, 1)\n", device.str().c_str());
    for (int step = 0; step < 400; ++step) {
      Tensor x = randn({32, 4}, 100 + step, opt);
      double loss = it3::train_step(*model, optim, it3::Input(x), target(x), train, step);
      if (step % 100 == 0 || step == 399) std::printf("  step %3d  loss %.4f\n", step, loss);
    }

    // Two adapters over the trained model: each clones it (in eval mode); `model` never changes.
    it3::Adapter none(model, it3::AdaptOptions::for_method(it3::Method::none));
    it3::Adapter adapted(model, adapt);
    double mae_none = 0, mae_it3 = 0, loss_first = 0, loss_last = 0;
    for (int b = 0; b < 8; ++b) {
      Tensor x = randn({32, 4}, 1000 + b, opt) * scale + offset;  // the covariate shift
      Tensor y = target(x);
      it3::AdaptResult r0 = none.predict(it3::Input(x)), r1 = adapted.predict(it3::Input(x));
      mae_none += mean(abs(r0.prediction - y)).item() / 8;
      mae_it3 += mean(abs(r1.prediction - y)).item() / 8;
      loss_first += r1.loss_before / 8;
      loss_last += r1.loss_after / 8;
    }
    std::printf("\n8 shifted test batches of 32, x ~ N(0,1)*%.2f + %.2f\n", scale, offset);
    std::printf("  MAE  none %.4f   it3 %.4f   (%s)\n", mae_none, mae_it3,
                mae_it3 < mae_none ? "adaptation helped" : "adaptation did NOT help here");
    std::printf("  it3 loss d(F(x, f(x,∅)), f(x,∅)) at step 1 %.4f, at step K %.4f\n", loss_first,
                loss_last);
    for (it3::Adapter* a : {&none, &adapted}) {  // totals over the 8 batches
      const it3::Cost& c = a->total();
      std::printf("  cost %-4s %3llu forwards %3llu backwards %3llu optimizer steps %6llu reset bytes"
                  " %4llu GPU launches %7.1f us/batch\n", it3::method_name(a->options().method),
                  (unsigned long long)c.forwards, (unsigned long long)c.backwards,
                  (unsigned long long)c.optimizer_steps, (unsigned long long)c.reset_bytes,
                  (unsigned long long)c.gpu_launches, c.us_per_batch());
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "it3_adapt: %s\n", e.what());
    return 1;
  }
}
