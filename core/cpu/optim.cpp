// CPU fused optimizer update: the reference for cuda/kernels/optim.cu. Contract:
// core/kernels/optim.h; the per-element formulas, shared with the CUDA kernel:
// core/kernels/optim_math.h. Every scalar is converted to the parameter dtype first and each
// operation is rounded once (the kernel forbids FMA contraction; this file must not be built
// with FMA contraction either, e.g. -march=native -ffp-contract=fast), so the two agree bit for
// bit.
#include "core/kernels/optim.h"

#include "core/error.h"
#include "core/kernels/matmul.h"  // cpu_supports_avx512f
#include "core/kernels/optim_math.h"
#include "core/parallel.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace idem {

const char* optim_name(OptimKind k) {
  switch (k) {
    case OptimKind::sgd:
      return "SGD";
    case OptimKind::adam:
      return "Adam";
    case OptimKind::adamw:
      return "AdamW";
  }
  return "?";
}

namespace cpu {

namespace {

template <typename T>
void sgd_tensor(const OptimTensorDesc& d, const T* grad, const OptimStepParams& p, int64_t lo,
                int64_t hi) {
  T* w = static_cast<T*>(d.param);
  T* buf = static_cast<T*>(d.m);
  const bool use_mom = p.momentum != 0.0;
  const math::SgdCoeffs<T> c{static_cast<T>(p.lr), static_cast<T>(p.momentum),
                             static_cast<T>(1.0 - p.dampening), p.nesterov, p.first_step};
  const T wd = static_cast<T>(p.weight_decay);
  const bool use_wd = p.weight_decay != 0.0;
  auto grad_at = [&](int64_t i) {
    const T g = p.maximize ? -grad[i] : grad[i];
    return use_wd ? g + wd * w[i] : g;
  };
  // One loop per case, each of which the compiler vectorizes: f32 SGD with momentum on one
  // thread took 0.16 ns per element, against 0.9 with the buffer chosen per element in one loop
  // and 0.62 with the momentum branch inside the loop (2026-12-06, this repository's 2 cores).
  if (use_mom)
    for (int64_t i = lo; i < hi; ++i) math::sgd_step(c, grad_at(i), true, buf[i], w[i]);
  else
    for (int64_t i = lo; i < hi; ++i) math::sgd_step(c, grad_at(i), false, w[i], w[i]);
}

// One Adam update of elements [lo, hi). always_inline: the body is compiled into each of the
// instruction-set variants below, not called from them.
template <typename T>
__attribute__((always_inline)) inline void adam_loop(const OptimTensorDesc& d, const T* grad,
                                                     const OptimStepParams& p, int64_t lo,
                                                     int64_t hi) {
  T* w = static_cast<T*>(d.param);
  T* m = static_cast<T*>(d.m);
  T* v = static_cast<T*>(d.v);
  const bool decoupled = p.kind == OptimKind::adamw;
  const bool use_wd = p.weight_decay != 0.0;
  const T wd = static_cast<T>(p.weight_decay);
  const T decay = static_cast<T>(1.0 - p.lr * p.weight_decay);
  const math::AdamCoeffs<T> c =
      math::adam_coeffs<T>(p.beta1, p.beta2, p.eps, {p.step_size, p.bias_correction2_sqrt});
  for (int64_t i = lo; i < hi; ++i) {
    T g = p.maximize ? -grad[i] : grad[i];
    T x = w[i];
    if (use_wd) {
      if (decoupled)
        x = x * decay;
      else
        g = g + wd * x;
    }
    T mi = m[i], vi = v[i];
    math::adam_step(c, g, mi, vi, x);
    m[i] = mi;
    v[i] = vi;
    w[i] = x;
  }
}

// The f32 update is bound by its square root and two divisions per element, which this file's
// baseline flags (SSE2) issue four lanes at a time: 45 % of an mlp_256 training step at batch
// 8 (135 k parameters, about 0.8 ns per element). The same loop (the one scalar formula,
// math::adam_step) compiled for AVX2 (8 lanes) or AVX-512 (16 lanes) and picked at run time
// mirrors it exactly: the same correctly rounded operations in the same order per element
// (contraction stays off for this file), so every variant gives the same bits, which
// tests/optim_test.cpp (AdamF32VectorVariantsGiveTheBaselineBits) checks against the baseline.
void adam_f32_sse2(const OptimTensorDesc& d, const float* g, const OptimStepParams& p, int64_t lo,
                   int64_t hi) {
  adam_loop<float>(d, g, p, lo, hi);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) void adam_f32_avx2(const OptimTensorDesc& d, const float* g,
                                                    const OptimStepParams& p, int64_t lo,
                                                    int64_t hi) {
  adam_loop<float>(d, g, p, lo, hi);
}

__attribute__((target("avx512f,prefer-vector-width=512"))) void adam_f32_avx512(
    const OptimTensorDesc& d, const float* g, const OptimStepParams& p, int64_t lo, int64_t hi) {
  adam_loop<float>(d, g, p, lo, hi);
}
#endif

using AdamF32 = void (*)(const OptimTensorDesc&, const float*, const OptimStepParams&, int64_t,
                         int64_t);

AdamF32 adam_f32_for(AdamIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return bool(__builtin_cpu_supports("avx2"));
  }();
  const bool avx512 = cpu_supports_avx512f();
  if (isa == AdamIsa::best) isa = avx512 ? AdamIsa::avx512 : avx2 ? AdamIsa::avx2 : AdamIsa::sse2;
  if ((isa == AdamIsa::avx512 && !avx512) || (isa == AdamIsa::avx2 && !avx2))
    fail("optim_step", "the ", isa == AdamIsa::avx512 ? "AVX-512" : "AVX2",
         " Adam update was asked for, but this CPU lacks it");
  if (isa == AdamIsa::avx512) return adam_f32_avx512;
  if (isa == AdamIsa::avx2) return adam_f32_avx2;
#else
  if (isa != AdamIsa::best && isa != AdamIsa::sse2)
    fail("optim_step", "a vector Adam update was asked for, but this build has none (not x86-64)");
#endif
  return adam_f32_sse2;
}

template <typename T>
void adam_tensor(const OptimTensorDesc& d, const T* grad, const OptimStepParams& p, int64_t lo,
                 int64_t hi, AdamIsa isa) {
  if constexpr (std::is_same_v<T, float>)
    adam_f32_for(isa)(d, grad, p, lo, hi);
  else
    adam_loop<T>(d, grad, p, lo, hi);
}

// Elements per work item. Every element is updated on its own, so the split (fixed by the
// parameter sizes) cannot change a bit.
constexpr int64_t kChunk = 1 << 14;
// Elements from which a step is worth waking a sleeping worker for (~4 MB per array).
constexpr int64_t kWakeWorthy = int64_t(1) << 20;

template <typename T>
void step_typed(const std::vector<OptimTensorDesc>& table, const std::vector<const void*>& grads,
                const OptimStepParams& p, AdamIsa isa) {
  struct Piece {
    size_t t;
    int64_t lo, hi;
  };
  std::vector<Piece> pieces;
  for (size_t t = 0; t < table.size(); ++t) {
    if (!grads[t]) continue;
    for (int64_t lo = 0; lo < table[t].numel; lo += kChunk)
      pieces.push_back({t, lo, std::min(table[t].numel, lo + kChunk)});
  }
  // Small models (every piece of the table under ~2 chunks) stay on the calling thread, and so
  // does a mid-sized step while the pool's workers sleep: waking one costs tens of µs in a VM,
  // more than it saves on a step of under kWakeWorthy elements. mlp_256 at batch 8 (135 k
  // parameters, every GEMM on one thread) woke a worker for each Adam step, and 2 threads took
  // 328–400 µs per adaptation against 317 at 1. Right after split GEMMs (batch 64) the workers
  // are still spinning and the step splits. Either way the bits are the same (see kChunk).
  int64_t total = 0;
  for (const Piece& pc : pieces) total += pc.hi - pc.lo;
  const bool split = total > 2 * kChunk && (total >= kWakeWorthy || pool_stats().sleeping == 0);
  const int64_t grain = split ? 1 : int64_t(pieces.size()) + 1;
  parallel_for(int64_t(pieces.size()), grain, [&](int64_t a, int64_t b) {
    for (int64_t k = a; k < b; ++k) {
      const Piece& pc = pieces[size_t(k)];
      const T* g = static_cast<const T*>(grads[pc.t]);
      if (p.kind == OptimKind::sgd)
        sgd_tensor<T>(table[pc.t], g, p, pc.lo, pc.hi);
      else
        adam_tensor<T>(table[pc.t], g, p, pc.lo, pc.hi, isa);
    }
  });
}

}  // namespace

void optim_step(const std::vector<OptimTensorDesc>& table, const std::vector<const void*>& grads,
                DType dtype, const OptimStepParams& p, AdamIsa isa) {
  IDEM_CHECK(grads.size() == table.size(), "optim_step", "got ", grads.size(),
             " gradient pointers for ", table.size(), " parameters");
  IDEM_DISPATCH_FLOAT(dtype, "optim_step", [&] { step_typed<scalar_t>(table, grads, p, isa); });
}

}  // namespace cpu
}  // namespace idem
