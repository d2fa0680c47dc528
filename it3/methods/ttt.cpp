#include "it3/methods/ttt.h"

#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/error.h"
#include "layers/init.h"

namespace idem::it3 {

uint64_t masked_ttt_mask_key(uint64_t seed, int64_t batch_index) {
  return init::derive_seed(seed ^ 0x3A5C7ull, uint64_t(batch_index));
}

TttLoss::TttLoss(FeatureModel& model, AuxKind kind, bool align, FeatureStats stats, uint64_t seed)
    : model_(model), kind_(kind), align_(align), stats_(std::move(stats)), seed_(seed) {
  IDEM_CHECK(model_.aux_head() != nullptr && aux_kind(model_) == kind_, "ttt", "the model has no ",
             aux_kind_name(kind_), " head");
  IDEM_CHECK(!align_ || kind_ == AuxKind::rotation, "ttt", "the feature alignment (ttt++) runs on the rotation pass");
  if (align_ && stats_.empty())
    fail("it3::Adapter", "ttt++ needs training feature statistics (collect_feature_stats)");
}

Tensor TttLoss::loss(const Input& x, Cost& cost) {
  const int64_t b = x.x.size(0);
  if (kind_ == AuxKind::masked) {
    if (x.graph || x.x.dim() != 4)
      fail("it3::Adapter", "masked-ttt masks image patches: it needs an input of shape (B,C,H,W), got ",
           shape_str(x.x.shape()), x.graph ? " with a graph" : "");
    if (!mask_.hidden.defined())
      mask_ = make_patch_mask(b, x.x.size(2), x.x.size(3), masked_ttt_mask_key(seed_, batch_index_),
                              Options{x.x.dtype(), x.device()});
    Tensor l = masked_loss(model_, x.x, mask_);
    cost.forwards += 1;
    return l;
  }
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
