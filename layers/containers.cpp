#include "layers/containers.h"

#include <sstream>

#include "layers/init.h"

namespace idem {

// ---- Dropout ----

Dropout::Dropout(double p, std::optional<uint64_t> seed)
    : Module("Dropout"), p_(p), seed_(init::resolve_seed(seed)) {
  IDEM_CHECK(p >= 0.0 && p < 1.0, "Dropout", "probability must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  // One offset per draw: the Philox counter's element index runs inside the draw.
  return dropout(x, p_, true, seed_, offset_++);
}

std::string Dropout::extra_repr() const {
  std::ostringstream os;
  os << "p=" << p_;
  return os.str();
}

std::shared_ptr<Module> Dropout::clone_impl() const {
  auto d = std::make_shared<Dropout>(p_, seed_);
  d->offset_ = offset_;
  return d;
}

// ---- pooling ----

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

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_) + ", end_dim=" + std::to_string(end_);
}

// ---- Sequential ----

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules)
    : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Sequential& Sequential::push_back(std::shared_ptr<Module> m) {
  return push_back(std::to_string(size()), std::move(m));
}

Sequential& Sequential::push_back(const std::string& name, std::shared_ptr<Module> m) {
  add_child(name, std::move(m));
  return *this;
}

std::shared_ptr<Module> Sequential::operator[](size_t i) const {
  IDEM_CHECK(i < size(), "Sequential", "index ", i, " out of range for ", size(), " modules");
  return children()[i].second;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& [name, m] : children()) h = m->forward(h);
  return h;
}

std::shared_ptr<Module> Sequential::clone_impl() const {
  auto s = std::make_shared<Sequential>();
  for (const auto& [name, m] : children()) s->push_back(name, m->clone());
  return s;
}

// ---- Residual ----

Residual::Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> shortcut)
    : Module("Residual"), body_(std::move(body)), shortcut_(std::move(shortcut)) {
  register_module("body", body_);
  if (shortcut_) register_module("shortcut", shortcut_);
}

Tensor Residual::forward(const Tensor& x) {
  Tensor f = body_->forward(x);
  Tensor s = shortcut_ ? shortcut_->forward(x) : x;
  IDEM_CHECK(f.shape() == s.shape(), "Residual", "body output ", shape_str(f.shape()),
             " does not match the shortcut ", shape_str(s.shape()));
  return s + f;
}

std::shared_ptr<Module> Residual::clone_impl() const {
  return std::make_shared<Residual>(body_->clone(), shortcut_ ? shortcut_->clone() : nullptr);
}

}  // namespace idem
