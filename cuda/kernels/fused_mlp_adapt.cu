// CUDA: the whole IT³ adaptation of a small concat MLP in ONE launch. Contract:
// core/kernels/fused_mlp_adapt.h; reference (same phases, same order of every sum):
// core/cpu/fused_mlp_adapt.cpp.
//
// Why one kernel: at these sizes (≤ 256 wide, ≤ 256 rows) every op of the op-by-op path is a
// 2–4 µs launch doing well under a microsecond of work, so ~30 launches per adaptation cost
// far more than the arithmetic (docs/performance.md). Here the phases of the adaptation
// (reset, per layer: forward of f, forward of F, backward through F, backward through f with
// the optimizer update) run back to back inside one launch, separated by barriers:
//   - grid of 1 block (small models): __syncthreads() between phases;
//   - a grid that fits one thread-block cluster (sm_90, up to 16 blocks): the cluster's barrier;
//   - otherwise a cooperative grid (cudaLaunchCooperativeKernel), grid.sync() between phases.
// Nets whose widths are all under 64 go to the row kernel instead (fused_mlp_rows.cu) at up to
// kFusedMlpRowMaxBatch rows: a warp per row, two block barriers per step.
// Every phase is a grid-stride loop over its outputs; each output is one thread's sum over a
// fixed index range in a fixed order (a dot over 64 or more terms, a wide layer's forward or,
// up to 64 rows, input gradient: one warp's, 32 strided partial sums and a fixed xor tree), so there are no
// atomics and repeated calls give the same bits.
// Weights, moments and activations live in global memory (a few MB at most: L2-resident).
// The optimizer of layer l + 1 runs in the phase that computes layer l's gradients (layer l + 1's
// weights are no longer read then), and layer 1's update in the thread that computes its
// gradient: no phase of its own.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "core/env.h"
#include "core/kernels/fused_mlp_adapt.h"
#include "cuda/common.cuh"
#include "cuda/kernels/fused_mlp_device.cuh"

namespace idem::cuda {

namespace {

namespace cg = cooperative_groups;
using namespace fused_mlp;

// A barrier between phases: the block's when the grid is one block (a plain launch); the
// cluster's when the whole grid is one thread-block cluster (sm_90: a hardware barrier, with
// release/acquire at cluster scope, so the global-memory writes of one phase are visible to
// every block of the next); else the grid's (only valid in a cooperative launch).
__device__ __forceinline__ void phase_sync() {
  if (gridDim.x == 1) {
    __syncthreads();
    return;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (cg::this_cluster().num_blocks() == gridDim.x) {
    cg::this_cluster().sync();
    return;
  }
#endif
  cg::this_grid().sync();
}

// Forward of the network with θ (anchor false) or Θ on [x, s]: one phase per layer.
__device__ void forward(const FusedMlpAdaptParams& p, const Geo& g, bool anchor, const float* s,
                        float* acts, int t0, int stride) {
  for (int l = 1; l <= g.L; ++l) {
    const FusedMlpLayer& ly = p.layer[l - 1];
    const float* W = anchor ? ly.w0 : ly.w;
    const float* bias = anchor ? ly.b0 : ly.b;
    const int nin = p.widths[l - 1], nout = p.widths[l];
    const float* prev = l > 1 ? acts + g.off[l - 1] : nullptr;
    float* out = acts + g.off[l];
    const int n = g.B * nout;
    if (nin >= kFusedMlpWarpDotMinInputs) {
      // A warp per output; the loop bound is the same for every lane of a warp (o is
      // warp-uniform), so every lane reaches each shuffle.
      const int lane = t0 & 31;
      for (int o = t0 >> 5; o < n; o += stride >> 5) {
        const int b = o / nout, j = o - b * nout;
        const float* w = W + j * nin;
        float acc = 0.0f;
        if (prev) {
          const float* a = prev + b * nin;
          for (int i = lane; i < nin; i += 32) acc += a[i] * w[i];
        } else {
          for (int i = lane; i < nin; i += 32) acc += input_at(p, g, b, i, s) * w[i];
        }
        acc = warp_sum(acc);
        if (lane == 0) out[o] = layer_output(p, g, l, acc, bias[j]);
      }
    } else {
      for (int t = t0; t < n; t += stride) {
        const int b = t / nout, j = t - b * nout;
        const float* a = prev ? prev + b * nin : nullptr;
        out[t] = layer_output(p, g, l, forward_dot(p, g, W + j * nin, a, s, b, nin), bias[j]);
      }
    }
    phase_sync();
  }
}

// One input-gradient phase: for every row b and column c < ncols of W's columns c0 …,
// acc = Σ_j δ(b·nout + j)·W[j, c0 + c], handed to out(b·ncols + c, acc). Up to
// kFusedMlpWarpBackMaxBatch rows, a dot over kFusedMlpWarpDotMinInputs or more terms takes a
// warp (back_dot_warp), as the wide forward does: one thread's chain of nout dependent loads
// (256 for mlp_256) made these the slowest phases of a wide net's step. Otherwise a thread
// sums each output in j order (back_dot).
template <typename Delta, typename Out>
__device__ void input_grad_phase(const Geo& g, const float* W, int nin, int nout, int c0, int ncols, Delta delta,
                                 Out out, int t0, int stride) {
  const int n = g.B * ncols;
  if (nout >= kFusedMlpWarpDotMinInputs && g.B <= kFusedMlpWarpBackMaxBatch) {
    // o is warp-uniform, so every lane reaches the shuffles.
    const int lane = t0 & 31;
    for (int o = t0 >> 5; o < n; o += stride >> 5) {
      const int b = o / ncols, c = o - b * ncols;
      const int o0 = b * nout;
      const float acc = back_dot_warp([&](int j) { return delta(o0 + j); }, W + c0, nin, nout, c, lane);
      if (lane == 0) out(o, acc);
    }
  } else {
    for (int t = t0; t < n; t += stride) {
      const int b = t / ncols, c = t - b * ncols;
      const int o0 = b * nout;
      out(t, back_dot([&](int j) { return delta(o0 + j); }, W + c0, nin, nout, c));
    }
  }
}

__global__ void __launch_bounds__(kFusedMlpThreads) fused_mlp_adapt_kernel(const __grid_constant__ FusedMlpAdaptParams p) {
  // Layer offsets in shared memory: an indexed local array would live in (slow) local memory.
  __shared__ int off[kFusedMlpMaxLayers + 1];
  if (threadIdx.x == 0) layer_offsets(p, off);
  __syncthreads();
  const Geo g = make_geo(p, off);
  const int t0 = int(blockIdx.x * blockDim.x + threadIdx.x);
  const int stride = int(gridDim.x * blockDim.x);
  const float* y0 = p.fa + off[g.L];
  const float* y1 = p.Fa + off[g.L];

  if (p.steps > 0) {  // θ ← Θ, optimizer state ← 0
    reset_params(p, p.layer, t0, stride);
    phase_sync();
  }

  for (int k = 1; k <= p.steps; ++k) {
    const Step st = step_scalars(p, k);
    forward(p, g, false, nullptr, p.fa, t0, stride);  // y0 = f_θ(x, ∅)
    forward(p, g, true, y0, p.Fa, t0, stride);        // y1 = F(x, y0)
    // Backward through F, input gradient only; δ of F's last layer is the distance's gradient,
    // computed where it is read.
    const auto dist_delta = [&](int e) { return dist_grad(p, g, y1[e], y0[e]); };
    float* cur = p.d0;
    float* other = p.d1;
    for (int l = g.L; l >= 2; --l) {
      const float* a = p.Fa + off[l - 1];
      const auto to_cur = [&](int t, float acc) { cur[t] = math::fused_act_grad(p.act, acc, a[t], p.slope); };
      if (l == g.L)
        input_grad_phase(g, p.layer[l - 1].w0, p.widths[l - 1], p.widths[l], 0, p.widths[l - 1], dist_delta, to_cur,
                         t0, stride);
      else
        input_grad_phase(g, p.layer[l - 1].w0, p.widths[l - 1], p.widths[l], 0, p.widths[l - 1],
                         buffer_delta(other), to_cur, t0, stride);
      phase_sync();
      float* tmp = cur;
      cur = other;
      other = tmp;
    }
    // ∂L/∂y0 = −dist_grad + the signal columns of F's input gradient; and the loss.
    {
      const auto to_gy0 = [&](int t, float acc) { p.gy0[t] = -dist_grad(p, g, y1[t], y0[t]) + acc; };
      if (g.L == 1)
        input_grad_phase(g, p.layer[0].w0, p.widths[0], p.widths[1], g.d, g.S, dist_delta, to_gy0, t0, stride);
      else
        input_grad_phase(g, p.layer[0].w0, p.widths[0], p.widths[1], g.d, g.S, buffer_delta(other), to_gy0, t0,
                         stride);
      loss_block0(p, g, [y0, y1](int e) { return y1[e] - y0[e]; }, k);
      phase_sync();
    }
    // Backward through f with the optimizer folded in (see the file comment).
    const float* delta = p.gy0;
    for (int l = g.L; l >= 1; --l) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const int nin = p.widths[l - 1], nout = p.widths[l];
      const float* a = l > 1 ? p.fa + off[l - 1] : nullptr;
      if (l < g.L) {  // layer l + 1: its gradients are complete and its weights unread now
        const FusedMlpLayer& up = p.layer[l];
        const int nw = p.widths[l + 1] * p.widths[l], nb = p.widths[l + 1];
        for (int i = t0; i < nw + nb; i += stride) update_param(st, up, nw, i, i < nw ? up.gw[i] : up.gb[i - nw]);
      }
      const int nw = nout * nin;
      for (int t = t0; t < nw + nout; t += stride) {
        const float grad = param_grad(p, g, delta, a, nin, nout, t);
        if (l == 1)
          update_param(st, ly, nw, t, grad);
        else
          (t < nw ? ly.gw[t] : ly.gb[t - nw]) = grad;
      }
      float* out = nullptr;
      if (l > 1) {
        out = delta == p.d0 ? p.d1 : p.d0;
        input_grad_phase(g, ly.w, nin, nout, 0, nin, buffer_delta(delta),
                         [&](int t, float acc) { out[t] = math::fused_act_grad(p.act, acc, a[t], p.slope); }, t0,
                         stride);
      }
      phase_sync();
      if (out) delta = out;
    }
  }
  forward(p, g, false, nullptr, p.fa, t0, stride);  // the prediction f_θ(x, ∅)
  for (int t = t0; t < g.B * g.S; t += stride) p.y[t] = y0[t];
}

// Blocks of this kernel that fit on the device at once (a cooperative grid may not exceed it;
// 1 where cooperative launches are unsupported) and the device's SM count. Cached per device.
struct Residency {
  int blocks, sms;
};
Residency residency(int device) {
  static std::array<std::atomic<int>, 64> blocks_cache{}, sms_cache{};
  const bool cached = device >= 0 && device < 64;
  if (cached && blocks_cache[size_t(device)].load() > 0)
    return {blocks_cache[size_t(device)].load(), sms_cache[size_t(device)].load()};
  int coop = 0, sms = 0, per_sm = 0;
  IDEM_CUDA_CHECK("fused_mlp_adapt", cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  IDEM_CUDA_CHECK("fused_mlp_adapt", cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  IDEM_CUDA_CHECK("fused_mlp_adapt", cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                                         &per_sm, fused_mlp_adapt_kernel, kFusedMlpThreads, 0));
  const Residency r{coop ? std::max(1, sms * per_sm) : 1, std::max(1, sms)};
  if (cached) {
    sms_cache[size_t(device)].store(r.sms);
    blocks_cache[size_t(device)].store(r.blocks);
  }
  return r;
}

// The largest thread-block cluster this kernel can run as on the device: 16 blocks (a
// non-portable size, allowed on H100), else 8 (portable), else 0 (before sm_90, or no room).
// Cached per device as the size + 1 (0 in the cache means "not asked yet").
int max_cluster_blocks(int device) {
  static std::array<std::atomic<int>, 64> cache{};
  return once_per_device(cache, device, [device] {
    const auto kernel = reinterpret_cast<const void*>(fused_mlp_adapt_kernel);
    return has_cluster_code(kernel, device, "fused_mlp_adapt") ? largest_cluster(kernel, kFusedMlpThreads, 0) : 0;
  });
}

// How a multi-block adaptation synchronizes its phases: IDEM_FUSED_SYNC=grid forces the
// cooperative grid and =cluster a cluster whenever the device has one (both for comparisons,
// e.g. `IDEM_FUSED_SYNC=grid idem bench it3 --path fused`); unset, a shape takes a cluster when
// the blocks it wants fit one and the net is narrow (row-eligible; see cluster_grid).
// Measured on an H100 (docs/performance.md): mlp_tab at batch 32 and 64 (2 and 4 blocks
// wanted) took 71.7 / 81.1 µs as a cluster against 83.1 / 91.9 as a grid; mlp_256 at batch 8
// and 16 (32 and 64 blocks wanted) took 231 / 311 µs as a 16-block cluster, 194 / 187 as a grid.
enum class SyncMode { automatic, cluster, grid };
SyncMode sync_mode() {
  static const SyncMode mode = [] {
    const std::string v = env_choice("IDEM_FUSED_SYNC", {"auto", "cluster", "grid"}, "auto");
    return v == "grid" ? SyncMode::grid : v == "cluster" ? SyncMode::cluster : SyncMode::automatic;
  }();
  return mode;
}

// Blocks of the one cluster a shape runs as (0: not a cluster): the largest phase's
// multiply-adds over one block's share, capped by the device's largest cluster.
int cluster_grid(const FusedMlpAdaptParams& p, int device) {
  const SyncMode mode = sync_mode();
  const int most = mode == SyncMode::grid ? 0 : max_cluster_blocks(device);
  if (most < 2) return 0;
  const int64_t macs = fused_mlp_largest_phase_macs(p, p.batch);
  const int64_t want = (macs + kFusedMlpSingleBlockMacs - 1) / kFusedMlpSingleBlockMacs;
  // A cluster would give each block more than its share: a grid measured faster. And a net
  // with a layer 64 or more wide (not row-eligible) takes a grid of at least one block per SM
  // even where a cluster would hold the blocks its multiply-adds ask for (H100, mlp_256 at
  // batch 8: 231 µs as a 16-block cluster, 72 µs as a 132-block grid).
  if (mode == SyncMode::automatic && (want > most || !fused_mlp_rows_eligible(p))) return 0;
  return int(std::min<int64_t>(want, most));
}

// Whether this call takes the row kernel (fused_mlp_rows.cu, padded where it fits): where the
// net is eligible and the batch is at most kFusedMlpRowMaxBatch rows. IDEM_FUSED_KERNEL
// (fused_kernel_choice) may force the row kernel (rows only where eligible) or the phase kernel.
bool use_rows(const FusedMlpAdaptParams& p) {
  switch (fused_kernel_choice()) {
    case FusedKernelChoice::phase: return false;
    case FusedKernelChoice::cluster: return fused_mlp_rows_takes(p, p.batch);
    case FusedKernelChoice::rows:
    case FusedKernelChoice::compact: return fused_mlp_rows_eligible(p);
    default: return fused_mlp_rows_takes(p, p.batch);
  }
}

// The phase kernel's grid (fused_mlp_adapt_grid when neither the cluster nor the row kernel
// takes the call); `device` is current.
int phase_grid(const FusedMlpAdaptParams& p, int device) {
  const int64_t macs = fused_mlp_largest_phase_macs(p, p.batch);
  const int64_t want = (macs + kFusedMlpSingleBlockMacs - 1) / kFusedMlpSingleBlockMacs;
  if (want <= 1) return 1;
  if (const int c = cluster_grid(p, device)) return c;
  // A cooperative grid gets at least one block per SM: a phase's time is its longest thread's
  // chain of dependent loads, and more blocks shorten every chain for little more barrier
  // cost (H100, mlp_256 at batch 8, K = 1: 148 µs as the 32 blocks the multiply-adds ask for,
  // 72 µs as 132; docs/performance.md).
  const Residency r = residency(device);
  return int(std::min<int64_t>(std::max<int64_t>(want, r.sms), r.blocks));
}

// The blocks of the cluster kernel (fused_mlp_cluster.cu) when this call takes it, else 0. For
// now only with IDEM_FUSED_KERNEL=cluster, wherever it can run and the row kernel does not take
// the call (so the row-kernel tests keep their kernel under that setting). Its tests pass on an
// H100, but it measured 3–5× slower than the phase kernel there (mlp_256, K = 1: 216 against
// 73 µs at batch 8, 926 against 178 at 64; docs/performance.md, "The cluster kernel"), so the
// automatic rule meant for it (a net the row kernel cannot take, up to kFusedMlpClusterMaxBatch
// rows, whose largest phase is more than one block of the phase kernel) is not switched on.
int use_cluster(const FusedMlpAdaptParams& p, int device) {
  if (fused_kernel_choice() != FusedKernelChoice::cluster || fused_mlp_rows_takes(p, p.batch)) return 0;
  return fused_mlp_cluster_blocks(p, device);
}

}  // namespace

FusedKernelChoice fused_kernel_choice() {
  static const FusedKernelChoice choice = [] {
    const std::string v = env_choice("IDEM_FUSED_KERNEL", {"auto", "rows", "compact", "cluster", "phase"}, "auto");
    return v == "phase"     ? FusedKernelChoice::phase
           : v == "rows"    ? FusedKernelChoice::rows
           : v == "compact" ? FusedKernelChoice::compact
           : v == "cluster" ? FusedKernelChoice::cluster
                            : FusedKernelChoice::automatic;
  }();
  return choice;
}

int fused_mlp_adapt_grid(const FusedMlpAdaptParams& p, int device) {
  set_device(device);
  if (const int c = use_cluster(p, device)) return c;
  if (use_rows(p)) return 1;
  return phase_grid(p, device);
}


FusedMlpLaunch fused_mlp_adapt(const FusedMlpAdaptParams& p, int device) {
  const char* op = "fused_mlp_adapt";
  IDEM_CHECK(p.layers >= 1 && p.layers <= kFusedMlpMaxLayers && p.batch >= 1 &&
                 p.batch <= kFusedMlpMaxBatch,
             op, "unsupported shape: ", p.layers, " layers, batch ", p.batch);
  set_device(device);
  if (const int blocks = use_cluster(p, device)) {
    fused_mlp_cluster(p, blocks);
    return {FusedMlpKernel::cluster, blocks};
  }
  if (use_rows(p)) return {fused_mlp_rows(p, device), 1};
  const int grid = phase_grid(p, device);
  if (grid == 1) {
    fused_mlp_adapt_kernel<<<1, kFusedMlpThreads, 0, current_stream()>>>(p);
    IDEM_LAUNCH_CHECK(op);
  } else if (grid == cluster_grid(p, device)) {
    // The whole grid as one cluster: phase_sync() then uses the cluster's barrier.
    ClusterLaunch launch(grid, kFusedMlpThreads, 0, current_stream());
    IDEM_CUDA_CHECK(op, cudaLaunchKernelEx(&launch.cfg, fused_mlp_adapt_kernel, p));
    IDEM_LAUNCH_CHECK(op);
  } else {
    FusedMlpAdaptParams arg = p;
    void* args[] = {&arg};
    IDEM_CUDA_CHECK(op, cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(fused_mlp_adapt_kernel),
                                                    dim3(unsigned(grid)), dim3(kFusedMlpThreads), args, 0,
                                                    current_stream()));
    IDEM_LAUNCH_CHECK(op);
  }
  return {FusedMlpKernel::phase, grid};
}

}  // namespace idem::cuda
