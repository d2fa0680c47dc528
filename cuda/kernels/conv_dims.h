// A convolution's extents as 32-bit ints, shared by the convolution kernels' translation units
// (cuda/kernels/conv.cu builds it from a ConvShape and checks that every extent fits).
#pragma once

namespace idem::cuda {

// x (N, C, H, W) * w (O, Cg, R, S) -> y (N, O, P, Q) with strides (sh, sw), padding (ph, pw),
// dilation (dh, dw) and G groups of Cg = C / G input and Og = O / G output channels. 32-bit for
// cheap index math; flat offsets are computed in 64 bits.
struct ConvDims {
  int N, C, H, W, O, R, S, P, Q;
  int sh, sw, ph, pw, dh, dw;
  int G, Cg, Og;
};

}  // namespace idem::cuda
