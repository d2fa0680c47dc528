// Level L4: training-time auxiliary heads for test-time training (TTT, TTT++, Masked TTT;
// docs/it3.md, "Methods").
//
// A TTT model shares its encoder between the task and a self-supervised task. Here the encoder
// is a FeatureModel's body (head(body(x) + embed(s))), and the auxiliary head is a child "aux"
// of the model (FeatureModel::set_aux_head), so the checkpoint holds it next to the task's
// weights and idem adapt reloads it:
//   rotation  (Sun et al. 2020) every image in four copies rotated by 0, 90, 180 and 270°
//             counter-clockwise; aux(body(rotated)) classifies the angle (4 logits). Head as
//             torch-ttt builds it by default: for (B, C, H, W) features Conv2d(C,16,3) ReLU
//             Conv2d(16,4,3) AdaptiveAvgPool2d(1) Flatten; for (B, F) features Linear(F,16)
//             ReLU Linear(16,8) ReLU Linear(8,4).
//   masked    (after Gandelsman et al. 2022, TTT with masked autoencoders) every image is cut
//             into patches of 4×4 pixels; half of the patches, drawn per image (Philox, seeded,
//             see make_patch_mask), are set to zero; the encoder sees the masked image and
//             aux(body(masked)) reconstructs the whole image; the loss is the squared error on
//             the hidden pixels only, averaged over them (visible pixels cost nothing, so the
//             head cannot score by copying its input). Head: for (B, C', h, w) maps whose cells
//             are s×s pixel blocks of the image (H = s·h, W = s·w; the demo's CNN: s = 4, one
//             cell per patch) Conv2d(C',32,3,pad 1) ReLU Conv2d(32,C·s·s,1), read out as the
//             s×s pixels of each cell (depth to space: one reshape and one permute); for any
//             other features Flatten Linear(F,64) ReLU Linear(64,C·H·W). A small decoder, as in
//             MAE: the encoder has to carry the information.
// Training adds the auxiliary loss to the IT³ objective with weight 1 (L = L_it3 + L_aux, as
// the TTT paper trains), on the same batch.
//
// The masks are 0/1 images built on the host (one Philox stream per image, data/image_rng.h)
// and multiplied in: no new op, and the gradient flows through the encoder and the head only.
// The rotations are composed from existing differentiable ops: one index_select over the
// flattened pixels (a rotation of a square image is a permutation of its pixels), so no new
// kernel is needed and the gradient is index_add's.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "it3/recursive_model.h"
#include "layers/optim.h"
#include "it3/training.h"

namespace idem::it3 {

enum class AuxKind : uint8_t { none, rotation, masked };
const char* aux_kind_name(AuxKind k);            // "none", "rotation", "masked"
AuxKind parse_aux_kind(const std::string& name);  // "" and "none" -> none

// Which head the model carries (none for a model without one, or not a FeatureModel).
AuxKind aux_kind(const RecursiveModel& model);

// The pixel permutation of a counter-clockwise rotation by k·90° (k in 0..3) of an n×n image:
// out[i·n + j] = in[index[i·n + j]]. (n·n) i64 on `device`.
Tensor rotation_index(int64_t n, int k, Device device = Device::cpu());
// x (N, C, n, n) rotated k·90° counter-clockwise (torchvision's rotate(x, 90·k)); differentiable.
// requires: 4-dim x with square images (checked).
Tensor rotate90(const Tensor& x, int k);

// The four rotations of a batch, concatenated: rows [0, B) unrotated, [B, 2B) 90°, [2B, 3B)
// 180°, [3B, 4B) 270°, and the matching labels 0, 1, 2, 3 (4B) i64. One index_select, one
// permute. The caches make a repeated call for the same shapes allocate no host-side tensors
// (the adaptation calls it inside a CUDA graph capture).
class RotationBatcher {
 public:
  Tensor images(const Tensor& x);                   // (4B, C, n, n)
  const Tensor& labels(int64_t batch, Device device);  // (4B) i64

 private:
  Tensor index_;   // (4·n·n) i64
  Tensor labels_;  // (4B) i64
};

// ---- masked reconstruction ----

// The masking of the masked head: square patches of `patch` pixels on a side (the last row and
// column of patches are cut short where `patch` does not divide H or W), of which
// masked_patch_count hide. Fixed for training and test time (the head is trained for it).
struct MaskSpec {
  int64_t patch = 4;
  double fraction = 0.5;
};
// How many of an H×W image's patches a mask hides: round(fraction · P), P = ⌈H/patch⌉·⌈W/patch⌉,
// kept within [1, P − 1] so something is hidden and something is seen. requires: P >= 2.
int64_t masked_patch_count(int64_t height, int64_t width, const MaskSpec& spec = {});

// A batch of masks: hidden (B, 1, H, W) is 1 on the pixels of the hidden patches and 0
// elsewhere, visible = 1 − hidden; hidden_pixels = Σ hidden (per channel). Image i of the batch
// draws its patches from the Philox stream (key, i) (data/image_rng.h): a partial Fisher–Yates
// shuffle of the P patch indices, so the mask is a pure function of (key, i, H, W, spec).
struct PatchMask {
  Tensor hidden, visible;
  double hidden_pixels = 0;
};
PatchMask make_patch_mask(int64_t batch, int64_t height, int64_t width, uint64_t key, Options options,
                          const MaskSpec& spec = {});

// The image the masked head reconstructs from (already masked) images: aux(body(images)) read
// out as (B, C, H, W), the shape of `images`.
Tensor masked_reconstruction(FeatureModel& model, const Tensor& images);
// Σ hidden·(reconstruction − x)² / (C · hidden_pixels): the squared error per hidden pixel and
// channel, averaged over them. x and reconstruction (B, C, H, W); differentiable in both.
Tensor masked_mse(const Tensor& reconstruction, const Tensor& x, const PatchMask& mask);
// The masked loss of a batch: masked_mse(masked_reconstruction(model, x·visible), x, mask).
Tensor masked_loss(FeatureModel& model, const Tensor& x, const PatchMask& mask);
// The key of the training masks of step `step` of a run seeded `seed` (TrainOptions::seed).
uint64_t masked_training_key(uint64_t seed, int64_t step);

// Builds the head of `kind` for `model`'s encoder and attaches it (FeatureModel::set_aux_head).
// The feature shape is probed with one forward of the body on zeros of `input_shape` (one
// sample: (C, H, W)). Seeded from `seed`. requires: a FeatureModel; rotation needs square images,
// masked at least two patches (MaskSpec).
void attach_aux_head(RecursiveModel& model, AuxKind kind, const Shape& input_shape, uint64_t seed);

// The model as a FeatureModel carrying a head of `kind`, or an error that names `method` and how
// to train such a model ("ttt needs a model trained with --aux rotation ...").
FeatureModel& require_aux_head(RecursiveModel& model, AuxKind kind, const std::string& method);

// Rotation logits of already rotated images: aux(body(images)), (N, 4).
Tensor rotation_logits(FeatureModel& model, const Tensor& images);
// The rotation loss of a batch: cross-entropy of aux(body(rotations of x)) against the angles,
// mean over the 4B images.
Tensor rotation_loss(FeatureModel& model, const Tensor& x, RotationBatcher& batcher);

// The auxiliary loss of the model's head on a training batch (the kind's loss above); the masked
// head's masks are drawn with `mask_key` (masked_training_key).
Tensor aux_training_loss(RecursiveModel& model, const Input& x, RotationBatcher& batcher,
                         uint64_t mask_key = 0);

// One training step on L = L_it3 + L_aux: zero_grad, forward, backward, step (as train_step;
// refuses a non-finite loss). Returns the value of L (one device sync). The masked head draws
// its masks with masked_training_key(opt.seed, step): a new mask every step, reproducibly.
double train_step_with_aux(RecursiveModel& model, Optimizer& optim, const Input& x, const Tensor& y,
                           const TrainOptions& opt, int64_t step, RotationBatcher& batcher);

// TTT++'s reference statistics: the mean (C) and the covariance (C, C) (divisor N − 1) of the
// encoder's features over training data. A (B, C, H, W) feature map is first averaged over
// space: (B, C), so the covariance stays C×C (64×64 for the demo's CNN) instead of (C·H·W)².
struct FeatureStats {
  Tensor mean, cov;
  bool empty() const { return !mean.defined(); }
};
// The encoder features of x averaged over space (the features TTT++ aligns), (B, C).
Tensor pooled_features(const Tensor& features);
// Mean and covariance of pooled_features(body(x)) in evaluation mode over every batch together.
FeatureStats collect_feature_stats(RecursiveModel& model, const std::vector<Input>& batches);
// TTT++'s alignment of a batch of pooled features f (B, C), B ≥ 2, to the statistics (torch-ttt's
// weights and normalizations):
//   0.1 · ‖Σ_ref − Σ(f)‖²_F / (4C²) + 0.1 · mean_c (μ_ref − μ(f))²
Tensor feature_alignment_loss(const Tensor& f, const FeatureStats& stats);

}  // namespace idem::it3
