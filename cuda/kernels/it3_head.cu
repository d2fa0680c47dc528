// CUDA kernels of the fused IT³ head (contract: core/kernels/it3_head.h): ONE block runs every
// phase of core/kernels/it3_head_phases.h, its threads striding over each phase's outputs with a
// barrier between phases, so the whole loss is one launch and its backward another. Replaces
// about 22 small launches of the composed path (it3/adapt.cpp; counted from its ops).
//
// Where the operands live. Each phase is a set of short dot products whose inputs the previous
// phase wrote, so a phase costs the latency of its loads. A first version kept the activations
// in global memory: on an H100 at the cnn's batch 8 its forward took 18.8 µs and its backward
// 27.8 µs (ncu), about 2 µs a phase, some ten L2 round trips one after another in a thread's
// dot product; we think its reads of what the phase before stored miss L1 (not profiled
// further). So when they fit one block's shared memory (the cnn's head up to batch 64 both
// ways, the forward to 128), the kernel first copies both nets' weights there, keeps the work
// buffer (and the backward's scratch) there, and at the end copies the work buffer out to global
// memory, where the backward and the caller's y0 / y1 read it. The phases themselves are the
// same code either way: only the pointers they are given differ. Larger calls run from global
// memory as before. Staging is on by default (it3_head_staging(); IDEM_IT3_HEAD_STAGED=off
// runs every call from global memory): it is faster from batch 32 on and about level at 8,
// where a phase does not wait on global memory. The copy goes segment by segment: one
// block_stage over a list of the segments was tried and was no faster. (Numbers in
// docs/performance.md, "The staged fused head".) (The backward stages all of both nets, though
// it reads only the W_l and F's E: about 3 KB more than it needs at the cnn's widths, kept for
// one staging routine both ways.)
#include <cuda_runtime.h>

#include "core/kernels/it3_head_args.h"
#include "cuda/common.cuh"
#include "cuda/dynamic_shared_memory.cuh"

namespace idem::cuda {

namespace {

struct BlockRun {
  template <typename F>
  __device__ void operator()(int count, F&& fn) const {
    for (int t = threadIdx.x; t < count; t += blockDim.x) fn(t);
    __syncthreads();
  }
};

// Elements of one net's weights (E, e, then W_l, b_l per layer): what staging it takes.
int net_elements(const It3HeadParams& p) {
  int n = p.widths[0] * p.signal + p.widths[0];
  for (int l = 0; l < p.layers; ++l) n += p.widths[l + 1] * p.widths[l] + p.widths[l + 1];
  return n;
}

// Shared-memory bytes of a staged call: the forward holds its work buffer and the nets it reads
// (f, and F with the loss); the backward the work buffer, its scratch and both nets.
size_t staged_bytes(const It3HeadParams& p, bool backward) {
  const It3HeadLayout o = it3_head_layout(p);
  const int floats = backward ? o.work + o.scratch + 2 * net_elements(p)
                              : o.work + net_elements(p) * (p.loss ? 2 : 1);
  return size_t(floats) * sizeof(float);
}

// Copies n floats from src to the shared array at `at` (block-strided; the caller's barrier
// makes them visible) and returns where they now are, advancing `at`.
__device__ const float* stage(const float* src, int n, float*& at) {
  float* dst = at;
  for (int t = threadIdx.x; t < n; t += blockDim.x) dst[t] = src[t];
  at += n;
  return dst;
}

__device__ void stage_net(const It3HeadParams& p, it3_head::Net<float>& net, float*& at) {
  const int n0 = p.widths[0];
  net.ew = stage(net.ew, n0 * p.signal, at);
  net.eb = stage(net.eb, n0, at);
  for (int l = 0; l < p.layers; ++l) {
    net.w[l] = stage(net.w[l], p.widths[l + 1] * p.widths[l], at);
    net.b[l] = stage(net.b[l], p.widths[l + 1], at);
  }
}

template <bool kStaged>
__global__ void __launch_bounds__(kIt3HeadThreads) it3_head_fwd_kernel(it3_head::FwdArgs<float> a) {
  if constexpr (!kStaged) {
    it3_head::forward(a, BlockRun{});
  } else {
    extern __shared__ float smem[];
    const int work = it3_head_layout(a.p).work;
    it3_head::FwdArgs<float> s = a;
    float* at = smem;
    s.work = at;  // written by the phases: nothing to copy in
    at += work;
    stage_net(a.p, s.f, at);
    if (a.p.loss) stage_net(a.p, s.F, at);
    __syncthreads();
    it3_head::forward(s, BlockRun{});  // ends with a barrier
    for (int t = threadIdx.x; t < work; t += blockDim.x) a.work[t] = s.work[t];
  }
}

template <bool kStaged>
__global__ void __launch_bounds__(kIt3HeadThreads) it3_head_bwd_kernel(it3_head::BwdArgs<float> a) {
  if constexpr (!kStaged) {
    it3_head::backward(a, BlockRun{});
  } else {
    extern __shared__ float smem[];
    const It3HeadLayout o = it3_head_layout(a.p);
    it3_head::BwdArgs<float> s = a;
    float* at = smem;
    s.work = stage(a.work, o.work, at);
    s.scratch = at;  // every scratch element is written before it is read: nothing to copy
    at += o.scratch;
    stage_net(a.p, s.f, at);
    stage_net(a.p, s.F, at);
    __syncthreads();
    it3_head::backward(s, BlockRun{});  // the outputs (gradients) go to global memory directly
  }
}

DynamicSharedMemory& fwd_smem() {
  static DynamicSharedMemory d(reinterpret_cast<const void*>(&it3_head_fwd_kernel<true>));
  return d;
}
DynamicSharedMemory& bwd_smem() {
  static DynamicSharedMemory d(reinterpret_cast<const void*>(&it3_head_bwd_kernel<true>));
  return d;
}

// The dynamic shared memory a call with `p` launches with: staged_bytes when it stages (see
// it3_head_staged), else 0 (the global-memory kernel).
size_t launch_smem(const It3HeadParams& p, int device, bool backward) {
  if (!it3_head_staging()) return 0;
  set_device(device);
  DynamicSharedMemory& smem = backward ? bwd_smem() : fwd_smem();
  const size_t bytes = staged_bytes(p, backward);
  return smem.fits(device, bytes, backward ? "it3_head_loss_backward" : "it3_head_loss") ? bytes : 0;
}

}  // namespace

bool it3_head_staged(const It3HeadParams& p, int device, bool backward) {
  return launch_smem(p, device, backward) > 0;
}

void it3_head_fwd(const Tensor& loss, const Tensor& work, const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p) {
  const int device = work.device().index;
  set_device(device);
  const size_t smem = launch_smem(p, device, false);
  const auto kernel = smem > 0 ? it3_head_fwd_kernel<true> : it3_head_fwd_kernel<false>;
  kernel<<<1, kIt3HeadThreads, smem, current_stream()>>>(
      it3_head::fwd_args<float>(loss, work, h_f, h_F, s0, f, F, p));
  IDEM_LAUNCH_CHECK("it3_head_loss");
}

void it3_head_bwd(const std::vector<Tensor>& df, const Tensor& dh_f, const Tensor& dh_F,
                  const Tensor& scratch, const Tensor& g, const Tensor& work, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p) {
  const int device = work.device().index;
  set_device(device);
  const size_t smem = launch_smem(p, device, true);
  const auto kernel = smem > 0 ? it3_head_bwd_kernel<true> : it3_head_bwd_kernel<false>;
  kernel<<<1, kIt3HeadThreads, smem, current_stream()>>>(
      it3_head::bwd_args<float>(df, dh_f, dh_F, scratch, g, work, s0, f, F, p));
  IDEM_LAUNCH_CHECK("it3_head_loss_backward");
}

}  // namespace idem::cuda
