// MEMO: the entropy of each sample's marginal prediction over random augmentations of it
// (data::memo_augment), minimized over all parameters; the prediction is then made on the
// original input. See it3/methods/entropy.h.
#include <cmath>

#include "autograd/functions.h"
#include "core/error.h"
#include "it3/methods/entropy.h"

namespace idem::it3::entropy {

Tensor marginal_entropy(const Tensor& logits, int copies) {
  IDEM_CHECK(copies >= 1 && logits.dim() == 2 && logits.size(0) % copies == 0, "memo",
             "expected logits (copies·B, C) with copies = ", copies, ", got ",
             shape_str(logits.shape()));
  const int64_t b = logits.size(0) / copies, c = logits.size(1);
  Tensor lp = log_softmax(reshape(logits, Shape{copies, b, c}), 2);  // log p_a,i,c
  // logsumexp over the copies, stably: for t = log p over a, t − log_softmax(t) is the
  // logsumexp in every entry; take the first.
  Tensor t = permute(lp, {1, 2, 0});  // (B, C, copies)
  Tensor lse = reshape(narrow(t - log_softmax(t, 2), 2, 0, 1), Shape{b, c});
  Tensor log_marginal = lse - std::log(double(copies));
  return mean(-sum(exp(log_marginal) * log_marginal, {1}));
}

}  // namespace idem::it3::entropy
