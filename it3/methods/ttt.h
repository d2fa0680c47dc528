// Level L4: the test-time losses of TTT, TTT++ and Masked TTT for it3::Adapter (docs/it3.md,
// "Methods").
//
//   ttt         (Sun et al. 2020) K steps of the rotation loss: cross-entropy of the trained
//               rotation head on the encoder features of the four rotations of every test image
//               (4B images in one pass); the encoder (body) adapts, the rotation head stays fixed
//               (torch-ttt's engine optimizes the model's parameters only, and only the encoder's
//               get a gradient).
//   ttt++       (Liu et al. 2021) the rotation loss plus the alignment of the encoder features'
//               mean and covariance to the training statistics (it3/aux_head.h,
//               feature_alignment_loss). The features aligned are those of the unrotated quarter
//               of the rotation pass, so TTT++ costs the same passes as TTT. (The paper's
//               self-supervised task is SimCLR; here it is TTT's rotation, as the issue defines
//               TTT++.)
//   masked-ttt  (after Gandelsman et al. 2022) K steps of the masked reconstruction loss of the
//               trained masked head (it3/aux_head.h, masked_loss): half of each test image's 4×4
//               patches are zeroed, the encoder and the fixed head reconstruct the image, the
//               squared error counts on the hidden pixels only. One pass over the B masked
//               images per step; the encoder (body) adapts, as in ttt.
// The rotated batch, and the masks, are built once per test batch (begin_batch) and reused by
// the K steps. The masks are drawn per batch with masked_ttt_mask_key(seed, batch index): every
// batch gets new ones, the same on every run with the seed (so the CUDA graph path, which would
// replay the captured batch's masks, leaves masked-ttt to the eager path).
#pragma once
#include "it3/aux_head.h"
#include "it3/cost.h"

namespace idem::it3 {

// The key of the masks of test batch `batch_index` (0, 1, ...) of an Adapter seeded `seed`.
uint64_t masked_ttt_mask_key(uint64_t seed, int64_t batch_index);

class TttLoss {
 public:
  // kind: the head the model must carry (rotation: ttt, ttt++; masked: masked-ttt).
  // align: TTT++'s feature alignment (rotation only; requires stats). seed: masked-ttt's masks.
  TttLoss(FeatureModel& model, AuxKind kind, bool align, FeatureStats stats, uint64_t seed = 0);
  // A new test batch, the `batch_index`-th: the cached rotations or masks of the previous one are
  // dropped.
  void begin_batch(int64_t batch_index) {
    rotated_ = Tensor();
    mask_ = PatchMask();
    batch_index_ = batch_index;
  }
  // The adaptation loss of one step on x; counts one forward (one pass over the 4B rotations,
  // or over the B masked images).
  Tensor loss(const Input& x, Cost& cost);
  bool aligns() const { return align_; }
  AuxKind kind() const { return kind_; }
  // The masks of the current batch (masked-ttt; undefined before its first step).
  const PatchMask& mask() const { return mask_; }

 private:
  FeatureModel& model_;
  AuxKind kind_;
  bool align_;
  FeatureStats stats_;
  uint64_t seed_;
  int64_t batch_index_ = 0;
  RotationBatcher batcher_;
  Tensor rotated_;  // (4B, C, n, n) of the current batch
  PatchMask mask_;  // masked-ttt: the current batch's masks
};

}  // namespace idem::it3
