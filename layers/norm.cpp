#include "layers/norm.h"

#include <algorithm>
#include <sstream>

namespace idem {

namespace {
std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace

// ---- BatchNorm ----

BatchNorm::BatchNorm(const char* type_name, std::vector<int64_t> dims, int64_t num_features,
                     BatchNormOptions opt, Options options)
    : Module(type_name),
      dims_(std::move(dims)),
      c_(num_features),
      opt_(opt),
      track_(opt.track_running_stats) {
  IDEM_CHECK(num_features > 0, type_name, "num_features must be positive, got ", num_features);
  IDEM_CHECK(opt.eps > 0, type_name, "eps must be positive, got ", opt.eps);
  IDEM_CHECK(opt.momentum >= 0 && opt.momentum <= 1, type_name, "momentum must be in [0, 1], got ",
             opt.momentum);
  IDEM_CHECK(is_floating(options.dtype), type_name, "parameters must be floating, got ",
             dtype_name(options.dtype));
  if (opt.affine) {
    weight_ = register_parameter("weight", ones({c_}, options));
    bias_ = register_parameter("bias", zeros({c_}, options));
  }
  if (opt.track_running_stats) {
    running_mean_ = register_buffer("running_mean", zeros({c_}, options));
    running_var_ = register_buffer("running_var", ones({c_}, options));
    num_batches_ =
        register_buffer("num_batches_tracked", scalar_tensor(0, {DType::i64, options.device}));
  }
}

void BatchNorm::reset_running_stats() {
  if (!opt_.track_running_stats) return;
  running_mean_.copy_(zeros(running_mean_.shape(), running_mean_.options()));
  running_var_.copy_(ones(running_var_.shape(), running_var_.options()));
  num_batches_.copy_(zeros(num_batches_.shape(), num_batches_.options()));
}

void BatchNorm::set_track_running_stats(bool on) {
  IDEM_CHECK(!on || opt_.track_running_stats, type_name(),
             "was built without running statistics (track_running_stats=False)");
  track_ = on;
}

Tensor BatchNorm::forward(const Tensor& x) {
  IDEM_CHECK(x.defined() && std::find(dims_.begin(), dims_.end(), x.dim()) != dims_.end() &&
                 x.size(1) == c_,
             type_name(), "expected input ",
             dims_.size() == 1 ? "(N, C, H, W)" : "(N, C) or (N, C, L)", " with C = ", c_, ", got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  const bool tracking = track_;
  // Without running statistics there is nothing to use in evaluation: batch stats always.
  const bool use_batch = is_training() || !tracking;
  Tensor y = batch_norm(x, tracking ? running_mean_ : Tensor(), tracking ? running_var_ : Tensor(),
                        weight_, bias_, use_batch, opt_.momentum, opt_.eps);
  if (is_training() && tracking) {
    NoGradGuard no_grad;
    if (!one_.defined() || one_.device() != num_batches_.device())
      one_ = scalar_tensor(1, {DType::i64, num_batches_.device()});
    num_batches_.copy_(add(num_batches_, one_));
  }
  return y;
}

std::string BatchNorm::extra_repr() const {
  return std::to_string(c_) + ", eps=" + num(opt_.eps) + ", momentum=" + num(opt_.momentum) +
         ", affine=" + repr_bool(opt_.affine) +
         ", track_running_stats=" + repr_bool(opt_.track_running_stats);
}

BatchNorm1d::BatchNorm1d(int64_t num_features, BatchNormOptions opt, Options options)
    : BatchNorm("BatchNorm1d", {2, 3}, num_features, opt, options) {}

std::shared_ptr<Module> BatchNorm1d::clone_impl() const {
  auto m = std::make_shared<BatchNorm1d>(c_, opt_);
  m->track_ = track_;
  return m;
}

BatchNorm2d::BatchNorm2d(int64_t num_features, BatchNormOptions opt, Options options)
    : BatchNorm("BatchNorm2d", {4}, num_features, opt, options) {}

std::shared_ptr<Module> BatchNorm2d::clone_impl() const {
  auto m = std::make_shared<BatchNorm2d>(c_, opt_);
  m->track_ = track_;
  return m;
}

// ---- LayerNorm ----

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine, Options options)
    : Module("LayerNorm"), shape_(std::move(normalized_shape)), eps_(eps) {
  IDEM_CHECK(!shape_.empty() && numel_of(shape_) > 0, "LayerNorm",
             "normalized_shape must be non-empty with positive extents, got ", shape_str(shape_));
  IDEM_CHECK(eps > 0, "LayerNorm", "eps must be positive, got ", eps);
  if (elementwise_affine) {
    weight_ = register_parameter("weight", ones(shape_, options));
    bias_ = register_parameter("bias", zeros(shape_, options));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  const int64_t k = static_cast<int64_t>(shape_.size());
  bool ok = x.defined() && x.dim() >= k;
  for (int64_t i = 0; ok && i < k; ++i) ok = x.size(x.dim() - k + i) == shape_[i];
  IDEM_CHECK(ok, "LayerNorm", "expected input (*, ", shape_str(shape_).substr(1), ", got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  return layer_norm(x, k, weight_, bias_, eps_);
}

std::string LayerNorm::extra_repr() const {
  std::string s = "(";
  for (size_t i = 0; i < shape_.size(); ++i) s += (i ? ", " : "") + std::to_string(shape_[i]);
  if (shape_.size() == 1) s += ",";
  return s + "), eps=" + num(eps_) + ", elementwise_affine=" + repr_bool(weight_.defined());
}

std::shared_ptr<Module> LayerNorm::clone_impl() const {
  return std::make_shared<LayerNorm>(shape_, eps_, weight_.defined());
}

// ---- GroupNorm ----

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine,
                     Options options)
    : Module("GroupNorm"), groups_(num_groups), c_(num_channels), eps_(eps) {
  IDEM_CHECK(num_groups > 0 && num_channels > 0 && num_channels % num_groups == 0, "GroupNorm",
             "num_channels ", num_channels, " must be a positive multiple of num_groups ",
             num_groups);
  IDEM_CHECK(eps > 0, "GroupNorm", "eps must be positive, got ", eps);
  if (affine) {
    weight_ = register_parameter("weight", ones({c_}, options));
    bias_ = register_parameter("bias", zeros({c_}, options));
  }
}

Tensor GroupNorm::forward(const Tensor& x) {
  IDEM_CHECK(x.defined() && x.dim() >= 2 && x.size(1) == c_, "GroupNorm", "expected input (N, ", c_,
             ", *), got ", x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  return group_norm(x, groups_, weight_, bias_, eps_);
}

std::string GroupNorm::extra_repr() const {
  return std::to_string(groups_) + ", " + std::to_string(c_) + ", eps=" + num(eps_) +
         ", affine=" + repr_bool(weight_.defined());
}

std::shared_ptr<Module> GroupNorm::clone_impl() const {
  return std::make_shared<GroupNorm>(groups_, c_, eps_, weight_.defined());
}

}  // namespace idem
