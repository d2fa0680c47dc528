// DeYO: entropy minimization on the samples whose prediction is both confident (low entropy)
// and rests on the image's shape: PLPD, the drop of the predicted class's probability when the
// image's patches are shuffled (data::patch_shuffle), must exceed a threshold. See
// it3/methods/entropy.h.
#include "autograd/functions.h"
#include "core/error.h"
#include "it3/methods/entropy.h"

namespace idem::it3::entropy {

DeyoTerms deyo_loss(const Tensor& logits, const Tensor& shuffled_logits, double e_margin,
                    double plpd_threshold, double ent_norm) {
  IDEM_CHECK(logits.dim() == 2 && logits.shape() == shuffled_logits.shape(), "deyo",
             "expected logits and shuffled logits of the same shape (B, C), got ",
             shape_str(logits.shape()), " and ", shape_str(shuffled_logits.shape()));
  DeyoTerms t;
  Tensor h = sample_entropy(logits);
  Tensor denom;
  {
    NoGradGuard ng;  // the filters and weights are constants of the loss (detached, as published)
    const Tensor hd = h.detach();
    const Tensor one = scalar_tensor(1.0, {hd.dtype(), hd.device()}), zero = one * 0.0;
    const Tensor p = softmax(logits.detach(), 1), q = softmax(shuffled_logits.detach(), 1);
    const Tensor yhat = unsqueeze(argmax(p, 1), 1);  // (B, 1)
    t.plpd = reshape(gather(p, 1, yhat) - gather(q, 1, yhat), Shape{p.size(0)});
    t.kept = where(lt(hd, one * e_margin), one, zero) *
             where(gt(t.plpd, one * plpd_threshold), one, zero);
    t.weight = t.kept * (exp(-(hd - ent_norm)) + exp(t.plpd));
    denom = maximum(sum(t.kept), one);
  }
  t.loss = sum(h * t.weight) / denom;
  return t;
}

}  // namespace idem::it3::entropy
