// Op-case rows for the fused family (autograd/fused_functions.h): linear_act with every fused
// activation, with and without bias, a 3-D input, the IT³ first layer, and shapes that take the
// GPU's general paths (GEMM + epilogue forward: in > 16 and N·out > 8192; epilogue + two GEMMs
// backward: N > 1024); the l1 and mse distances. The distances' multi-block GPU path (n > 16384)
// is too large for a gradcheck row; tests/fused_test.cpp covers it. sage_linear
// (autograd/sage_linear_function.h) with and without bias and activation, and at shapes whose
// GPU forward runs the tiled GEMMs with the bias + activation in their store; tests/
// sage_linear_test.cpp adds the unfused comparison and launch counts. sage_conv
// (autograd/sage_conv_function.h), the whole SAGEConv layer; tests/sage_conv_test.cpp adds the
// bits of the composition and the fused CUDA kernel's.
#include <algorithm>

#include "autograd/csr_aggregate_function.h"
#include "autograd/fused_functions.h"
#include "autograd/it3_head_function.h"
#include "autograd/sage_conv_function.h"
#include "autograd/sage_linear_function.h"
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;

// x (rows..., in), weight (out, in), bias (out) unless !bias. parity_scale grows with the
// longest reduction: in (y), out (dx), the rows (dW, db).
// diff_x / diff_w: whether gradcheck perturbs x / weight (large rows keep the check short).
OpCase la_case(const std::string& name, Shape x, int64_t out, bool bias, FusedAct act,
               double slope = 0.1, bool diff_x = true, bool diff_w = true) {
  const int64_t in = x.back();
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < x.size(); ++d) rows *= x[d];
  std::vector<InputSpec> inputs = {{std::move(x), InputKind::normal, 0, diff_x},
                                   {{out, in}, InputKind::normal, 0, diff_w}};
  if (bias) inputs.push_back({{out}});
  OpCase c{name, "fused", inputs, [bias, act, slope](V v) {
             return linear_act(v[0], v[1], bias ? v[2] : Tensor(), act, slope);
           }};
  const int64_t k = std::max({in, out, rows});
  c.parity_scale = k > 8 ? static_cast<double>(k) / 8.0 : 1.0;
  return c;
}

// sage_linear: a (N, in_l), weight_l (out, in_l), bias (out) unless !bias, x (N, in_r),
// weight_r (out, in_r) — every input perturbed by gradcheck, or only the bias when !diff_all
// (large rows keep the check short).
OpCase sl_case(const std::string& name, int64_t n, int64_t in_l, int64_t in_r, int64_t out,
               bool bias, FusedAct act, double slope = 0.1, bool diff_all = true) {
  const InputKind normal = InputKind::normal;
  std::vector<InputSpec> inputs = {{{n, in_l}, normal, 0, diff_all},
                                   {{out, in_l}, normal, 0, diff_all}};
  if (bias) inputs.push_back({{out}});
  inputs.push_back({{n, in_r}, normal, 0, diff_all});
  inputs.push_back({{out, in_r}, normal, 0, diff_all});
  OpCase c{name, "fused", inputs, [bias, act, slope](V v) {
             const size_t r = bias ? 3 : 2;
             return sage_linear(v[0], v[1], bias ? v[2] : Tensor(), v[r], v[r + 1], act, slope);
           }};
  const int64_t k = std::max({in_l + in_r, out, n});
  c.parity_scale = k > 8 ? static_cast<double>(k) / 8.0 : 1.0;
  return c;
}

// sage_conv: x (n, in), the edges' sources and destinations (e each, in [0, n)), weight_l
// (out, in), bias (out) unless !bias, weight_r (out, in). The index is built from the edge lists
// on the inputs' device (csr_aggregate_index), as SAGEConv's graph builds it.
OpCase sc_case(const std::string& name, int64_t n, int64_t e, int64_t in, int64_t out, bool bias,
               FusedAct act, double slope = 0.1) {
  const InputKind normal = InputKind::normal;
  std::vector<InputSpec> inputs = {{{n, in}, normal},
                                   {{e}, InputKind::index, n, false},
                                   {{e}, InputKind::index, n, false},
                                   {{out, in}, normal}};
  if (bias) inputs.push_back({{out}});
  inputs.push_back({{out, in}, normal});
  OpCase c{name, "fused", inputs, [n, bias, act, slope](V v) {
             const size_t r = bias ? 5 : 4;
             return sage_conv(v[0], csr_aggregate_index(v[1], v[2], n, n), v[3],
                              bias ? v[4] : Tensor(), v[r], act, slope);
           }};
  const int64_t k = std::max({2 * in, out, n});
  c.parity_scale = k > 8 ? static_cast<double>(k) / 8.0 : 1.0;
  return c;
}

// it3_head_loss over a head n_0 → widths… → C at batch B: inputs h_f, h_F (B, n_0) (perturbed),
// s0 (B, C), f's 2L + 2 tensors (perturbed), F's 2L + 2 (not: F is frozen). With loss = false,
// feature_head(h_f, s0, f): the head's forward alone, which has no gradient (parity only).
OpCase head_case(const std::string& name, int64_t B, std::vector<int64_t> widths, int64_t C,
                 It3HeadSpec spec, bool loss = true) {
  const int64_t n0 = widths.front();
  widths.push_back(C);
  std::vector<InputSpec> inputs = {{{B, n0}, InputKind::normal, 0, loss},
                                   {{B, n0}, InputKind::normal, 0, loss},
                                   {{B, C}, InputKind::normal, 0, false}};
  for (bool diff : {loss, false}) {
    inputs.push_back({{n0, C}, InputKind::normal, 0, diff});
    inputs.push_back({{n0}, InputKind::normal, 0, diff});
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      inputs.push_back({{widths[l + 1], widths[l]}, InputKind::normal, 0, diff});
      inputs.push_back({{widths[l + 1]}, InputKind::normal, 0, diff});
    }
  }
  const size_t per_net = 2 * widths.size();
  OpCase c{name, "fused", inputs, [spec, per_net, loss](V v) {
             const std::vector<Tensor> f(v.begin() + 3, v.begin() + 3 + long(per_net));
             const std::vector<Tensor> F(v.begin() + 3 + long(per_net), v.end());
             if (!loss) return feature_head(v[0], v[2], f, spec);
             return it3_head_loss(v[0], v[1], v[2], f, F, spec).loss;
           }};
  c.gradcheck = loss;
  int64_t k = std::max(B, C);
  for (int64_t w : widths) k = std::max(k, w);
  c.parity_scale = static_cast<double>(k) / 4.0;
  return c;
}

OpCase dist_case(const std::string& name, Shape s, DistanceKind k) {
  OpCase c{name, "fused", {{s}, {s}}, [k](V v) {
             return k == DistanceKind::l1 ? l1_distance(v[0], v[1]) : mse_distance(v[0], v[1]);
           }};
  c.parity_scale = 2.0;
  return c;
}
}  // namespace

std::vector<OpCase> fused_cases() {
  const FusedAct none = FusedAct::none, relu = FusedAct::relu, leaky = FusedAct::leaky_relu;
  return {
      // The IT³ tabular MLP's first layer at batch 8: (8,14)·(30,14)ᵀ + b.
      la_case("linear_act_it3_none", {8, 14}, 30, true, none),
      la_case("linear_act_it3_relu", {8, 14}, 30, true, relu),
      la_case("linear_act_it3_leaky", {8, 14}, 30, true, leaky),
      la_case("linear_act_nobias_relu", {5, 7}, 3, false, relu),
      la_case("linear_act_nobias_none", {5, 7}, 3, false, none),
      la_case("linear_act_3d_leaky", {2, 3, 6}, 4, true, leaky, 0.01),
      la_case("linear_act_1d_relu", {6}, 4, true, relu),
      // GPU general forward (in 17 > 16, N·out 8256 > 8192); only the bias is perturbed (the
      // whole layer would take seconds of gradcheck; tests/fused_test.cpp checks its gradients).
      la_case("linear_act_general_fwd_relu", {64, 17}, 129, true, relu, 0.1, false, false),
      // GPU general backward (N 1030 > 1024): gz + db kernel, then two GEMMs.
      la_case("linear_act_long_batch_leaky", {1030, 2}, 3, true, leaky),
      la_case("linear_act_long_batch_none", {1030, 2}, 3, true, none, 0.1, false, true),
      // SAGEConv's fused linear part (autograd/sage_linear_function.h).
      sl_case("sage_linear_relu", 6, 5, 3, 4, true, relu),
      sl_case("sage_linear_leaky", 7, 3, 3, 5, true, leaky),
      sl_case("sage_linear_none_bias", 5, 4, 4, 3, true, none),
      sl_case("sage_linear_none_nobias", 5, 4, 4, 3, false, none),
      sl_case("sage_linear_relu_nobias", 4, 2, 3, 3, false, relu),
      // out 40 > 32: two column blocks of the gz/db kernel.
      sl_case("sage_linear_wide_relu", 9, 3, 2, 40, true, relu),
      // GPU tiled GEMMs with the bias + activation in the second GEMM's store (hand backend):
      // 32x32 tiles with float4 stores; out 37 (scalar stores); and 17 000 rows (the 128x64
      // tile on an H100, and the tiled split-K for both weight gradients in the backward; too
      // large for a gradcheck).
      sl_case("sage_linear_tiled_relu", 700, 64, 64, 64, true, relu, 0.1, false),
      sl_case("sage_linear_tiled_leaky_out37", 3000, 20, 24, 37, true, leaky, 0.1, false),
      [&] {
        OpCase c = sl_case("sage_linear_tall_leaky", 17000, 64, 64, 64, true, leaky, 0.1, false);
        c.gradcheck = false;
        return c;
      }(),
      // A SAGEConv layer as one op (autograd/sage_conv_function.h): random edges, so some
      // nodes have no in-edge.
      sc_case("sage_conv_relu", 9, 20, 4, 5, true, relu),
      sc_case("sage_conv_leaky_nobias", 7, 12, 3, 6, false, leaky),
      sc_case("sage_conv_none", 6, 10, 5, 3, true, none),
      [&] {
        // The bench model's width over more nodes than one 64-row tile of the fused kernel.
        OpCase c = sc_case("sage_conv_w64_relu", 150, 600, 64, 64, true, relu);
        c.gradcheck = false;
        c.grad_parity = true;
        return c;
      }(),
      // The IT³ loss of a feature-injection head (the cnn's at a small width), and its forward.
      head_case("it3_head_mse", 3, {5, 4}, 3, {leaky, {relu, none}, 0.1, DistanceKind::mse}),
      head_case("it3_head_l1_one_layer", 2, {4}, 3, {relu, {none}, 0.1, DistanceKind::l1}),
      [&] {  // ~4 000 perturbable elements: gradients by parity only
        OpCase c = head_case("it3_head_cnn_b8", 8, {50, 50}, 10,
                             {leaky, {leaky, none}, 0.01, DistanceKind::l1});
        c.gradcheck = false;
        c.grad_parity = true;
        return c;
      }(),
      head_case("feature_head", 4, {6, 5}, 3, {leaky, {leaky, none}, 0.1, DistanceKind::l1}, false),
      dist_case("l1_distance_3x4", {3, 4}, DistanceKind::l1),
      dist_case("l1_distance_1000", {1000}, DistanceKind::l1),
      dist_case("mse_distance_3x4", {3, 4}, DistanceKind::mse),
      dist_case("mse_distance_2x3x5", {2, 3, 5}, DistanceKind::mse),
  };
}

}  // namespace idem::testing
