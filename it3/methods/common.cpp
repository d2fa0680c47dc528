#include "autograd/nn_functions.h"
#include "it3/methods/entropy.h"

namespace idem::it3::entropy {

Tensor sample_entropy(const Tensor& logits) {
  Tensor logp = log_softmax(logits, 1);
  return -sum(exp(logp) * logp, {1});
}

}  // namespace idem::it3::entropy
