// `idem train`, `idem adapt`, `idem demo`: the IT³ experiments end to end.
//
// A run directory holds:
//   config.json              the effective configuration (task, training, adaptation), versions,
//                            and "models": one {seed, checkpoint, final_train_loss} per seed
//   steps.jsonl              one JSON object per training step and per adapted test batch, each
//                            with its seed
//   checkpoint.safetensors   the trained weights of the first seed (PyTorch-style names;
//                            metadata: the task config); checkpoint-seed<S>.safetensors for every
//                            further seed S (--seeds N trains seeds --seed .. --seed+N-1)
//   results.csv              the metric and the cost columns per seed, shift and method
//   results.md               mean ± 95 % CI over the seeds per shift and method, paired Δ over
//                            none and bn, the cost table (report.h)
//   metric.svg / cost.svg    the metric against the shift level per method (CI bars); µs per sample
//   pareto.svg / pareto.csv  the metric (mean over the shifts) against µs per sample per method,
//                            CI bars both ways, the Pareto front marked (pareto.h); its table is
//                            also the last one of results.md
// Seeds vary the model's initialization, the training order and the training draws; the data,
// its split and the shifted test sets come from --seed alone, so every seed sees the same test
// images under the same corruptions and the Δ columns compare like with like.
// Every file is written to a temporary name and renamed (never half-written), except
// steps.jsonl, which is appended and flushed line by line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>

#include "apps/idem/cli.h"
#include "apps/idem/report.h"
#include "apps/idem/tasks.h"
#include "core/error.h"
#include "core/kernels/runtime.h"
#include "core/profiler.h"
#include "core/philox.h"
#include "io/file.h"
#include "it3/adapt.h"
#include "it3/adapt_path.h"
#include "it3/recipe.h"
#include "layers/checkpoint.h"
#include "layers/init.h"
#include "layers/optim.h"

namespace fs = std::filesystem;

namespace idem::cli {

namespace {

std::string timestamp() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  return buf;
}

std::string make_run_dir(const std::string& out, const std::string& prefix) {
  std::string dir = out.empty() ? "runs/" + prefix + "-" + timestamp() : out;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("idem", "cannot create the run directory ", dir, ": ", ec.message());
  return dir;
}

// Appends JSON lines, flushed one by one so a killed run keeps every finished step.
class JsonLines {
 public:
  explicit JsonLines(const std::string& path) : f_(path, std::ios::app) {
    if (!f_) fail("idem", "cannot open ", path, " for appending");
  }
  void write(const std::string& line) { f_ << line << '\n' << std::flush; }

 private:
  std::ofstream f_;
};

// Options that shape the task and the model (train and demo).
std::vector<OptionSpec> task_options() {
  return {{"task", true, "fmnist", kTaskNames},
          {"data", true, "", "fmnist: IDX directory ('synthetic' = built-in shapes); tabular: a numeric table file"},
          {"target", true, "", "tabular: target column (name or index; default the last)"},
          {"split", true, "first", "tabular: first (first 90% train), shuffle, or quantile:COLUMN"},
          {"max-train", true, "-1", "use at most N training samples (-1 = all; airfoil: how many to generate)"},
          {"max-test", true, "-1", "use at most N test samples (airfoil: per OOD level)"},
          {"width", true, "0", "model width (0 = the task's default)"},
          {"neutral", true, "0", "regression ∅ value (0 = the task's default)"},
          {"epochs", true, "0", "training epochs (0 = the task's default)"},
          {"batch", true, "0", "training batch size (0 = the task's default)"},
          {"lr", true, "0", "training learning rate, Adam (0 = the task's default)"},
          {"p-feed", true, "-1", "probability per batch of the signal pass (-1 = the task's default)"},
          {"signal", true, "", "what the signal pass gets: target, self or self_detached (default: the task's)"},
          {"signal-noise", true, "0", "std of Gaussian noise on the fed signal"},
          {"model", true, "", "fmnist: bn-cnn (default) or small-cnn (the MNIST notebook's LeNet, no BatchNorm)"},
          {"first-signal", true, "", "first pass gets: neutral (∅), target-or-wrong (y or a random wrong label; ∅ never trained) or target-or-neutral"},
          {"p-first-target", true, "", "target-or-*: probability per batch that the first pass gets y (default 0.75)"},
          {"aux", true, "", "fmnist: train a test-time-training head jointly: rotation (for ttt and ttt++), masked (for masked-ttt) or none; the training cost it adds goes to config.json"}};
}

// --recipe: one option for train, adapt and demo (docs/it3.md, "Recipes").
OptionSpec recipe_option() {
  return {"recipe", true, "", "preset of the authors' knobs: paper-mnist, paper-cifar or torch-ttt; "
                              "flags given explicitly override it (recorded in config.json)"};
}

std::vector<OptionSpec> adapt_options() {
  return {{"method", true, "all", "comma-separated: none, bn, tent, actmad, it3, it3-online, random-step, eata, deyo, memo, ttt, ttt++, masked-ttt (all = every one that applies; ttt and ttt++ need a model trained with --aux rotation, masked-ttt one trained with --aux masked)"},
          {"shift", true, "all", "comma-separated shift names (all = every one; demo = the demo's list)"},
          {"steps", true, "0", "adaptation steps K (0 = the task's default)"},
          {"adapt-lr", true, "0", "adaptation learning rate (0 = the task's default)"},
          {"adapt-batch", true, "0", "test batch size (0 = the task's default)"},
          {"optimizer", true, "adam", "adam or sgd"},
          {"distance", true, "", "l1, mse, js or js-authors (classification; default l1)"},
          {"anchor", true, "", "frozen, ema or shared (default: the method's)"},
          {"alpha", true, "0.99", "EMA rate of the online anchor"},
          {"params", true, "", "all, norm, last:N or names (default: the method's)"},
          {"bn-mode", true, "", "running or batch (default: the method's; IT³ rows on a BatchNorm classifier: batch)"},
          {"prediction", true, "", "adapted (f(x,∅), default) or anchor (F(x, f(x,∅)))"},
          {"neutral-signal", true, "", "∅ at test time, every method: fixed (default) or random-onehot"},
          {"persistent-moments", false, "", "IT³ rows: keep the optimizer's moments across batches (weights still reset)"},
          {"readout-before-update", false, "", "it3 rows: predict from the last step's pass before its update"},
          {"fused-head", true, "auto", "IT³ rows on a feature-injection model (the cnn): its head's loss as one op, one launch each way: auto (on a GPU, batches up to 32, not inside a CUDA graph), on (also the CPU reference and in graphs) or off (docs/it3.md, The fused head)"},
          {"path", true, "auto", "auto (on a GPU: one fused kernel call per batch for a small MLP at a small batch, else a CUDA graph per batch shape where it applies; else eager), eager (one call per op), fused or graph (docs/it3.md, Execution paths)"},
          {"profile", false, "", "write profile.md: a per-op table of one adapted batch per method (runs eager)"}};
}

// --seeds: more than 100 models is a typo, not an experiment.
constexpr int kMaxSeeds = 100;

// `auto_value` when --seeds is auto; else the count, 1..kMaxSeeds, or an error naming the value.
int seeds_from(const Args& a, int auto_value) {
  const std::string v = a.str("seeds");
  if (v == "auto") return auto_value;
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 1 || n > kMaxSeeds)
    fail("idem " + a.command(), "--seeds must be a whole number from 1 to ", kMaxSeeds, " (or auto), got '", v, "'");
  return int(n);
}

// " seed 5 (2/3)" for progress labels of a run with several seeds, "" for one.
std::string seed_tag(uint64_t seed, int index, int count) {
  if (count < 2) return "";
  return " seed " + std::to_string(seed) + " (" + std::to_string(index + 1) + "/" + std::to_string(count) + ")";
}

// The first seed's model keeps the one-model name, so a run with several seeds is also a valid
// run for anything that reads checkpoint.safetensors.
std::string checkpoint_file(int index, uint64_t seed) {
  return index == 0 ? "checkpoint.safetensors" : "checkpoint-seed" + std::to_string(seed) + ".safetensors";
}

std::vector<OptionSpec> concat(std::vector<OptionSpec> a, const std::vector<OptionSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TaskConfig task_config_from(const Args& a) {
  TaskConfig c;
  c.task = a.str("task");
  c.data = a.str("data");
  c.target = a.str("target");
  c.split = a.str("split");
  c.max_train = a.integer("max-train");
  c.max_test = a.integer("max-test");
  c.width = a.integer("width");
  c.neutral = a.number("neutral");
  c.seed = uint64_t(a.integer("seed"));
  c.model = a.str("model");
  c.aux = a.str("aux");
  if (c.model.empty() && !a.str("recipe").empty()) c.model = it3::find_recipe(a.str("recipe")).model;
  return c;
}

struct TrainSettings {
  int epochs = 0;
  int64_t batch = 0;
  double lr = 0;
  it3::TrainOptions topt;
  json::Value to_json() const {
    json::Value v = json::Value::object();
    v.set("epochs", epochs);
    v.set("batch", batch);
    v.set("lr", lr);
    v.set("optimizer", "adam");
    v.set("objective", json::parse(topt.to_json()));
    return v;
  }
};

TrainSettings train_settings_from(const Args& a, const Task& task, DemoSize size) {
  TrainSettings s;
  const std::string recipe = a.str("recipe");
  const it3::Recipe r = recipe.empty() ? it3::Recipe{} : it3::find_recipe(recipe);
  s.epochs = a.integer("epochs") > 0 ? int(a.integer("epochs")) : task.default_epochs(size);
  s.batch = a.integer("batch") > 0 ? a.integer("batch") : r.train_batch > 0 ? r.train_batch : task.default_batch();
  s.lr = a.number("lr") > 0 ? a.number("lr") : r.train_lr > 0 ? r.train_lr : task.default_lr();
  s.topt = task.train_options();
  if (!recipe.empty()) it3::apply_train_recipe(recipe, s.topt);  // then explicit flags win
  if (a.has("first-signal")) s.topt.first = it3::parse_first_signal(a.str("first-signal"));
  if (a.has("p-first-target")) s.topt.p_first_target = a.number("p-first-target");
  if (a.number("p-feed") >= 0) s.topt.p_feed = a.number("p-feed");
  if (!a.str("signal").empty()) s.topt.source = it3::parse_signal_source(a.str("signal"));
  if (a.has("signal-noise")) s.topt.signal_noise = a.number("signal-noise");
  s.topt.seed = uint64_t(a.integer("seed"));
  s.topt.validate(task.kind());
  return s;
}

// The training cost an auxiliary head adds: µs per step of the objective with and without the
// auxiliary loss, each on its own copy of the trained model over the same first batches (a fresh
// Adam, two warm-up steps untimed). Every step reads its loss back, so the clock sees the work.
json::Value measure_aux_cost(const it3::RecursiveModel& model, const Task& task, const TrainSettings& s,
                             Device device) {
  const int warmup = 2, timed = 10;
  std::vector<Batch> batches;
  const int64_t n = task.train_size();
  for (int i = 0; i < warmup + timed; ++i) {
    std::vector<int64_t> idx;
    for (int64_t j = 0; j < s.batch; ++j) idx.push_back((int64_t(i) * s.batch + j) % n);
    batches.push_back(task.train_batch(idx, device));
  }
  double us[2] = {0, 0};
  for (int with = 0; with < 2; ++with) {
    auto m = std::dynamic_pointer_cast<it3::RecursiveModel>(model.clone());
    m->train();
    AdamOptions ao;
    ao.lr = s.lr;
    Adam opt(m->parameters(), ao);
    it3::RotationBatcher rb;
    for (int i = 0; i < warmup + timed; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      if (with)
        it3::train_step_with_aux(*m, opt, batches[size_t(i)].x, batches[size_t(i)].y, s.topt, i, rb);
      else
        it3::train_step(*m, opt, batches[size_t(i)].x, batches[size_t(i)].y, s.topt, i);
      if (i >= warmup) us[with] += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  json::Value v = json::Value::object();
  v.set("kind", it3::aux_kind_name(it3::aux_kind(model)));
  v.set("batch", s.batch);
  v.set("timed_steps", int64_t(timed));
  v.set("us_per_step_without_aux", us[0] / timed);
  v.set("us_per_step_with_aux", us[1] / timed);
  v.set("added_fraction", us[0] > 0 ? us[1] / us[0] - 1.0 : 0.0);
  return v;
}

// Trains with the IT³ objective (plus the auxiliary head's loss when the model has one); logs
// every step to steps.jsonl; returns the last epoch's mean loss.
double train_model(it3::RecursiveModel& model, const Task& task, const TrainSettings& s, Device device,
                   uint64_t seed, const std::string& tag, JsonLines& log, bool quiet) {
  model.train();
  AdamOptions ao;
  ao.lr = s.lr;
  Adam opt(model.parameters(), ao);
  const int64_t n = task.train_size();
  const int64_t per_epoch = (n + s.batch - 1) / s.batch;
  Progress bar("train " + task.name() + tag, per_epoch * s.epochs, quiet);
  const bool aux = it3::aux_kind(model) != it3::AuxKind::none;
  it3::RotationBatcher rotations;
  int64_t step = 0;
  double epoch_loss = 0;
  for (int epoch = 0; epoch < s.epochs; ++epoch) {
    // A seeded shuffle per epoch (Philox keys, sorted): the same order on every machine.
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    Tensor keys = rand({n}, seed ^ 0xE90C4ull, {}, uint64_t(epoch) * uint64_t(n + 4));
    std::vector<float> kv = keys.to_vector<float>();
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return kv[size_t(a)] < kv[size_t(b)]; });
    double sum = 0;
    int64_t count = 0;
    for (int64_t b = 0; b < n; b += s.batch) {
      std::vector<int64_t> idx(order.begin() + b, order.begin() + std::min(n, b + s.batch));
      if (idx.size() < 2) continue;  // BatchNorm needs two samples
      Batch batch = task.train_batch(idx, device);
      const double loss = aux ? it3::train_step_with_aux(model, opt, batch.x, batch.y, s.topt, step, rotations)
                              : it3::train_step(model, opt, batch.x, batch.y, s.topt, step);
      sum += loss, ++count;
      std::ostringstream line;
      line << "{\"phase\":\"train\",\"seed\":" << seed << ",\"epoch\":" << epoch << ",\"step\":" << step << ",\"loss\":" << loss << "}";
      log.write(line.str());
      ++step;
      char post[64];
      std::snprintf(post, sizeof post, "epoch %d loss %.4f", epoch + 1, sum / double(count));
      bar.update(step, post);
    }
    epoch_loss = count ? sum / double(count) : 0.0;
  }
  char post[64];
  std::snprintf(post, sizeof post, "loss %.4f", epoch_loss);
  bar.finish(post);
  model.eval();
  return epoch_loss;
}

struct AdaptSettings {
  std::vector<it3::Method> methods;
  std::vector<std::string> shifts;
  int64_t batch = 0;
  std::vector<it3::AdaptOptions> options;  // one per method
  it3::AdaptPath path = it3::AdaptPath::automatic;
};

AdaptSettings adapt_settings_from(const Args& a, const Task& task, DemoSize size) {
  AdaptSettings s;
  for (const auto& m : a.list("method")) {
    if (m == "all") {
      s.methods = it3::all_methods();
      break;
    }
    s.methods.push_back(it3::parse_method(m));
  }
  if (a.str("method") == "all") {
    // The entropy methods need classes; tent, eata and deyo also need normalization layers to
    // adapt: `all` leaves them out where they cannot run (bn stays: on a model without
    // BatchNorm it equals none, which the table then shows).
    // The rules are task_method_blocker's (tasks.cpp), which `idem bench it3 --task` follows too.
    const auto probe = task.make_model(0);  // what this task's model has (layers, heads)
    const bool quiet_notes = a.flag("quiet") || task.kind() != it3::TaskKind::classification;
    if (!it3::has_normalization(*probe) && !quiet_notes)
      std::cerr << "note: the model has no normalization layer, so --method all leaves out tent, eata and deyo\n";
    // ttt and ttt++ need the rotation head trained with the model (--aux rotation), masked-ttt
    // the masked head (--aux masked); a model carries one head at most.
    const it3::AuxKind has = it3::aux_kind(*probe);
    for (it3::AuxKind k : {it3::AuxKind::rotation, it3::AuxKind::masked}) {
      if (k == has) continue;
      std::string left_out;
      for (it3::Method m : it3::all_methods())
        if (it3::aux_head_needed(m) == k) left_out += (left_out.empty() ? "" : " and ") + std::string(it3::method_name(m));
      if (!left_out.empty() && !quiet_notes)
        std::cerr << "note: the model has no " << it3::aux_kind_name(k) << " head, so --method all leaves out "
                  << left_out << " (train with --aux " << it3::aux_kind_name(k) << ")\n";
    }
    std::vector<it3::Method> runs;
    for (it3::Method m : s.methods)
      if (task_method_blocker(task, *probe, m).empty()) runs.push_back(m);
    s.methods = runs;
  }
  IDEM_CHECK(!s.methods.empty(), "idem adapt", "--method names no method");
  for (const auto& sh : a.list("shift")) {
    if (sh == "all") {
      s.shifts = task.all_shifts();
      break;
    }
    if (sh == "demo") {
      s.shifts = task.demo_shifts(size);
      break;
    }
    s.shifts.push_back(sh);
  }
  IDEM_CHECK(!s.shifts.empty(), "idem adapt", "--shift names no shift");
  for (const auto& sh : s.shifts) task.validate_shift(sh);
  const std::string recipe = a.str("recipe");
  const it3::Recipe r = recipe.empty() ? it3::Recipe{} : it3::find_recipe(recipe);
  s.batch = a.integer("adapt-batch") > 0 ? a.integer("adapt-batch")
            : r.adapt_batch > 0           ? r.adapt_batch
                                          : task.default_adapt_batch();
  if (a.str("optimizer") != "sgd" && a.str("optimizer") != "adam")
    fail("idem adapt", "--optimizer must be adam or sgd, got ", a.str("optimizer"));
  s.path = it3::parse_adapt_path(a.str("path"));
  // The profile times op by op, which a graph replay (one launch) cannot show.
  if (a.has("profile") && a.flag("profile")) s.path = it3::AdaptPath::eager;
  const it3::FusedMode fused_head = it3::parse_fused_mode(a.str("fused-head"));  // IT³ rows only
  for (it3::Method m : s.methods) {
    // The order: the method's reference, the task's defaults, the recipe (IT³ rows: it3 and
    // random-step): task_adapt_options; then every flag the user gave explicitly.
    it3::AdaptOptions o = task_adapt_options(task, m, recipe, uint64_t(a.integer("seed")));
    const bool grad = m != it3::Method::none && m != it3::Method::bn;
    if (grad) {
      if (a.integer("steps") > 0) o.steps = int(a.integer("steps"));
      if (a.number("adapt-lr") > 0) o.lr = a.number("adapt-lr");
      if (a.has("optimizer"))
        o.optimizer = a.str("optimizer") == "sgd" ? it3::OptimizerKind::sgd : it3::OptimizerKind::adam;
      if (it3::uses_it3_loss(m)) {
        if (a.has("distance")) o.distance = it3::parse_distance(a.str("distance"));
        if (!a.str("anchor").empty()) o.anchor = it3::parse_anchor(a.str("anchor"));
        o.ema_alpha = a.number("alpha");
        if (a.has("persistent-moments")) o.persistent_moments = true;
        if (m != it3::Method::random_step) {
          if (a.has("prediction")) o.prediction = it3::parse_prediction(a.str("prediction"));
          if (a.has("readout-before-update")) o.readout_before_update = true;
        }
      }
      // tent, eata and deyo are defined on the normalization layers' affine parameters.
      const bool norm_method = m == it3::Method::tent || m == it3::Method::eata || m == it3::Method::deyo;
      if (!a.str("params").empty() && !norm_method) o.params = it3::ParamSelection::parse(a.str("params"));
    }
    o.fused_head = fused_head;
    if (a.has("neutral-signal")) o.neutral = it3::parse_neutral_signal(a.str("neutral-signal"));
    if (!a.str("bn-mode").empty() && m != it3::Method::bn && m != it3::Method::tent &&
        m != it3::Method::eata && m != it3::Method::deyo)
      o.bn_mode = it3::parse_bn_mode(a.str("bn-mode"));
    o.validate();
    s.options.push_back(o);
  }
  return s;
}

// Every method on every shift; prints progress; logs every batch.
// `seed` names the model in the rows and the log (adaptation itself draws nothing at random).
std::vector<ResultRow> evaluate(const std::shared_ptr<it3::RecursiveModel>& model, const Task& task,
                                const AdaptSettings& s, Device device, JsonLines& log, bool quiet,
                                uint64_t seed, const std::string& tag, std::string* profile = nullptr) {
  std::vector<ResultRow> rows;
  it3::ActmadStats stats;
  const bool actmad = std::find(s.methods.begin(), s.methods.end(), it3::Method::actmad) != s.methods.end();
  const bool tttpp = std::find(s.methods.begin(), s.methods.end(), it3::Method::ttt_pp) != s.methods.end();
  if (actmad || tttpp) {
    const std::vector<it3::Input> train_batches = task.stat_batches(s.batch, 2048, device);
    if (actmad) stats = it3::collect_actmad_stats(*model, train_batches);
    if (tttpp) stats.features = it3::collect_feature_stats(*model, train_batches);
  }
  // EATA's Fisher comes from the same kind of training batches.
  for (size_t mi = 0; mi < s.methods.size(); ++mi)
    if (s.methods[mi] == it3::Method::eata && s.options[mi].steps > 0 && s.options[mi].entropy.fisher_beta > 0) {
      it3::add_eata_fisher(*model, task.stat_batches(s.batch, 2048, device), stats);
      break;
    }
  Progress bar("adapt " + task.name() + tag, int64_t(s.shifts.size() * s.methods.size()), quiet);
  int64_t done = 0;
  for (const std::string& shift : s.shifts) {
    std::vector<Batch> batches = task.eval_batches(shift, s.batch, device);
    for (size_t mi = 0; mi < s.methods.size(); ++mi) {
      it3::AdaptOptions options = s.options[mi];
      options.seed = seed;  // each model's own adaptation draws (random one-hot ∅, random-step)
      it3::PathAdapter adapter(model, options, stats, s.path);
      std::vector<Tensor> preds, ys;
      double lb = 0, la = 0;
      int64_t nb = 0, nloss = 0;
      for (const Batch& b : batches) {
        if (b.x.batch_size() < 2 && adapter.needs_batch_of_two()) {
          // A last batch of one sample cannot give batch statistics: it is left out of this
          // method's metric, and the log says so.
          log.write("{\"phase\":\"adapt\",\"seed\":" + std::to_string(seed) + ",\"shift\":\"" + shift + "\",\"method\":\"" +
                    it3::method_name(s.methods[mi]) + "\",\"skipped_batch_of_one\":true}");
          continue;
        }
        // --profile: the second batch of the first shift, op by op (the first warms the caches).
        const bool prof = profile && nb == 1 && shift == s.shifts.front();
        it3::AdaptResult r;
        std::vector<profiler::Row> prof_rows;
        if (prof)
          prof_rows = profiler::profile(device, [&] { r = adapter.predict(b.x); });
        else
          r = adapter.predict(b.x);
        if (prof)
          *profile += profiler::table(prof_rows, std::string(it3::method_name(s.methods[mi])) + " on " +
                                                            shift + ", one batch of " +
                                                            std::to_string(b.x.batch_size()) + ", " + device.str()) + "\n";
        preds.push_back(r.prediction.to(Device::cpu()));
        ys.push_back(b.y.to(Device::cpu()));
        if (std::isfinite(r.loss_before)) lb += r.loss_before, la += r.loss_after, ++nloss;
        std::ostringstream line;
        line << "{\"phase\":\"adapt\",\"seed\":" << seed << ",\"shift\":\"" << shift << "\",\"method\":\""
             << it3::method_name(s.methods[mi]) << "\",\"batch\":" << nb << ",\"path\":\""
             << it3::adapt_path_name(adapter.path()) << "\",\"cost\":" << r.cost.to_json();
        if (std::isfinite(r.loss_before)) line << ",\"loss_before\":" << r.loss_before << ",\"loss_after\":" << r.loss_after;
        line << "}";
        log.write(line.str());
        ++nb;
      }
      IDEM_CHECK(!preds.empty(), "idem adapt", "shift ", shift, " gave no test batch");
      Tensor pred, y;
      {
        NoGradGuard ng;
        pred = concat(preds, 0), y = concat(ys, 0);
      }
      const it3::Cost& c = adapter.total();
      ResultRow row;
      row.seed = seed, row.shift = shift, row.method = it3::method_name(s.methods[mi]);
      row.metric = task.metric(pred, y);
      row.samples = int64_t(c.samples), row.batches = int64_t(c.batches);
      const double k = c.batches ? 1.0 / double(c.batches) : 0.0;
      row.forwards = double(c.forwards) * k, row.backwards = double(c.backwards) * k;
      row.steps = double(c.optimizer_steps) * k, row.us_per_batch = c.us_per_batch();
      row.us_per_sample = c.us_per_sample(), row.launches_per_batch = c.launches_per_batch();
      row.reset_bytes = double(c.reset_bytes) * k;
      row.loss_before = nloss ? lb / double(nloss) : NAN;
      row.loss_after = nloss ? la / double(nloss) : NAN;
      rows.push_back(row);
      char post[96];
      std::snprintf(post, sizeof post, "%s %s %s %.3f", shift.c_str(), row.method.c_str(), task.metric_name().c_str(), row.metric);
      bar.update(++done, post);
    }
  }
  bar.finish();
  return rows;
}

json::Value adapt_json(const AdaptSettings& s) {
  json::Value v = json::Value::object();
  json::Value shifts = json::Value::array(), methods = json::Value::array();
  for (const auto& sh : s.shifts) shifts.push_back(sh);
  for (const auto& o : s.options) methods.push_back(json::parse(o.to_json()));
  v.set("batch", s.batch);
  v.set("shifts", shifts);
  v.set("methods", methods);
  return v;
}

void write_results(const std::string& dir, const std::vector<ResultRow>& rows, const Task& task,
                   const std::string& title, bool print_table) {
  const std::string md = write_report_files(dir, rows, task.metric_name(), title);
  if (print_table) std::cout << md << "\nrun directory: " << dir << "\n";
}

json::Value config_json(const std::string& command, const Task& task, const std::string& device) {
  json::Value v = json::Value::object();
  v.set("command", command);
  v.set("device", device);
  v.set("task", task.config().to_json());
  v.set("data", task.describe());
  v.set("versions", json::parse(versions_json()));
  return v;
}

// Trains the model of one seed (the index-th of the run) and saves it; records it in config's
// "models" and rewrites config.json, so the directory is a valid run after every seed.
std::shared_ptr<it3::RecursiveModel> train_into(const std::string& dir, const Task& task,
                                                TrainSettings ts, Device device, uint64_t seed,
                                                int index, const std::string& tag, bool quiet,
                                                JsonLines& log, json::Value& config) {
  ts.topt.seed = seed;  // the training draws (p_feed, signal noise) follow the seed too
  init::manual_seed(seed);
  auto model = task.make_model(seed);
  model->to(device);
  if (!quiet && index == 0)
    std::cerr << task.describe() << "\nmodel: " << model->type_name() << " with "
              << model->num_parameters() << " parameters on " << device.str() << "\n";
  const double loss = train_model(*model, task, ts, device, seed, tag, log, quiet);
  if (index == 0) {
    json::Value train = ts.to_json();
    if (it3::aux_kind(*model) != it3::AuxKind::none) {
      // What the auxiliary head costs at training time (the first seed's model).
      json::Value cost = measure_aux_cost(*model, task, ts, device);
      if (!quiet)
        std::cerr << "aux head " << cost.at("kind").as_string() << ": " << cost.at("us_per_step_with_aux").as_double()
                  << " µs per training step with it, " << cost.at("us_per_step_without_aux").as_double()
                  << " without (batch " << ts.batch << ", " << device.str() << ")\n";
      train.set("aux", cost);
    }
    config.set("train", train);
    config.set("final_train_loss", loss);  // the first seed's, as runs before --seeds had it
    config.set("models", json::Value::array());
  }
  const std::string file = checkpoint_file(index, seed);
  json::Value m = json::Value::object();
  m.set("seed", int64_t(seed));
  m.set("checkpoint", file);
  m.set("final_train_loss", loss);
  json::Value models = config.at("models");
  models.push_back(m);
  config.set("models", models);
  StringPairs meta{{"task_config", json::dump(task.config().to_json())}, {"format", "idem-it3-run-1"},
                   {"seed", std::to_string(seed)}};
  save_checkpoint(*model, dir + "/" + file, meta);
  write_text(dir + "/config.json", json::dump(config, 2) + "\n");
  return model;
}

json::Value seeds_json(uint64_t first, int count) {
  json::Value v = json::Value::array();
  for (int i = 0; i < count; ++i) v.push_back(int64_t(first + uint64_t(i)));
  return v;
}

}  // namespace

int cmd_train(int argc, char** argv) {
  Args a("train", concat(concat(task_options(), {{"out", true, "", "run directory (default runs/<task>-<time>)"},
                                                 {"seeds", true, "1", "train N models, seeds --seed .. --seed+N-1, into one run (idem adapt evaluates them all); 1..100"},
                                                 recipe_option()}),
                         common_options()),
         argc, argv, 2);
  if (a.help()) {
    std::cout << "idem train: train a recursive-input model with the IT³ objective and save a run directory.\n"
                 "With --seeds N it trains N models that differ in initialization, training order and\n"
                 "training draws (the data and the test sets are those of --seed for all of them).\n\n" << a.usage();
    return 0;
  }
  const int nseeds = seeds_from(a, 1);
  const std::string dev = resolve_device(a);
  const Device device = Device::parse(dev);
  auto task = make_task(task_config_from(a));
  const TrainSettings ts = train_settings_from(a, *task, DemoSize::full);
  const std::string dir = make_run_dir(a.str("out"), task->name());
  JsonLines log(dir + "/steps.jsonl");
  json::Value config = config_json("train", *task, dev);
  const uint64_t seed0 = uint64_t(a.integer("seed"));
  config.set("seeds", seeds_json(seed0, nseeds));
  // The clean test metric of each trained model, so a run says how good it is.
  AdaptSettings none;
  none.methods = {it3::Method::none};
  none.shifts = {"clean"};
  none.batch = task->default_adapt_batch();
  none.options = {it3::AdaptOptions::for_method(it3::Method::none)};
  for (int i = 0; i < nseeds; ++i) {
    const uint64_t seed = seed0 + uint64_t(i);
    const std::string tag = seed_tag(seed, i, nseeds);
    auto model = train_into(dir, *task, ts, device, seed, i, tag, a.flag("quiet"), log, config);
    auto rows = evaluate(model, *task, none, device, log, true, seed, tag);
    std::cout << "trained " << task->name() << (nseeds > 1 ? " seed " + std::to_string(seed) : std::string())
              << ": final train loss " << config.at("models").as_array().back().at("final_train_loss").as_double()
              << ", clean test " << task->metric_name() << " " << rows[0].metric << "\n";
  }
  std::cout << "run directory: " << dir << "\n";
  return 0;
}

int cmd_adapt(int argc, char** argv) {
  Args a("adapt", concat(concat({{"run", true, "", "run directory written by idem train or idem demo"},
                                 {"out", true, "", "where to write results (default RUN/adapt-<time>)"},
                                 {"seeds", true, "auto", "evaluate the run's first N trained models (one per seed); auto = all it holds; 1..100"},
                                 recipe_option()},
                                adapt_options()),
                         common_options()),
         argc, argv, 2);
  if (a.help()) {
    std::cout << "idem adapt: reload a run's checkpoints and evaluate test-time adaptation methods on shifts.\n"
                 "A run holds one trained model per seed (idem demo --seeds N, idem train --seeds N); adapt\n"
                 "evaluates each (--seeds picks how many) and reports mean ± 95 % CI over them. It does not\n"
                 "repeat adaptation over one model: the seeds are the trained models' seeds.\n\n" << a.usage();
    return 0;
  }
  IDEM_CHECK(!a.str("run").empty(), "idem adapt", "--run RUN is required (a directory written by idem train)");
  const std::string run = a.str("run");
  const std::string dev = resolve_device(a);
  const Device device = Device::parse(dev);
  const json::Value cfg = json::parse(read_text(run + "/config.json"));
  auto task = make_task(TaskConfig::from_json(cfg.at("task")));
  // The run's models: config.json's "models", or (a run from before --seeds) the one checkpoint,
  // trained with the task's seed.
  std::vector<std::pair<uint64_t, std::string>> models;
  if (const json::Value* ms = cfg.find("models"))
    for (const auto& m : ms->as_array()) models.push_back({uint64_t(m.at("seed").as_int()), m.at("checkpoint").as_string()});
  else
    models.push_back({task->config().seed, "checkpoint.safetensors"});
  IDEM_CHECK(!models.empty(), "idem adapt", run, "/config.json lists no trained model");
  const int nseeds = seeds_from(a, int(models.size()));
  if (size_t(nseeds) > models.size()) {
    std::string held;
    for (const auto& m : models) held += (held.empty() ? "" : ", ") + std::to_string(m.first);
    fail("idem adapt", "--seeds ", nseeds, " but ", run, " holds ", models.size(), " trained model(s) (seed", models.size() > 1 ? "s " : " ", held,
         "); train that many with idem train --seeds ", nseeds, " or idem demo --seeds ", nseeds);
  }
  const AdaptSettings s = adapt_settings_from(a, *task, DemoSize::full);
  const std::string dir = make_run_dir(a.str("out").empty() ? run + "/adapt-" + timestamp() : a.str("out"), "");
  JsonLines log(dir + "/steps.jsonl");
  json::Value config = config_json("adapt", *task, dev);
  config.set("run", run);
  json::Value used = json::Value::array();
  for (int i = 0; i < nseeds; ++i) used.push_back(int64_t(models[size_t(i)].first));
  config.set("seeds", used);
  config.set("adapt", adapt_json(s));
  write_text(dir + "/config.json", json::dump(config, 2) + "\n");
  std::string profile;
  std::vector<ResultRow> rows;
  const std::string title = task->name() + " (" + dev + ")";
  for (int i = 0; i < nseeds; ++i) {
    const auto& [seed, file] = models[size_t(i)];
    auto model = task->make_model(seed);
    load_checkpoint(*model, run + "/" + file);
    model->to(device);
    model->eval();
    // --profile: the first model's batches only (the others run the same ops).
    auto r = evaluate(model, *task, s, device, log, a.flag("quiet"), seed, seed_tag(seed, i, nseeds),
                      a.flag("profile") && i == 0 ? &profile : nullptr);
    rows.insert(rows.end(), r.begin(), r.end());
    write_results(dir, rows, *task, title, !a.flag("json") && i + 1 == nseeds);
  }
  if (a.flag("profile")) {
    write_text(dir + "/profile.md", profile);
    std::cerr << profile;
  }
  if (a.flag("json")) std::cout << results_csv(rows);
  return 0;
}

int cmd_demo(int argc, char** argv) {
  std::vector<OptionSpec> specs = concat(task_options(), adapt_options());
  specs.push_back(recipe_option());
  specs.push_back({"quick", false, "", "a smoke run: small subsets, severity 5, one epoch (about a minute on 2 cores)"});
  specs.push_back({"full", false, "", "the whole protocol on the CPU too (on a GPU it is the default)"});
  specs.push_back({"seeds", true, "auto", "train and evaluate N models, seeds --seed .. --seed+N-1; auto = 3 for the full protocol (a GPU or --full), 1 for the cpu and quick protocols; 1..100"});
  specs.push_back({"out", true, "", "run directory (default runs/demo-<task>-<time>)"});
  Args a("demo", concat(specs, common_options()), argc, argv, 2);
  if (a.help()) {
    std::cout << "idem demo: train on a task, then evaluate none, bn, tent, actmad, it3, it3-online, random-step, eata,\n"
                 "deyo and memo (and ttt, ttt++ with --aux rotation, masked-ttt with --aux masked) on\n"
                 "the clean and shifted test sets; prints the table, writes plots and a run directory.\n"
                 "On the CPU it runs a protocol sized for a few minutes on 2 cores (fewer training images,\n"
                 "epochs, test images and severities; the first line says which); --full runs all of it.\n"
                 "With several seeds (3 by default on the full protocol) every cell is mean ± 95 % CI over\n"
                 "the seeds and Δ over none and bn are paired per seed. Seeds vary the model's initialization,\n"
                 "training order and training draws; the data and the shifted test sets are those of --seed.\n\n"
              << a.usage();
    return 0;
  }
  if (a.flag("quick") && a.flag("full")) fail("idem demo", "--quick and --full exclude each other");
  const std::string dev = resolve_device(a);
  const Device device = Device::parse(dev);
  const DemoSize size = a.flag("quick")                         ? DemoSize::quick
                        : (a.flag("full") || device.is_cuda()) ? DemoSize::full
                                                                : DemoSize::cpu;
  const int nseeds = seeds_from(a, size == DemoSize::full ? 3 : 1);
  TaskConfig tc = task_config_from(a);
  size_demo(tc, size);
  auto task = make_task(tc);
  const TrainSettings ts = train_settings_from(a, *task, size);
  const AdaptSettings s = adapt_settings_from(a, *task, size);
  AdaptSettings sd = s;
  if (a.str("shift") == "all") sd.shifts = task->demo_shifts(size);
  const uint64_t seed0 = uint64_t(a.integer("seed"));
  if (!a.flag("quiet")) {
    std::cerr << "idem demo: " << demo_size_name(size) << " protocol on " << dev << ": "
              << task->describe() << "; " << ts.epochs << " epochs; " << sd.shifts.size()
              << " test sets × " << sd.methods.size() << " methods × " << nseeds
              << (nseeds == 1 ? " seed" : " seeds");
    if (size == DemoSize::cpu) std::cerr << " (sized for a 2-core CPU; --full for the whole protocol)";
    std::cerr << "\n";
  }
  const std::string dir = make_run_dir(a.str("out"), "demo-" + task->name());
  JsonLines log(dir + "/steps.jsonl");
  json::Value config = config_json(size == DemoSize::full ? "demo" : std::string("demo (") + demo_size_name(size) + ")", *task, dev);
  config.set("protocol", demo_size_name(size));
  config.set("seeds", seeds_json(seed0, nseeds));
  config.set("adapt", adapt_json(sd));
  const std::string tag = size == DemoSize::full ? "" : std::string(" (") + demo_size_name(size) + " protocol)";
  const std::string title = "IT³ demo: " + task->name() + tag + " on " + dev;
  std::vector<ResultRow> rows;
  for (int i = 0; i < nseeds; ++i) {
    const uint64_t seed = seed0 + uint64_t(i);
    const std::string st = seed_tag(seed, i, nseeds);
    if (!a.flag("quiet") && nseeds > 1) std::cerr << "idem demo:" << st << "\n";
    auto model = train_into(dir, *task, ts, device, seed, i, st, a.flag("quiet"), log, config);
    auto r = evaluate(model, *task, sd, device, log, a.flag("quiet"), seed, st);
    rows.insert(rows.end(), r.begin(), r.end());
    // Written after every seed, so a run stopped early keeps the seeds it finished.
    write_results(dir, rows, *task, title, i + 1 == nseeds);
  }
  return 0;
}

}  // namespace idem::cli
