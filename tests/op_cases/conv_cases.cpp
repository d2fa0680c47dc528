// Op-case rows for the conv family: conv2d with stride / padding / dilation / groups /
// rectangular kernels / no bias / a 1x1 kernel, the two fmnist CNN layers at batch 2, shapes
// that take the implicit-GEMM kernels on the GPU (the bn_cnn demo's layers among them), and
// conv_transpose2d (stride 2 with output padding, groups with dilation, and output padding
// >= stride, which PyTorch allows when it is below the dilation).
//
// The parity test runs the "conv" rows once per CUDA backend (ConvBackend::hand, ::cudnn).
#include <algorithm>

#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;

// parity_scale grows with the longest reduction of the three kernels: C/G·R·S (fwd) and
// N·P·Q (bwd_weight), as matmul's rows use K/8.
double conv_scale(int64_t reduce_fwd, int64_t reduce_weight) {
  const int64_t k = std::max(reduce_fwd, reduce_weight);
  return k > 8 ? static_cast<double>(k) / 8.0 : 1.0;
}

OpCase conv_case(const std::string& name, Shape x, Shape w, bool bias, Conv2dParams p) {
  const int64_t O = w[0], Cg = w[1], R = w[2], S = w[3];
  const int64_t P = (x[2] + 2 * p.pad_h - p.dilation_h * (R - 1) - 1) / p.stride_h + 1;
  const int64_t Q = (x[3] + 2 * p.pad_w - p.dilation_w * (S - 1) - 1) / p.stride_w + 1;
  std::vector<InputSpec> in = {{x}, {std::move(w)}};
  if (bias) in.push_back({{O}});
  OpCase c{name, "conv", std::move(in),
           [bias, p](V t) { return conv2d(t[0], t[1], bias ? t[2] : Tensor(), p); }};
  c.parity_scale = conv_scale(Cg * R * S, x[0] * P * Q);
  return c;
}

OpCase convt_case(const std::string& name, Shape x, Shape w, bool bias, ConvTranspose2dParams p) {
  const int64_t O = w[1] * p.groups;
  const int64_t Ho =
      (x[2] - 1) * p.stride_h - 2 * p.pad_h + p.dilation_h * (w[2] - 1) + p.output_pad_h + 1;
  const int64_t Wo =
      (x[3] - 1) * p.stride_w - 2 * p.pad_w + p.dilation_w * (w[3] - 1) + p.output_pad_w + 1;
  const int64_t reduce_fwd = x[1] / p.groups * w[2] * w[3];
  std::vector<InputSpec> in = {{x}, {std::move(w)}};
  if (bias) in.push_back({{O}});
  OpCase c{name, "conv", std::move(in),
           [bias, p](V t) { return conv_transpose2d(t[0], t[1], bias ? t[2] : Tensor(), p); }};
  c.parity_scale = conv_scale(reduce_fwd, x[0] * Ho * Wo);
  return c;
}

// The fmnist CNN's second layer: 5 000 weights make a finite-difference gradcheck take ~13 s
// here, so the row is parity only (forward and gradients, CPU against CUDA); the gradient
// formulas are checked by the small rows.
OpCase fmnist2_parity_only() {
  Conv2dParams p;
  OpCase c = conv_case("conv2d_fmnist2", {2, 10, 12, 12}, {20, 10, 5, 5}, true, p);
  c.gradcheck = false;
  c.grad_parity = true;
  return c;
}

// Rows for the implicit-GEMM kernels (cuda/kernels/conv.cu: too big for the tiled kernels,
// K >= 64 taps and >= 16 columns, in fwd and in bwd_data; >= 16 output channels per group and
// >= 32 taps in bwd_weight). Thousands of weights make a finite-difference gradcheck slow, so
// they are parity rows only (forward and both gradients, CPU against CUDA);
// Conv2dCuda.ImplicitGemmRowsRouteToIt (tests/conv_test.cpp) checks that each conv2d_igemm_*
// row's fwd and bwd_data and every row's bwd_weight choose the implicit GEMM.
OpCase parity_only(OpCase c) {
  c.gradcheck = false;
  c.grad_parity = true;
  return c;
}

Conv2dParams cp(int64_t stride, int64_t pad, int64_t dilation = 1, int64_t groups = 1) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}

ConvTranspose2dParams tp(int64_t stride, int64_t pad, int64_t out_pad, int64_t dilation = 1,
                         int64_t groups = 1) {
  ConvTranspose2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.output_pad_h = p.output_pad_w = out_pad;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}
}  // namespace

std::vector<OpCase> conv_cases() {
  Conv2dParams rect;  // rectangular kernel with per-axis stride and padding
  rect.stride_h = 2;
  rect.stride_w = 1;
  rect.pad_h = 1;
  rect.pad_w = 0;
  Conv2dParams igemm_rect;  // stride (2, 1), padding (1, 0), dilation (1, 2)
  igemm_rect.stride_h = 2;
  igemm_rect.pad_h = 1;
  igemm_rect.dilation_w = 2;
  Conv2dParams wgrad_groups3 = igemm_rect;  // stride (2, 1), padding (1, 2), dilation (1, 2)
  wgrad_groups3.pad_w = 2;
  wgrad_groups3.groups = 3;
  ConvTranspose2dParams trect;
  trect.stride_h = 2;
  trect.stride_w = 1;
  trect.pad_h = 0;
  trect.pad_w = 1;
  trect.output_pad_h = 1;
  return {
      conv_case("conv2d_3x3", {2, 3, 6, 6}, {4, 3, 3, 3}, true, cp(1, 0)),
      conv_case("conv2d_stride2_pad1", {2, 2, 7, 7}, {3, 2, 3, 3}, true, cp(2, 1)),
      conv_case("conv2d_pad2_5x5", {2, 2, 5, 5}, {2, 2, 5, 5}, true, cp(1, 2)),
      conv_case("conv2d_dilation2", {2, 2, 7, 7}, {2, 2, 3, 3}, true, cp(1, 1, 2)),
      conv_case("conv2d_groups2", {2, 4, 5, 5}, {6, 2, 3, 3}, true, cp(1, 1, 1, 2)),
      conv_case("conv2d_depthwise", {2, 3, 5, 5}, {3, 1, 3, 3}, true, cp(1, 1, 1, 3)),
      conv_case("conv2d_no_bias", {2, 3, 5, 5}, {2, 3, 3, 3}, false, cp(1, 0)),
      conv_case("conv2d_rect_kernel", {2, 2, 6, 5}, {3, 2, 2, 3}, true, rect),
      conv_case("conv2d_1x1", {2, 3, 4, 4}, {5, 3, 1, 1}, true, cp(1, 0)),
      // Stride 2 with padding 2 along a wide row: im2col's valid column range is clipped on both
      // sides and the strided copy runs (core/cpu/conv.cpp).
      conv_case("conv2d_stride2_pad2_wide", {2, 2, 5, 11}, {3, 2, 3, 4}, true, cp(2, 2)),
      conv_case("conv2d_stride3_dil2_groups2", {2, 4, 7, 7}, {4, 2, 2, 2}, false, cp(3, 1, 2, 2)),
      // The fmnist CNN's two layers at batch 2 (bench/conv_bench.cpp times them at batch 256).
      conv_case("conv2d_fmnist1", {2, 1, 28, 28}, {10, 1, 5, 5}, true, cp(1, 0)),
      fmnist2_parity_only(),

      // Implicit GEMM: the bn_cnn demo's 32->64 layer and head at batch 2; groups; stride 2 (a
      // quarter of bwd_data's taps land on no output pixel); M, N and K not multiples of the
      // 64 x 64 x 16 tile; a rectangular kernel with per-axis stride and dilation; several
      // tiles along both M and N in both directions; and a transposed conv (its forward is
      // bwd_data with stride 2 and output padding, its input gradient the fwd kernel).
      parity_only(conv_case("conv2d_igemm_bn_cnn2", {2, 32, 14, 14}, {64, 32, 3, 3}, true,
                            cp(1, 1))),
      parity_only(conv_case("conv2d_igemm_bn_cnn_head", {2, 64, 7, 7}, {64, 64, 3, 3}, true,
                            cp(1, 1))),
      parity_only(conv_case("conv2d_igemm_groups2", {2, 32, 24, 24}, {64, 16, 3, 3}, true,
                            cp(1, 1, 1, 2))),
      parity_only(conv_case("conv2d_igemm_stride2", {2, 32, 24, 24}, {64, 32, 3, 3}, false,
                            cp(2, 1))),
      parity_only(conv_case("conv2d_igemm_ragged", {3, 36, 9, 7}, {40, 36, 3, 3}, true,
                            cp(1, 1))),
      parity_only(conv_case("conv2d_igemm_rect_dilated", {2, 48, 10, 9}, {48, 48, 3, 2}, true,
                            igemm_rect)),
      parity_only(conv_case("conv2d_igemm_multiblock", {4, 96, 12, 12}, {128, 96, 3, 3}, true,
                            cp(1, 1))),
      parity_only(convt_case("conv_transpose2d_igemm_s2", {2, 64, 7, 7}, {64, 32, 3, 3}, true,
                             tp(2, 1, 1))),
      // The bwd_weight implicit GEMM's split of the N·P·Q positions (every row above takes it
      // too): 89 chunks of 80 positions, the last one 16 (a single step); 3 x 3 outputs (one
      // 16-position step spans two images) with 33 output channels and 216 taps (ragged row
      // and column tiles, one chunk straight into dw); 1 x 1 outputs; three groups of 32
      // channels (32-row tiles) with per-axis stride, padding and dilation, 9 chunks, the last
      // one 34 positions.
      parity_only(conv_case("conv2d_wgrad_igemm_chunks", {36, 32, 14, 14}, {64, 32, 3, 3}, true,
                            cp(1, 1))),
      parity_only(conv_case("conv2d_wgrad_igemm_small_pq", {5, 24, 3, 3}, {33, 24, 3, 3}, false,
                            cp(1, 1))),
      parity_only(conv_case("conv2d_wgrad_igemm_1x1_out", {6, 4, 1, 1}, {16, 4, 3, 3}, true,
                            cp(1, 1))),
      parity_only(conv_case("conv2d_wgrad_igemm_groups3", {7, 24, 11, 13}, {96, 8, 3, 3}, true,
                            wgrad_groups3)),

      convt_case("conv_transpose2d_s2_outpad1", {2, 3, 4, 4}, {3, 2, 3, 3}, true, tp(2, 1, 1)),
      convt_case("conv_transpose2d_basic", {2, 2, 4, 4}, {2, 3, 3, 3}, false, tp(1, 0, 0)),
      convt_case("conv_transpose2d_groups_dil", {2, 4, 3, 3}, {4, 1, 2, 2}, true,
                 tp(1, 0, 0, 2, 2)),
      // output_padding 1 >= stride 1 (allowed: below dilation 2): the conv geometry has fewer
      // output rows than the conv formula gives (the cuDNN backend falls back to the hand path).
      convt_case("conv_transpose2d_outpad_ge_stride", {2, 2, 3, 3}, {2, 2, 3, 3}, true,
                 tp(1, 0, 1, 2)),
      convt_case("conv_transpose2d_rect", {2, 2, 3, 4}, {2, 2, 2, 3}, true, trect),
  };
}

}  // namespace idem::testing
