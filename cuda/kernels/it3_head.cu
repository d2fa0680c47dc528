// CUDA kernels of the fused IT³ head (contract: core/kernels/it3_head.h): ONE block runs every
// phase of core/kernels/it3_head_phases.h, its threads striding over each phase's outputs with a
// barrier between phases, so the whole loss is one launch and its backward another. The saved
// activations live in global memory (the work and scratch tensors), which a block's barrier
// makes visible to its threads; at the cnn's sizes (B ≤ 64, widths ≤ 64: under 100 KB) they
// should stay in L1 and L2 (not yet measured). Replaces about 22 small launches of the
// composed path (it3/adapt.cpp; counted from its ops, core/kernels/it3_head.h).
#include <cuda_runtime.h>

#include "core/kernels/it3_head_args.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

struct BlockRun {
  template <typename F>
  __device__ void operator()(int count, F&& fn) const {
    for (int t = threadIdx.x; t < count; t += blockDim.x) fn(t);
    __syncthreads();
  }
};

__global__ void __launch_bounds__(kIt3HeadThreads) it3_head_fwd_kernel(it3_head::FwdArgs<float> a) {
  it3_head::forward(a, BlockRun{});
}

__global__ void __launch_bounds__(kIt3HeadThreads) it3_head_bwd_kernel(it3_head::BwdArgs<float> a) {
  it3_head::backward(a, BlockRun{});
}

}  // namespace

void it3_head_fwd(const Tensor& loss, const Tensor& work, const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p) {
  set_device(work.device().index);
  it3_head_fwd_kernel<<<1, kIt3HeadThreads, 0, current_stream()>>>(
      it3_head::fwd_args<float>(loss, work, h_f, h_F, s0, f, F, p));
  IDEM_LAUNCH_CHECK("it3_head_loss");
}

void it3_head_bwd(const std::vector<Tensor>& df, const Tensor& dh_f, const Tensor& dh_F,
                  const Tensor& scratch, const Tensor& g, const Tensor& work, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p) {
  set_device(work.device().index);
  it3_head_bwd_kernel<<<1, kIt3HeadThreads, 0, current_stream()>>>(
      it3_head::bwd_args<float>(df, dh_f, dh_F, scratch, g, work, s0, f, F, p));
  IDEM_LAUNCH_CHECK("it3_head_loss_backward");
}

}  // namespace idem::cuda
