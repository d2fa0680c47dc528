// Level L4: the test-time losses of TTT and TTT++ for it3::Adapter (docs/it3.md, "Methods").
//
//   ttt    (Sun et al. 2020) K steps of the rotation loss: cross-entropy of the trained rotation
//          head on the encoder features of the four rotations of every test image (4B images
//          in one pass); the encoder (body) adapts, the rotation head stays fixed (torch-ttt's
//          engine optimizes the model's parameters only, and only the encoder's get a gradient).
//   ttt++  (Liu et al. 2021) the rotation loss plus the alignment of the encoder features' mean
//          and covariance to the training statistics (it3/aux_head.h, feature_alignment_loss).
//          The features aligned are those of the unrotated quarter of the rotation pass, so
//          TTT++ costs the same passes as TTT. (The paper's self-supervised task is SimCLR; here
//          it is TTT's rotation, as the issue defines TTT++.)
// The rotated batch is built once per test batch (begin_batch) and reused by the K steps.
#pragma once
#include "it3/aux_head.h"
#include "it3/cost.h"

namespace idem::it3 {

class TttLoss {
 public:
  // align: TTT++'s feature alignment (requires stats). The model must carry a rotation head.
  TttLoss(FeatureModel& model, bool align, FeatureStats stats);
  // A new test batch: the cached rotations of the previous one are dropped.
  void begin_batch() { rotated_ = Tensor(); }
  // The adaptation loss of one step on x; counts one forward (one pass over the 4B rotations).
  Tensor loss(const Input& x, Cost& cost);
  bool aligns() const { return align_; }

 private:
  FeatureModel& model_;
  bool align_;
  FeatureStats stats_;
  RotationBatcher batcher_;
  Tensor rotated_;  // (4B, C, n, n) of the current batch
};

}  // namespace idem::it3
