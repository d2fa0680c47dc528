// CPU reference of the fused IT³ head (contract: core/kernels/it3_head.h): the phases of
// core/kernels/it3_head_phases.h run one after the other by a plain loop, single-threaded (the
// head is a few hundred thousand multiply-adds at the batch sizes it is for).
#include "core/kernels/it3_head.h"

#include "core/kernels/it3_head_args.h"

namespace idem::cpu {

namespace {
struct SerialRun {
  template <typename F>
  void operator()(int count, F&& fn) const {
    for (int t = 0; t < count; ++t) fn(t);
  }
};
}  // namespace

void it3_head_fwd(const Tensor& loss, const Tensor& work, const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p) {
  IDEM_DISPATCH_FLOAT(work.dtype(), "it3_head_loss", [&] {
    it3_head::forward(it3_head::fwd_args<scalar_t>(loss, work, h_f, h_F, s0, f, F, p),
                      SerialRun{});
  });
}

void it3_head_bwd(const std::vector<Tensor>& df, const Tensor& dh_f, const Tensor& dh_F,
                  const Tensor& scratch, const Tensor& g, const Tensor& work, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p) {
  IDEM_DISPATCH_FLOAT(work.dtype(), "it3_head_loss_backward", [&] {
    it3_head::backward(
        it3_head::bwd_args<scalar_t>(df, dh_f, dh_F, scratch, g, work, s0, f, F, p), SerialRun{});
  });
}

}  // namespace idem::cpu
