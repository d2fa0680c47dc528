// it3_head_loss: records ONE node for the whole IT³ loss of a feature-injection head.
#include "autograd/it3_head_function.h"

namespace idem {

namespace {

class It3HeadLossNode : public Node {
 public:
  It3HeadLossNode(Tensor work, Tensor h_f, Tensor h_F, Tensor s0, std::vector<Tensor> f,
                  std::vector<Tensor> F, It3HeadSpec spec)
      : work_(std::move(work)),
        h_f_(std::move(h_f)),
        h_F_(std::move(h_F)),
        s0_(std::move(s0)),
        f_(std::move(f)),
        F_(std::move(F)),
        spec_(std::move(spec)) {}
  const char* name() const override { return "it3_head_loss"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // Back through the distance, softmax(y1), F (input gradients only), into s, softmax(y0)
    // and f (weight gradients), in one call: core/kernels/it3_head_phases.h, backward().
    std::vector<bool> need_df(f_.size());
    for (size_t k = 0; k < f_.size(); ++k) need_df[k] = needs_grad(2 + k);
    ops::It3HeadGrads r = ops::it3_head_loss_backward(g, work_, h_f_, h_F_, s0_, f_, F_, spec_,
                                                      needs_grad(0), needs_grad(1), need_df);
    std::vector<Tensor> out{r.dh_f, r.dh_F};
    out.insert(out.end(), r.df.begin(), r.df.end());
    return out;
  }

 private:
  Tensor work_, h_f_, h_F_, s0_;
  std::vector<Tensor> f_, F_;
  It3HeadSpec spec_;
};

void refuse_history(const std::vector<Tensor>& ts, const char* op, const char* what) {
  for (const Tensor& t : ts)
    IDEM_CHECK(!(grad_enabled() && t.defined() && t.requires_grad()), op, what,
               " must not require grad (", op, " gives it no gradient)");
}

}  // namespace

It3HeadLoss it3_head_loss(const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                          const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                          const It3HeadSpec& spec) {
  refuse_history({s0}, "it3_head_loss", "s0 (the neutral signal)");
  refuse_history(F, "it3_head_loss", "the anchor F's weights");
  ops::It3HeadLossResult r = ops::it3_head_loss(h_f, h_F, s0, f, F, spec);
  std::vector<Tensor> inputs{h_f, h_F};
  inputs.insert(inputs.end(), f.begin(), f.end());
  if (needs_history(inputs)) {
    std::vector<Tensor> fs, Fs;
    for (const Tensor& t : f) fs.push_back(saved(t));
    for (const Tensor& t : F) Fs.push_back(saved(t));
    record(std::make_shared<It3HeadLossNode>(r.work, saved(h_f), saved(h_F), saved(s0),
                                             std::move(fs), std::move(Fs), spec),
           inputs, r.loss);
  }
  return {r.loss, r.y0, r.y1};
}

Tensor feature_head(const Tensor& h, const Tensor& s, const std::vector<Tensor>& net,
                    const It3HeadSpec& spec) {
  refuse_history({h, s}, "feature_head", "the features and the signal");
  refuse_history(net, "feature_head", "the head's weights");
  return ops::feature_head(h, s, net, spec);
}

}  // namespace idem
