// CUDA normalization (batch/layer/group norm through one canonical shape) and dropout, f32.
// Contract: core/kernels/norm.h; reference: core/cpu/norm.cpp.
//
// Kernels:
//  - norm_fwd_block_kernel: one block per statistics group: mean, then the centred sum of
//    squares (two passes, no E[x²]−E[x]² cancellation), then y; thread 0 writes mean/rstd and
//    updates the running statistics in place (batch_norm training). One launch per forward.
//  - norm_fwd_stats_map_kernel: given statistics (batch_norm evaluation), elementwise.
//  - norm_bwd_data_block_kernel: one block per group: Σ g·w and Σ g·w·x̂, then dx; when the
//    statistics and affine views coincide (batch_norm) it also sums Σ g and Σ g·x̂, which are
//    dbias and dweight: the whole batch_norm backward is one launch.
//  - norm_bwd_data_map_kernel: dx = g·w·rstd for fixed statistics, elementwise.
//  - norm_bwd_affine_block_kernel: one block per channel: dweight, dbias (layer/group norm, and
//    batch_norm in evaluation mode).
//  - dropout_fwd_philox_kernel: elementwise Philox mask (also the backward, applied to g).
// Every block reduction uses a fixed tree (warp shuffles, then one warp over the per-warp
// partials: block_sum in cuda/device_utils.cuh), so results are deterministic; no atomics.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/kernels/norm.h"
#include "core/philox.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kMapThreads = 256;
constexpr int kMaxBlockThreads = 256;

// NormShape by value for device code.
struct Dims {
  int64_t O, G, I;  // statistics view (stat_outer, groups, stat_inner)
  int64_t A, C, B;  // affine view (aff_outer, channels, aff_inner)
};

Dims dims_of(const NormShape& s) {
  return {s.stat_outer, s.groups, s.stat_inner, s.aff_outer, s.channels, s.aff_inner};
}

float* fptr(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

// Threads for a block that reduces n elements: a multiple of 32, at most kMaxBlockThreads.
int block_threads(int64_t n) {
  const int64_t t = std::min<int64_t>(std::max<int64_t>(n, 1), kMaxBlockThreads);
  return static_cast<int>((t + 31) / 32 * 32);
}

unsigned block_grid(int64_t blocks) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

// Flat index of the j-th element (j < O*I) of group g in the statistics view.
__device__ __forceinline__ int64_t group_elem(const Dims& d, int64_t g, int64_t j) {
  const int64_t o = j / d.I, i = j - o * d.I;
  return (o * d.G + g) * d.I + i;
}
__device__ __forceinline__ int64_t channel_of(const Dims& d, int64_t k) {
  return (k / d.B) % d.C;
}
__device__ __forceinline__ int64_t group_of(const Dims& d, int64_t k) {
  return (k / d.I) % d.G;
}

// ---------------------------------------------------------------------------------------------
// Forward.

__global__ void norm_fwd_block_kernel(float* __restrict__ y, float* __restrict__ mean,
                                      float* __restrict__ rstd, float* __restrict__ run_mean,
                                      float* __restrict__ run_var, const float* __restrict__ x,
                                      const float* __restrict__ w, const float* __restrict__ b,
                                      Dims d, float eps, float momentum) {
  __shared__ float scratch[32];
  const int64_t R = d.O * d.I;
  const float inv_r = 1.f / static_cast<float>(R);
  for (int64_t g = blockIdx.x; g < d.G; g += gridDim.x) {
    float acc[1] = {0.f};
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) acc[0] += __ldg(x + group_elem(d, g, j));
    block_sum<1>(acc, scratch);
    const float mu = acc[0] * inv_r;
    float sq[1] = {0.f};
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
      const float c = __ldg(x + group_elem(d, g, j)) - mu;
      sq[0] += c * c;
    }
    block_sum<1>(sq, scratch);
    const float r = 1.f / sqrtf(sq[0] * inv_r + eps);
    if (threadIdx.x == 0) {
      mean[g] = mu;
      rstd[g] = r;
      if (run_mean != nullptr) {
        // Unbiased variance for the running estimate, as torch (R > 1 checked by the op).
        run_mean[g] = (1.f - momentum) * run_mean[g] + momentum * mu;
        run_var[g] = (1.f - momentum) * run_var[g] + momentum * (sq[0] / static_cast<float>(R - 1));
      }
    }
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
      const int64_t k = group_elem(d, g, j);
      const int64_t c = channel_of(d, k);
      float v = (__ldg(x + k) - mu) * r;
      if (w != nullptr) v *= __ldg(w + c);
      if (b != nullptr) v += __ldg(b + c);
      y[k] = v;
    }
  }
}

__global__ void norm_fwd_stats_map_kernel(float* __restrict__ y, float* __restrict__ mean,
                                          float* __restrict__ rstd, const float* __restrict__ x,
                                          const float* __restrict__ mean_in,
                                          const float* __restrict__ var_in,
                                          const float* __restrict__ w, const float* __restrict__ b,
                                          Dims d, float eps, int64_t n) {
  for (const int64_t k : grid_stride(n)) {
    const int64_t g = group_of(d, k), c = channel_of(d, k);
    const float r = 1.f / sqrtf(__ldg(var_in + g) + eps);
    float v = (__ldg(x + k) - __ldg(mean_in + g)) * r;
    if (w != nullptr) v *= __ldg(w + c);
    if (b != nullptr) v += __ldg(b + c);
    y[k] = v;
    // The saved statistics (n >= G, so every group is covered).
    if (k < d.G) {
      mean[k] = __ldg(mean_in + k);
      rstd[k] = 1.f / sqrtf(__ldg(var_in + k) + eps);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward.

// FUSED: statistics view == affine view (batch_norm), so per-group Σ g and Σ g·x̂ are dbias and
// dweight of channel g.
template <bool FUSED>
__global__ void norm_bwd_data_block_kernel(float* __restrict__ dx, float* __restrict__ dw,
                                           float* __restrict__ db, const float* __restrict__ gout,
                                           const float* __restrict__ x,
                                           const float* __restrict__ mean,
                                           const float* __restrict__ rstd,
                                           const float* __restrict__ w, Dims d) {
  constexpr int K = FUSED ? 4 : 2;
  __shared__ float scratch[K * 32];
  const int64_t R = d.O * d.I;
  const float inv_r = 1.f / static_cast<float>(R);
  for (int64_t g = blockIdx.x; g < d.G; g += gridDim.x) {
    const float mu = __ldg(mean + g), r = __ldg(rstd + g);
    float acc[K];  // Σ g·w, Σ g·w·x̂ [, Σ g, Σ g·x̂]
#pragma unroll
    for (int q = 0; q < K; ++q) acc[q] = 0.f;
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
      const int64_t k = group_elem(d, g, j);
      const float gk = __ldg(gout + k);
      const float wk = w != nullptr ? __ldg(w + channel_of(d, k)) : 1.f;
      const float xh = (__ldg(x + k) - mu) * r;
      acc[0] += gk * wk;
      acc[1] += gk * wk * xh;
      if constexpr (FUSED) {
        acc[2] += gk;
        acc[3] += gk * xh;
      }
    }
    block_sum<K>(acc, scratch);
    if constexpr (FUSED) {
      if (threadIdx.x == 0) {
        if (dw != nullptr) dw[g] = acc[3];
        if (db != nullptr) db[g] = acc[2];
      }
    }
    if (dx != nullptr) {
      // dx = rstd/R · (R·g·w − Σ g·w − x̂·Σ g·w·x̂)
      const float mean_gw = acc[0] * inv_r, mean_gwx = acc[1] * inv_r;
      for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
        const int64_t k = group_elem(d, g, j);
        const float wk = w != nullptr ? __ldg(w + channel_of(d, k)) : 1.f;
        const float xh = (__ldg(x + k) - mu) * r;
        dx[k] = r * (__ldg(gout + k) * wk - mean_gw - xh * mean_gwx);
      }
    }
  }
}

__global__ void norm_bwd_data_map_kernel(float* __restrict__ dx, const float* __restrict__ gout,
                                         const float* __restrict__ rstd,
                                         const float* __restrict__ w, Dims d, int64_t n) {
  for (const int64_t k : grid_stride(n)) {
    const float wk = w != nullptr ? __ldg(w + channel_of(d, k)) : 1.f;
    dx[k] = __ldg(gout + k) * wk * __ldg(rstd + group_of(d, k));
  }
}

__global__ void norm_bwd_affine_block_kernel(float* __restrict__ dw, float* __restrict__ db,
                                             const float* __restrict__ gout,
                                             const float* __restrict__ x,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ rstd, Dims d) {
  __shared__ float scratch[2 * 32];
  const int64_t per = d.A * d.B;  // elements of one channel
  for (int64_t c = blockIdx.x; c < d.C; c += gridDim.x) {
    float acc[2] = {0.f, 0.f};  // Σ g·x̂, Σ g
    for (int64_t j = threadIdx.x; j < per; j += blockDim.x) {
      const int64_t a = j / d.B, bi = j - a * d.B;
      const int64_t k = (a * d.C + c) * d.B + bi;
      const int64_t g = group_of(d, k);
      const float gk = __ldg(gout + k);
      acc[0] += gk * (__ldg(x + k) - __ldg(mean + g)) * __ldg(rstd + g);
      acc[1] += gk;
    }
    block_sum<2>(acc, scratch);
    if (threadIdx.x == 0) {
      if (dw != nullptr) dw[c] = acc[0];
      if (db != nullptr) db[c] = acc[1];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout.

__global__ void dropout_fwd_philox_kernel(float* __restrict__ out, const float* __restrict__ in,
                                          int64_t n, uint64_t seed, uint64_t offset,
                                          uint32_t keep_threshold, float scale) {
  for (const int64_t k : grid_stride(n)) {
    uint32_t r[4];
    philox_block(seed, static_cast<uint64_t>(k), offset, r);
    out[k] = (r[0] >> 8) >= keep_threshold ? __ldg(in + k) * scale : 0.f;
  }
}

}  // namespace

void norm_fwd(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
              const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
              const Tensor& running_var, const NormShape& s, const NormParams& p) {
  if (s.numel() == 0) return;
  set_device(x.device().index);
  const Dims d = dims_of(s);
  norm_fwd_block_kernel<<<block_grid(s.groups), block_threads(s.group_size()), 0,
                          current_stream()>>>(
      y.data<float>(), mean.data<float>(), rstd.data<float>(), fptr(running_mean),
      fptr(running_var), x.data<float>(), fptr(weight), fptr(bias), d, static_cast<float>(p.eps),
      static_cast<float>(p.momentum));
  IDEM_LAUNCH_CHECK("norm");
}

void norm_fwd_stats(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor& mean_in, const Tensor& var_in, const Tensor& weight,
                    const Tensor& bias, const NormShape& s, const NormParams& p) {
  const int64_t n = s.numel();
  if (n == 0) return;
  set_device(x.device().index);
  launch_grid_stride(IDEM_SITE("norm"), n, kMapThreads, norm_fwd_stats_map_kernel,
                     y.data<float>(), mean.data<float>(), rstd.data<float>(), x.data<float>(),
                     mean_in.data<float>(), var_in.data<float>(), fptr(weight), fptr(bias),
                     dims_of(s), static_cast<float>(p.eps), n);
}

void norm_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& g,
              const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight,
              const NormShape& s, bool batch_stats) {
  const int64_t n = s.numel();
  if (n == 0) return;
  set_device(x.device().index);
  const cudaStream_t st = current_stream();
  const Dims d = dims_of(s);
  float* pdx = fptr(dx);
  float* pdw = fptr(dweight);
  float* pdb = fptr(dbias);
  const bool want_affine = pdw != nullptr || pdb != nullptr;
  const bool fused = batch_stats && s.affine_is_stats();
  if (batch_stats && (pdx != nullptr || (fused && want_affine))) {
    const unsigned grid = block_grid(s.groups);
    const int threads = block_threads(s.group_size());
    if (fused) {
      norm_bwd_data_block_kernel<true>
          <<<grid, threads, 0, st>>>(pdx, pdw, pdb, g.data<float>(), x.data<float>(),
                                     mean.data<float>(), rstd.data<float>(), fptr(weight), d);
      IDEM_LAUNCH_CHECK("norm_backward");
    } else {
      norm_bwd_data_block_kernel<false>
          <<<grid, threads, 0, st>>>(pdx, nullptr, nullptr, g.data<float>(), x.data<float>(),
                                     mean.data<float>(), rstd.data<float>(), fptr(weight), d);
      IDEM_LAUNCH_CHECK("norm_backward");
    }
  } else if (pdx != nullptr) {
    launch_grid_stride(IDEM_SITE("norm_backward"), n, kMapThreads, norm_bwd_data_map_kernel, pdx,
                       g.data<float>(), rstd.data<float>(), fptr(weight), d, n);
  }
  if (want_affine && !fused) {
    norm_bwd_affine_block_kernel<<<block_grid(s.channels), block_threads(s.aff_outer * s.aff_inner),
                                   0, st>>>(pdw, pdb, g.data<float>(), x.data<float>(),
                                            mean.data<float>(), rstd.data<float>(), d);
    IDEM_LAUNCH_CHECK("norm_backward");
  }
}

void dropout_apply(const Tensor& out, const Tensor& in, const DropoutParams& p) {
  const int64_t n = in.numel();
  if (n == 0) return;
  set_device(in.device().index);
  launch_grid_stride(IDEM_SITE("dropout"), n, kMapThreads, dropout_fwd_philox_kernel,
                     out.data<float>(), in.data<float>(), n, p.seed, p.offset, p.keep_threshold(),
                     static_cast<float>(p.scale()));
}

}  // namespace idem::cuda
