#include "it3/aux_head.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/anomaly.h"
#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/error.h"
#include "data/image_rng.h"
#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/pool.h"

namespace idem::it3 {

const char* aux_kind_name(AuxKind k) {
  switch (k) {
    case AuxKind::none: return "none";
    case AuxKind::rotation: return "rotation";
    case AuxKind::masked: return "masked";
  }
  return "?";
}

AuxKind parse_aux_kind(const std::string& n) {
  if (n.empty() || n == "none") return AuxKind::none;
  if (n == "rotation") return AuxKind::rotation;
  if (n == "masked") return AuxKind::masked;
  fail("it3 aux head", "unknown auxiliary task '", n, "' (expected rotation, masked or none)");
}

AuxKind aux_kind(const RecursiveModel& model) {
  const auto* f = dynamic_cast<const FeatureModel*>(&model);
  if (!f || !f->aux_head()) return AuxKind::none;
  return parse_aux_kind(f->aux_kind());
}

// ---- rotations ----

Tensor rotation_index(int64_t n, int k, Device device) {
  IDEM_CHECK(n >= 1 && k >= 0 && k <= 3, "rotation_index", "needs n >= 1 and k in 0..3, got n = ", n,
             ", k = ", k);
  std::vector<int64_t> idx(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      // Counter-clockwise: output pixel (i, j) reads input pixel (r, c).
      int64_t r = i, c = j;
      if (k == 1) r = j, c = n - 1 - i;
      if (k == 2) r = n - 1 - i, c = n - 1 - j;
      if (k == 3) r = n - 1 - j, c = i;
      idx[size_t(i * n + j)] = r * n + c;
    }
  return from_vector(idx, {n * n}, device);
}

namespace {
void check_square_images(const Tensor& x, const char* op) {
  IDEM_CHECK(x.defined() && x.dim() == 4 && x.size(2) == x.size(3), op,
             "needs images (N, C, n, n) with square n×n planes, got ",
             x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
}
}  // namespace

Tensor rotate90(const Tensor& x, int k) {
  check_square_images(x, "rotate90");
  const int64_t n = x.size(2);
  Tensor flat = reshape(x, {x.size(0), x.size(1), n * n});
  return reshape(index_select(flat, 2, rotation_index(n, k, x.device())), x.shape());
}

Tensor RotationBatcher::images(const Tensor& x) {
  check_square_images(x, "rotation batch");
  const int64_t b = x.size(0), c = x.size(1), n = x.size(2);
  if (!index_.defined() || index_.numel() != 4 * n * n || index_.device() != x.device()) {
    std::vector<Tensor> parts;
    for (int k = 0; k < 4; ++k) parts.push_back(rotation_index(n, k, Device::cpu()));
    index_ = concat(parts, 0).to(x.device());
  }
  // (B, C, n·n) -> (B, C, 4·n·n) -> (B, C, 4, n, n) -> (4, B, C, n, n) -> (4B, C, n, n)
  Tensor all = index_select(reshape(x, {b, c, n * n}), 2, index_);
  Tensor by_angle = permute(reshape(all, {b, c, 4, n, n}), {2, 0, 1, 3, 4});
  return reshape(by_angle, {4 * b, c, n, n});
}

const Tensor& RotationBatcher::labels(int64_t batch, Device device) {
  if (!labels_.defined() || labels_.numel() != 4 * batch || labels_.device() != device) {
    std::vector<int64_t> l(size_t(4 * batch));
    for (int64_t i = 0; i < 4 * batch; ++i) l[size_t(i)] = i / batch;
    labels_ = from_vector(l, {4 * batch}, device);
  }
  return labels_;
}

// ---- masked reconstruction ----

namespace {
int64_t patches_along(int64_t pixels, int64_t patch) { return (pixels + patch - 1) / patch; }
}  // namespace

int64_t masked_patch_count(int64_t height, int64_t width, const MaskSpec& spec) {
  IDEM_CHECK(spec.patch >= 1 && spec.fraction > 0 && spec.fraction < 1, "masked patches",
             "needs a patch size >= 1 and a fraction in (0, 1), got ", spec.patch, " and ", spec.fraction);
  IDEM_CHECK(height >= 1 && width >= 1, "masked patches", "needs an image of at least 1×1 pixels, got ",
             height, "×", width);
  const int64_t p = patches_along(height, spec.patch) * patches_along(width, spec.patch);
  IDEM_CHECK(p >= 2, "masked patches", "a ", height, "×", width, " image has ", p, " patch of ", spec.patch,
             "×", spec.patch, " pixels: masking needs at least 2 (one hidden, one seen)");
  const int64_t n = int64_t(std::llround(spec.fraction * double(p)));
  return std::min(std::max<int64_t>(n, 1), p - 1);
}

PatchMask make_patch_mask(int64_t batch, int64_t height, int64_t width, uint64_t key, Options options,
                          const MaskSpec& spec) {
  IDEM_CHECK(batch >= 1, "make_patch_mask", "needs a batch of at least 1 image, got ", batch);
  const int64_t n = masked_patch_count(height, width, spec);
  const int64_t ph = patches_along(height, spec.patch), pw = patches_along(width, spec.patch), p = ph * pw;
  std::vector<double> hidden(size_t(batch * height * width), 0.0);
  std::vector<int64_t> order(static_cast<size_t>(p));
  double count = 0;
  for (int64_t i = 0; i < batch; ++i) {
    // The first n entries of a partial Fisher–Yates shuffle: n distinct patches, uniformly.
    data::ImageRng rng(key, uint64_t(i));
    std::iota(order.begin(), order.end(), int64_t(0));
    for (int64_t j = 0; j < n; ++j) std::swap(order[size_t(j)], order[size_t(rng.randint(int(j), int(p)))]);
    double* plane = hidden.data() + i * height * width;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t r0 = order[size_t(j)] / pw * spec.patch, c0 = order[size_t(j)] % pw * spec.patch;
      for (int64_t r = r0; r < std::min(height, r0 + spec.patch); ++r)
        for (int64_t c = c0; c < std::min(width, c0 + spec.patch); ++c) plane[r * width + c] = 1.0, count += 1;
    }
  }
  std::vector<double> visible(hidden.size());
  for (size_t k = 0; k < hidden.size(); ++k) visible[k] = 1.0 - hidden[k];
  const Shape shape{batch, 1, height, width};
  PatchMask m;
  m.hidden = from_vector(hidden, shape).to(options.dtype).to(options.device);
  m.visible = from_vector(visible, shape).to(options.dtype).to(options.device);
  m.hidden_pixels = count;
  return m;
}

Tensor masked_reconstruction(FeatureModel& model, const Tensor& images) {
  IDEM_CHECK(model.aux_head() != nullptr, "masked_reconstruction", "the model has no auxiliary head");
  IDEM_CHECK(images.defined() && images.dim() == 4, "masked_reconstruction", "needs images (N, C, H, W), got ",
             images.defined() ? shape_str(images.shape()) : std::string("an undefined tensor"));
  Tensor out = model.aux_head()->forward(model.features(Input(images)));
  const int64_t b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  if (out.dim() == 4) {
    // (B, C·s·s, h', w'): channel c·s² + dy·s + dx of cell (i, j) is pixel (i·s + dy, j·s + dx)
    // of channel c. Depth to space: (B, C, s, s, h', w') -> (B, C, h', s, w', s) -> (B, C, H, W).
    const int64_t hc = out.size(2), wc = out.size(3), s = hc > 0 ? h / hc : 0;
    IDEM_CHECK(s >= 1 && hc * s == h && wc * s == w && out.size(1) == c * s * s, "masked_reconstruction",
               "the head's output ", shape_str(out.shape()), " is not the s×s pixel blocks of ",
               shape_str(images.shape()));
    Tensor cells = reshape(out, {b, c, s, s, hc, wc});
    return reshape(permute(cells, {0, 1, 4, 2, 5, 3}), images.shape());
  }
  IDEM_CHECK(out.dim() == 2 && out.size(1) == c * h * w, "masked_reconstruction", "the head's output ",
             shape_str(out.shape()), " is not one image of ", shape_str(images.shape()), " per row");
  return reshape(out, images.shape());
}

Tensor masked_mse(const Tensor& reconstruction, const Tensor& x, const PatchMask& mask) {
  IDEM_CHECK(x.defined() && x.dim() == 4 && reconstruction.defined() && reconstruction.shape() == x.shape(),
             "masked_mse", "needs a reconstruction and images of the same shape (N, C, H, W), got ",
             reconstruction.defined() ? shape_str(reconstruction.shape()) : std::string("undefined"), " and ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  IDEM_CHECK(mask.hidden.defined() && mask.hidden.shape() == (Shape{x.size(0), 1, x.size(2), x.size(3)}) &&
                 mask.hidden_pixels > 0,
             "masked_mse", "the mask ", mask.hidden.defined() ? shape_str(mask.hidden.shape()) : std::string("undefined"),
             " does not fit images ", shape_str(x.shape()), " or hides nothing");
  Tensor d = reconstruction - x;
  return sum(d * d * mask.hidden) / (double(x.size(1)) * mask.hidden_pixels);
}

Tensor masked_loss(FeatureModel& model, const Tensor& x, const PatchMask& mask) {
  Tensor seen;
  {
    NoGradGuard ng;  // the test images are data: no gradient flows into the masking
    seen = x * mask.visible;
  }
  return masked_mse(masked_reconstruction(model, seen), x, mask);
}

uint64_t masked_training_key(uint64_t seed, int64_t step) {
  return init::derive_seed(seed ^ 0x3A5C0ull, uint64_t(step));
}

// ---- heads ----

namespace {
std::shared_ptr<Module> make_rotation_head(const Shape& f, uint64_t seed, Options o) {
  uint64_t next = 0;
  auto s = [&] { return init::derive_seed(seed, next++); };
  if (f.size() == 2)
    return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
        std::make_shared<Linear>(f[1], 16, true, o, s()), std::make_shared<ReLU>(),
        std::make_shared<Linear>(16, 8, true, o, s()), std::make_shared<ReLU>(),
        std::make_shared<Linear>(8, 4, true, o, s())});
  IDEM_CHECK(f.size() == 4 && f[2] >= 5 && f[3] >= 5, "attach_aux_head",
             "the rotation head takes (B, F) features or (B, C, H, W) maps with H, W >= 5 (two 3×3 "
             "convolutions without padding), got ", shape_str(f));
  return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Conv2d>(f[1], 16, 3, Conv2dOptions{}, o, s()), std::make_shared<ReLU>(),
      std::make_shared<Conv2d>(16, 4, 3, Conv2dOptions{}, o, s()),
      std::make_shared<AdaptiveAvgPool2d>(1), std::make_shared<Flatten>()});
}

// The masked head's decoder (see the top of aux_head.h): features f, images (C, H, W).
std::shared_ptr<Module> make_masked_head(const Shape& f, const Shape& image, uint64_t seed, Options o) {
  uint64_t next = 0;
  auto s = [&] { return init::derive_seed(seed, next++); };
  const int64_t c = image[0], h = image[1], w = image[2];
  if (f.size() == 4 && f[2] >= 1 && f[3] >= 1 && h % f[2] == 0 && w % f[3] == 0 && h / f[2] == w / f[3]) {
    const int64_t cell = h / f[2];
    Conv2dOptions pad1;
    pad1.padding = 1;
    return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
        std::make_shared<Conv2d>(f[1], 32, 3, pad1, o, s()), std::make_shared<ReLU>(),
        std::make_shared<Conv2d>(32, c * cell * cell, 1, Conv2dOptions{}, o, s())});
  }
  int64_t features = 1;
  for (size_t i = 1; i < f.size(); ++i) features *= f[i];
  return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Flatten>(), std::make_shared<Linear>(features, 64, true, o, s()),
      std::make_shared<ReLU>(), std::make_shared<Linear>(64, c * h * w, true, o, s())});
}
}  // namespace

void attach_aux_head(RecursiveModel& model, AuxKind kind, const Shape& input_shape, uint64_t seed) {
  if (kind == AuxKind::none) return;
  auto* f = dynamic_cast<FeatureModel*>(&model);
  if (!f)
    fail("attach_aux_head", "a ", aux_kind_name(kind), " head sits on a shared encoder: it needs a "
         "feature-injection model (FeatureModel: body/embed/head), got ", model.type_name());
  IDEM_CHECK(input_shape.size() == 3, "attach_aux_head", "needs one sample's shape (C, H, W), got ",
             shape_str(input_shape));
  if (kind == AuxKind::rotation)
    IDEM_CHECK(input_shape[1] == input_shape[2], "attach_aux_head",
               "rotation prediction needs square images, got ", shape_str(input_shape));
  if (kind == AuxKind::masked) masked_patch_count(input_shape[1], input_shape[2]);  // >= 2 patches
  const DType dt = model.parameters().empty() ? DType::f32 : model.parameters()[0].dtype();
  Shape probe{2};
  probe.insert(probe.end(), input_shape.begin(), input_shape.end());
  Shape fs;
  {
    NoGradGuard ng;
    const bool was_training = f->body()->is_training();
    f->body()->eval();
    fs = f->body()->forward(zeros(probe, Options{dt, model.device()})).shape();
    f->body()->train(was_training);
  }
  const uint64_t head_seed = init::derive_seed(seed, 0xA0C5ull);
  const Options o{dt, model.device()};
  auto head = kind == AuxKind::masked ? make_masked_head(fs, input_shape, head_seed, o)
                                      : make_rotation_head(fs, head_seed, o);
  head->train(f->is_training());
  f->set_aux_head(aux_kind_name(kind), head);
}

FeatureModel& require_aux_head(RecursiveModel& model, AuxKind kind, const std::string& method) {
  const AuxKind has = aux_kind(model);
  if (has != kind)
    fail("it3::Adapter", method, " needs a model trained with --aux ", aux_kind_name(kind), "; ",
         model.type_name(), has == AuxKind::none ? " has no auxiliary head" : " has a '",
         has == AuxKind::none ? "" : aux_kind_name(has), has == AuxKind::none ? "" : "' head",
         " (idem train --aux ", aux_kind_name(kind), ")");
  return static_cast<FeatureModel&>(model);
}

// ---- losses ----

Tensor rotation_logits(FeatureModel& model, const Tensor& images) {
  IDEM_CHECK(model.aux_head() != nullptr, "rotation_logits", "the model has no auxiliary head");
  return model.aux_head()->forward(model.features(Input(images)));
}

Tensor rotation_loss(FeatureModel& model, const Tensor& x, RotationBatcher& batcher) {
  Tensor images = batcher.images(x);
  return cross_entropy(rotation_logits(model, images), batcher.labels(x.size(0), x.device()));
}

Tensor aux_training_loss(RecursiveModel& model, const Input& x, RotationBatcher& batcher, uint64_t mask_key) {
  switch (aux_kind(model)) {
    case AuxKind::rotation:
      return rotation_loss(static_cast<FeatureModel&>(model), x.x, batcher);
    case AuxKind::masked: {
      IDEM_CHECK(x.x.dim() == 4, "masked head", "needs images (N, C, H, W), got ", shape_str(x.x.shape()));
      const PatchMask m = make_patch_mask(x.x.size(0), x.x.size(2), x.x.size(3), mask_key,
                                          Options{x.x.dtype(), x.device()});
      return masked_loss(static_cast<FeatureModel&>(model), x.x, m);
    }
    case AuxKind::none: break;
  }
  fail("aux_training_loss", model.type_name(), " has no auxiliary head");
}

double train_step_with_aux(RecursiveModel& model, Optimizer& optim, const Input& x, const Tensor& y,
                           const TrainOptions& opt, int64_t step, RotationBatcher& batcher) {
  optim.zero_grad();
  TrainStep t = it3_objective(model, x, y, opt, step);
  Tensor loss = t.loss + aux_training_loss(model, x, batcher, masked_training_key(opt.seed, step));
  check_finite_loss(loss, step, "it3 training with an auxiliary head");
  const double value = loss.item();
  loss.backward();
  optim.step();
  return value;
}

// ---- TTT++ statistics ----

Tensor pooled_features(const Tensor& f) {
  IDEM_CHECK(f.dim() == 2 || f.dim() == 4, "pooled_features", "needs (B, F) or (B, C, H, W) features, got ",
             shape_str(f.shape()));
  return f.dim() == 4 ? mean(f, {2, 3}) : f;
}

namespace {
// Covariance over rows, divisor N − 1: (N, C) -> (C, C).
Tensor covariance(const Tensor& f) {
  Tensor c = f - mean(f, {0}, true);
  return matmul(c, c, true, false) / double(f.size(0) - 1);
}
}  // namespace

FeatureStats collect_feature_stats(RecursiveModel& model, const std::vector<Input>& batches) {
  IDEM_CHECK(!batches.empty(), "ttt++", "needs at least one batch of training data");
  auto* f = dynamic_cast<FeatureModel*>(&model);
  IDEM_CHECK(f != nullptr, "ttt++", "feature statistics need a FeatureModel (body/embed/head), got ",
             model.type_name());
  const bool was_training = model.is_training();
  model.eval();
  std::vector<Tensor> all;
  {
    NoGradGuard ng;
    for (const Input& x : batches) all.push_back(pooled_features(f->features(x)));
  }
  model.train(was_training);
  FeatureStats s;
  NoGradGuard ng;
  Tensor feats = concat(all, 0);
  IDEM_CHECK(feats.size(0) >= 2, "ttt++", "feature statistics need at least 2 training samples");
  s.mean = mean(feats, {0});
  s.cov = covariance(feats);
  return s;
}

Tensor feature_alignment_loss(const Tensor& f, const FeatureStats& stats) {
  IDEM_CHECK(f.dim() == 2 && f.size(0) >= 2, "ttt++",
             "feature alignment needs (B, C) features with B >= 2 (a covariance), got ", shape_str(f.shape()));
  IDEM_CHECK(!stats.empty() && stats.mean.numel() == f.size(1), "ttt++", "training statistics of ",
             stats.empty() ? std::string("nothing") : shape_str(stats.mean.shape()),
             " do not match the features ", shape_str(f.shape()));
  const double d = double(f.size(1));
  Tensor dc = stats.cov - covariance(f);
  Tensor dm = stats.mean - mean(f, {0});
  return sum(dc * dc) * (0.1 / (4.0 * d * d)) + mean(dm * dm) * 0.1;
}

}  // namespace idem::it3
