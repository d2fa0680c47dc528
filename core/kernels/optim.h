// Kernel contract: the fused optimizer update (SGD with momentum/Nesterov, Adam, AdamW).
// cpu:: in core/cpu/optim.cpp, cuda:: in cuda/kernels/optim.cu, stubs in cuda/no_cuda.cpp.
//
// One call updates every parameter of an optimizer. The parameters are described by a table of
// OptimTensorDesc that the optimizer builds once (and, on a GPU, uploads once) when it is
// created: parameter, state pointers and sizes never change afterwards. What does change from
// step to step is where the gradients live (the autograd engine hands every backward a fresh
// gradient tensor), so gradient pointers travel by value as kernel arguments: no host->device
// copy, no allocation and no host synchronization per step, which keeps the step capturable in a
// CUDA graph. Per-step scalars (lr, bias corrections, ...) are computed on the host from the
// host-side step count and passed by value too.
//
// Update rules (PyTorch torch.optim, single-tensor "for-loop" semantics; g = -grad if maximize):
//   SGD:   g += wd·p;  if momentum: buf = first ? g : momentum·buf + (1-dampening)·g;
//          g = nesterov ? g + momentum·buf : buf;   p -= lr·g
//   Adam:  g += wd·p;  m = m + (1-β1)(g-m);  v = β2·v + (1-β2)·g²;
//          p -= step_size · m / (sqrt(v)/bc2_sqrt + eps),  step_size = lr/(1-β1^t),
//          bc2_sqrt = sqrt(1-β2^t)
//   AdamW: p *= 1 - lr·wd, then Adam without the wd·p term.
// The arithmetic is done in the parameter's dtype (f32 on the GPU), in the same order on both
// devices, each operation rounded once (no FMA contraction on the GPU), so CPU and CUDA agree
// bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace idem {

enum class OptimKind : uint8_t { sgd, adam, adamw };
const char* optim_name(OptimKind k);

// The fused CUDA kernel gives each updated tensor ceil(numel / kOptimBlockElems) consecutive
// blocks of kOptimThreads threads (each thread owns kOptimBlockElems / kOptimThreads elements).
constexpr int64_t kOptimBlockElems = 2048;
constexpr int kOptimThreads = 256;
// Gradient pointers passed by value in one launch (2 KiB of the 4 KiB kernel-argument space);
// an optimizer with more parameter tensors is updated in ceil(n / 256) launches.
constexpr int kOptimMaxTensorsPerLaunch = 256;

// One parameter tensor as the kernels see it. Plain pointers: the optimizer owns the tensors
// and keeps them alive as long as the table.
struct OptimTensorDesc {
  void* param = nullptr;  // numel elements of the optimizer's dtype
  void* m = nullptr;      // SGD momentum buffer / Adam exp_avg; null for SGD without momentum
  void* v = nullptr;      // Adam exp_avg_sq; null for SGD
  int64_t numel = 0;
};

// Scalars of one step, computed on the host (in double) for one step count t.
struct OptimStepParams {
  OptimKind kind = OptimKind::adam;
  int64_t step = 1;  // t: this step's count for the parameters updated by this call
  double lr = 1e-3;
  double weight_decay = 0.0;
  bool maximize = false;
  // SGD
  double momentum = 0.0, dampening = 0.0;
  bool nesterov = false;
  bool first_step = false;  // t == 1: the momentum buffer is initialised with g (no dampening)
  // Adam / AdamW
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double step_size = 0.0;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt = 1.0;  // sqrt(1 - beta2^t)
};

namespace cpu {
// Updates table[i] with grads[i] for every i whose grads[i] is not null (a null gradient means
// "this parameter takes no part in this step": neither it nor its state changes).
// requires: grads.size() == table.size(); all tensors of dtype `dtype` (f32 or f64) on the CPU,
// pointers valid for numel elements; m (and v for Adam/AdamW) present as the kind needs.
// The instruction set of the f32 Adam/AdamW loop: best = the widest this CPU has. Every choice
// gives the same bits (tests compare them); a named one the CPU lacks is an idem::Error. f64 and
// SGD always run the baseline loop.
enum class AdamIsa { best, sse2, avx2, avx512 };
void optim_step(const std::vector<OptimTensorDesc>& table, const std::vector<const void*>& grads,
                DType dtype, const OptimStepParams& p, AdamIsa isa = AdamIsa::best);
}  // namespace cpu

namespace cuda {
// The same update in one launch per kOptimMaxTensorsPerLaunch tensors (none for a group whose
// gradients are all null), on current_stream() of `device`. `table` is the host copy: it gives
// the launch geometry, and the pointers themselves when few tensors take part (they then travel
// by value); `device_table` is the same array resident on the GPU (uploaded once by the
// optimizer), read by launches with many tensors. f32 only. Never allocates, never
// synchronizes.
void optim_step(const std::vector<OptimTensorDesc>& table, const void* device_table,
                const std::vector<const void*>& grads, const OptimStepParams& p, int device);
}  // namespace cuda

}  // namespace idem
