// Differentiable pooling and upsampling (NCHW). Each backward is the adjoint of a linear map
// (max pooling: of the selection recorded by the forward's argmax indices; max_pool2d_act
// multiplies it by the activation's derivative), computed by the L1 backward ops in
// core/ops/pool.cpp.
#include "autograd/nn_functions.h"
#include "core/ops/pool.h"

namespace idem {

namespace {

ops::PoolWindow square_window(int64_t kernel, int64_t stride, int64_t padding) {
  ops::PoolWindow w;
  w.kernel_h = w.kernel_w = kernel;
  w.stride_h = w.stride_w = stride == 0 ? kernel : stride;  // 0 means stride = kernel
  w.pad_h = w.pad_w = padding;
  return w;
}

class MaxPool2dNode : public Node {
 public:
  MaxPool2dNode(Tensor indices, Shape x_shape, ops::PoolWindow win)
      : indices_(std::move(indices)), x_shape_(std::move(x_shape)), win_(win) {}
  const char* name() const override { return "max_pool2d"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[n,c,idx[n,c,p,q]] += g[n,c,p,q] : (N,C,P,Q) -> (N,C,H,W)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::max_pool2d_backward(g, indices_, x_shape_, win_)};
  }

 private:
  Tensor indices_;
  Shape x_shape_;
  ops::PoolWindow win_;
};

// The activation's backward and max_pool2d's in one op: dx[argmax] += g · act'(y), act' read
// from the saved output y.
class MaxPool2dActNode : public Node {
 public:
  MaxPool2dActNode(Tensor y, Tensor indices, Shape x_shape, ops::PoolWindow win, FusedAct act,
                   double slope)
      : y_(std::move(y)),
        indices_(std::move(indices)),
        x_shape_(std::move(x_shape)),
        win_(win),
        act_(act),
        slope_(slope) {}
  const char* name() const override { return "max_pool2d_act"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[n,c,idx[n,c,p,q]] += g[n,c,p,q]·act'(y[n,c,p,q]) : (N,C,P,Q) -> (N,C,H,W)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::max_pool2d_act_backward(g, y_, indices_, x_shape_, win_, act_, slope_)};
  }

 private:
  Tensor y_, indices_;
  Shape x_shape_;
  ops::PoolWindow win_;
  FusedAct act_;
  double slope_;
};

class AvgPool2dNode : public Node {
 public:
  AvgPool2dNode(Shape x_shape, ops::PoolWindow win) : x_shape_(std::move(x_shape)), win_(win) {}
  const char* name() const override { return "avg_pool2d"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[h,w] = Σ_{windows (p,q) ∋ (h,w)} g[p,q] / area(p,q) : (N,C,P,Q) -> (N,C,H,W)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::avg_pool2d_backward(g, x_shape_, win_)};
  }

 private:
  Shape x_shape_;
  ops::PoolWindow win_;
};

class AdaptiveAvgPool2dNode : public Node {
 public:
  explicit AdaptiveAvgPool2dNode(Shape x_shape) : x_shape_(std::move(x_shape)) {}
  const char* name() const override { return "adaptive_avg_pool2d"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[h,w] = Σ_{windows (p,q) ∋ (h,w)} g[p,q] / area(p,q) : (N,C,P,Q) -> (N,C,H,W)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::adaptive_avg_pool2d_backward(g, x_shape_)};
  }

 private:
  Shape x_shape_;
};

class Upsample2dNode : public Node {
 public:
  Upsample2dNode(Shape x_shape, UpsampleMode mode, bool align_corners)
      : x_shape_(std::move(x_shape)), mode_(mode), align_corners_(align_corners) {}
  const char* name() const override {
    return mode_ == UpsampleMode::nearest ? "upsample_nearest2d" : "upsample_bilinear2d";
  }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[h,w] = Σ_{p,q} g[p,q] · a_h(p) · a_w(q), a = the interpolation weights of the
    // forward : (N,C,P,Q) -> (N,C,H,W)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::upsample2d_backward(g, x_shape_, mode_, align_corners_)};
  }

 private:
  Shape x_shape_;
  UpsampleMode mode_;
  bool align_corners_;
};

}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const ops::PoolWindow win = square_window(kernel, stride, padding);
  auto [y, indices] = ops::max_pool2d(x, win);
  if (needs_history({x}))
    record(std::make_shared<MaxPool2dNode>(saved(indices), x.shape(), win), {x}, y);
  return y;
}

Tensor max_pool2d_act(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding,
                      FusedAct act, double slope) {
  const ops::PoolWindow win = square_window(kernel, stride, padding);
  auto [y, indices] = ops::max_pool2d_act(x, win, act, slope);
  if (needs_history({x}))
    record(std::make_shared<MaxPool2dActNode>(saved(y), saved(indices), x.shape(), win, act, slope),
           {x}, y);
  return y;
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const ops::PoolWindow win = square_window(kernel, stride, padding);
  Tensor y = ops::avg_pool2d(x, win);
  if (needs_history({x})) record(std::make_shared<AvgPool2dNode>(x.shape(), win), {x}, y);
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  Tensor y = ops::adaptive_avg_pool2d(x, out_h, out_w);
  if (needs_history({x})) record(std::make_shared<AdaptiveAvgPool2dNode>(x.shape()), {x}, y);
  return y;
}

Tensor global_avg_pool2d(const Tensor& x) {
  IDEM_CHECK(x.defined(), "global_avg_pool2d", "input is an undefined tensor");
  IDEM_CHECK(x.dim() == 4, "global_avg_pool2d", "expected a 4-D (N,C,H,W) input, got ",
             shape_str(x.shape()));
  // (N,C,H,W) -> (N,C,1,1) -> (N,C); reshape shares storage and carries the gradient.
  return reshape(adaptive_avg_pool2d(x, 1, 1), {x.size(0), x.size(1)});
}

Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  Tensor y = ops::upsample2d(x, out_h, out_w, UpsampleMode::nearest);
  if (needs_history({x}))
    record(std::make_shared<Upsample2dNode>(x.shape(), UpsampleMode::nearest, false), {x}, y);
  return y;
}

Tensor upsample_bilinear2d(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  Tensor y = ops::upsample2d(x, out_h, out_w, UpsampleMode::bilinear, align_corners);
  if (needs_history({x}))
    record(std::make_shared<Upsample2dNode>(x.shape(), UpsampleMode::bilinear, align_corners), {x},
           y);
  return y;
}

}  // namespace idem
