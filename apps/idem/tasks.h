// The three IT³ tasks (docs/task_*.md) behind one interface: data, model, training
// defaults, the distribution shifts and the metric. The experiments (experiment.cpp) only talk
// to this interface, so `idem train|adapt|demo` work the same way for every task.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/airfoil.h"
#include "data/fmnist.h"
#include "data/tabular.h"
#include "io/json.h"
#include "it3/adapt.h"
#include "it3/recursive_model.h"
#include "it3/training.h"

namespace idem::cli {

struct Batch {
  it3::Input x;
  Tensor y;  // (B) i64 labels or (B, 1) standardized targets
};

// What a run needs to rebuild its task exactly (stored in config.json and the checkpoint).
struct TaskConfig {
  std::string task = "fmnist";  // fmnist | tabular | airfoil
  std::string data;             // fmnist: IDX directory; tabular: table file ("" = built-in)
  std::string target;           // tabular: target column (name or index; "" = last)
  std::string split = "first";  // tabular: first (first 90 % train) | shuffle | quantile:COL
  int64_t max_train = -1;       // subsets (fmnist images, airfoil samples, tabular rows)
  int64_t max_test = -1;
  int64_t width = 0;            // model width knob (0 = the task's default)
  double neutral = 0.0;         // regression ∅ (0 = the task's default)
  uint64_t seed = 0;
  std::string model;            // fmnist: "" or bn-cnn (the default), small-cnn (LeNet, no BatchNorm)
  std::string aux;              // fmnist: "" (none), rotation or masked: a TTT head trained jointly (it3/aux_head.h)

  json::Value to_json() const;
  static TaskConfig from_json(const json::Value& v);
};

// How much of a task `idem demo` runs:
//   quick  a smoke run: small subsets, severity 5 only, one epoch (about a minute on 2 cores);
//   cpu    sized to finish within minutes on a 2-core CPU, and still every method on the clean
//          set and on every shift family (the default when the demo runs on the CPU);
//   full   the whole protocol (the default on a GPU, or `--full`).
// `idem train` and `idem adapt` always use `full` defaults.
enum class DemoSize { quick, cpu, full };
const char* demo_size_name(DemoSize s);

// The tasks every command knows, as their errors and help texts list them; is_task_name says
// whether `name` is one of them (make_task builds exactly these).
inline constexpr const char* kTaskNames = "fmnist, tabular or airfoil";
bool is_task_name(const std::string& name);

// The metric of a task by its name ("error %" for fmnist, "MAE" for tabular, "MAE of CL" for
// airfoil): what Task::metric_name() returns, and what `idem report` labels a results.csv with.
// Throws idem::Error for an unknown task.
std::string task_metric_name(const std::string& task);

class Task {
 public:
  virtual ~Task() = default;
  const TaskConfig& config() const { return cfg_; }
  virtual std::string name() const = 0;
  virtual it3::TaskKind kind() const = 0;
  // A fresh model (CPU, f32) seeded from `seed`.
  virtual std::shared_ptr<it3::RecursiveModel> make_model(uint64_t seed) const = 0;
  virtual it3::TrainOptions train_options() const { return it3::TrainOptions::for_task(kind()); }
  virtual int default_epochs(DemoSize size) const = 0;
  virtual int64_t default_batch() const = 0;
  virtual double default_lr() const = 0;
  // Test-time defaults: batch size, steps and lr for the gradient-based methods.
  virtual int64_t default_adapt_batch() const = 0;
  virtual int default_adapt_steps() const { return 1; }
  virtual double default_adapt_lr() const = 0;
  // BatchNorm statistics of the IT³ rows (it3, it3-online, random-step) unless --bn-mode says
  // otherwise: batch for a BatchNorm classifier (docs/it3.md, "Defaults").
  virtual it3::BnMode default_adapt_bn_mode() const { return it3::BnMode::running; }

  virtual int64_t train_size() const = 0;
  // Training samples `idx` as one batch on `device`.
  virtual Batch train_batch(const std::vector<int64_t>& idx, Device device) const = 0;
  // A few training batches for ActMAD's statistics.
  std::vector<it3::Input> stat_batches(int64_t batch, int64_t max_samples, Device device) const;

  // Every shift name this task understands, and the demo's list.
  virtual std::vector<std::string> all_shifts() const = 0;
  virtual std::vector<std::string> demo_shifts(DemoSize size) const = 0;
  // Throws idem::Error naming the shift and the valid forms unless `shift` is one this task can
  // evaluate (called before any training, so a typo costs nothing). Default: one of all_shifts().
  virtual void validate_shift(const std::string& shift) const;
  // The test set under `shift`, in batches of `batch` (throws idem::Error for a bad name).
  virtual std::vector<Batch> eval_batches(const std::string& shift, int64_t batch,
                                          Device device) const = 0;
  // The task's metric on a whole test set: classification error in %, or MAE in the target's
  // original units.
  virtual double metric(const Tensor& pred, const Tensor& y) const = 0;
  virtual std::string metric_name() const { return task_metric_name(name()); }
  // For plots: the shift's family ("gaussian_noise", "zero", "ood", "clean") and level.
  static std::pair<std::string, double> shift_family(const std::string& shift);
  // A one-line description of the data for logs.
  virtual std::string describe() const = 0;

 protected:
  explicit Task(TaskConfig cfg) : cfg_(std::move(cfg)) {}
  TaskConfig cfg_;
};

// Fills the data sizes and the model width that the demo of cfg.task uses at `size`, where the
// user left them unset (max_train/max_test < 0, width 0). One table for all tasks, in tasks.cpp.
void size_demo(TaskConfig& cfg, DemoSize size);

// Builds the task (loads or generates its data).
std::unique_ptr<Task> make_task(const TaskConfig& cfg);

// The options a task's row of method `m` starts from, before the user's flags: the method's
// reference configuration (it3::AdaptOptions::for_method), then, for a method that adapts
// weights, the task's K and lr and (IT³ rows) its BatchNorm mode, then the recipe for the IT³
// rows it3 and random-step ("" = none). `idem adapt` and `idem demo` apply the flags given
// explicitly on top; `idem bench it3 --task` times these (with its own check_finite and fused).
it3::AdaptOptions task_adapt_options(const Task& task, it3::Method m, const std::string& recipe, uint64_t seed);

// Why `--method all` leaves `m` out on this task with this model ("" when it runs it): the
// entropy methods need classes, tent, eata and deyo a normalization layer, and ttt, ttt++ and
// masked-ttt the head they read, trained with the model (--aux).
std::string task_method_blocker(const Task& task, it3::RecursiveModel& model, it3::Method m);

}  // namespace idem::cli
