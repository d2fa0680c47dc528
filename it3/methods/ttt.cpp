#include "it3/methods/ttt.h"

#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/error.h"

namespace idem::it3 {

TttLoss::TttLoss(FeatureModel& model, bool align, FeatureStats stats)
    : model_(model), align_(align), stats_(std::move(stats)) {
  IDEM_CHECK(model_.aux_head() != nullptr, "ttt", "the model has no rotation head");
  if (align_ && stats_.empty())
    fail("it3::Adapter", "ttt++ needs training feature statistics (collect_feature_stats)");
}

Tensor TttLoss::loss(const Input& x, Cost& cost) {
  const int64_t b = x.x.size(0);
  if (!rotated_.defined()) {
    NoGradGuard ng;  // the test images are data: no gradient flows into the rotation
    rotated_ = batcher_.images(x.x);
  }
  Tensor h = model_.features(Input(rotated_));
  Tensor l = cross_entropy(model_.aux_head()->forward(h), batcher_.labels(b, x.device()));
  cost.forwards += 1;
  if (align_) l = l + feature_alignment_loss(pooled_features(narrow(h, 0, 0, b)), stats_);
  return l;
}

}  // namespace idem::it3
