// Op-case rows for the pool family: max and average pooling (non-overlapping, strided with
// padding, overlapping windows), adaptive average pooling (down, up, and uneven windows),
// global average pooling, and nearest / bilinear upsampling (integer and fractional scales,
// downsampling, align_corners on and off, a 1-pixel output), and max_pool2d_act (max pooling
// with its activation fused: small gradcheck rows, and the bench cnn's pool + LeakyReLU shapes).
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using V = const std::vector<Tensor>&;
using Fn = std::function<Tensor(V)>;

OpCase pool_case(const std::string& name, Shape x, Fn fn, double parity_scale = 1.0) {
  OpCase c{name, "pool", {{std::move(x)}}, std::move(fn)};
  c.parity_scale = parity_scale;
  return c;
}

// max_pool2d_act rows: inputs ±U[0.2, 1.5) keep every window's maximum off relu's kink at 0,
// where a finite difference would straddle it.
OpCase act_case(const std::string& name, Shape x, Fn fn) {
  OpCase c{name, "pool", {{std::move(x), InputKind::away_from_zero}}, std::move(fn)};
  return c;
}

// The pool + activation pairs of the bench cnn (it3/models.cpp make_small_cnn: MaxPool2d(2) then
// LeakyReLU, at 10×24×24 and 20×8×8) at batch 8 and 64: fused with relu and leaky_relu, and the
// two-op leaky_relu(max_pool2d) they replace, so the benchmarks time both. Too many elements
// for the finite-difference check: parity compares their input gradients.
void add_cnn_pool_act_rows(std::vector<OpCase>& rows) {
  const Shape planes[] = {{10, 24, 24}, {20, 8, 8}};
  for (int64_t batch : {8, 64}) {
    for (const Shape& chw : planes) {
      const Shape x = {batch, chw[0], chw[1], chw[2]};
      const std::string at = "_b" + std::to_string(batch) + "_c" + std::to_string(chw[0]) + "_" +
                             std::to_string(chw[1]);
      OpCase three[] = {
          act_case("max_pool2d_act_relu_cnn" + at, x,
                   [](V v) { return max_pool2d_act(v[0], 2, 0, 0, FusedAct::relu); }),
          act_case("max_pool2d_act_leaky_relu_cnn" + at, x,
                   [](V v) { return max_pool2d_act(v[0], 2, 0, 0, FusedAct::leaky_relu, 0.01); }),
          act_case("max_pool2d_then_leaky_relu_cnn" + at, x,
                   [](V v) { return leaky_relu(max_pool2d(v[0], 2), 0.01); }),
      };
      for (OpCase& c : three) {
        c.gradcheck = false;
        c.grad_parity = true;
        rows.push_back(std::move(c));
      }
    }
  }
}
}  // namespace

std::vector<OpCase> pool_cases() {
  std::vector<OpCase> rows = {
      pool_case("max_pool2d_k2", {2, 3, 6, 6}, [](V x) { return max_pool2d(x[0], 2); }),
      pool_case("max_pool2d_k3_s2_p1", {2, 2, 7, 7}, [](V x) { return max_pool2d(x[0], 3, 2, 1); }),
      pool_case("max_pool2d_overlap_k3_s1", {2, 2, 5, 6},
                [](V x) { return max_pool2d(x[0], 3, 1); }),
      pool_case("max_pool2d_k2_odd_input", {2, 2, 7, 5}, [](V x) { return max_pool2d(x[0], 2); }),
      // Wide enough for the 2×2 fast path's four-window steps plus a one-window tail (Q = 5).
      pool_case("max_pool2d_k2_wide_odd", {2, 2, 9, 11}, [](V x) { return max_pool2d(x[0], 2); }),

      act_case("max_pool2d_act_none_k3_s2_p1", {2, 2, 7, 7},
               [](V x) { return max_pool2d_act(x[0], 3, 2, 1, FusedAct::none); }),
      act_case("max_pool2d_act_relu_k2", {2, 3, 6, 6},
               [](V x) { return max_pool2d_act(x[0], 2, 0, 0, FusedAct::relu); }),
      act_case("max_pool2d_act_leaky_relu_k2_wide_odd", {2, 2, 9, 11},
               [](V x) { return max_pool2d_act(x[0], 2, 0, 0, FusedAct::leaky_relu, 0.2); }),
      // Overlapping windows: an input that is the maximum of several sums their g·act'.
      act_case("max_pool2d_act_leaky_relu_overlap_k3_s1", {2, 2, 5, 6},
               [](V x) { return max_pool2d_act(x[0], 3, 1, 0, FusedAct::leaky_relu, 0.1); }),

      pool_case("avg_pool2d_k2", {2, 3, 6, 6}, [](V x) { return avg_pool2d(x[0], 2); }),
      pool_case("avg_pool2d_k3_s2_p1", {2, 2, 7, 7}, [](V x) { return avg_pool2d(x[0], 3, 2, 1); }),
      pool_case("avg_pool2d_overlap_k3_s1_p1", {2, 2, 5, 6},
                [](V x) { return avg_pool2d(x[0], 3, 1, 1); }),

      pool_case("adaptive_avg_pool2d_down", {2, 3, 7, 5},
                [](V x) { return adaptive_avg_pool2d(x[0], 3, 2); }),
      pool_case("adaptive_avg_pool2d_up", {2, 2, 3, 4},
                [](V x) { return adaptive_avg_pool2d(x[0], 5, 6); }),
      pool_case("adaptive_avg_pool2d_same", {2, 2, 4, 4},
                [](V x) { return adaptive_avg_pool2d(x[0], 4, 4); }),
      pool_case(
          "global_avg_pool2d", {2, 4, 5, 6}, [](V x) { return global_avg_pool2d(x[0]); },
          30.0 / 8.0),

      pool_case("upsample_nearest2d_x2", {2, 2, 3, 4},
                [](V x) { return upsample_nearest2d(x[0], 6, 8); }),
      pool_case("upsample_nearest2d_frac", {2, 2, 3, 4},
                [](V x) { return upsample_nearest2d(x[0], 5, 7); }),
      pool_case("upsample_nearest2d_down", {2, 2, 7, 5},
                [](V x) { return upsample_nearest2d(x[0], 3, 2); }),

      pool_case("upsample_bilinear2d_x2", {2, 2, 3, 4},
                [](V x) { return upsample_bilinear2d(x[0], 6, 8); }),
      pool_case("upsample_bilinear2d_frac", {2, 2, 3, 4},
                [](V x) { return upsample_bilinear2d(x[0], 7, 5); }),
      pool_case("upsample_bilinear2d_align", {2, 2, 4, 3},
                [](V x) { return upsample_bilinear2d(x[0], 6, 7, true); }),
      pool_case("upsample_bilinear2d_down", {2, 2, 7, 6},
                [](V x) { return upsample_bilinear2d(x[0], 3, 4); }),
      pool_case("upsample_bilinear2d_down_align", {2, 2, 7, 6},
                [](V x) { return upsample_bilinear2d(x[0], 3, 4, true); }),
      pool_case("upsample_bilinear2d_to_1px_align", {2, 2, 3, 4},
                [](V x) { return upsample_bilinear2d(x[0], 1, 3, true); }),
  };
  add_cnn_pool_act_rows(rows);
  return rows;
}

}  // namespace idem::testing
