// CUDA fused optimizer update: one launch updates every parameter tensor of an optimizer
// (up to kOptimMaxTensorsPerLaunch tensors per launch). Contract: core/kernels/optim.h;
// reference: core/cpu/optim.cpp.
//
// Work split: tensor t owns blocks [block_begin[t], block_begin[t] + ceil(numel/2048)) of the
// launch; a block finds its tensor by binary search over the descriptor table (resident on the
// GPU since the optimizer was built) and its threads stride over that block's 2048 elements.
// One thread owns each element, so there are no atomics and results are deterministic. Gradient
// pointers come by value (they move every step); a null pointer skips the tensor.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/kernels/optim.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

struct GradPtrs {
  const float* g[kOptimMaxTensorsPerLaunch];
};

// Scalars converted to f32 on the host, in the same way the CPU kernel converts them.
struct StepScalars {
  float lr, wd, decay, momentum, damp;    // damp = 1 - dampening; decay = 1 - lr*wd (AdamW)
  float w1, b2, w2, step_size, bc2, eps;  // w1 = 1-β1, w2 = 1-β2
  int kind;                               // OptimKind as int
  int maximize, use_wd, use_mom, nesterov, first_step;
};

// Index of the last tensor in [lo, hi) whose block_begin <= b. Tensors with no blocks share
// their block_begin with the next tensor, so the last such tensor is the one that owns b.
__device__ int64_t owner_of(const OptimTensorDesc* __restrict__ table, int64_t lo, int64_t hi,
                            int64_t b) {
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (table[mid].block_begin <= b)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

__global__ void optim_step_fused_kernel(const OptimTensorDesc* __restrict__ table, int64_t first,
                                        int64_t count, int64_t block_base, GradPtrs grads,
                                        StepScalars s) {
  const int64_t b = block_base + blockIdx.x;
  const int64_t t = owner_of(table, first, first + count, b);
  const float* __restrict__ grad = grads.g[t - first];
  if (grad == nullptr) return;  // not part of this step
  const OptimTensorDesc d = table[t];
  const int64_t begin = (b - d.block_begin) * kOptimBlockElems;
  int64_t end = begin + kOptimBlockElems;
  if (end > d.numel) end = d.numel;
  float* __restrict__ w = static_cast<float*>(d.param);
  float* __restrict__ m = static_cast<float*>(d.m);
  float* __restrict__ v = static_cast<float*>(d.v);

  if (s.kind == static_cast<int>(OptimKind::sgd)) {
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      float g = s.maximize ? -grad[i] : grad[i];
      if (s.use_wd) g = g + s.wd * w[i];
      if (s.use_mom) {
        const float bv = s.first_step ? g : s.momentum * m[i] + s.damp * g;
        m[i] = bv;
        g = s.nesterov ? g + s.momentum * bv : bv;
      }
      w[i] = w[i] - s.lr * g;
    }
  } else {
    const bool decoupled = s.kind == static_cast<int>(OptimKind::adamw);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      float g = s.maximize ? -grad[i] : grad[i];
      float x = w[i];
      if (s.use_wd) {
        if (decoupled)
          x = x * s.decay;
        else
          g = g + s.wd * x;
      }
      const float mo = m[i], vo = v[i];
      const float mi = mo + s.w1 * (g - mo);
      const float vi = s.b2 * vo + s.w2 * (g * g);
      m[i] = mi;
      v[i] = vi;
      const float denom = sqrtf(vi) / s.bc2 + s.eps;
      w[i] = x - s.step_size * (mi / denom);
    }
  }
}

}  // namespace

void optim_step(const std::vector<OptimTensorDesc>& table, const void* device_table,
                const std::vector<const void*>& grads, const OptimStepParams& p, int device) {
  const char* op = "optim_step";
  IDEM_CHECK(grads.size() == table.size(), op, "got ", grads.size(), " gradient pointers for ",
             table.size(), " parameters");
  if (table.empty()) return;
  StepScalars s{};
  s.lr = static_cast<float>(p.lr);
  s.wd = static_cast<float>(p.weight_decay);
  s.decay = static_cast<float>(1.0 - p.lr * p.weight_decay);
  s.momentum = static_cast<float>(p.momentum);
  s.damp = static_cast<float>(1.0 - p.dampening);
  s.w1 = static_cast<float>(1.0 - p.beta1);
  s.b2 = static_cast<float>(p.beta2);
  s.w2 = static_cast<float>(1.0 - p.beta2);
  s.step_size = static_cast<float>(p.step_size);
  s.bc2 = static_cast<float>(p.bias_correction2_sqrt);
  s.eps = static_cast<float>(p.eps);
  s.kind = static_cast<int>(p.kind);
  s.maximize = p.maximize;
  s.use_wd = p.weight_decay != 0.0;
  s.use_mom = p.momentum != 0.0;
  s.nesterov = p.nesterov;
  s.first_step = p.first_step;

  set_device(device);
  const cudaStream_t st = current_stream();
  const auto* dtab = static_cast<const OptimTensorDesc*>(device_table);
  const int64_t n = static_cast<int64_t>(table.size());
  auto blocks_of = [](int64_t numel) { return (numel + kOptimBlockElems - 1) / kOptimBlockElems; };
  for (int64_t first = 0; first < n; first += kOptimMaxTensorsPerLaunch) {
    const int64_t count = std::min<int64_t>(kOptimMaxTensorsPerLaunch, n - first);
    GradPtrs gp{};
    bool any = false;
    for (int64_t k = 0; k < count; ++k) {
      gp.g[k] = static_cast<const float*>(grads[first + k]);
      any = any || gp.g[k] != nullptr;
    }
    if (!any) continue;
    const OptimTensorDesc& last = table[first + count - 1];
    const int64_t block_base = table[first].block_begin;
    const int64_t num_blocks = last.block_begin + blocks_of(last.numel) - block_base;
    if (num_blocks == 0) continue;  // only empty tensors
    IDEM_CHECK(num_blocks <= 0x7fffffffLL, op, "too many blocks (", num_blocks, ")");
    optim_step_fused_kernel<<<static_cast<unsigned>(num_blocks), kOptimThreads, 0, st>>>(
        dtab, first, count, block_base, gp, s);
    IDEM_LAUNCH_CHECK(op);
  }
}

}  // namespace idem::cuda
