// CUDA: the row kernel of the fused IT³ MLP adaptation (fused_mlp_rows.cu) with every width
// padded to NP = 16, 32 or 64. Contract: core/kernels/fused_mlp_adapt.h (the layout:
// FusedMlpPaddedLayout); reference: core/cpu/fused_mlp_adapt.cpp.
//
// Why: under ncu (H100, mlp_tab at batch 8, K = 1) the compact row kernel ran about 17
// instructions per multiply-add, nearly all of them index arithmetic, loop control and
// branches of runtime-length dots (each layer's width is a runtime value), and a step cost
// about 27 000 cycles although each row's chain of sums is a few thousand multiply-adds. Here
// every weight matrix, activation row and gradient row in shared memory is NP wide with zeros
// past its real width, so each dot is an unrolled loop of float4 loads at offsets known at
// compile time, over the layer's real width rounded up to 4 (a warp-uniform switch picks the
// loop). The padded terms come after the real ones and are exact zeros (0·0: both factors are
// padding), so every sum has the reference's terms in the reference's order, as in
// the compact kernel; the one difference a zero term can make is turning a −0 sum into +0.
//
// The work is the compact kernel's: warp w owns rows w, w + 32, …; per step, the row passes
// (both forwards, δ through F, ∂L/∂y0, δ through f), one block barrier, the loss and every
// parameter's gradient (a sum over the rows in row order) with its optimizer update, one
// lane each (a warp per weight row: for_each_param_by_rows), another barrier. θ and Θ stay in
// shared memory for the whole call (Θ read once from global memory, not once per pass), and
// so does the input [x, ∅].
#include <cuda_runtime.h>

#include "core/kernels/fused_mlp_adapt.h"
#include "cuda/common.cuh"
#include "cuda/kernels/fused_mlp_device.cuh"

namespace idem::cuda {

namespace {

using namespace fused_mlp;

constexpr int kRowWarps = kFusedMlpRowThreads / 32;

// Pointers into the kernel's shared memory, laid out as FusedMlpPaddedLayout says. Layers are
// 1-based as in the contract; rows b of a per-row buffer are NP floats apart.
template <int NP>
struct Padded {
  static constexpr int RS = NP + 4;  // a padded W's row stride
  float* sm;
  int L, B, theta, anchor, rows, state, params;

  __device__ float* w(bool frozen, int l) const { return sm + (frozen ? anchor : theta) + (l - 1) * NP * RS; }
  __device__ float* bias(bool frozen, int l) const {
    return sm + (frozen ? anchor : theta) + L * NP * RS + (l - 1) * NP;
  }
  __device__ float* row(int k, int b) const { return sm + rows + (k * B + b) * NP; }
  __device__ float* in_f(int b) const { return row(0, b); }            // [x, ∅]
  __device__ float* in_F(int b) const { return row(1, b); }            // [x, y0]
  __device__ float* fa(int l, int b) const { return row(1 + l, b); }   // f's layer l
  __device__ float* Fa(int l, int b) const { return row(1 + L + l, b); }
  __device__ float* fd(int l, int b) const { return row(1 + 2 * L + l, b); }  // layer L: ∂L/∂y0
  __device__ float* d0(int b) const { return row(2 + 3 * L, b); }
  __device__ float* d1(int b) const { return row(3 + 3 * L, b); }
};

// float4 steps a dot unrolls: all of them up to 32 terms; past that the registers of a fully
// unrolled dot (its loads hoisted) would pass the 64 a thread of a 1 024-thread block may have.
template <int M>
constexpr int kDotUnroll = M <= 32 ? M / 4 : 8;

// Σ_i a[i]·w[i] over the first M inputs (M a multiple of 4), in input order.
template <int M>
__device__ __forceinline__ float dot_row_n(const float* a, const float* w) {
  float acc = 0.0f;
#pragma unroll(kDotUnroll<M>)
  for (int i = 0; i < M; i += 4) {
    const float4 x = *reinterpret_cast<const float4*>(a + i);
    const float4 y = *reinterpret_cast<const float4*>(w + i);
    acc = fmaf(x.x, y.x, acc);
    acc = fmaf(x.y, y.y, acc);
    acc = fmaf(x.z, y.z, acc);
    acc = fmaf(x.w, y.w, acc);
  }
  return acc;
}

// Σ_j δ[j]·W[j, i] over the first M outputs (M a multiple of 4), in output order: column i of
// a padded W whose rows are RS floats apart.
template <int RS, int M>
__device__ __forceinline__ float dot_col_n(const float* delta, const float* W, int i) {
  float acc = 0.0f;
#pragma unroll(kDotUnroll<M>)
  for (int j = 0; j < M; j += 4) {
    const float4 d = *reinterpret_cast<const float4*>(delta + j);
    acc = fmaf(d.x, W[(j + 0) * RS + i], acc);
    acc = fmaf(d.y, W[(j + 1) * RS + i], acc);
    acc = fmaf(d.z, W[(j + 2) * RS + i], acc);
    acc = fmaf(d.w, W[(j + 3) * RS + i], acc);
  }
  return acc;
}

// The dots over a layer's n real terms: the unrolled loop of n rounded up to 4 (the padding
// past n is zeros, so the sum is the same), picked by a warp-uniform switch. Under ncu the
// dots over all NP terms were most of a row pass, and mlp_tab's layers (14, 30, 20, 10 inputs;
// 30, 20, 10, 1 outputs) use 80 and 68 of the 128 terms four NP = 32 dots would take.
#define IDEM_PADDED_DOT_CASES(CASE)                                                                   \
  CASE(4) CASE(8) CASE(12) CASE(16) CASE(20) CASE(24) CASE(28) CASE(32) CASE(36) CASE(40) CASE(44) \
  CASE(48) CASE(52) CASE(56) CASE(60) CASE(64)

template <int NP>
__device__ __forceinline__ float dot_row(const float* a, const float* w, int n) {
#define IDEM_CASE(M) \
  case M / 4:        \
    return dot_row_n<(M < NP ? M : NP)>(a, w);
  switch ((n + 3) / 4) {
    IDEM_PADDED_DOT_CASES(IDEM_CASE)
    default: return dot_row_n<NP>(a, w);
  }
#undef IDEM_CASE
}

template <int NP>
__device__ __forceinline__ float dot_col(const float* delta, const float* W, int i, int n) {
  constexpr int RS = Padded<NP>::RS;
#define IDEM_CASE(M) \
  case M / 4:        \
    return dot_col_n<RS, (M < NP ? M : NP)>(delta, W, i);
  switch ((n + 3) / 4) {
    IDEM_PADDED_DOT_CASES(IDEM_CASE)
    default: return dot_col_n<RS, NP>(delta, W, i);
  }
#undef IDEM_CASE
}

// One layer's forward for one row: lane's outputs j = lane (and lane + 32 when NP is 64); the
// padding past n_l is written as zeros, so the next layer's dot may run over all NP inputs.
template <int NP>
__device__ __forceinline__ void layer_forward(const FusedMlpAdaptParams& p, const Geo& g, int l, const float* W,
                                              const float* bias, const float* in, float* out, int lane) {
  const int nout = p.widths[l];
#pragma unroll
  for (int j0 = 0; j0 < NP; j0 += 32) {
    const int j = j0 + lane;
    if (NP >= 32 || j < NP) {
      const float z = layer_output(p, g, l, dot_row<NP>(in, W + j * Padded<NP>::RS, p.widths[l - 1]), bias[j]);
      out[j] = j < nout ? z : 0.0f;
    }
  }
}

// f_θ (frozen false; input [x, ∅]) or F (frozen true; input [x, y0]) for row b.
template <int NP>
__device__ void row_forward(const FusedMlpAdaptParams& p, const Geo& g, const Padded<NP>& v, bool frozen, int b,
                            int lane) {
  for (int l = 1; l <= g.L; ++l) {
    const float* in = l > 1 ? (frozen ? v.Fa(l - 1, b) : v.fa(l - 1, b)) : (frozen ? v.in_F(b) : v.in_f(b));
    layer_forward<NP>(p, g, l, v.w(frozen, l), v.bias(frozen, l), in, frozen ? v.Fa(l, b) : v.fa(l, b), lane);
    __syncwarp();
  }
}

// Input gradient of a layer with nin inputs for one row: out[i] = act'(Σ_j δ[j]·W[j, i]) at the
// activation a[i]; zeros past nin.
template <int NP>
__device__ __forceinline__ void row_input_grad(const FusedMlpAdaptParams& p, const float* W, int nin, int nout,
                                               const float* delta, const float* a, float* out, int lane) {
#pragma unroll
  for (int i0 = 0; i0 < NP; i0 += 32) {
    const int i = i0 + lane;
    if (NP >= 32 || i < NP) {
      const float gi = math::fused_act_grad(p.act, dot_col<NP>(delta, W, i, nout), a[i], p.slope);
      out[i] = i < nin ? gi : 0.0f;
    }
  }
}

// The row passes of one step for row b (the compact kernel's row_backward_pass).
template <int NP>
__device__ void row_step(const FusedMlpAdaptParams& p, const Geo& g, const Padded<NP>& v, int b, int lane) {
  row_forward<NP>(p, g, v, false, b, lane);  // y0 = f_θ(x, ∅)
  const float* y0 = v.fa(g.L, b);
  for (int s = lane; s < g.S; s += 32) v.in_F(b)[g.d + s] = y0[s];
  __syncwarp();
  row_forward<NP>(p, g, v, true, b, lane);  // y1 = F(x, y0)
  const float* y1 = v.Fa(g.L, b);
  // δ of F's last layer, the distance's gradient; then back through F (Θ), input gradient only.
  float* cur = v.d0(b);
  float* other = v.d1(b);
  for (int s = lane; s < NP; s += 32) cur[s] = s < g.S ? dist_grad(p, g, y1[s], y0[s]) : 0.0f;
  __syncwarp();
  for (int l = g.L; l >= 2; --l) {
    row_input_grad<NP>(p, v.w(true, l), p.widths[l - 1], p.widths[l], cur, v.Fa(l - 1, b), other, lane);
    __syncwarp();
    float* t = cur;
    cur = other;
    other = t;
  }
  // ∂L/∂y0 = −dist_grad + the signal columns of F's input gradient (δ of F's layer 1 in cur).
  {
    const float* W = v.w(true, 1) + g.d;
    float* gy0 = v.fd(g.L, b);
    for (int s = lane; s < NP; s += 32)
      gy0[s] = s < g.S ? -dist_grad(p, g, y1[s], y0[s]) + dot_col<NP>(cur, W, s, p.widths[1]) : 0.0f;
    __syncwarp();
  }
  // δ through f with θ as it is before this step's update.
  for (int l = g.L; l >= 2; --l) {
    row_input_grad<NP>(p, v.w(false, l), p.widths[l - 1], p.widths[l], v.fd(l, b), v.fa(l - 1, b), v.fd(l - 1, b), lane);
    __syncwarp();
  }
}

// The parameters walked a weight row at a time: warp w takes the rows r = w, w + 32, … of all
// layers' outputs (r counts layer 1's outputs, then layer 2's, …), and lane i of the warp the
// row's weights i, i + 32, … and, at i = nin, its bias. fn(l, j, i, c) gets the layer l
// (1-based), the output j, the input i (nin: the bias) and the parameter's index c in the compact
// optimizer state. Why not a thread per parameter: under ncu (mlp_tab, batch 8) that walk ran the
// loop head of every layer in all 32 warps and divided t / nin for every parameter, about 80
// instructions a division, in the fill, in every step's update and in the write-back; here a
// warp finds its row's layer with a few compares and the lane is the column.
template <typename Fn>
__device__ __forceinline__ void for_each_param_by_rows(const FusedMlpAdaptParams& p, int L, int warp, int lane,
                                                       Fn fn) {
  int rows_before = 0, first = 0, l = 1;  // first: layer l's first index in the compact state
  for (int r = warp;; r += kRowWarps) {
    // Walk forward to r's layer (r only grows, so the walk resumes where it stopped).
    while (l <= L && r >= rows_before + p.widths[l]) {
      rows_before += p.widths[l];
      first += p.widths[l] * (p.widths[l - 1] + 1);
      ++l;
    }
    if (l > L) return;
    const int nin = p.widths[l - 1], nw = p.widths[l] * nin, j = r - rows_before;
    for (int i = lane; i <= nin; i += 32) fn(l, j, i, first + (i < nin ? j * nin + i : nw + j));
  }
}

// Every parameter's gradient (a sum over the rows in row order) and its update, one lane each.
template <int NP>
__device__ void update_all(const FusedMlpAdaptParams& p, const Geo& g, const Padded<NP>& v, const Step& st,
                           int warp, int lane) {
  for_each_param_by_rows(p, g.L, warp, lane, [&](int l, int j, int i, int c) {
    const FusedMlpLayer& ly = p.layer[l - 1];
    const float* delta = v.fd(l, 0) + j;
    float acc = 0.0f;
    float* w;
    if (i < p.widths[l - 1]) {
      const float* a = (l > 1 ? v.fa(l - 1, 0) : v.in_f(0)) + i;
#pragma unroll 8
      for (int b = 0; b < g.B; ++b) acc = fmaf(delta[b * NP], a[b * NP], acc);
      w = v.w(false, l) + j * Padded<NP>::RS + i;
    } else {
#pragma unroll 8
      for (int b = 0; b < g.B; ++b) acc += delta[b * NP];
      w = v.bias(false, l) + j;
    }
    update_one(st, *w, ly.mw ? v.sm + v.state + c : nullptr, ly.vw ? v.sm + v.state + v.params + c : nullptr, acc);
  });
}

template <int NP>
__global__ void __launch_bounds__(kFusedMlpRowThreads)
    fused_mlp_rows_padded_kernel(const __grid_constant__ FusedMlpAdaptParams p) {
  extern __shared__ float4 sm4[];
  __shared__ Step step;
  const FusedMlpPaddedLayout lay = fused_mlp_padded_layout(p, p.batch);
  int params = 0;
  for (int l = 1; l <= p.layers; ++l) params += p.widths[l] * (p.widths[l - 1] + 1);
  const Padded<NP> v{reinterpret_cast<float*>(sm4), p.layers, p.batch, int(lay.theta), int(lay.anchor),
                     int(lay.rows), int(lay.state), params};
  const Geo g = make_geo(p, nullptr);
  const int tid = int(threadIdx.x), nthreads = int(blockDim.x);
  const int warp = tid >> 5, lane = tid & 31;
  const bool adapting = p.steps > 0;

  // Zeros everywhere but the optimizer state (lay.state is a multiple of 4: NP is).
  for (int e = tid; e < int(lay.state) / 4; e += nthreads) sm4[e] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  __syncthreads();
  // θ ← Θ and the state ← 0 when adapting (Θ kept for F), else θ as it is; the inputs.
  {
    for_each_param_by_rows(p, g.L, warp, lane, [&](int l, int j, int i, int c) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const int nin = p.widths[l - 1];
      const bool isw = i < nin;
      const float val = adapting ? (isw ? ly.w0[j * nin + i] : ly.b0[j]) : (isw ? ly.w[j * nin + i] : ly.b[j]);
      const int at = j * Padded<NP>::RS + i;
      (isw ? v.w(false, l)[at] : v.bias(false, l)[j]) = val;
      if (adapting) {
        (isw ? v.w(true, l)[at] : v.bias(true, l)[j]) = val;
        if (ly.mw) v.sm[v.state + c] = 0.0f;
        if (ly.vw) v.sm[v.state + params + c] = 0.0f;
      }
    });
    const int n0 = p.widths[0];
    for (int e = tid; e < g.B * n0; e += nthreads) {
      const int b = e / n0, i = e - b * n0;
      const float x = i < g.d ? p.x[b * g.d + i] : p.neutral;
      v.in_f(b)[i] = x;
      if (i < g.d) v.in_F(b)[i] = x;  // F's signal columns: y0, each step
    }
  }
  __syncthreads();

  for (int k = 1; k <= p.steps; ++k) {
    if (tid == nthreads - 1) step = step_scalars(p, k);  // a double pow chain, beside the rows
    for (int b = warp; b < g.B; b += kRowWarps) row_step<NP>(p, g, v, b, lane);
    __syncthreads();  // every row's activations and δ (and step)
    {
      const float *y0 = v.fa(g.L, 0), *y1 = v.Fa(g.L, 0);
      const int S = g.S;
      loss_block0(p, g, [y0, y1, S](int e) {
        const int b = e / S, s = e - b * S;
        return y1[b * NP + s] - y0[b * NP + s];
      }, k);
    }
    update_all<NP>(p, g, v, step, warp, lane);
    __syncthreads();  // the updated θ before the next forward
  }
  // θ and the optimizer state back to the params (they are the adapted model's), beside the
  // prediction: both only read θ.
  if (adapting) {
    for_each_param_by_rows(p, g.L, warp, lane, [&](int l, int j, int i, int c) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const int nin = p.widths[l - 1];
      const bool isw = i < nin;
      const int e = isw ? j * nin + i : j;
      (isw ? ly.w : ly.b)[e] = isw ? v.w(false, l)[j * Padded<NP>::RS + i] : v.bias(false, l)[j];
      if (ly.mw) (isw ? ly.mw : ly.mb)[e] = v.sm[v.state + c];
      if (ly.vw) (isw ? ly.vw : ly.vb)[e] = v.sm[v.state + params + c];
    });
  }
  for (int b = warp; b < g.B; b += kRowWarps) {  // the prediction f_θ(x, ∅)
    row_forward<NP>(p, g, v, false, b, lane);
    const float* y = v.fa(g.L, b);
    for (int s = lane; s < g.S; s += 32) p.y[b * g.S + s] = y[s];
  }
}

template <int NP>
void launch(const FusedMlpAdaptParams& p, size_t bytes, const char* op) {
  fused_mlp_rows_padded_kernel<NP><<<1, kFusedMlpRowThreads, bytes, current_stream()>>>(p);
  IDEM_LAUNCH_CHECK(op);
}

}  // namespace

bool fused_mlp_rows_padded(const FusedMlpAdaptParams& p, int device) {
  const char* op = "fused_mlp_adapt";
  const FusedMlpPaddedLayout lay = fused_mlp_padded_layout(p, p.batch);
  if (lay.pad == 0) return false;
  const size_t bytes = size_t(lay.total) * sizeof(float);
  // One shared-memory budget per instantiation (the opt-in limit less its static shared memory).
  static DynamicSharedMemory smem16(reinterpret_cast<const void*>(fused_mlp_rows_padded_kernel<16>));
  static DynamicSharedMemory smem32(reinterpret_cast<const void*>(fused_mlp_rows_padded_kernel<32>));
  static DynamicSharedMemory smem64(reinterpret_cast<const void*>(fused_mlp_rows_padded_kernel<64>));
  DynamicSharedMemory& smem = lay.pad == 16 ? smem16 : lay.pad == 32 ? smem32 : smem64;
  if (!smem.fits(device, bytes, op)) return false;
  if (lay.pad == 16)
    launch<16>(p, bytes, op);
  else if (lay.pad == 32)
    launch<32>(p, bytes, op);
  else
    launch<64>(p, bytes, op);
  return true;
}

}  // namespace idem::cuda
