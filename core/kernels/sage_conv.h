// Kernel contract: a SAGEConv layer's whole forward (GraphSAGE, mean aggregation, root weight)
// as ONE CUDA kernel, where the composed path takes three launches (csr_mean_aggregate, then
// sage_linear's two GEMMs) and writes and re-reads the (V, in) mean and the (V, out) partial
// sum in between:
//
//   mean[v] = (Σ_{k in row v} x[col[k]]) · inv(v)        (core/kernels/csr_aggregate.h)
//   y[v]    = act((mean[v]·Wlᵀ + x[v]·Wrᵀ) + b)          (ops::sage_linear, core/ops/fused.h)
//
// x (V, in) f32 holds both the sources and the destinations (one node set: U = V); row_ptr
// (V+1) and col (E) are the destination-sorted CSR of core/kernels/csr_aggregate.h; Wl and Wr
// (out, in); b (out) or none; y (V, out); mean (V, in), written only when the caller keeps it
// (the backward's dWl = gzᵀ·mean needs it).
//
// Rounding, step for step that of the composed path on CUDA with the hand GEMM backend, so
// the fused kernel gives the composed path's bits (tests/sage_conv_test.cpp):
//   mean: each feature summed in double over the row's edges in order, rounded once to f32,
//         times inv(v) = 1 / max(deg, 1) in f32 (csr_mean_aggregate's kernel);
//   r = fmaf chain over k = 0 … in−1 of x[v,k]·Wr[n,k] starting from 0 (the first GEMM);
//   l = the same chain over mean[v,k]·Wl[n,k] (the second GEMM's accumulator);
//   o = l + r (that GEMM's beta = 1 store), o = o + b[n], o = act(o) (its epilogue).
// For in <= 64 every hand-GEMM path the composed product can take is such a chain (the
// one-warp-per-output kernel needs K >= 128; the cluster split-K, N > 64). One exception, as the tiled GEMM documents: where
// the composed product takes a tiled GEMM whose K step does not divide in (17 <= in <= 63, more
// than 8 192 outputs), its zero padding turns a −0 sum (only reachable through products that
// underflow to −0) into +0, which the fused kernel keeps as −0.
#pragma once
#include <cstdint>

#include "core/kernels/csr_aggregate.h"
#include "core/kernels/fused.h"

namespace idem {

// Which path ops::sage_conv takes on CUDA: `composed` (csr_mean_aggregate + sage_linear, three
// launches) or `fused` (the one kernel, where it applies: sage_conv_fused_fits, the hand GEMM
// backend, one node set). Initialised from IDEM_SAGE_CONV=composed|fused (any other value is
// an error: core/env.h) unless set_sage_conv_path came first. `composed` is the default: on an
// H100 the fused kernel saved 24 launches per adaptation and time on the eager path, but inside
// a CUDA graph it was 3 % slower at 8 meshes (docs/performance.md, "SAGEConv in one kernel").
enum class SageConvPath : uint8_t { composed, fused };
SageConvPath sage_conv_path();
void set_sage_conv_path(SageConvPath p);
const char* sage_conv_path_name(SageConvPath p);

// The fused kernel's limits: one block keeps a 64-row tile of x (then of the mean) and one
// weight matrix in shared memory, each row padded to 65 floats.
constexpr int64_t kSageConvMaxIn = 64;
constexpr int64_t kSageConvMaxOut = 64;
inline bool sage_conv_fused_fits(int64_t in, int64_t out) {
  return in >= 1 && in <= kSageConvMaxIn && out >= 1 && out <= kSageConvMaxOut;
}

namespace cuda {
// y (p.N, p.out) and, when defined, mean (p.N, p.in) as above; x (p.N, p.in); p.in = in_l =
// in_r. f32, one launch. Requires sage_conv_fused_fits(p.in, p.out); index values are clipped
// into range as csr_mean_aggregate's kernel clips them (a bad index gives a wrong result,
// never an out-of-bounds access).
void sage_conv_fwd(const Tensor& y, const Tensor& mean, const Tensor& x, const Tensor& row_ptr,
                   const Tensor& col, int64_t edges, const Tensor& wl, const Tensor& b,
                   const Tensor& wr, const LinearActParams& p);
}  // namespace cuda

}  // namespace idem
