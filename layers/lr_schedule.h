// Learning-rate schedules with torch.optim.lr_scheduler semantics: StepLR, CosineAnnealingLR
// (the same recursive "chainable" formulas as PyTorch, so a manual set_lr() in between composes
// the same way), and ReduceLROnPlateau.
//
// As in PyTorch, constructing a scheduler counts as epoch 0 (last_epoch() == 0, lr unchanged);
// each step() advances one epoch and writes the new lr into the optimizer. A scheduler holds a
// reference to its optimizer: the optimizer must outlive it.
#pragma once
#include <cstdint>
#include <string>

#include "layers/optim.h"

namespace idem {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  // Advances one epoch and sets the optimizer's lr.
  void step();
  double last_lr() const { return last_lr_; }  // the lr set by the latest step (or construction)
  int64_t last_epoch() const { return last_epoch_; }
  double base_lr() const { return base_lr_; }  // the optimizer's lr at construction

 protected:
  explicit LRScheduler(Optimizer& opt);
  // The lr for epoch last_epoch_ (already advanced), given the optimizer's current lr.
  virtual double compute_lr(double current_lr) const = 0;

  Optimizer& opt_;
  double base_lr_;
  int64_t last_epoch_ = 0;
  double last_lr_;
};

// lr = base_lr · gamma^⌊epoch / step_size⌋ (applied as: multiply by gamma every step_size epochs).
class StepLR : public LRScheduler {
 public:
  // requires: step_size >= 1.
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1);

 private:
  double compute_lr(double current_lr) const override;
  int64_t step_size_;
  double gamma_;
};

// lr = eta_min + (base_lr - eta_min)(1 + cos(π·epoch / T_max)) / 2, continuing as a cosine wave
// past T_max, as PyTorch does.
class CosineAnnealingLR : public LRScheduler {
 public:
  // requires: T_max >= 1.
  CosineAnnealingLR(Optimizer& opt, int64_t T_max, double eta_min = 0.0);

 private:
  double compute_lr(double current_lr) const override;
  int64_t t_max_;
  double eta_min_;
};

struct PlateauOptions {
  std::string mode = "min";  // "min": lower metric is better; "max": higher is better
  double factor = 0.1;       // new_lr = max(lr · factor, min_lr); requires factor < 1
  int64_t patience = 10;     // bad epochs tolerated before reducing
  double threshold = 1e-4;
  std::string threshold_mode = "rel";  // "rel" or "abs"
  int64_t cooldown = 0;  // epochs to wait after a reduction before counting bad epochs
  double min_lr = 0.0;
  double eps = 1e-8;  // reductions smaller than eps are skipped
};

class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(Optimizer& opt, const PlateauOptions& o = {});
  // Records one epoch's metric and reduces the lr after `patience` epochs without improvement.
  void step(double metric);
  double last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }

 private:
  bool is_better(double a) const;

  Optimizer& opt_;
  PlateauOptions o_;
  bool mode_min_ = true, rel_ = true;
  double best_;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
  int64_t last_epoch_ = 0;
  double last_lr_;
};

}  // namespace idem
