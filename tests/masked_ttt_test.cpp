// Masked TTT (it3/aux_head.h, masked reconstruction; it3/methods/ttt.h, masked-ttt): the masks
// (deterministic per key, the requested fraction of patches, uniform over patches), the loss by
// hand (only hidden pixels count) and by finite differences, the decoder's pixel layout, one
// adaptation step against finite differences of its loss, K = 0 against plain inference, the
// training loss, and the misuse errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "apps/idem/tasks.h"
#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "autograd/nn_functions.h"
#include "it3/adapt.h"
#include "it3/adapt_path.h"
#include "it3/aux_head.h"
#include "it3/methods/ttt.h"
#include "it3/models.h"
#include "it3/training.h"
#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/optim.h"
#include "tests/sgd_step_check.h"
#include "tests/test_util.h"

namespace idem::it3 {
namespace {

// A tiny feature-injection classifier on (B, 1, 8, 8) images (four 4×4 patches, two hidden):
// body Flatten Linear(64,6) Tanh, embed Linear(3,6), head Linear(6,3); the masked head on its
// (B, 6) features is Flatten Linear(6,64) ReLU Linear(64,64). Head kind `aux` (none: no head).
std::shared_ptr<FeatureModel> tiny_model(AuxKind aux, DType dt = DType::f64, uint64_t seed = 3) {
  Options o{dt, Device::cpu()};
  auto body = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Flatten>(), std::make_shared<Linear>(64, 6, true, o, seed),
      std::make_shared<Tanh>()});
  auto embed = std::make_shared<Linear>(3, 6, true, o, seed + 1);
  auto head = std::make_shared<Linear>(6, 3, true, o, seed + 2);
  auto m = std::make_shared<FeatureModel>(body, embed, head, SignalSpec::classification(3));
  if (aux != AuxKind::none) attach_aux_head(*m, aux, {1, 8, 8}, seed + 3);
  m->eval();
  return m;
}

Tensor images(int64_t b, DType dt = DType::f64, uint64_t seed = 11) {
  return randn({b, 1, 8, 8}, seed, Options{dt, Device::cpu()});
}

std::vector<double> values(const Tensor& x) { return x.to(DType::f64).to_vector<double>(); }

void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(MaskedTttMask, DeterministicPatchAlignedAndTheRequestedFraction) {
  const Options f64{DType::f64, Device::cpu()};
  EXPECT_EQ(masked_patch_count(28, 28), 25);  // round(0.5 · 49)
  const PatchMask a = make_patch_mask(5, 28, 28, 77, f64), b = make_patch_mask(5, 28, 28, 77, f64);
  EXPECT_EQ(values(a.hidden), values(b.hidden));           // the same key: the same masks
  const PatchMask c = make_patch_mask(5, 28, 28, 78, f64);
  EXPECT_NE(values(a.hidden), values(c.hidden));           // another key: other masks
  // Image i depends on (key, i) only: the first 3 of a batch of 5 are a batch of 3.
  EXPECT_EQ(values(narrow(a.hidden, 0, 0, 3)), values(make_patch_mask(3, 28, 28, 77, f64).hidden));
  EXPECT_EQ(a.hidden.shape(), (Shape{5, 1, 28, 28}));
  EXPECT_DOUBLE_EQ(a.hidden_pixels, 5.0 * 25 * 16);
  const std::vector<double> h = values(a.hidden), v = values(a.visible);
  std::vector<std::vector<int>> patterns;
  for (int64_t i = 0; i < 5; ++i) {
    int hidden_patches = 0;
    std::vector<int> pattern;
    for (int64_t pr = 0; pr < 7; ++pr)
      for (int64_t pc = 0; pc < 7; ++pc) {
        const double first = h[size_t(i * 784 + pr * 4 * 28 + pc * 4)];
        for (int64_t r = 0; r < 4; ++r)
          for (int64_t q = 0; q < 4; ++q) {
            const size_t k = size_t(i * 784 + (pr * 4 + r) * 28 + pc * 4 + q);
            EXPECT_EQ(h[k], first) << "patch (" << pr << ", " << pc << ") of image " << i << " is split";
            EXPECT_EQ(h[k] + v[k], 1.0);
            EXPECT_TRUE(h[k] == 0.0 || h[k] == 1.0);
          }
        hidden_patches += first == 1.0;
        pattern.push_back(int(first));
      }
    EXPECT_EQ(hidden_patches, 25) << "image " << i;
    patterns.push_back(pattern);
  }
  EXPECT_NE(patterns[0], patterns[1]);  // every image draws its own patches
  // Patches cut short where 4 does not divide 10: 3×3 patches, round(4.5) = 5 hidden.
  const PatchMask odd = make_patch_mask(1, 10, 10, 5, f64);
  double sum = 0;
  for (double x : values(odd.hidden)) sum += x;
  EXPECT_EQ(sum, odd.hidden_pixels);
  EXPECT_EQ(masked_patch_count(10, 10), 5);
  // At least one patch hidden and one seen.
  EXPECT_EQ(masked_patch_count(4, 4, MaskSpec{1, 0.01}), 1);
  EXPECT_EQ(masked_patch_count(4, 4, MaskSpec{1, 0.99}), 15);
  expect_error([] { masked_patch_count(4, 4); }, "masking needs at least 2");
  expect_error([] { masked_patch_count(8, 8, MaskSpec{4, 1.0}); }, "fraction in (0, 1)");
}

TEST(MaskedTttMask, EveryPatchIsHiddenAboutHalfTheTime) {
  // 4 000 images of 49 patches, 25 hidden each: every patch is hidden with probability 25/49.
  const int64_t n = 4000;
  const PatchMask m = make_patch_mask(n, 28, 28, 123, Options{DType::f32, Device::cpu()});
  const std::vector<double> h = values(m.hidden);
  for (int64_t p = 0; p < 49; ++p) {
    double hits = 0;
    for (int64_t i = 0; i < n; ++i) hits += h[size_t(i * 784 + (p / 7) * 4 * 28 + (p % 7) * 4)];
    // σ = sqrt(p(1 − p)/n) ≈ 0.0079: 0.04 is 5σ.
    EXPECT_NEAR(hits / double(n), 25.0 / 49.0, 0.04) << "patch " << p;
  }
}

TEST(MaskedTttLoss, OnlyHiddenPixelsCountByHand) {
  // Two channels of 4×4, 2×2 patches; hidden: the top-left and the bottom-right patch.
  Tensor x = randn({1, 2, 4, 4}, 9, Options{DType::f64});
  std::vector<double> hid(16, 0.0);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) hid[size_t(r * 4 + c)] = (r < 2) == (c < 2) ? 1.0 : 0.0;
  std::vector<double> vis(16);
  for (size_t k = 0; k < 16; ++k) vis[k] = 1.0 - hid[k];
  PatchMask m;
  m.hidden = from_vector(hid, {1, 1, 4, 4});
  m.visible = from_vector(vis, {1, 1, 4, 4});
  m.hidden_pixels = 8;
  // Reconstruction: channel 0 off by +1 on the top-left patch and +2 on the bottom-right one,
  // channel 1 off by −3 on the top-left one and exact on the bottom-right one; every visible
  // pixel is off by 100, which must not count.
  std::vector<double> xv = values(x), rv = xv;
  for (int ch = 0; ch < 2; ++ch)
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) {
        const size_t k = size_t(ch * 16 + r * 4 + c);
        if (hid[size_t(r * 4 + c)] == 0.0) rv[k] += 100;
        else if (r < 2) rv[k] += ch == 0 ? 1.0 : -3.0;
        else rv[k] += ch == 0 ? 2.0 : 0.0;
      }
  Tensor recon = from_vector(rv, {1, 2, 4, 4});
  // (4·1² + 4·2² + 4·3² + 4·0²) / (2 channels · 8 hidden pixels) = 56 / 16.
  EXPECT_NEAR(masked_mse(recon, x, m).item(), 3.5, 1e-12);
  EXPECT_NEAR(masked_mse(x, x, m).item(), 0.0, 1e-15);
  // Its gradient by finite differences, in the reconstruction and in the images.
  Tensor r = randn({2, 2, 4, 4}, 4, Options{DType::f64}), t = randn({2, 2, 4, 4}, 5, Options{DType::f64});
  r.requires_grad_(true), t.requires_grad_(true);
  const PatchMask two = make_patch_mask(2, 4, 4, 3, Options{DType::f64}, MaskSpec{2, 0.5});
  GradcheckResult g = gradcheck([&](const std::vector<Tensor>& in) { return masked_mse(in[0], in[1], two); }, {r, t});
  EXPECT_TRUE(g.ok) << g.message;
  expect_error([&] { masked_mse(recon, randn({1, 2, 4, 5}, 1, Options{DType::f64}), m); }, "same shape");
}

TEST(MaskedTttHead, ConvDecoderReadsEachCellAsItsPixelBlock) {
  // body: space to depth (cell (i, j), channel dy·2 + dx = pixel (2i + dy, 2j + dx)); aux: the
  // identity 1×1 convolution. Then the reconstruction is the image itself, pixel for pixel.
  Options o{DType::f64, Device::cpu()};
  Conv2dOptions s2;
  s2.stride = 2;
  s2.bias = false;
  auto body = std::make_shared<Conv2d>(1, 4, 2, s2, o, 1);
  auto m = std::make_shared<FeatureModel>(body, std::make_shared<Linear>(3, 4, true, o, 2),
                                          std::make_shared<Linear>(4, 3, true, o, 3),
                                          SignalSpec::classification(3));
  Conv2dOptions plain;
  plain.bias = false;
  auto aux = std::make_shared<Conv2d>(4, 4, 1, plain, o, 4);
  double* bw = body->named_parameters()[0].second.data<double>();  // (4, 1, 2, 2)
  double* aw = aux->named_parameters()[0].second.data<double>();   // (4, 4, 1, 1)
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 4; ++j) bw[k * 4 + j] = k == j ? 1.0 : 0.0, aw[k * 4 + j] = k == j ? 1.0 : 0.0;
  m->set_aux_head("masked", aux);
  Tensor x = randn({2, 1, 6, 6}, 8, o);
  EXPECT_EQ(values(masked_reconstruction(*m, x)), values(x));
  // The demo's CNN gets the convolutional decoder: 7×7 cells of 4×4 pixels.
  auto cnn = make_bn_cnn(10, 8, 16, {}, 1);
  attach_aux_head(*cnn, AuxKind::masked, {1, 28, 28}, 1);
  cnn->eval();
  auto& f = static_cast<FeatureModel&>(*cnn);
  EXPECT_EQ(f.aux_head()->type_name(), "Sequential");
  bool conv_decoder = false;
  for (const auto& [n, t] : f.named_parameters())
    conv_decoder |= n == "aux.2.weight" && t.shape() == (Shape{16, 32, 1, 1});
  EXPECT_TRUE(conv_decoder);
  EXPECT_EQ(masked_reconstruction(f, randn({2, 1, 28, 28}, 2)).shape(), (Shape{2, 1, 28, 28}));
  EXPECT_EQ(aux_kind(*cnn), AuxKind::masked);
  // The LeNet's flat features get the MLP decoder.
  auto lenet = make_small_cnn(10, {}, 1);
  attach_aux_head(*lenet, AuxKind::masked, {1, 28, 28}, 1);
  lenet->eval();
  EXPECT_EQ(masked_reconstruction(static_cast<FeatureModel&>(*lenet), randn({3, 1, 28, 28}, 2)).shape(),
            (Shape{3, 1, 28, 28}));
}

AdaptOptions sgd_options(Method m, int steps, double lr, uint64_t seed = 0) {
  AdaptOptions o = AdaptOptions::for_method(m);
  o.steps = steps;
  o.lr = lr;
  o.optimizer = OptimizerKind::sgd;
  o.seed = seed;
  return o;
}

TEST(MaskedTttAdapt, ZeroStepsEqualsPlainInference) {
  auto m = tiny_model(AuxKind::masked);
  Tensor x = images(4);
  Adapter none(m, AdaptOptions::for_method(Method::none));
  Adapter masked(m, sgd_options(Method::masked_ttt, 0, 0.1));
  AdaptResult a = none.predict(Input(x)), b = masked.predict(Input(x));
  EXPECT_EQ(values(a.prediction), values(b.prediction));
  EXPECT_EQ(b.cost.forwards, 1u);
  EXPECT_EQ(b.cost.backwards, 0u);
  EXPECT_EQ(b.cost.optimizer_steps, 0u);
  EXPECT_EQ(b.cost.reset_bytes, 0u);
}

// L(θ) of batch `batch` for an Adapter seeded `seed`: the masked loss with that batch's masks.
double masked_loss_value(FeatureModel& m, const Tensor& x, uint64_t seed, int64_t batch) {
  NoGradGuard ng;
  const PatchMask mask = make_patch_mask(x.size(0), 8, 8, masked_ttt_mask_key(seed, batch), Options{x.dtype()});
  return masked_loss(m, x, mask).item();
}

// One SGD step of masked-ttt moves every encoder parameter by −lr · ∂L/∂θ, with ∂L/∂θ from
// central differences of the loss; embed, head and the masked head do not move.
TEST(MaskedTttAdapt, OneStepMatchesFiniteDifferences) {
  auto m = tiny_model(AuxKind::masked);
  Tensor x = images(5);
  const double lr = 0.05;
  const uint64_t seed = 7;
  Adapter a(m, sgd_options(Method::masked_ttt, 1, lr, seed));
  EXPECT_EQ(a.adapted_names(), (std::vector<std::string>{"body.1.weight", "body.1.bias"}));
  AdaptResult r = a.predict(Input(x));
  EXPECT_EQ(r.cost.forwards, 2u);  // one pass over the B masked images + the prediction
  EXPECT_EQ(r.cost.backwards, 1u);
  EXPECT_EQ(r.cost.optimizer_steps, 1u);
  EXPECT_GT(r.cost.reset_bytes, 0u);
  EXPECT_NEAR(r.loss_before, masked_loss_value(*m, x, seed, 0), 1e-12);

  auto probe = clone_as(*m);
  const NamedTensors before = probe->named_parameters(), after = a.model().named_parameters();
  const int64_t checked = idem::testing::expect_sgd_step_matches_differences(
      before, after, [&] { return masked_loss_value(*probe, x, seed, 0); }, lr, "body.");
  EXPECT_EQ(checked, 64 * 6 + 6);
  EXPECT_LT(masked_loss_value(static_cast<FeatureModel&>(a.model()), x, seed, 0), r.loss_before);
  // The next batch starts from Θ again (reset per batch) with new masks: batch 1's key.
  AdaptResult r2 = a.predict(Input(x));
  EXPECT_NEAR(r2.loss_before, masked_loss_value(*m, x, seed, 1), 1e-12);
  EXPECT_NE(r2.loss_before, r.loss_before);
}

TEST(MaskedTttAdapt, KStepsAreCountedAndReproducibleForASeed) {
  auto m = tiny_model(AuxKind::masked);
  Tensor x = images(4);
  Adapter a(m, sgd_options(Method::masked_ttt, 3, 0.05, 1)), b(m, sgd_options(Method::masked_ttt, 3, 0.05, 1));
  AdaptResult ra = a.predict(Input(x)), rb = b.predict(Input(x));
  EXPECT_EQ(values(ra.prediction), values(rb.prediction));
  EXPECT_EQ(ra.loss_before, rb.loss_before);
  EXPECT_EQ(ra.cost.forwards, 4u);
  EXPECT_EQ(ra.cost.backwards, 3u);
  EXPECT_EQ(ra.cost.optimizer_steps, 3u);
  EXPECT_LT(ra.loss_after, ra.loss_before);  // the same masks for the K steps of a batch
  Adapter c(m, sgd_options(Method::masked_ttt, 3, 0.05, 2));
  EXPECT_NE(c.predict(Input(x)).loss_before, ra.loss_before);  // another seed, other masks
  // The trained model is untouched; other methods never adapt the masked head.
  EXPECT_EQ(values(m->named_parameters()[0].second), values(tiny_model(AuxKind::masked)->named_parameters()[0].second));
  Adapter it3(m, AdaptOptions::for_method(Method::it3));
  for (const auto& n : it3.adapted_names()) EXPECT_NE(n.rfind("aux.", 0), 0u) << n;
  EXPECT_EQ(aux_head_needed(Method::masked_ttt), AuxKind::masked);
  EXPECT_EQ(AdaptOptions::for_method(Method::masked_ttt).bn_mode, BnMode::running);
}

TEST(MaskedTttAdapt, MisuseIsAClearError) {
  auto plain = tiny_model(AuxKind::none);
  expect_error([&] { Adapter a(plain, AdaptOptions::for_method(Method::masked_ttt)); },
               "masked-ttt needs a model trained with --aux masked");
  auto rot = tiny_model(AuxKind::rotation);
  expect_error([&] { Adapter a(rot, AdaptOptions::for_method(Method::masked_ttt)); },
               "has a 'rotation' head (idem train --aux masked)");
  auto masked = tiny_model(AuxKind::masked);
  expect_error([&] { Adapter a(masked, AdaptOptions::for_method(Method::ttt)); },
               "ttt needs a model trained with --aux rotation");
  auto reg = make_mlp_model(4, {8}, SignalSpec::regression(), {}, 0);
  expect_error([&] { Adapter a(reg, AdaptOptions::for_method(Method::masked_ttt)); },
               "masked-ttt reconstructs masked image patches with a training-time head");
  // Flat rows pass the tiny body (Flatten first) but are not images to mask.
  Adapter a(masked, sgd_options(Method::masked_ttt, 1, 0.1));
  expect_error([&] { a.predict(Input(randn({2, 64}, 1, Options{DType::f64}))); }, "needs an input of shape (B,C,H,W)");
  // 4×4 images are one 4×4 patch: nothing to mask.
  auto small = tiny_model(AuxKind::none);
  expect_error([&] { attach_aux_head(*small, AuxKind::masked, {1, 4, 4}, 0); }, "masking needs at least 2");
  EXPECT_EQ(parse_method("masked-ttt"), Method::masked_ttt);
  EXPECT_EQ(parse_method("masked_ttt"), Method::masked_ttt);
  EXPECT_STREQ(method_name(Method::masked_ttt), "masked-ttt");
  EXPECT_EQ(parse_aux_kind("masked"), AuxKind::masked);
  EXPECT_STREQ(aux_kind_name(AuxKind::masked), "masked");
  expect_error([] { parse_aux_kind("jigsaw"); }, "expected rotation, masked or none");
  // Masks drawn anew per batch: the graph path would replay the captured batch's masks.
  EXPECT_NE(graph_path_blocker(AdaptOptions::for_method(Method::masked_ttt), Device::cuda(0)).find("masked-ttt draws"),
            std::string::npos);
}

TEST(MaskedTttTrain, StepAddsTheMaskedLossWithTheStepsMasks) {
  auto m = tiny_model(AuxKind::masked);
  m->train();
  Tensor x = images(6), y = from_vector<int64_t>({0, 1, 2, 0, 1, 2}, {6});
  TrainOptions opt = TrainOptions::for_task(TaskKind::classification);
  opt.seed = 4;
  const int64_t step = 3;
  auto ref = clone_as(*m);
  double expected = 0;
  {
    NoGradGuard ng;
    const PatchMask mask = make_patch_mask(6, 8, 8, masked_training_key(opt.seed, step), Options{DType::f64});
    expected = it3_objective(*ref, Input(x), y, opt, step).loss.item() + masked_loss(*ref, x, mask).item();
    RotationBatcher unused;
    EXPECT_NEAR(aux_training_loss(*ref, Input(x), unused, masked_training_key(opt.seed, step)).item(),
                masked_loss(*ref, x, mask).item(), 1e-14);
  }
  SGDOptions so;
  so.lr = 0.01;
  SGD sgd(m->parameters(), so);
  RotationBatcher rb;
  EXPECT_NEAR(train_step_with_aux(*m, sgd, Input(x), y, opt, step, rb), expected, 1e-12);
  // The step trains the masked head too (it is part of the model's parameters).
  bool aux_moved = false;
  const NamedTensors p0 = ref->named_parameters(), p1 = m->named_parameters();
  for (size_t i = 0; i < p0.size(); ++i)
    if (p0[i].first.rfind("aux.", 0) == 0) aux_moved |= values(p0[i].second) != values(p1[i].second);
  EXPECT_TRUE(aux_moved);
}

TEST(MaskedTttTask, AuxMaskedIsAnFmnistOptionAndRoundTripsInTheConfig) {
  cli::TaskConfig c;
  c.task = "tabular";
  c.aux = "masked";
  expect_error([&] { cli::make_task(c); }, "needs an image classification task");
  cli::TaskConfig f;
  f.aux = "masked";
  EXPECT_EQ(cli::TaskConfig::from_json(f.to_json()).aux, "masked");
  f.data = "synthetic";
  f.max_train = 64, f.max_test = 16;
  auto m = cli::make_task(f)->make_model(1);
  EXPECT_EQ(aux_kind(*m), AuxKind::masked);
}

TEST(MaskedTttAdaptCuda, MatchesTheCpu) {
  IDEM_REQUIRE_GPU();
  auto m = tiny_model(AuxKind::masked, DType::f32);
  Tensor x = images(6, DType::f32);
  AdaptOptions o = sgd_options(Method::masked_ttt, 2, 0.05, 3);
  Adapter cpu(m, o);
  AdaptResult rc = cpu.predict(Input(x));
  auto mg = clone_as(*m);
  mg->to(Device::cuda(0));
  Adapter gpu(mg, o);
  AdaptResult rg = gpu.predict(Input(x.to(Device::cuda(0))));
  const std::vector<double> a = values(rc.prediction), b = values(rg.prediction.to(Device::cpu()));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << i;
  EXPECT_NEAR(rc.loss_before, rg.loss_before, 1e-4);
  // The masks on the GPU are the CPU's.
  const PatchMask mc = make_patch_mask(3, 28, 28, 9, Options{DType::f32, Device::cpu()});
  const PatchMask mg2 = make_patch_mask(3, 28, 28, 9, Options{DType::f32, Device::cuda(0)});
  EXPECT_EQ(values(mc.hidden), values(mg2.hidden.to(Device::cpu())));
}

}  // namespace
}  // namespace idem::it3
