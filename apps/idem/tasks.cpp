#include "apps/idem/tasks.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "data/corruptions.h"
#include "data/table.h"
#include "it3/models.h"
#include "it3/recipe.h"

namespace idem::cli {

// ---- config ----

const char* demo_size_name(DemoSize s) {
  switch (s) {
    case DemoSize::quick: return "quick";
    case DemoSize::cpu: return "cpu";
    case DemoSize::full: return "full";
  }
  return "?";
}

void size_demo(TaskConfig& cfg, DemoSize size) {
  struct Row {
    const char* task;
    DemoSize size;
    int64_t max_train, max_test, width;  // -1 / 0: the task's own default
  };
  // Sized by measurement on a 2-core CPU (README, docs/performance.md): the cpu rows keep the
  // full model and cut data, epochs (Task::default_epochs) and severities (demo_shifts).
  static const Row rows[] = {
      {"fmnist", DemoSize::quick, 6000, 256, 16},
      {"fmnist", DemoSize::cpu, 20000, 500, 0},   // memo alone costs 8 forwards of each image
      {"fmnist", DemoSize::full, -1, 2000, 0},  // 2 000 test images × 76 shifts × 6 methods
      {"airfoil", DemoSize::quick, 500, 100, 32},
      {"airfoil", DemoSize::cpu, 1000, 100, 0},
  };
  for (const Row& r : rows) {
    if (cfg.task != r.task || size != r.size) continue;
    if (cfg.max_train < 0) cfg.max_train = r.max_train;
    if (cfg.max_test < 0) cfg.max_test = r.max_test;
    if (cfg.width == 0) cfg.width = r.width;
  }
}

json::Value TaskConfig::to_json() const {
  json::Value v = json::Value::object();
  v.set("task", task);
  v.set("data", data);
  v.set("target", target);
  v.set("split", split);
  v.set("max_train", max_train);
  v.set("max_test", max_test);
  v.set("width", width);
  v.set("neutral", neutral);
  v.set("seed", int64_t(seed));
  v.set("model", model);
  v.set("aux", aux);
  return v;
}

TaskConfig TaskConfig::from_json(const json::Value& v) {
  TaskConfig c;
  c.task = v.at("task").as_string();
  c.data = v.at("data").as_string();
  c.target = v.at("target").as_string();
  c.split = v.at("split").as_string();
  c.max_train = v.at("max_train").as_int();
  c.max_test = v.at("max_test").as_int();
  c.width = v.at("width").as_int();
  c.neutral = v.at("neutral").as_double();
  c.seed = uint64_t(v.at("seed").as_int());
  if (const json::Value* m = v.find("model")) c.model = m->as_string();  // older runs: the default
  if (const json::Value* a = v.find("aux")) c.aux = a->as_string();      // older runs: no head
  return c;
}

bool is_task_name(const std::string& name) { return name == "fmnist" || name == "tabular" || name == "airfoil"; }

std::string task_metric_name(const std::string& task) {
  if (task == "fmnist") return "error %";
  if (task == "tabular") return "MAE";
  if (task == "airfoil") return "MAE of CL";
  fail("idem", "unknown task '", task, "' (expected ", kTaskNames, ")");
}

std::pair<std::string, double> Task::shift_family(const std::string& shift) {
  if (shift == "clean") return {"clean", 0.0};
  const auto colon = shift.find(':');
  if (colon == std::string::npos) return {shift, 0.0};
  const std::string fam = shift.substr(0, colon), lvl = shift.substr(colon + 1);
  char* end = nullptr;
  const double x = std::strtod(lvl.c_str(), &end);
  return {fam, (end && *end == '\0') ? x : 0.0};
}

void Task::validate_shift(const std::string& shift) const {
  const auto all = all_shifts();
  if (std::find(all.begin(), all.end(), shift) != all.end()) return;
  std::string some;
  for (size_t i = 0; i < all.size() && i < 6; ++i) some += (i ? ", " : "") + all[i];
  fail(name(), "unknown shift '", shift, "' (valid: ", some, all.size() > 6 ? ", ..." : "", ")");
}

std::vector<it3::Input> Task::stat_batches(int64_t batch, int64_t max_samples, Device device) const {
  std::vector<it3::Input> out;
  const int64_t n = std::min(train_size(), max_samples);
  for (int64_t b = 0; b + 1 < n; b += batch) {
    std::vector<int64_t> idx;
    for (int64_t i = b; i < std::min(n, b + batch); ++i) idx.push_back(i);
    out.push_back(train_batch(idx, device).x);
  }
  return out;
}

namespace {

// Rows `idx` of a (N, ...) tensor.
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& idx, Device device) {
  Tensor index = from_vector<int64_t>(idx, {int64_t(idx.size())});
  NoGradGuard ng;
  return index_select(t, 0, index).to(device);
}

std::vector<int64_t> range_idx(int64_t b, int64_t e) {
  std::vector<int64_t> v;
  for (int64_t i = b; i < e; ++i) v.push_back(i);
  return v;
}

double classification_error(const Tensor& pred, const Tensor& y) {
  Tensor p = pred.to(Device::cpu());
  std::vector<float> v = p.to(DType::f32).to_vector<float>();
  std::vector<int64_t> lab = y.to(Device::cpu()).to_vector<int64_t>();
  const int64_t n = p.size(0), c = p.size(1);
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = v.data() + i * c;
    const int64_t arg = std::max_element(row, row + c) - row;
    wrong += arg != lab[size_t(i)];
  }
  return n ? 100.0 * double(wrong) / double(n) : 0.0;
}

// ---- fmnist ----

class FmnistTask : public Task {
 public:
  explicit FmnistTask(TaskConfig cfg) : Task(std::move(cfg)) {
    if (cfg_.data == "synthetic") {
      // The built-in stand-in (tests, smoke runs): no files needed.
      const int64_t ntr = cfg_.max_train > 0 ? cfg_.max_train : 2000;
      const int64_t nte = cfg_.max_test > 0 ? cfg_.max_test : 500;
      data_.train = data::synthetic_images(ntr, cfg_.seed);
      data_.test = data::synthetic_images(nte, cfg_.seed + 1000003);
      data_.source = "synthetic (built-in)";
    } else {
      data_ = data::load_fmnist(cfg_.data, cfg_.max_train, cfg_.max_test);
    }
    if (!cfg_.model.empty() && cfg_.model != "bn-cnn" && cfg_.model != "small-cnn")
      fail("fmnist", "unknown model '", cfg_.model, "' (expected bn-cnn or small-cnn)");
  }
  bool small_cnn() const { return cfg_.model == "small-cnn"; }
  std::string name() const override { return "fmnist"; }
  it3::TaskKind kind() const override { return it3::TaskKind::classification; }
  std::shared_ptr<it3::RecursiveModel> make_model(uint64_t seed) const override {
    // small-cnn: the MNIST notebook's LeNet (fixed widths; --width does not apply).
    const int64_t w = cfg_.width > 0 ? cfg_.width : 32;
    auto m = small_cnn() ? it3::make_small_cnn(data_.train.num_classes, {}, seed)
                         : it3::make_bn_cnn(data_.train.num_classes, w, 2 * w, {}, seed);
    // --aux: the training-time head of TTT or Masked TTT on the body's features (part of the checkpoint).
    const Shape& s = data_.train.images.shape();
    it3::attach_aux_head(*m, it3::parse_aux_kind(cfg_.aux), {s[1], s[2], s[3]}, seed);
    return m;
  }
  it3::BnMode default_adapt_bn_mode() const override {
    // The BatchNorm CNN: running statistics make IT³ much worse than none (issue 16's
    // measurements); the LeNet has no BatchNorm, and batch mode would only forbid batches of one.
    return small_cnn() ? it3::BnMode::running : it3::BnMode::batch;
  }
  int default_epochs(DemoSize size) const override { return size == DemoSize::full ? 3 : size == DemoSize::cpu ? 2 : 1; }
  int64_t default_batch() const override { return 128; }
  double default_lr() const override { return 2e-3; }
  int64_t default_adapt_batch() const override { return 128; }
  double default_adapt_lr() const override { return 1e-4; }
  int64_t train_size() const override { return data_.train.size(); }
  Batch train_batch(const std::vector<int64_t>& idx, Device d) const override {
    return {it3::Input(take_rows(data_.train.images, idx, d)), take_rows(data_.train.labels, idx, d)};
  }
  std::vector<std::string> all_shifts() const override {
    std::vector<std::string> s{"clean"};
    for (const auto& c : data::corruption_names())
      for (int sev = 1; sev <= 5; ++sev) s.push_back(c + ":" + std::to_string(sev));
    return s;
  }
  std::vector<std::string> demo_shifts(DemoSize size) const override {
    if (size == DemoSize::full) return all_shifts();
    // quick: severity 5 of every corruption; cpu: severities 3 and 5 (a middle and the
    // strongest level, the one the TTA literature reports).
    std::vector<std::string> s{"clean"};
    for (const auto& c : data::corruption_names()) {
      if (size == DemoSize::cpu) s.push_back(c + ":3");
      s.push_back(c + ":5");
    }
    return s;
  }
  std::vector<Batch> eval_batches(const std::string& shift, int64_t batch, Device d) const override {
    Tensor images = data_.test.images;
    if (shift != "clean") {
      auto [fam, sev] = shift_family(shift);
      if (shift.find(':') == std::string::npos || sev < 1 || sev > 5 || sev != std::floor(sev))
        fail("fmnist", "bad shift '", shift, "': expected clean or CORRUPTION:SEVERITY with severity 1..5, e.g. gaussian_noise:5");
      images = data::corrupt(images, data::parse_corruption(fam), int(sev), cfg_.seed + 17);
    }
    std::vector<Batch> out;
    const int64_t n = images.size(0);
    for (int64_t b = 0; b < n; b += batch) {
      auto idx = range_idx(b, std::min(n, b + batch));
      out.push_back({it3::Input(take_rows(images, idx, d)), take_rows(data_.test.labels, idx, d)});
    }
    return out;
  }
  double metric(const Tensor& pred, const Tensor& y) const override { return classification_error(pred, y); }
  std::string describe() const override {
    std::ostringstream os;
    os << "fmnist from " << data_.source << ": " << data_.train.size() << " train, "
       << data_.test.size() << " test images";
    return os.str();
  }

 private:
  data::FmnistData data_;
};

// ---- tabular ----

class TabularTask : public Task {
 public:
  explicit TabularTask(TaskConfig cfg) : Task(std::move(cfg)) {
    data::Table t = cfg_.data.empty() ? data::friedman1(2000, 10, 1.0, cfg_.seed) : data::read_table(cfg_.data);
    if (cfg_.max_train > 0 && t.rows > cfg_.max_train) {
      t.values.resize(size_t(cfg_.max_train * t.cols));
      t.rows = cfg_.max_train;
    }
    source_ = cfg_.data.empty() ? "Friedman #1 (built-in, n = 2000, 10 features)" : cfg_.data;
    const int target = cfg_.target.empty() ? -1 : data::resolve_column(t, cfg_.target);
    if (cfg_.split.rfind("quantile:", 0) == 0) {
      quantile_col_ = cfg_.split.substr(9);
      split_ = data::quantile_split(t, data::resolve_column(t, quantile_col_), 0.8, target);
    } else if (cfg_.split == "first" || cfg_.split == "shuffle") {
      split_ = data::split_table(t, target, 0.9, cfg_.split == "shuffle", cfg_.seed);
    } else {
      fail("tabular", "unknown split '", cfg_.split, "' (expected first, shuffle or quantile:COLUMN)");
    }
  }
  std::string name() const override { return "tabular"; }
  it3::TaskKind kind() const override { return it3::TaskKind::regression; }
  std::shared_ptr<it3::RecursiveModel> make_model(uint64_t seed) const override {
    const int64_t d = split_.x_train.size(1);
    const double neutral = cfg_.neutral != 0.0 ? cfg_.neutral : 50.0;
    if (cfg_.width > 0)
      return it3::make_mlp_model(d, {cfg_.width, cfg_.width, cfg_.width}, it3::SignalSpec::regression(1, neutral), {}, seed);
    return it3::make_mlp_model(d, {30, 20, 10}, it3::SignalSpec::regression(1, neutral), {}, seed);
  }
  it3::TrainOptions train_options() const override {
    // The signal pass gets the model's own (detached) prediction: trained on y, the MLP learns
    // to copy its signal and IT³ then only hurts (docs/results.md has the measurements).
    it3::TrainOptions t = it3::TrainOptions::for_task(kind());
    t.source = it3::SignalSource::self_detached;
    return t;
  }
  int default_epochs(DemoSize size) const override { return size == DemoSize::full ? 30 : 10; }
  int64_t default_batch() const override { return 32; }
  double default_lr() const override { return 1e-3; }
  int64_t default_adapt_batch() const override { return 32; }
  int default_adapt_steps() const override { return 3; }
  double default_adapt_lr() const override { return 1e-4; }
  int64_t train_size() const override { return split_.x_train.size(0); }
  Batch train_batch(const std::vector<int64_t>& idx, Device d) const override {
    return {it3::Input(take_rows(split_.x_train, idx, d)), take_rows(split_.y_train, idx, d)};
  }
  std::vector<std::string> all_shifts() const override {
    std::vector<std::string> s{"clean", "zero:0.05", "zero:0.10", "zero:0.15", "zero:0.20"};
    if (!quantile_col_.empty()) s.push_back("quantile:" + quantile_col_);
    return s;
  }
  std::vector<std::string> demo_shifts(DemoSize) const override { return all_shifts(); }
  void validate_shift(const std::string& shift) const override {
    if (shift.rfind("zero:", 0) == 0) {
      char* end = nullptr;
      const double p = std::strtod(shift.c_str() + 5, &end);
      if (shift.size() > 5 && *end == '\0' && p >= 0.0 && p <= 1.0) return;
      fail("tabular", "bad shift '", shift, "': zero:P needs a probability 0 <= P <= 1, e.g. zero:0.10");
    }
    Task::validate_shift(shift);
  }
  std::vector<Batch> eval_batches(const std::string& shift, int64_t batch, Device d) const override {
    validate_shift(shift);
    Tensor x = split_.x_test;
    auto [fam, level] = shift_family(shift);
    if (shift == "clean") {
    } else if (fam == "zero") {
      if (!(level >= 0.0 && level <= 1.0) || shift.size() <= 5)
        fail("tabular", "bad shift '", shift, "': zero:P needs 0 <= P <= 1, e.g. zero:0.10");
      x = data::zero_features(x, level, cfg_.seed + 29);
    } else if (fam == "quantile") {
      if (quantile_col_.empty() || shift.substr(9) != quantile_col_)
        fail("tabular", "shift '", shift, "' needs a run trained with --split ", shift,
             " (train below the column's 0.8 quantile, test above it)");
    } else {
      fail("tabular", "unknown shift '", shift, "' (expected clean, zero:P or quantile:COLUMN)");
    }
    std::vector<Batch> out;
    const int64_t n = x.size(0);
    for (int64_t b = 0; b < n; b += batch) {
      auto idx = range_idx(b, std::min(n, b + batch));
      out.push_back({it3::Input(take_rows(x, idx, d)), take_rows(split_.y_test, idx, d)});
    }
    return out;
  }
  double metric(const Tensor& pred, const Tensor& y) const override {
    return data::mae(pred.to(Device::cpu()), y.to(Device::cpu()), split_.y_std);
  }
  std::string describe() const override {
    std::ostringstream os;
    os << "tabular from " << source_ << ": " << split_.x_train.size(0) << " train, "
       << split_.x_test.size(0) << " test rows, " << split_.x_train.size(1) << " features, target "
       << split_.target_name << " (split " << cfg_.split << ")";
    return os.str();
  }

 private:
  data::TabularSplit split_;
  std::string source_, quantile_col_;
};

// ---- airfoil ----

class AirfoilTask : public Task {
 public:
  explicit AirfoilTask(TaskConfig cfg) : Task(std::move(cfg)) {
    const int64_t ntr = cfg_.max_train > 0 ? cfg_.max_train : 2000;
    const int64_t nte = cfg_.max_test > 0 ? cfg_.max_test : 200;
    train_ = data::generate_airfoils(ntr, data::train_ranges(), cfg_.seed);
    test_.push_back(data::generate_airfoils(nte, data::train_ranges(), cfg_.seed + 1));
    for (int level = 1; level <= 4; ++level)
      test_.push_back(data::generate_airfoils(nte, data::ood_ranges(level), cfg_.seed + 1 + uint64_t(level)));
    scaler_ = data::fit_target_scaler(train_);
  }
  std::string name() const override { return "airfoil"; }
  it3::TaskKind kind() const override { return it3::TaskKind::regression; }
  std::shared_ptr<it3::RecursiveModel> make_model(uint64_t seed) const override {
    const int64_t w = cfg_.width > 0 ? cfg_.width : 64;
    const double neutral = cfg_.neutral != 0.0 ? cfg_.neutral : 0.2;
    return it3::make_gmm_model(5, w, 3, 4, it3::SignalSpec::regression(1, neutral), {}, seed);
  }
  int default_epochs(DemoSize size) const override { return size == DemoSize::full ? 40 : size == DemoSize::cpu ? 20 : 10; }
  int64_t default_batch() const override { return 32; }
  double default_lr() const override { return 2e-3; }
  int64_t default_adapt_batch() const override { return 32; }
  int default_adapt_steps() const override { return 3; }
  double default_adapt_lr() const override { return 1e-3; }
  int64_t train_size() const override { return int64_t(train_.size()); }
  Batch train_batch(const std::vector<int64_t>& idx, Device d) const override {
    std::vector<data::AirfoilSample> pick;
    pick.reserve(idx.size());
    for (int64_t i : idx) pick.push_back(train_[size_t(i)]);
    return make_batch(pick, 0, pick.size(), d);
  }
  std::vector<std::string> all_shifts() const override {
    return {"clean", "ood:1", "ood:2", "ood:3", "ood:4"};
  }
  std::vector<std::string> demo_shifts(DemoSize) const override { return all_shifts(); }
  std::vector<Batch> eval_batches(const std::string& shift, int64_t batch, Device d) const override {
    int level = 0;
    if (shift != "clean") {
      auto [fam, lvl] = shift_family(shift);
      if (fam != "ood" || lvl < 1 || lvl > 4 || lvl != std::floor(lvl))
        fail("airfoil", "unknown shift '", shift, "' (expected clean or ood:LEVEL with LEVEL 1..4)");
      level = int(lvl);
    }
    const auto& set = test_[size_t(level)];
    std::vector<Batch> out;
    for (size_t b = 0; b < set.size(); b += size_t(batch))
      out.push_back(make_batch(set, b, std::min(set.size(), b + size_t(batch)), d));
    return out;
  }
  double metric(const Tensor& pred, const Tensor& y) const override {
    return data::mae(pred.to(Device::cpu()), y.to(Device::cpu()), scaler_.std);
  }
  std::string describe() const override {
    std::ostringstream os;
    os << "airfoil (panel method, generated): " << train_.size() << " train airfoils ("
       << data::ranges_str(data::train_ranges()) << "), " << test_[0].size()
       << " test airfoils per level";
    return os.str();
  }

 private:
  Batch make_batch(const std::vector<data::AirfoilSample>& s, size_t b, size_t e, Device d) const {
    auto g = std::make_shared<Graph>(data::batch_airfoils(s, b, e, Device::cpu()));
    // Pseudo-coordinates are chord fractions of ~0.05 between neighbours; ×10 puts them near
    // the O(1) scale GMMConv's Gaussian kernels are initialized for.
    {
      NoGradGuard ng;
      g->edge_attr = g->edge_attr * 10.0;
    }
    Tensor x = g->x;
    g->x = Tensor();
    auto gd = std::make_shared<Graph>(g->to(d));
    return {it3::Input(x.to(d), gd), data::airfoil_targets(s, b, e, scaler_, d)};
  }

  std::vector<data::AirfoilSample> train_;
  std::vector<std::vector<data::AirfoilSample>> test_;  // [0] in-distribution, [1..4] OOD levels
  data::TargetScaler scaler_;
};

}  // namespace

it3::AdaptOptions task_adapt_options(const Task& task, it3::Method m, const std::string& recipe, uint64_t seed) {
  it3::AdaptOptions o = it3::AdaptOptions::for_method(m);
  o.seed = seed;
  if (m == it3::Method::none || m == it3::Method::bn) return o;  // no step: nothing of the task's applies
  o.steps = task.default_adapt_steps();
  o.lr = task.default_adapt_lr();
  if (it3::uses_it3_loss(m)) o.bn_mode = task.default_adapt_bn_mode();
  if (!recipe.empty() && (m == it3::Method::it3 || m == it3::Method::random_step)) {
    it3::apply_adapt_recipe(recipe, o);
    if (m == it3::Method::random_step) o.readout_before_update = false;  // predicts f_θ(x, ∅)
  }
  return o;
}

std::string task_method_blocker(const Task& task, it3::RecursiveModel& model, it3::Method m) {
  if (it3::uses_entropy_loss(m) && task.kind() == it3::TaskKind::regression)
    return "it needs a classification task and " + task.name() + " is a regression task";
  if ((m == it3::Method::tent || m == it3::Method::eata || m == it3::Method::deyo) && !it3::has_normalization(model))
    return "it adapts normalization layers and the model has none";
  const it3::AuxKind need = it3::aux_head_needed(m);
  if (need != it3::AuxKind::none && task.kind() == it3::TaskKind::regression)
    return "it reads an image head trained with --aux, which only a classification task takes, and " + task.name() +
           " is a regression task";
  if (need != it3::AuxKind::none && it3::aux_kind(model) != need)
    return std::string("the model has no ") + it3::aux_kind_name(need) + " head (train with --aux " +
           it3::aux_kind_name(need) + ")";
  return "";
}

std::unique_ptr<Task> make_task(const TaskConfig& cfg) {
  if (!cfg.model.empty() && cfg.task != "fmnist")
    fail("idem", "--model chooses among fmnist's models; task ", cfg.task, " has one model");
  if (it3::parse_aux_kind(cfg.aux) != it3::AuxKind::none && cfg.task != "fmnist")
    fail("idem", "--aux ", cfg.aux, " trains an image head for test-time training (ttt, ttt++, masked-ttt): it needs "
         "an image classification task (fmnist); task ", cfg.task, " is a regression task");
  if (cfg.task == "fmnist") return std::make_unique<FmnistTask>(cfg);
  if (cfg.task == "tabular") return std::make_unique<TabularTask>(cfg);
  if (cfg.task == "airfoil") return std::make_unique<AirfoilTask>(cfg);
  fail("idem", "unknown task '", cfg.task, "' (expected ", kTaskNames, ")");
}

}  // namespace idem::cli
