// L1 pooling and upsampling: validate (4-D NCHW, floating, window limits as PyTorch), allocate,
// dispatch. Backward ops take the input's shape and check grad_out against the forward's output.
#include "core/ops/pool.h"

#include "core/ops/checks.h"

namespace idem::ops {

namespace {

void check_nchw(const Tensor& x, const char* op, const char* what) {
  check_defined(x, op, what);
  check_floating(x, op);
  IDEM_CHECK(x.dim() == 4, op, "expected a 4-D (N,C,H,W) ", what, ", got ", shape_str(x.shape()));
  IDEM_CHECK(x.size(2) > 0 && x.size(3) > 0, op, "expected a non-empty (H,W) plane, got ", what,
             " ", shape_str(x.shape()));
}

void check_shape_4d(const Shape& x_shape, const char* op) {
  IDEM_CHECK(x_shape.size() == 4 && x_shape[2] > 0 && x_shape[3] > 0, op,
             "expected a 4-D (N,C,H,W) input shape with H, W > 0, got ", shape_str(x_shape));
}

// Output extent of one pooled dim; validates the window along it (`dim_name`: "H" or "W").
int64_t pooled_extent(int64_t in, int64_t k, int64_t st, int64_t pad, const char* dim_name,
                      const Shape& x_shape, const char* op) {
  IDEM_CHECK(k > 0, op, "kernel size must be positive, got ", k, " along ", dim_name);
  IDEM_CHECK(st > 0, op, "stride must be positive, got ", st, " along ", dim_name);
  IDEM_CHECK(pad >= 0 && pad <= k / 2, op, "padding ", pad, " along ", dim_name,
             " must be in [0, kernel/2] (kernel ", k, ")");
  IDEM_CHECK(in + 2 * pad >= k, op, "input ", shape_str(x_shape), " is too small along ", dim_name,
             ": ", in, " + 2·padding ", pad, " < kernel ", k);
  return (in + 2 * pad - k) / st + 1;
}

PoolShape pool_shape(const Shape& x_shape, const PoolWindow& win, const char* op) {
  PoolShape s;
  s.NC = x_shape[0] * x_shape[1];
  s.H = x_shape[2];
  s.W = x_shape[3];
  s.kernel_h = win.kernel_h;
  s.kernel_w = win.kernel_w;
  s.stride_h = win.stride_h;
  s.stride_w = win.stride_w;
  s.pad_h = win.pad_h;
  s.pad_w = win.pad_w;
  s.P = pooled_extent(s.H, win.kernel_h, win.stride_h, win.pad_h, "H", x_shape, op);
  s.Q = pooled_extent(s.W, win.kernel_w, win.stride_w, win.pad_w, "W", x_shape, op);
  return s;
}

PoolShape resize_shape(const Shape& x_shape, int64_t out_h, int64_t out_w, const char* op) {
  IDEM_CHECK(out_h > 0 && out_w > 0, op, "output size must be positive, got (", out_h, ", ", out_w,
             ") for input ", shape_str(x_shape));
  PoolShape s;
  s.NC = x_shape[0] * x_shape[1];
  s.H = x_shape[2];
  s.W = x_shape[3];
  s.P = out_h;
  s.Q = out_w;
  return s;
}

Shape out_shape(const Shape& x_shape, const PoolShape& s) {
  return {x_shape[0], x_shape[1], s.P, s.Q};
}

// grad_out must be the forward's output: same N, C, dtype family, and (P,Q).
void check_grad_out(const Tensor& g, const Shape& x_shape, const PoolShape& s, const char* op) {
  check_defined(g, op, "grad_out");
  check_floating(g, op);
  const Shape want = out_shape(x_shape, s);
  IDEM_CHECK(g.shape() == want, op, "grad_out ", shape_str(g.shape()),
             " does not match the output ", shape_str(want), " of input ", shape_str(x_shape));
}

// The argmax indices of a max-pool forward: i64, on grad_out's device, grad_out's shape.
void check_indices(const Tensor& indices, const Tensor& grad_out, const char* op) {
  check_defined(indices, op, "indices");
  check_dtype(indices, DType::i64, op, "indices");
  check_same_device({&grad_out, &indices}, op);
  IDEM_CHECK(indices.shape() == grad_out.shape(), op, "indices ", shape_str(indices.shape()),
             " and grad_out ", shape_str(grad_out.shape()), " must have the same shape");
}

const char* upsample_name(UpsampleMode mode, bool backward) {
  if (mode == UpsampleMode::nearest)
    return backward ? "upsample_nearest2d_backward" : "upsample_nearest2d";
  return backward ? "upsample_bilinear2d_backward" : "upsample_bilinear2d";
}

}  // namespace

std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const PoolWindow& win) {
  const char* op = "max_pool2d";
  check_nchw(x, op, "input");
  const PoolShape s = pool_shape(x.shape(), win, op);
  Tensor y = empty(out_shape(x.shape(), s), x.options());
  Tensor idx = empty(y.shape(), {DType::i64, x.device()});
  if (y.numel() == 0) return {y, idx};
  dispatch(
      x, [&] { cpu::max_pool2d_fwd(y, idx, x, s); }, [&] { cuda::max_pool2d_fwd(y, idx, x, s); });
  return {y, idx};
}

Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& x_shape,
                           const PoolWindow& win) {
  const char* op = "max_pool2d_backward";
  check_shape_4d(x_shape, op);
  const PoolShape s = pool_shape(x_shape, win, op);
  check_grad_out(grad_out, x_shape, s, op);
  check_indices(indices, grad_out, op);
  Tensor gx = empty(x_shape, grad_out.options());
  if (gx.numel() == 0) return gx;
  dispatch(
      gx, [&] { cpu::max_pool2d_bwd(gx, grad_out, indices, s); },
      [&] { cuda::max_pool2d_bwd(gx, grad_out, indices, s); });
  return gx;
}

std::pair<Tensor, Tensor> max_pool2d_act(const Tensor& x, const PoolWindow& win, FusedAct act,
                                         double slope) {
  const char* op = "max_pool2d_act";
  check_nchw(x, op, "input");  // floating; f32 on CUDA
  check_fused_act(act, slope, op);
  const PoolShape s = pool_shape(x.shape(), win, op);
  Tensor y = empty(out_shape(x.shape(), s), x.options());
  Tensor idx = empty(y.shape(), {DType::i64, x.device()});
  if (y.numel() == 0) return {y, idx};
  dispatch(
      x, [&] { cpu::max_pool2d_fwd(y, idx, x, s, act, slope); },
      [&] { cuda::max_pool2d_fwd(y, idx, x, s, act, slope); });
  return {y, idx};
}

Tensor max_pool2d_act_backward(const Tensor& grad_out, const Tensor& out, const Tensor& indices,
                               const Shape& x_shape, const PoolWindow& win, FusedAct act,
                               double slope) {
  const char* op = "max_pool2d_act_backward";
  check_shape_4d(x_shape, op);
  check_fused_act(act, slope, op);
  const PoolShape s = pool_shape(x_shape, win, op);
  check_grad_out(grad_out, x_shape, s, op);
  check_indices(indices, grad_out, op);
  check_defined(out, op, "out");
  check_same_device({&grad_out, &out}, op);
  check_same_dtype(grad_out, out, op);
  IDEM_CHECK(out.shape() == grad_out.shape(), op, "out ", shape_str(out.shape()),
             " (the forward's output) and grad_out ", shape_str(grad_out.shape()),
             " must have the same shape");
  Tensor gx = empty(x_shape, grad_out.options());
  if (gx.numel() == 0) return gx;
  dispatch(
      gx, [&] { cpu::max_pool2d_bwd(gx, grad_out, indices, s, out, act, slope); },
      [&] { cuda::max_pool2d_bwd(gx, grad_out, indices, s, out, act, slope); });
  return gx;
}

Tensor avg_pool2d(const Tensor& x, const PoolWindow& win) {
  const char* op = "avg_pool2d";
  check_nchw(x, op, "input");
  const PoolShape s = pool_shape(x.shape(), win, op);
  Tensor y = empty(out_shape(x.shape(), s), x.options());
  if (y.numel() == 0) return y;
  dispatch(
      x, [&] { cpu::avg_pool2d_fwd(y, x, s); }, [&] { cuda::avg_pool2d_fwd(y, x, s); });
  return y;
}

Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape, const PoolWindow& win) {
  const char* op = "avg_pool2d_backward";
  check_shape_4d(x_shape, op);
  const PoolShape s = pool_shape(x_shape, win, op);
  check_grad_out(grad_out, x_shape, s, op);
  Tensor gx = empty(x_shape, grad_out.options());
  if (gx.numel() == 0) return gx;
  dispatch(
      gx, [&] { cpu::avg_pool2d_bwd(gx, grad_out, s); },
      [&] { cuda::avg_pool2d_bwd(gx, grad_out, s); });
  return gx;
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  const char* op = "adaptive_avg_pool2d";
  check_nchw(x, op, "input");
  const PoolShape s = resize_shape(x.shape(), out_h, out_w, op);
  Tensor y = empty(out_shape(x.shape(), s), x.options());
  if (y.numel() == 0) return y;
  dispatch(
      x, [&] { cpu::adaptive_avg_pool2d_fwd(y, x, s); },
      [&] { cuda::adaptive_avg_pool2d_fwd(y, x, s); });
  return y;
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  check_shape_4d(x_shape, op);
  check_defined(grad_out, op, "grad_out");
  IDEM_CHECK(grad_out.dim() == 4, op, "expected a 4-D grad_out, got ", shape_str(grad_out.shape()));
  const PoolShape s = resize_shape(x_shape, grad_out.size(2), grad_out.size(3), op);
  check_grad_out(grad_out, x_shape, s, op);
  Tensor gx = empty(x_shape, grad_out.options());
  if (gx.numel() == 0) return gx;
  dispatch(
      gx, [&] { cpu::adaptive_avg_pool2d_bwd(gx, grad_out, s); },
      [&] { cuda::adaptive_avg_pool2d_bwd(gx, grad_out, s); });
  return gx;
}

Tensor upsample2d(const Tensor& x, int64_t out_h, int64_t out_w, UpsampleMode mode,
                  bool align_corners) {
  const char* op = upsample_name(mode, false);
  check_nchw(x, op, "input");
  const PoolShape s = resize_shape(x.shape(), out_h, out_w, op);
  Tensor y = empty(out_shape(x.shape(), s), x.options());
  if (y.numel() == 0) return y;
  dispatch(
      x, [&] { cpu::upsample2d_fwd(y, x, s, mode, align_corners); },
      [&] { cuda::upsample2d_fwd(y, x, s, mode, align_corners); });
  return y;
}

Tensor upsample2d_backward(const Tensor& grad_out, const Shape& x_shape, UpsampleMode mode,
                           bool align_corners) {
  const char* op = upsample_name(mode, true);
  check_shape_4d(x_shape, op);
  check_defined(grad_out, op, "grad_out");
  IDEM_CHECK(grad_out.dim() == 4, op, "expected a 4-D grad_out, got ", shape_str(grad_out.shape()));
  const PoolShape s = resize_shape(x_shape, grad_out.size(2), grad_out.size(3), op);
  check_grad_out(grad_out, x_shape, s, op);
  Tensor gx = empty(x_shape, grad_out.options());
  if (gx.numel() == 0) return gx;
  dispatch(
      gx, [&] { cpu::upsample2d_bwd(gx, grad_out, s, mode, align_corners); },
      [&] { cuda::upsample2d_bwd(gx, grad_out, s, mode, align_corners); });
  return gx;
}

}  // namespace idem::ops
