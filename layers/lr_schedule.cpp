// Learning-rate schedules, transcribed from torch.optim.lr_scheduler (PyTorch 2.x get_lr()).
#include "layers/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace idem {

namespace {
constexpr double kPi = 3.14159265358979323846;

// Python's a % b for b > 0 (never negative).
int64_t py_mod(int64_t a, int64_t b) {
  const int64_t r = a % b;
  return r < 0 ? r + b : r;
}
}  // namespace

LRScheduler::LRScheduler(Optimizer& opt) : opt_(opt), base_lr_(opt.lr()), last_lr_(opt.lr()) {}

void LRScheduler::step() {
  ++last_epoch_;
  const double lr = compute_lr(opt_.lr());
  opt_.set_lr(lr);
  last_lr_ = lr;
}

// ---- StepLR ----

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma)
    : LRScheduler(opt), step_size_(step_size), gamma_(gamma) {
  IDEM_CHECK(step_size >= 1, "StepLR", "step_size must be >= 1, got ", step_size);
  IDEM_CHECK(std::isfinite(gamma) && gamma >= 0.0, "StepLR", "gamma must be finite and >= 0, got ",
             gamma);
}

double StepLR::compute_lr(double current_lr) const {
  if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return current_lr;
  return current_lr * gamma_;
}

// ---- CosineAnnealingLR ----

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, int64_t T_max, double eta_min)
    : LRScheduler(opt), t_max_(T_max), eta_min_(eta_min) {
  IDEM_CHECK(T_max >= 1, "CosineAnnealingLR", "T_max must be >= 1, got ", T_max);
  IDEM_CHECK(std::isfinite(eta_min) && eta_min >= 0.0, "CosineAnnealingLR",
             "eta_min must be finite and >= 0, got ", eta_min);
}

double CosineAnnealingLR::compute_lr(double lr) const {
  const int64_t e = last_epoch_;
  const double T = static_cast<double>(t_max_);
  if (e == 0) return lr;
  // At the trough the recursive ratio below would divide by zero: PyTorch steps up explicitly.
  if (py_mod(e - 1 - t_max_, 2 * t_max_) == 0)
    return lr + (base_lr_ - eta_min_) * (1.0 - std::cos(kPi / T)) / 2.0;
  return (1.0 + std::cos(kPi * static_cast<double>(e) / T)) /
             (1.0 + std::cos(kPi * static_cast<double>(e - 1) / T)) * (lr - eta_min_) +
         eta_min_;
}

// ---- ReduceLROnPlateau ----

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& opt, const PlateauOptions& o)
    : opt_(opt), o_(o), last_lr_(opt.lr()) {
  const char* op = "ReduceLROnPlateau";
  IDEM_CHECK(o.mode == "min" || o.mode == "max", op, "mode must be \"min\" or \"max\", got \"",
             o.mode, "\"");
  IDEM_CHECK(o.threshold_mode == "rel" || o.threshold_mode == "abs", op,
             "threshold_mode must be \"rel\" or \"abs\", got \"", o.threshold_mode, "\"");
  IDEM_CHECK(o.factor < 1.0 && o.factor >= 0.0, op, "factor must be in [0, 1), got ", o.factor);
  IDEM_CHECK(o.patience >= 0 && o.cooldown >= 0, op, "patience and cooldown must be >= 0, got ",
             o.patience, " and ", o.cooldown);
  IDEM_CHECK(o.min_lr >= 0.0 && std::isfinite(o.min_lr), op, "min_lr must be finite and >= 0, got ",
             o.min_lr);
  mode_min_ = o.mode == "min";
  rel_ = o.threshold_mode == "rel";
  best_ = mode_min_ ? std::numeric_limits<double>::infinity()
                    : -std::numeric_limits<double>::infinity();
}

bool ReduceLROnPlateau::is_better(double a) const {
  if (mode_min_) return rel_ ? a < best_ * (1.0 - o_.threshold) : a < best_ - o_.threshold;
  return rel_ ? a > best_ * (o_.threshold + 1.0) : a > best_ + o_.threshold;
}

void ReduceLROnPlateau::step(double metric) {
  ++last_epoch_;
  if (is_better(metric)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    ++num_bad_epochs_;
  }
  if (cooldown_counter_ > 0) {
    --cooldown_counter_;
    num_bad_epochs_ = 0;  // bad epochs during cooldown do not count
  }
  if (num_bad_epochs_ > o_.patience) {
    const double old_lr = opt_.lr();
    const double new_lr = std::max(old_lr * o_.factor, o_.min_lr);
    if (old_lr - new_lr > o_.eps) opt_.set_lr(new_lr);
    cooldown_counter_ = o_.cooldown;
    num_bad_epochs_ = 0;
  }
  last_lr_ = opt_.lr();
}

}  // namespace idem
