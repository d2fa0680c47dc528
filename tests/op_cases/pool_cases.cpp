// Op-case rows for the pool family: max and average pooling (non-overlapping, strided with
// padding, overlapping windows), adaptive average pooling (down, up, and uneven windows),
// global average pooling, and nearest / bilinear upsampling (integer and fractional scales,
// downsampling, align_corners on and off, a 1-pixel output).
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
}  // namespace

std::vector<OpCase> pool_cases() {
  return {
      pool_case("max_pool2d_k2", {2, 3, 6, 6}, [](V x) { return max_pool2d(x[0], 2); }),
      pool_case("max_pool2d_k3_s2_p1", {2, 2, 7, 7}, [](V x) { return max_pool2d(x[0], 3, 2, 1); }),
      pool_case("max_pool2d_overlap_k3_s1", {2, 2, 5, 6},
                [](V x) { return max_pool2d(x[0], 3, 1); }),
      pool_case("max_pool2d_k2_odd_input", {2, 2, 7, 5}, [](V x) { return max_pool2d(x[0], 2); }),
      // Wide enough for the 2×2 fast path's four-window steps plus a one-window tail (Q = 5).
      pool_case("max_pool2d_k2_wide_odd", {2, 2, 9, 11}, [](V x) { return max_pool2d(x[0], 2); }),

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
}

}  // namespace idem::testing
