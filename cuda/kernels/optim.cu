// CUDA fused optimizer update: one launch updates every parameter tensor of an optimizer
// (up to kOptimMaxTensorsPerLaunch tensors per launch). Contract: core/kernels/optim.h;
// reference: core/cpu/optim.cpp.
//
// Work split: the host lists the tensors that take part in this launch (non-null gradient,
// numel > 0) and gives the k-th of them ceil(numel/2048) consecutive blocks starting at
// block_begin[k]; block_begin travels by value in the kernel arguments. One thread owns each
// element (no atomics, deterministic); each of the 256 threads of a block owns up to 8 elements
// of the block's 2048 and issues all their loads before any store.
//
// Why it is laid out this way: the IT³ step updates a handful of small tensors (mlp_tab: 8
// tensors, 1 291 floats), so the kernel's time is its chain of dependent memory round trips,
// not bandwidth. Two layouts, picked per launch by how many tensors take part:
//   - few tensors (<= kSmallTensors): every pointer and size comes by value; a block finds its
//     tensor with an unrolled compare over the argument array (no memory round trip), then one
//     round of loads and one of stores.
//   - more: gradient pointers and block_begin by value (binary search in the argument space),
//     the tensor's param/m/v/numel from the descriptor table resident on the GPU (one extra
//     round trip, negligible next to the data of that many tensors).
// The per-element arithmetic is the CPU reference's, operation by operation, with no FMA
// contraction (math::rn_add and friends, core/kernels/optim_math.h), so CPU and CUDA results are equal bit for bit.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "core/kernels/optim.h"
#include "core/kernels/optim_math.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

constexpr int kPerThread = static_cast<int>(kOptimBlockElems / kOptimThreads);
static_assert(kOptimBlockElems == static_cast<int64_t>(kPerThread) * kOptimThreads,
              "a block's elements must split evenly over its threads");
static_assert(kOptimMaxTensorsPerLaunch <= 256, "TableArgs::index is 8 bits");

// Launches with at most this many participating tensors take every descriptor by value
// (1.4 KiB of arguments; mlp_tab has 8 tensors, a CNN with BatchNorm a few dozen).
constexpr int kSmallTensors = 32;

// Scalars converted to f32 on the host, in the same way the CPU kernel converts them.
struct StepScalars {
  math::AdamCoeffs<float> adam;
  math::SgdCoeffs<float> sgd;
  float wd, decay;  // decay = 1 - lr*wd (AdamW)
  int kind;         // OptimKind as int
  int maximize, use_wd, use_mom;
};

// Small layout: tensor k owns blocks [block_begin[k], block_begin[k+1]); entries past the last
// tensor hold INT_MAX so that the owner search below needs no count.
struct SmallArgs {
  float* w[kSmallTensors];
  float* m[kSmallTensors];  // null where the kind keeps no such state
  float* v[kSmallTensors];
  const float* g[kSmallTensors];
  int64_t numel[kSmallTensors];
  int32_t block_begin[kSmallTensors];
};

// Table layout: participant k is table[first + index[k]] with gradient g[k].
struct TableArgs {
  const float* g[kOptimMaxTensorsPerLaunch];
  int32_t block_begin[kOptimMaxTensorsPerLaunch];
  uint8_t index[kOptimMaxTensorsPerLaunch];
  int32_t count;
  int32_t first;
};

// The portable kernel-argument limit is 4 KiB (larger needs CUDA 12.1+ and costs launch time).
static_assert(sizeof(SmallArgs) + sizeof(StepScalars) <= 4096, "kernel arguments over 4 KiB");
static_assert(sizeof(TableArgs) + sizeof(StepScalars) + sizeof(void*) <= 4096,
              "kernel arguments over 4 KiB");

// Every operation below is a correctly rounded IEEE single operation that the compiler may not
// fuse into an FMA (math::rn_add and friends, the _rn intrinsics on the device): plain `a*b+c`
// would be contracted by nvcc wherever it sees fit (it did so in some paths and not in others),
// and the CPU reference (core/cpu/optim.cpp, which rounds each operation: x86-64 without -mfma)
// would then differ in the last bits.
using math::rn_add;
using math::rn_mul;

// Updates elements [begin, end) of one tensor (end - begin <= kOptimBlockElems). Thread x owns
// begin + x + j·kOptimThreads for j < kPerThread: coalesced, and every load of the thread is
// issued before its first store, so the block costs one memory round trip, not kPerThread.
// The arithmetic per element is exactly the CPU reference's (same operations, same order, each
// rounded once).
__device__ __forceinline__ void update_block(float* __restrict__ w, float* __restrict__ m,
                                             float* __restrict__ v, const float* __restrict__ grad,
                                             int64_t begin, int64_t end, const StepScalars& s) {
  const int64_t i0 = begin + threadIdx.x;
  float gr[kPerThread], wr[kPerThread], mr[kPerThread], vr[kPerThread];
  if (s.kind == static_cast<int>(OptimKind::sgd)) {
    // The momentum buffer is read only when the rule uses its old value.
    const bool read_m = s.use_mom && !s.sgd.first;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t i = i0 + static_cast<int64_t>(j) * kOptimThreads;
      mr[j] = 0.0f;
      if (i < end) {
        gr[j] = grad[i];
        wr[j] = w[i];
        if (read_m) mr[j] = m[i];
      }
    }
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t i = i0 + static_cast<int64_t>(j) * kOptimThreads;
      if (i < end) {
        float g = s.maximize ? -gr[j] : gr[j];
        if (s.use_wd) g = rn_add(g, rn_mul(s.wd, wr[j]));
        float x = wr[j];
        math::sgd_step(s.sgd, g, s.use_mom != 0, mr[j], x);
        if (s.use_mom) m[i] = mr[j];
        w[i] = x;
      }
    }
  } else {
    const bool decoupled = s.kind == static_cast<int>(OptimKind::adamw);
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t i = i0 + static_cast<int64_t>(j) * kOptimThreads;
      if (i < end) {
        gr[j] = grad[i];
        wr[j] = w[i];
        mr[j] = m[i];
        vr[j] = v[i];
      }
    }
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t i = i0 + static_cast<int64_t>(j) * kOptimThreads;
      if (i < end) {
        float g = s.maximize ? -gr[j] : gr[j];
        float x = wr[j];
        if (s.use_wd) {
          if (decoupled)
            x = rn_mul(x, s.decay);
          else
            g = rn_add(g, rn_mul(s.wd, x));
        }
        float mi = mr[j], vi = vr[j];
        math::adam_step(s.adam, g, mi, vi, x);
        m[i] = mi;
        v[i] = vi;
        w[i] = x;
      }
    }
  }
}

__global__ void __launch_bounds__(kOptimThreads)
    optim_step_small_kernel(const SmallArgs a, const StepScalars s) {
  const int32_t b = static_cast<int32_t>(blockIdx.x);
  // Owner = number of later starts <= b. Unrolled over constant indices: the compares read
  // the argument bank directly, with no dependent load in between.
  int t = 0;
#pragma unroll
  for (int k = 1; k < kSmallTensors; ++k) t += b >= a.block_begin[k] ? 1 : 0;
  const int64_t begin = static_cast<int64_t>(b - a.block_begin[t]) * kOptimBlockElems;
  const int64_t end = min(begin + kOptimBlockElems, a.numel[t]);
  update_block(a.w[t], a.m[t], a.v[t], a.g[t], begin, end, s);
}

__global__ void __launch_bounds__(kOptimThreads)
    optim_step_table_kernel(const OptimTensorDesc* __restrict__ table, const TableArgs a,
                            const StepScalars s) {
  const int32_t b = static_cast<int32_t>(blockIdx.x);
  // Last participant whose block_begin <= b (every participant owns >= 1 block).
  int lo = 0, hi = a.count;
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    if (a.block_begin[mid] <= b)
      lo = mid;
    else
      hi = mid;
  }
  const OptimTensorDesc d = table[a.first + a.index[lo]];
  const int64_t begin = static_cast<int64_t>(b - a.block_begin[lo]) * kOptimBlockElems;
  const int64_t end = min(begin + kOptimBlockElems, d.numel);
  update_block(static_cast<float*>(d.param), static_cast<float*>(d.m), static_cast<float*>(d.v),
               a.g[lo], begin, end, s);
}

int64_t blocks_of(int64_t numel) {
  return (numel + kOptimBlockElems - 1) / kOptimBlockElems;
}

}  // namespace

void optim_step(const std::vector<OptimTensorDesc>& table, const void* device_table,
                const std::vector<const void*>& grads, const OptimStepParams& p, int device) {
  const char* op = "optim_step";
  IDEM_CHECK(grads.size() == table.size(), op, "got ", grads.size(), " gradient pointers for ",
             table.size(), " parameters");
  if (table.empty()) return;
  StepScalars s{};
  s.adam = math::adam_coeffs<float>(p.beta1, p.beta2, p.eps, {p.step_size, p.bias_correction2_sqrt});
  s.sgd = {static_cast<float>(p.lr), static_cast<float>(p.momentum),
           static_cast<float>(1.0 - p.dampening), p.nesterov, p.first_step};
  s.wd = static_cast<float>(p.weight_decay);
  s.decay = static_cast<float>(1.0 - p.lr * p.weight_decay);
  s.kind = static_cast<int>(p.kind);
  s.maximize = p.maximize;
  s.use_wd = p.weight_decay != 0.0;
  s.use_mom = p.momentum != 0.0;

  set_device(device);
  const cudaStream_t st = current_stream();
  const auto* dtab = static_cast<const OptimTensorDesc*>(device_table);
  const int64_t n = static_cast<int64_t>(table.size());
  std::vector<int> part;  // participants of one launch, as offsets from `first`
  part.reserve(kOptimMaxTensorsPerLaunch);
  for (int64_t first = 0; first < n; first += kOptimMaxTensorsPerLaunch) {
    const int64_t count = std::min<int64_t>(kOptimMaxTensorsPerLaunch, n - first);
    part.clear();
    int64_t num_blocks = 0;
    for (int64_t k = 0; k < count; ++k)
      if (grads[first + k] != nullptr && table[first + k].numel > 0) {
        part.push_back(static_cast<int>(k));
        num_blocks += blocks_of(table[first + k].numel);
      }
    if (part.empty()) continue;  // nothing to update in this group
    IDEM_CHECK(num_blocks <= INT_MAX, op, "too many blocks (", num_blocks, ")");
    const int np = static_cast<int>(part.size());
    const unsigned grid = static_cast<unsigned>(num_blocks);
    int32_t block = 0;
    if (np <= kSmallTensors) {
      SmallArgs a{};
      for (int k = 0; k < kSmallTensors; ++k) {
        if (k >= np) {
          a.block_begin[k] = INT_MAX;
          continue;
        }
        const OptimTensorDesc& d = table[first + part[k]];
        a.w[k] = static_cast<float*>(d.param);
        a.m[k] = static_cast<float*>(d.m);
        a.v[k] = static_cast<float*>(d.v);
        a.g[k] = static_cast<const float*>(grads[first + part[k]]);
        a.numel[k] = d.numel;
        a.block_begin[k] = block;
        block += static_cast<int32_t>(blocks_of(d.numel));
      }
      optim_step_small_kernel<<<grid, kOptimThreads, 0, st>>>(a, s);
      IDEM_LAUNCH_CHECK(op);
    } else {
      TableArgs a{};
      a.count = np;
      a.first = static_cast<int32_t>(first);
      for (int k = 0; k < np; ++k) {
        a.g[k] = static_cast<const float*>(grads[first + part[k]]);
        a.index[k] = static_cast<uint8_t>(part[k]);
        a.block_begin[k] = block;
        block += static_cast<int32_t>(blocks_of(table[first + part[k]].numel));
      }
      optim_step_table_kernel<<<grid, kOptimThreads, 0, st>>>(dtab, a, s);
      IDEM_LAUNCH_CHECK(op);
    }
  }
}

}  // namespace idem::cuda
