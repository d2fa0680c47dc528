// L1 convolution: validate (shapes, groups, dtypes, devices, window limits), allocate, dispatch.
// conv_transpose2d is built from the same three kernels: its forward is conv2d's backward-data,
// its input gradient is conv2d's forward and its weight gradient conv2d's backward-weight, each
// on the "conv" geometry whose input is the transposed conv's output (see transpose_shape).
#include "core/ops/conv.h"

#include "core/ops/checks.h"
#include "core/ops/elementwise.h"

namespace idem::ops {

namespace {

void check_params(const ConvParams& p, const char* op) {
  IDEM_CHECK(p.stride_h >= 1 && p.stride_w >= 1, op, "stride must be >= 1, got (", p.stride_h, ", ",
             p.stride_w, ")");
  IDEM_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, "padding must be >= 0, got (", p.pad_h, ", ",
             p.pad_w, ")");
  IDEM_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, op, "dilation must be >= 1, got (",
             p.dilation_h, ", ", p.dilation_w, ")");
  IDEM_CHECK(p.groups >= 1, op, "groups must be >= 1, got ", p.groups);
}

void check_4d(const Shape& s, const char* op, const char* what) {
  IDEM_CHECK(s.size() == 4, op, "expected a 4-D ", what, ", got ", shape_str(s));
}

// Tensors of one convolution: defined, floating, one dtype, one device.
void check_operands(std::initializer_list<const Tensor*> ts, const char* op) {
  check_same_device(ts, op);
  const Tensor* first = *ts.begin();
  for (const Tensor* t : ts) {
    check_floating(*t, op);
    check_same_dtype(*first, *t, op);
  }
}

void check_bias(const Tensor& bias, const Tensor& like, int64_t channels, const char* op) {
  if (!bias.defined()) return;
  check_operands({&like, &bias}, op);
  IDEM_CHECK(bias.dim() == 1 && bias.size(0) == channels, op, "bias ", shape_str(bias.shape()),
             " must be (", channels, ") for ", channels, " output channels");
}

void check_grad_shape(const Tensor& g, const Shape& want, const char* op) {
  IDEM_CHECK(g.shape() == want, op, "grad_out ", shape_str(g.shape()),
             " does not match the forward output ", shape_str(want));
}

// The conv2d geometry behind conv_transpose2d of x_shape (N, C_in, H, W) by w_shape
// (C_in, O/G, R, S): the conv's input is the transposed conv's output (N, O, Ho, Wo), its
// weight is w read as (O_conv = C_in, C_conv/G = O/G, R, S), its output is x (P = H, Q = W).
ConvShape transpose_shape(const Shape& x_shape, const Shape& w_shape, const ConvParams& p,
                          int64_t oph, int64_t opw, const char* op) {
  check_4d(x_shape, op, "input (N,C_in,H,W)");
  check_4d(w_shape, op, "weight (C_in,O/groups,R,S)");
  check_params(p, op);
  const int64_t G = p.groups;
  IDEM_CHECK(x_shape[1] > 0 && x_shape[2] > 0 && x_shape[3] > 0, op,
             "expected non-empty channels and plane, got input ", shape_str(x_shape));
  IDEM_CHECK(w_shape[1] > 0 && w_shape[2] > 0 && w_shape[3] > 0, op, "weight ", shape_str(w_shape),
             " has an empty dim");
  IDEM_CHECK(x_shape[1] == w_shape[0], op, "input ", shape_str(x_shape), " has ", x_shape[1],
             " channels but weight ", shape_str(w_shape), " expects ", w_shape[0],
             " (dim 0 of the weight)");
  IDEM_CHECK(x_shape[1] % G == 0, op, "input channels ", x_shape[1],
             " are not divisible by groups ", G);
  IDEM_CHECK(oph >= 0 && opw >= 0, op, "output_padding must be >= 0, got (", oph, ", ", opw, ")");
  IDEM_CHECK((oph < p.stride_h || oph < p.dilation_h) && (opw < p.stride_w || opw < p.dilation_w),
             op, "output_padding (", oph, ", ", opw,
             ") must be smaller than either stride or dilation, got stride (", p.stride_h, ", ",
             p.stride_w, ") and dilation (", p.dilation_h, ", ", p.dilation_w, ")");
  ConvShape s;
  s.p = p;
  s.N = x_shape[0];
  s.O = x_shape[1];
  s.P = x_shape[2];
  s.Q = x_shape[3];
  s.C = w_shape[1] * G;
  s.R = w_shape[2];
  s.S = w_shape[3];
  s.H = (s.P - 1) * p.stride_h - 2 * p.pad_h + p.dilation_h * (s.R - 1) + oph + 1;
  s.W = (s.Q - 1) * p.stride_w - 2 * p.pad_w + p.dilation_w * (s.S - 1) + opw + 1;
  IDEM_CHECK(s.H > 0 && s.W > 0, op, "input ", shape_str(x_shape), " with weight ",
             shape_str(w_shape), " gives a non-positive output size (", s.H, ", ", s.W, ")");
  return s;
}

Shape x_of(const ConvShape& s) {
  return {s.N, s.C, s.H, s.W};
}
Shape y_of(const ConvShape& s) {
  return {s.N, s.O, s.P, s.Q};
}
Shape w_of(const ConvShape& s) {
  return {s.O, s.C / s.p.groups, s.R, s.S};
}

// The three kernels, checked to have work to do.
void run_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
             const ConvShape& s) {
  if (y.numel() == 0) return;
  dispatch(
      y, [&] { cpu::conv2d_fwd(y, x, w, bias, s); }, [&] { cuda::conv2d_fwd(y, x, w, bias, s); });
}
void run_bwd_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvShape& s) {
  if (dx.numel() == 0) return;
  dispatch(
      dx, [&] { cpu::conv2d_bwd_data(dx, dy, w, s); },
      [&] { cuda::conv2d_bwd_data(dx, dy, w, s); });
}
void run_bwd_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvShape& s) {
  if (s.N == 0) {
    fill_(dw, 0.0);  // an empty batch contributes nothing
    return;
  }
  dispatch(
      dw, [&] { cpu::conv2d_bwd_weight(dw, dy, x, s); },
      [&] { cuda::conv2d_bwd_weight(dw, dy, x, s); });
}

}  // namespace

ConvShape conv2d_shape(const Shape& x_shape, const Shape& w_shape, const ConvParams& p,
                       const char* op) {
  check_4d(x_shape, op, "input (N,C,H,W)");
  check_4d(w_shape, op, "weight (O,C/groups,R,S)");
  check_params(p, op);
  const int64_t G = p.groups;
  IDEM_CHECK(x_shape[1] > 0 && x_shape[2] > 0 && x_shape[3] > 0, op,
             "expected non-empty channels and plane, got input ", shape_str(x_shape));
  IDEM_CHECK(w_shape[0] > 0 && w_shape[1] > 0 && w_shape[2] > 0 && w_shape[3] > 0, op, "weight ",
             shape_str(w_shape), " has an empty dim");
  IDEM_CHECK(x_shape[1] % G == 0, op, "input channels ", x_shape[1],
             " are not divisible by groups ", G, " (input ", shape_str(x_shape), ")");
  IDEM_CHECK(w_shape[0] % G == 0, op, "output channels ", w_shape[0],
             " are not divisible by groups ", G, " (weight ", shape_str(w_shape), ")");
  IDEM_CHECK(w_shape[1] * G == x_shape[1], op, "input ", shape_str(x_shape), " has ", x_shape[1],
             " channels but weight ", shape_str(w_shape), " with groups ", G, " expects ",
             w_shape[1] * G, " (dim 1 of the weight times groups)");
  ConvShape s;
  s.p = p;
  s.N = x_shape[0];
  s.C = x_shape[1];
  s.H = x_shape[2];
  s.W = x_shape[3];
  s.O = w_shape[0];
  s.R = w_shape[2];
  s.S = w_shape[3];
  const int64_t eff_r = p.dilation_h * (s.R - 1) + 1, eff_s = p.dilation_w * (s.S - 1) + 1;
  IDEM_CHECK(s.H + 2 * p.pad_h >= eff_r && s.W + 2 * p.pad_w >= eff_s, op, "input ",
             shape_str(x_shape), " padded to (", s.H + 2 * p.pad_h, "x", s.W + 2 * p.pad_w,
             ") is smaller than the dilated kernel (", eff_r, "x", eff_s, ") of weight ",
             shape_str(w_shape));
  s.P = (s.H + 2 * p.pad_h - eff_r) / p.stride_h + 1;
  s.Q = (s.W + 2 * p.pad_w - eff_s) / p.stride_w + 1;
  return s;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p) {
  const char* op = "conv2d";
  check_defined(x, op, "input");
  check_defined(w, op, "weight");
  check_operands({&x, &w}, op);
  const ConvShape s = conv2d_shape(x.shape(), w.shape(), p, op);
  check_bias(bias, x, s.O, op);
  Tensor y = empty(y_of(s), x.options());
  run_fwd(y, x, w, bias, s);
  return y;
}

Tensor conv2d_backward_data(const Tensor& grad_out, const Tensor& w, const Shape& x_shape,
                            const ConvParams& p) {
  const char* op = "conv2d_backward_data";
  check_defined(grad_out, op, "grad_out");
  check_defined(w, op, "weight");
  check_operands({&grad_out, &w}, op);
  const ConvShape s = conv2d_shape(x_shape, w.shape(), p, op);
  check_grad_shape(grad_out, y_of(s), op);
  Tensor dx = empty(x_shape, grad_out.options());
  run_bwd_data(dx, grad_out, w, s);
  return dx;
}

Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& w_shape,
                              const ConvParams& p) {
  const char* op = "conv2d_backward_weight";
  check_defined(grad_out, op, "grad_out");
  check_defined(x, op, "input");
  check_operands({&grad_out, &x}, op);
  const ConvShape s = conv2d_shape(x.shape(), w_shape, p, op);
  check_grad_shape(grad_out, y_of(s), op);
  Tensor dw = empty(w_shape, grad_out.options());
  run_bwd_weight(dw, grad_out, x, s);
  return dw;
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p,
                        int64_t output_pad_h, int64_t output_pad_w) {
  const char* op = "conv_transpose2d";
  check_defined(x, op, "input");
  check_defined(w, op, "weight");
  check_operands({&x, &w}, op);
  const ConvShape s = transpose_shape(x.shape(), w.shape(), p, output_pad_h, output_pad_w, op);
  check_bias(bias, x, s.C, op);
  // y = convᵀ(x, w) : (N,C_in,H,W)·(C_in,O/G,R,S) -> (N,O,Ho,Wo)
  Tensor y = empty(x_of(s), x.options());
  run_bwd_data(y, x, w, s);
  if (!bias.defined() || y.numel() == 0) return y;
  return binary(y, bias.view_as_shape({1, s.C, 1, 1}), BinaryOp::add);
}

Tensor conv_transpose2d_backward_input(const Tensor& grad_out, const Tensor& w,
                                       const Shape& x_shape, const ConvParams& p,
                                       int64_t output_pad_h, int64_t output_pad_w) {
  const char* op = "conv_transpose2d_backward_input";
  check_defined(grad_out, op, "grad_out");
  check_defined(w, op, "weight");
  check_operands({&grad_out, &w}, op);
  const ConvShape s = transpose_shape(x_shape, w.shape(), p, output_pad_h, output_pad_w, op);
  check_grad_shape(grad_out, x_of(s), op);
  // dx = conv(g, w) : (N,O,Ho,Wo)·(C_in,O/G,R,S) -> (N,C_in,H,W)
  Tensor dx = empty(x_shape, grad_out.options());
  run_fwd(dx, grad_out, w, Tensor(), s);
  return dx;
}

Tensor conv_transpose2d_backward_weight(const Tensor& grad_out, const Tensor& x,
                                        const Shape& w_shape, const ConvParams& p,
                                        int64_t output_pad_h, int64_t output_pad_w) {
  const char* op = "conv_transpose2d_backward_weight";
  check_defined(grad_out, op, "grad_out");
  check_defined(x, op, "input");
  check_operands({&grad_out, &x}, op);
  const ConvShape s = transpose_shape(x.shape(), w_shape, p, output_pad_h, output_pad_w, op);
  check_grad_shape(grad_out, x_of(s), op);
  // dw = Σ_n x_n ⋆ g_n : (N,C_in,H,W)(N,O,Ho,Wo) -> (C_in,O/G,R,S); x plays conv's dy
  Tensor dw = empty(w_shape, grad_out.options());
  IDEM_CHECK(w_of(s) == w_shape, op, "internal: weight shape ", shape_str(w_shape));
  run_bwd_weight(dw, x, grad_out, s);
  return dw;
}

}  // namespace idem::ops
