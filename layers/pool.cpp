#include "layers/pool.h"

namespace idem {

namespace {
void check_pool(const char* op, int64_t k, int64_t s, int64_t p) {
  IDEM_CHECK(k > 0 && s >= 0 && p >= 0 && 2 * p <= k, op, "kernel_size ", k, ", stride ", s,
             ", padding ", p, " (need kernel > 0, stride >= 0, 0 <= padding <= kernel/2)");
}
std::string pool_repr(int64_t k, int64_t s, int64_t p) {
  return "kernel_size=" + std::to_string(k) + ", stride=" + std::to_string(s ? s : k) +
         ", padding=" + std::to_string(p);
}
}  // namespace

MaxPool2d::MaxPool2d(int64_t k, int64_t s, int64_t p)
    : Module("MaxPool2d"), kernel_(k), stride_(s), padding_(p) {
  check_pool("MaxPool2d", k, s, p);
}
std::string MaxPool2d::extra_repr() const {
  return pool_repr(kernel_, stride_, padding_);
}

AvgPool2d::AvgPool2d(int64_t k, int64_t s, int64_t p)
    : Module("AvgPool2d"), kernel_(k), stride_(s), padding_(p) {
  check_pool("AvgPool2d", k, s, p);
}
std::string AvgPool2d::extra_repr() const {
  return pool_repr(kernel_, stride_, padding_);
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t out_h, int64_t out_w)
    : Module("AdaptiveAvgPool2d"), out_h_(out_h), out_w_(out_w) {
  IDEM_CHECK(out_h > 0 && out_w > 0, "AdaptiveAvgPool2d", "output size must be positive, got (",
             out_h, ", ", out_w, ")");
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  // (1,1) is the common case (global pooling); keep the 4-D result as PyTorch does.
  if (out_h_ == 1 && out_w_ == 1 && x.defined() && x.dim() == 4) {
    const int64_t n = x.size(0), c = x.size(1);
    return reshape(global_avg_pool2d(x), {n, c, 1, 1});
  }
  return adaptive_avg_pool2d(x, out_h_, out_w_);
}

std::string AdaptiveAvgPool2d::extra_repr() const {
  if (out_h_ == out_w_) return "output_size=" + std::to_string(out_h_);
  return "output_size=(" + std::to_string(out_h_) + ", " + std::to_string(out_w_) + ")";
}

}  // namespace idem
