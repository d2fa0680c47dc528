// `idem bench it3|train|ops`: what one IT³ adaptation, one training step and a few core ops cost,
// on the exact models that bench/compare_pytorch.py builds in PyTorch (it3/models.h).
//
// One IT³ offline adaptation per test batch = reset (θ ← Θ, Adam moments ← 0, one fused copy),
// K steps of  y0 = f(x,∅); y1 = F(x, s(y0)); L = mean|out(y1) − out(y0)|; Adam(lr 1e-3) step,
// then the prediction f(x,∅). `--path` picks how it runs:
//   eager  op by op (the Adapter with fused off);
//   graph  that whole adaptation captured once in a CUDA graph (cuda::Graph) and replayed per
//          batch; inputs live in static buffers (`--graph on` is the old spelling);
//   fused  the whole adaptation as ONE kernel call (it3/fused_adapt.h): small MLPs only, and
//          an error that says why for any other model.
// `--method M` times another method's adaptation the same way (its reference configuration,
// K = --steps, Adam lr 1e-3; actmad's, eata's and ttt++'s statistics from the bench batch; ttt
// and ttt++ get an untrained rotation head attached to the cnn or bn_cnn); `--method all` times every
// method that applies to the model and the path and says which it skips and why. A method the
// model or the path cannot run is an error that names both.
// `--task T` times the adaptation that T's demo runs instead: T's model (Task::make_model) and
// the options T's rows start from (task_adapt_options, the code `idem adapt|demo` use), K and
// the batch T's by default, on T's built-in stand-in data of that shape (fmnist: synthetic
// images), so a command-line time can be compared with the bench like for like.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "apps/idem/cli.h"
#include "apps/idem/tasks.h"
#include "autograd/nn_functions.h"
#include "core/error.h"
#include "core/kernels/cuda_graph.h"
#include "core/kernels/runtime.h"
#include "core/profiler.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "it3/adapt.h"
#include "it3/adapt_path.h"
#include "it3/aux_head.h"
#include "it3/models.h"
#include "it3/training.h"
#include "layers/init.h"

#if defined(IDEM_WITH_CUDA)
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#endif

namespace idem::cli {

namespace {

// Where a benchmark ran, for its text line: the GPU's name, or "cpu" (the JSON's "gpu" is
// "none" there).
std::string where_of(const json::Value& v) {
  const std::string gpu = v.at("gpu").as_string();
  return gpu == "none" ? std::string("cpu") : gpu;
}

// Times a callable: CUDA events on the legacy default stream (which orders with idem's stream
// and with graph replays) on a GPU, the steady clock on the CPU. Returns µs per call. On a GPU
// it also keeps the call's host time (last_host_us): from just before the first event until
// the callable returns, before any wait for the device. Set beside the device time it says how
// much of a short call is the host's (validation, planning, the launches themselves), which the
// device time includes whenever the GPU idles waiting for the next launch.
class Timer {
 public:
  explicit Timer(Device d) : d_(d) {
#if defined(IDEM_WITH_CUDA)
    if (d_.is_cuda()) {
      cudaEventCreate(&a_);
      cudaEventCreate(&b_);
    }
#endif
  }
  ~Timer() {
#if defined(IDEM_WITH_CUDA)
    if (a_) cudaEventDestroy(a_);
    if (b_) cudaEventDestroy(b_);
#endif
  }
  template <typename F>
  double time_us(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
#if defined(IDEM_WITH_CUDA)
    if (d_.is_cuda()) {
      cudaEventRecord(a_, nullptr);
      f();
      host_us_ = us_since(t0);
      cudaEventRecord(b_, nullptr);
      cudaEventSynchronize(b_);
      float ms = 0;
      cudaEventElapsedTime(&ms, a_, b_);
      return double(ms) * 1000.0;
    }
#endif
    f();
    host_us_ = us_since(t0);
    return host_us_;
  }
  // The host time of the last time_us call (on the CPU: the whole call).
  double last_host_us() const { return host_us_; }

 private:
  static double us_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  Device d_;
  double host_us_ = 0.0;
#if defined(IDEM_WITH_CUDA)
  cudaEvent_t a_ = nullptr, b_ = nullptr;
#endif
};

struct Stats {
  double median = 0, p10 = 0, p90 = 0;
};
Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto q = [&](double f) { return v[std::min(v.size() - 1, size_t(f * double(v.size() - 1) + 0.5))]; };
  s.median = q(0.5), s.p10 = q(0.1), s.p90 = q(0.9);
  return s;
}

struct BenchModel {
  std::shared_ptr<it3::RecursiveModel> model;
  it3::Input x;
};

// The four models of issue 7, exactly as bench/torch_models.py builds them, and bn_cnn.
BenchModel make_bench_model(const std::string& name, int64_t batch, Device device, uint64_t seed) {
  BenchModel b;
  if (name == "mlp_tab" || name == "mlp_256") {
    const int64_t w = name == "mlp_tab" ? 0 : 256;
    const std::vector<int64_t> hidden = w ? std::vector<int64_t>{w, w, w} : std::vector<int64_t>{30, 20, 10};
    b.model = it3::make_mlp_model(13, hidden, it3::SignalSpec::regression(1, 50.0), {}, seed);
    b.x = it3::Input(randn({batch, 13}, seed + 1).to(device));
  } else if (name == "cnn" || name == "bn_cnn") {
    // bn_cnn: the fmnist demo's BatchNorm CNN at its default width (idem only; not in
    // bench/torch_models.py): the one bench model that tent, eata and deyo can adapt.
    b.model = name == "cnn" ? it3::make_small_cnn(10, {}, seed) : it3::make_bn_cnn(10, 32, 64, {}, seed);
    b.x = it3::Input(rand({batch, 1, 28, 28}, seed + 1).to(device));
  } else if (name == "sage") {
    b.model = it3::make_sage_model(2, 64, 4, it3::SignalSpec::regression(1, 0.2), {}, seed);
    b.x = it3::grid_mesh_batch(batch, 32, device);
  } else {
    fail("idem bench", "unknown model '", name, "' (expected mlp_tab, mlp_256, cnn, bn_cnn or sage)");
  }
  b.model->to(device);
  b.model->eval();
  return b;
}

// What `idem bench it3` times, resolved once from the flags: a bench model (--model), or with
// --task the task's own model and options at the task's batch and K unless --batch or --steps
// say otherwise.
struct It3Spec {
  std::string model_name;      // the bench model, or "task:NAME"
  std::unique_ptr<Task> task;  // --task: built on its stand-in data (null without --task)
  int64_t batch = 8;
  int steps = 1;
};

It3Spec it3_spec(const Args& a) {
  It3Spec s;
  s.model_name = a.str("model");
  s.batch = a.integer("batch");
  s.steps = int(a.integer("steps"));
  // Checked before a task cuts its test set into batches of --batch.
  IDEM_CHECK(s.batch >= 1 && s.steps >= 0, "idem bench", "need --batch >= 1 and --steps >= 0");
  if (!a.has("task")) return s;
  const std::string name = a.str("task");
  if (!is_task_name(name)) fail("idem bench", "unknown --task '", name, "' (expected ", kTaskNames, ")");
  IDEM_CHECK(!a.has("model"), "idem bench", "--task ", name, " times the ", name,
             " task's own model: drop --model ", a.str("model"));
  TaskConfig cfg;
  cfg.task = name;
  cfg.seed = uint64_t(a.integer("seed"));
  // The built-in data only: fmnist's synthetic images have the shape of Fashion-MNIST's, and
  // tabular (Friedman #1) and airfoil are generated anyway. A small training set is enough for
  // the model's shape; the test set gives the batch (cycled to --batch rows where it is short).
  if (name == "fmnist") cfg.data = "synthetic";
  cfg.max_train = 256;
  if (a.has("batch")) cfg.max_test = s.batch;
  s.task = make_task(cfg);
  s.model_name = "task:" + name;
  if (!a.has("batch")) s.batch = s.task->default_adapt_batch();
  if (!a.has("steps")) s.steps = s.task->default_adapt_steps();
  return s;
}

// The model and the input of --task: the task's model, and its first clean test batch of
// `batch` samples.
BenchModel make_task_model(const Task& task, int64_t batch, Device device, uint64_t seed) {
  BenchModel b;
  b.model = task.make_model(seed);
  const std::vector<Batch> batches = task.eval_batches("clean", batch, Device::cpu());
  IDEM_CHECK(!batches.empty(), "idem bench", "--task ", task.name(), ": the stand-in test set is empty");
  it3::Input x = batches.front().x;
  if (!x.graph && x.batch_size() < batch) {
    std::vector<int64_t> idx(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) idx[size_t(i)] = i % x.batch_size();
    NoGradGuard ng;
    x = it3::Input(index_select(x.x, 0, from_vector<int64_t>(idx, {batch})));
  }
  IDEM_CHECK(x.batch_size() == batch, "idem bench", "--task ", task.name(), ": the stand-in test set gave a batch of ",
             x.batch_size(), ", not --batch ", batch);
  b.x = x.to(device);
  b.model->to(device);
  b.model->eval();
  return b;
}

// The options `idem bench it3 --method m` times: the method's reference configuration
// (it3::AdaptOptions::for_method) with K = --steps and Adam at lr 1e-3 for the methods that
// adapt weights (none and bn take no step), the L1 distance for the IT³ family.
it3::AdaptOptions bench_adapt_options(it3::Method m, int steps, bool fused) {
  it3::AdaptOptions o = it3::AdaptOptions::for_method(m);
  if (m != it3::Method::none && m != it3::Method::bn) {
    o.steps = steps;
    o.lr = 1e-3;
  }
  if (it3::uses_it3_loss(m)) o.distance = it3::Distance::l1;
  o.check_finite = false;  // no host round trip inside the timed adaptation
  // Only --path fused takes the one-call path (on the CPU too): eager and graph time the ops.
  o.fused = fused ? it3::FusedMode::on : it3::FusedMode::off;
  return o;
}

// The options of one case: the bench's (above), or with --task the task's rows' own
// (task_adapt_options: K, lr, BatchNorm mode, ...), with K = --steps where given. Two knobs
// are the bench's either way: check_finite is off (adapt_and_predict reads nothing back; the
// command line's graph path also checks the losses only after the replay, outside its
// timing), and --path decides the fused call.
it3::AdaptOptions case_options(const It3Spec& spec, const Args& a, it3::Method m, bool fused) {
  it3::AdaptOptions o = bench_adapt_options(m, spec.steps, fused);
  if (spec.task) {
    o = task_adapt_options(*spec.task, m, "", uint64_t(a.integer("seed")));
    if (m != it3::Method::none && m != it3::Method::bn) o.steps = spec.steps;
    o.check_finite = false;
    o.fused = fused ? it3::FusedMode::on : it3::FusedMode::off;
  }
  o.fused_head = it3::parse_fused_mode(a.str("fused-head"));
  o.validate();
  return o;
}

// "none, bn, ..., ttt++" from the method table itself (stays right when a method is added).
std::string method_names() {
  std::string out;
  for (it3::Method m : it3::all_methods()) out += std::string(out.empty() ? "" : ", ") + it3::method_name(m);
  return out;
}

// Why `m` cannot run on the bench model `b` ("" when it can), by the rules `idem adapt --method
// all` follows: entropy methods need classes; tent, eata and deyo adapt normalization layers;
// deyo and memo transform images; ttt and ttt++ need a training-time head, which bench attaches
// (untrained: the timing does not depend on its values) to an image classification model.
std::string method_blocker(it3::Method m, const BenchModel& b) {
  const bool cls = b.model->task() == it3::TaskKind::classification;
  const bool images = !b.x.graph && b.x.x.dim() == 4 && b.x.x.size(2) == b.x.x.size(3);
  if ((it3::uses_entropy_loss(m) || it3::uses_aux_head(m)) && !cls)
    return "it needs a classification model and this one is regression (use --model cnn or bn_cnn)";
  if ((m == it3::Method::tent || m == it3::Method::eata || m == it3::Method::deyo) && !it3::has_normalization(*b.model))
    return "it adapts normalization layers and this model has none (use --model bn_cnn)";
  if ((m == it3::Method::deyo || m == it3::Method::memo || it3::uses_aux_head(m)) && !images)
    return "it transforms images and this model's input is not (B, C, H, H) images";
  if (it3::uses_aux_head(m) && dynamic_cast<const it3::FeatureModel*>(b.model.get()) == nullptr)
    return "its head reads a feature-injection model's encoder (FeatureModel) and this model is not one";
  return "";
}

// Θ (the model's state dict) and the inputs of a bench case, as safetensors under `dir`; for
// `bench train` also the targets y (i64 labels for the CNNs, (B, 1) f32 otherwise).
void export_weights_inputs(const std::string& dir, const BenchModel& b, const Tensor* y) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("idem bench", "cannot create ", dir, ": ", ec.message());
  NamedTensors w;
  for (const auto& [n, t] : b.model->state_dict()) w.emplace_back(n, t.to(Device::cpu()));
  save_safetensors(dir + "/weights.safetensors", w);
  NamedTensors in;
  if (b.x.graph) {
    in.emplace_back("pos", b.x.x.to(Device::cpu()));
    in.emplace_back("edge_index", b.x.graph->edge_index.to(Device::cpu()));
    in.emplace_back("batch", b.x.graph->batch_vector().to(Device::cpu()));
  } else {
    in.emplace_back("x", b.x.x.to(Device::cpu()));
  }
  if (y) in.emplace_back("y", y->to(Device::cpu()));
  save_safetensors(dir + "/inputs.safetensors", in);
}

void export_case(const std::string& dir, const BenchModel& b, const Tensor& pred, const Tensor& pred_inf) {
  export_weights_inputs(dir, b, nullptr);
  save_safetensors(dir + "/outputs.safetensors",
                   {{"pred", pred.to(Device::cpu())}, {"pred_inference", pred_inf.to(Device::cpu())}});
}

// Runs f at least `reps` times and for at least 0.25 s of device time: an idle GPU runs at low
// clocks for a while, and a benchmark started cold would time them. Each call is waited for,
// so a call that returns at once (a graph replay) cannot queue seconds of work behind the
// clock. (bench/compare_pytorch.py warms PyTorch up the same way.)
template <typename F>
void warm_up(int reps, const Device device, F&& f) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps || std::chrono::steady_clock::now() - start < std::chrono::milliseconds(250);
       ++i) {
    f();
    if (device.is_cuda()) cuda::synchronize(device.index);
  }
}

// One method's bench case, built and checked before anything is timed.
struct MethodCase {
  it3::Method method = it3::Method::it3;
  BenchModel b;
  std::unique_ptr<it3::Adapter> adapter;
};

// Builds the bench model and the adapter of `m` for `path`; returns why it cannot run ("" when
// it can): the method does not apply to the model, or the path does not apply to the method.
std::string prepare_case(const Args& a, const It3Spec& spec, const Device device, it3::Method m,
                         const std::string& path, MethodCase& c) {
  const std::string& model_name = spec.model_name;
  const int64_t batch = spec.batch;
  const uint64_t seed = uint64_t(a.integer("seed"));
  c.method = m;
  if (spec.task) {
    // What the task's demo runs, by the rules of its --method all; its model carries the head
    // of ttt and friends only when trained with --aux, which the demo's default is not.
    c.b = make_task_model(*spec.task, batch, device, seed);
    if (std::string why = task_method_blocker(*spec.task, *c.b.model, m); !why.empty())
      return std::string("the ") + spec.task->name() + " task's demo does not run " + it3::method_name(m) + ": " + why;
  } else {
    c.b = make_bench_model(model_name, batch, device, seed);
    if (std::string why = method_blocker(m, c.b); !why.empty())
      return std::string(it3::method_name(m)) + " does not apply to --model " + model_name + ": " + why;
  }
  if (it3::uses_aux_head(m) && !spec.task) {
    const Shape& xs = c.b.x.x.shape();
    it3::attach_aux_head(*c.b.model, it3::aux_head_needed(m), {xs[1], xs[2], xs[3]}, seed);
    c.b.model->to(device);
    c.b.model->eval();
  }
  it3::AdaptOptions o = case_options(spec, a, m, path == "fused");
  if (path == "graph") {
    // The same options as the command line's graph path captures (it3::PathAdapter).
    o = it3::graph_capture_options(o);
    if (std::string why = it3::graph_path_blocker(o, device); !why.empty())
      return std::string("--path graph cannot run ") + it3::method_name(m) + ": " + why;
  }
  // The statistics a method starts from come from the bench batch itself (it stands in for
  // training data; the timing does not depend on their values).
  it3::ActmadStats stats;
  const bool grad = o.steps > 0;
  if (grad && (m == it3::Method::actmad || m == it3::Method::ttt_pp) && batch < 2)
    return std::string(it3::method_name(m)) + " needs --batch >= 2 (batch statistics)";
  if (m == it3::Method::actmad) stats = it3::collect_actmad_stats(*c.b.model, {c.b.x});
  if (m == it3::Method::ttt_pp) stats.features = it3::collect_feature_stats(*c.b.model, {c.b.x});
  if (m == it3::Method::eata && grad && o.entropy.fisher_beta > 0) {
    if (batch < 2) return "eata needs --batch >= 2 (its Fisher statistics skip batches of one)";
    it3::add_eata_fisher(*c.b.model, {c.b.x}, stats);
  }
  c.adapter = std::make_unique<it3::Adapter>(c.b.model, o, std::move(stats));
  if (c.adapter->needs_batch_of_two() && batch < 2)
    return std::string(it3::method_name(m)) + " needs --batch >= 2 (batch statistics)";
  if (path == "fused" && !c.adapter->uses_fused(c.b.x))
    return std::string("--path fused cannot run ") + it3::method_name(m) + " on " + model_name + " at batch " +
           std::to_string(batch) + ": " +
           (!c.adapter->fused_reason().empty() ? c.adapter->fused_reason() : c.adapter->fused_plan()->batch_reason(c.b.x));
  return "";
}

// Times one prepared case; prints its line unless --json; returns its JSON object.
json::Value run_case(const Args& a, const It3Spec& spec, const Device device, const std::string& path,
                     MethodCase& c) {
  const std::string& model_name = spec.model_name;
  const int64_t batch = spec.batch;
  const int steps = spec.steps;
  const bool graph = path == "graph", fused = path == "fused";
  const int reps = int(a.integer("reps")), warmup = int(a.integer("warmup"));
  BenchModel& b = c.b;
  it3::Adapter& adapter = *c.adapter;
  const char* method = it3::method_name(c.method);
  Timer timer(device);

  // Inference alone: f(x, ∅) without history.
  auto infer = [&] {
    NoGradGuard ng;
    return b.model->forward_neutral(b.x);
  };
  Tensor pred_inf = infer();
  std::vector<double> inf_us;
  warm_up(warmup, device, infer);
  for (int i = 0; i < reps; ++i) inf_us.push_back(timer.time_us([&] { infer(); }));

  it3::Cost counted;
  Tensor pred = adapter.adapt_and_predict(b.x, &counted);  // first run: counts one adaptation
  // What --export writes: an eager result, copied now (a capture below only records work, and
  // its output buffer holds values only after a replay).
  const Tensor pred_eager = pred.clone_data();
  std::vector<double> us, host_us;
  // One timed adaptation (or replay): its device time and its host time, side by side.
  const auto time_one = [&](auto&& f) {
    us.push_back(timer.time_us(f));
    host_us.push_back(timer.last_host_us());
  };
  uint64_t launches = 0;
  size_t kernel_nodes = 0;
  if (!graph) {
    warm_up(warmup, device, [&] { adapter.adapt_and_predict(b.x); });
    // --profiler-range: only the timed adaptations run inside cudaProfilerStart/Stop, so
    // `ncu --profile-from-start off` (tools/ncu_adapt.sh) sees exactly their kernels.
    const bool range = a.flag("profiler-range") && device.is_cuda();
    (void)range;  // read only in a CUDA build
#if defined(IDEM_WITH_CUDA)
    if (range) cudaProfilerStart();
#endif
    for (int i = 0; i < reps; ++i) {
      const uint64_t l0 = device.is_cuda() ? cuda::launch_count() : 0;
      time_one([&] { pred = adapter.adapt_and_predict(b.x); });
      if (device.is_cuda()) launches = cuda::launch_count() - l0;
    }
#if defined(IDEM_WITH_CUDA)
    if (range) cudaProfilerStop();
#endif
  }
  // Kernels per batch come from a capture of one adaptation, which only the methods that the
  // graph path takes allow (a method that draws per batch or keeps state between batches may
  // also read values back, which a capture forbids); the others report launches alone.
  const bool capturable = device.is_cuda() && it3::graph_path_blocker(adapter.options(), device).empty();
  if (fused) {
    kernel_nodes = size_t(launches);  // the one kernel (a cooperative launch is not captured)
  } else if (capturable) {
    // Capture one whole adaptation: its kernel nodes are the exact kernels per batch (with
    // --graph off this also counts what the eager path launches, cuBLAS kernels included).
    Tensor x_static = b.x.x;               // the adapter reads this storage on every replay
    Tensor next_batch = b.x.x.clone_data();  // stands for the next test batch
    cuda::Graph g;
    {
      // Warm-up and capture on a private stream; it ends before the replays, which then run on
      // idem's default stream, where the timing events are recorded.
      cuda::CaptureStream stream(device.index);
      for (int i = 0; i < 3; ++i) pred = adapter.adapt_and_predict(b.x);
      g = cuda::Graph::capture([&] { pred = adapter.adapt_and_predict(b.x); }, stream);
    }
    kernel_nodes = g.num_kernel_nodes();
    if (graph) {
      warm_up(warmup, device, [&] { g.replay(); });
      cuda::synchronize(device.index);
      for (int i = 0; i < reps; ++i)
        time_one([&] {
          x_static.copy_(next_batch);  // a new batch goes into the static input
          g.replay();
        });
      launches = 2;  // the input copy and the replay
    }
  }
  if (a.has("export")) export_case(a.str("export"), b, pred_eager, pred_inf);
  if (a.flag("profile")) {
    // One more eager adaptation (the allocator and caches are warm by now), op by op.
    const auto rows = profiler::profile(device, [&] { adapter.adapt_and_predict(b.x); });
    const std::string t = profiler::table(
        rows, std::string("one ") + method + " adaptation: " + model_name + ", batch " + std::to_string(batch) +
                  ", K " + std::to_string(steps) + " on " +
                  (device.is_cuda() ? cuda::device_properties(device.index).name : std::string("cpu")));
    (a.flag("json") ? std::cerr : std::cout) << t << "\n";
  }

  const Stats s = stats_of(us), si = stats_of(inf_us), sh = stats_of(host_us);
  json::Value v = json::Value::object();
  v.set("bench", "it3");
  v.set("method", method);
  v.set("model", model_name);
  v.set("task", spec.task ? spec.task->name() : std::string());
  v.set("batch", batch);
  v.set("steps", steps);
  json::Value input = json::Value::array();
  for (int64_t d : b.x.x.shape()) input.push_back(d);
  v.set("input", input);  // x's shape (a graph batch: its nodes' features)
  // Every knob of the adaptation timed (with --task: the task's, so the two can be compared).
  v.set("options", json::parse(adapter.options().to_json()));
  v.set("device", device.str());
  v.set("gpu", device.is_cuda() ? cuda::device_properties(device.index).name : std::string("none"));
  v.set("graph", graph ? "on" : "off");
  v.set("path", path);
  v.set("fused_grid", int64_t(fused && adapter.fused_plan() ? adapter.fused_plan()->last_grid() : 0));
  v.set("fused_kernel", std::string(fused_mlp_kernel_name(fused && adapter.fused_plan() ? adapter.fused_plan()->last_kernel()
                                                                                      : FusedMlpKernel::none)));
  v.set("reps", reps);
  v.set("us_per_batch_median", s.median);
  v.set("us_per_batch_p10", s.p10);
  v.set("us_per_batch_p90", s.p90);
  v.set("us_inference_median", si.median);
  // The host's share of each timed call (Timer::last_host_us): submission, not device work.
  v.set("us_host_per_batch_median", sh.median);
  v.set("kernels_per_batch", int64_t(kernel_nodes));
  v.set("kernels_counted", fused || capturable);  // false: kernels_per_batch is 0, not measured
  v.set("launches_per_batch", int64_t(launches));
  v.set("forwards", int64_t(counted.forwards));
  v.set("backwards", int64_t(counted.backwards));
  v.set("optimizer_steps", int64_t(counted.optimizer_steps));
  v.set("reset_bytes", int64_t(counted.reset_bytes));
  v.set("parameters", b.model->num_parameters());
  if (!a.flag("json"))
    std::cout << method << " " << model_name << " batch " << batch << " K " << steps << " on "
              << where_of(v) << " (path " << path << "): " << s.median << " µs/batch median (p10 "
              << s.p10 << ", p90 " << s.p90 << ", host " << sh.median << "), inference " << si.median << " µs, "
              << (fused || capturable ? std::to_string(kernel_nodes) : std::string("n/a"))
              << " kernels/batch, " << launches << " launches/batch, " << counted.forwards << " forwards, "
              << counted.backwards << " backwards, " << counted.optimizer_steps << " steps\n";
  return v;
}

int bench_it3(const Args& a, const Device device) {
  const It3Spec spec = it3_spec(a);
  IDEM_CHECK(a.str("graph") == "on" || a.str("graph") == "off", "idem bench", "--graph takes on or off, got ",
             a.str("graph"));
  // --path wins; without it the old --graph on|off means graph|eager.
  const std::string path = !a.str("path").empty() ? a.str("path") : a.str("graph") == "on" ? "graph" : "eager";
  IDEM_CHECK(path == "eager" || path == "graph" || path == "fused", "idem bench",
             "--path takes eager, graph or fused, got ", path);
  IDEM_CHECK(path != "graph" || device.is_cuda(), "idem bench", "--path graph needs --device cuda");
  const std::string name = a.str("method");
  const bool all = name == "all";
  std::vector<it3::Method> methods;
  if (all) {
    methods = it3::all_methods();
    IDEM_CHECK(!a.has("export"), "idem bench", "--export writes one case: name one method, not --method all");
  } else {
    const auto& known = it3::all_methods();
    const auto it = std::find_if(known.begin(), known.end(), [&](it3::Method m) { return name == it3::method_name(m); });
    if (it == known.end())
      fail("idem bench", "unknown --method '", name, "' (expected one of ", method_names(), ", or all)");
    methods = {*it};
  }
  json::Value out = json::Value::array();
  for (it3::Method m : methods) {
    MethodCase c;
    const std::string why = prepare_case(a, spec, device, m, path, c);
    if (!why.empty()) {
      if (!all) fail("idem bench", why);
      // --method all runs what applies and says what it leaves out, and why.
      std::cout << std::flush;
      std::cerr << "note: --method all skips it: " << why << "\n";
      continue;
    }
    out.push_back(run_case(a, spec, device, path, c));
  }
  IDEM_CHECK(!out.as_array().empty(), "idem bench", "--method all: no method applies to ",
             spec.task ? "--task " + spec.task->name() : "--model " + spec.model_name, " on --path ", path);
  if (a.flag("json")) std::cout << json::dump(all ? out : out.as_array().front()) << std::endl;
  return 0;
}

int bench_train(const Args& a, const Device device) {
  const std::string model_name = a.str("model");
  const int64_t batch = a.integer("batch");
  const int reps = int(a.integer("reps")), warmup = int(a.integer("warmup"));
  BenchModel b = make_bench_model(model_name, batch, device, uint64_t(a.integer("seed")));
  b.model->train();
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[size_t(i)] = i % 10;
  const Tensor y = b.model->task() == it3::TaskKind::classification ? from_vector<int64_t>(labels, {batch}).to(device)
                                       : randn({batch, 1}, 7).to(device);
  it3::TrainOptions t = it3::TrainOptions::for_task(b.model->task());
  t.p_feed = 1.0;
  Adam opt(b.model->parameters(), AdamOptions{});
  // One training step: zero_grad; L = ℓ(f(x, ∅), y) + ℓ(f(x, s(y)), y) (two forwards, s the
  // target signal: y, or one-hot y for the CNNs); one backward; Adam.
  auto step = [&] {
    opt.zero_grad();
    it3::TrainStep s = it3::it3_objective(*b.model, b.x, y, t, 0);
    s.loss.backward();
    opt.step();
  };
  if (a.has("export")) {
    // From Θ: --steps training steps (the loss and the gradients of each, before its Adam
    // update), then f(x, ∅). Written before the timing (which goes on from the trained weights),
    // so bench/compare_pytorch_cpu.py can repeat the exact steps.
    const int steps = int(a.integer("steps"));
    IDEM_CHECK(steps >= 1, "idem bench", "train --export needs --steps >= 1, got ", steps);
    const std::string dir = a.str("export");
    export_weights_inputs(dir, b, &y);
    std::vector<float> losses;
    NamedTensors grads;
    for (int i = 0; i < steps; ++i) {
      opt.zero_grad();
      it3::TrainStep s = it3::it3_objective(*b.model, b.x, y, t, 0);
      s.loss.backward();
      losses.push_back(float(s.loss.item()));
      for (const auto& [n, p] : b.model->named_parameters()) {
        IDEM_CHECK(p.grad().defined(), "idem bench", "train --export: no gradient reached ", n);
        grads.emplace_back("step" + std::to_string(i) + "." + n, p.grad().to(Device::cpu()).clone_data());
      }
      opt.step();
    }
    save_safetensors(dir + "/grads.safetensors", grads);
    Tensor pred;
    {
      NoGradGuard ng;
      pred = b.model->forward_neutral(b.x);
    }
    NamedTensors trained;
    for (const auto& [n, w] : b.model->state_dict()) trained.emplace_back(n, w.to(Device::cpu()));
    save_safetensors(dir + "/trained.safetensors", trained);
    save_safetensors(dir + "/outputs.safetensors",
                     {{"loss", from_vector<float>(losses, {int64_t(steps)})}, {"pred", pred.to(Device::cpu())}});
  }
  Timer timer(device);
  warm_up(warmup, device, step);
  std::vector<double> us;
  uint64_t launches = 0;
  for (int i = 0; i < reps; ++i) {
    const uint64_t l0 = device.is_cuda() ? cuda::launch_count() : 0;
    us.push_back(timer.time_us(step));
    if (device.is_cuda()) launches = cuda::launch_count() - l0;
  }
  const Stats s = stats_of(us);
  json::Value v = json::Value::object();
  v.set("bench", "train");
  v.set("model", model_name);
  v.set("batch", batch);
  v.set("device", device.str());
  v.set("gpu", device.is_cuda() ? cuda::device_properties(device.index).name : std::string("none"));
  v.set("us_per_step_median", s.median);
  v.set("us_per_step_p10", s.p10);
  v.set("us_per_step_p90", s.p90);
  v.set("reps", reps);
  v.set("launches_per_step", int64_t(launches));
  if (a.flag("json")) std::cout << json::dump(v) << std::endl;
  else
    std::cout << "train step " << model_name << " batch " << batch << " on " << where_of(v) << ": "
              << s.median << " µs median (p10 " << s.p10 << ", p90 " << s.p90 << "), " << launches
              << " GPU launches (IT³ objective: 2 forwards, 1 backward, Adam)\n";
  return 0;
}

int bench_ops(const Args& a, const Device device) {
  const int reps = int(a.integer("reps")), warmup = int(a.integer("warmup"));
  const Options o{DType::f32, device};
  struct OpCase {
    std::string name;
    std::function<void()> run;
    double bytes;
  };
  Tensor m1 = randn({8, 30}, 1, o), m2 = randn({30, 14}, 2, o);
  Tensor big_a = randn({4096, 4096}, 3, o), big_b = randn({4096, 4096}, 4, o);
  Tensor v = randn({1 << 24}, 5, o), w = randn({1 << 24}, 6, o);
  Tensor img = randn({256, 1, 28, 28}, 7, o), ker = randn({10, 1, 5, 5}, 8, o), bias = randn({10}, 9, o);
  Tensor logits = randn({4096, 1000}, 10, o);
  NoGradGuard ng;
  std::vector<OpCase> cases{
      {"matmul 8x30x14", [&] { matmul(m1, m2); }, 0},
      {"matmul 4096^3", [&] { matmul(big_a, big_b); }, 0},
      {"add 16M", [&] { add(v, w); }, 3.0 * 4 * double(v.numel())},
      {"sum 16M", [&] { sum(v); }, 4.0 * double(v.numel())},
      {"softmax 4096x1000", [&] { softmax(logits, 1); }, 8.0 * double(logits.numel())},
      {"conv2d 256x1x28x28 * 10x1x5x5", [&] { conv2d(img, ker, bias); }, 0},
  };
  Timer timer(device);
  for (auto& c : cases) {
    warm_up(warmup, device, c.run);
    std::vector<double> us;
    for (int i = 0; i < reps; ++i) us.push_back(timer.time_us(c.run));
    const Stats s = stats_of(us);
    std::ostringstream extra;
    if (c.bytes > 0) extra << ", " << c.bytes / (s.median * 1e-6) / 1e9 << " GB/s";
    if (c.name == "matmul 4096^3") extra << ", " << 2.0 * 4096.0 * 4096.0 * 4096.0 / (s.median * 1e-6) / 1e12 << " TFLOP/s";
    if (a.flag("json")) {
      json::Value j = json::Value::object();
      j.set("bench", "ops");
      j.set("op", c.name);
      j.set("device", device.str());
      j.set("us_median", s.median);
      std::cout << json::dump(j) << std::endl;
    } else {
      std::cout << c.name << " on " << (device.is_cuda() ? cuda::device_properties(device.index).name : "cpu")
                << ": " << s.median << " µs" << extra.str() << "\n";
    }
  }
  return 0;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  std::vector<OptionSpec> specs{{"model", true, "mlp_tab", "mlp_tab, mlp_256, cnn, sage (the models of bench/torch_models.py) or bn_cnn (the fmnist demo's BatchNorm CNN: for tent, eata, deyo)"},
                                {"method", true, "it3", "it3: the adaptation to time: none, bn, tent, actmad, it3, it3-online, random-step, eata, deyo, memo, ttt, ttt++, or all (every one that applies to --model and --path, one line each; a JSON array with --json)"},
                                {"task", true, "", "it3: time the adaptation that TASK's demo runs (" + std::string(kTaskNames) + ") instead of a bench model's: the task's model, the options its rows start from in idem adapt and demo (K, lr, BatchNorm mode, ...; the JSON's \"options\" lists them) and its test batch and K unless --batch or --steps are given, on built-in stand-in data of the task's shape (fmnist: synthetic 28×28 images)"},
                                {"batch", true, "8", "test batch size (sage: number of 32×32 meshes; --task: the task's test batch)"},
                                {"steps", true, "1", "it3: adaptation steps K (--task: the task's K); train: training steps that --export writes"},
                                {"fused-head", true, "auto", "it3 on a feature-injection model (cnn): the head's IT³ loss as one op, one launch each way: auto (on a GPU, batches up to 32, not on --path graph), on (also the CPU reference and in graphs) or off"},
                                {"path", true, "", "it3: eager (op by op), graph (the adaptation captured in a CUDA graph and replayed) or fused (one kernel call: small MLPs); default: --graph's"},
                                {"graph", true, "off", "on: --path graph, off: --path eager (when --path is not given)"},
                                {"reps", true, "200", "timed repetitions"},
                                {"warmup", true, "20", "untimed repetitions first (at least 0.25 s of them)"},
                                {"export", true, "", "write weights, inputs and results (safetensors) to DIR; it3: the adapted and the inference prediction; train: the loss and the gradients of each of --steps steps from the initial weights, the trained weights and f(x, ∅) after them"},
                                {"profile", false, "", "it3: print a per-op table of one adaptation (launches, µs, bytes, share)"},
                                {"profiler-range", false, "", "it3, --graph off: run only the timed adaptations inside cudaProfilerStart/Stop (for ncu --profile-from-start off)"}};
  for (const auto& o : common_options()) specs.push_back(o);
  const std::string what = argc >= 3 ? argv[2] : "";
  Args a("bench", specs, argc, argv, what.empty() || what[0] == '-' ? 2 : 3);
  if (a.help() || what.empty() || what[0] == '-') {
    std::cout << "idem bench it3|train|ops: time one IT³ adaptation per test batch (or another method's:\n"
                 "it3 --method M, or --method all), one training step, or a few core ops, after warm-up\n"
                 "(median, p10, p90). it3 --task T times the adaptation T's demo runs (its model and\n"
                 "options), to compare with what idem adapt and idem demo report per batch.\n\n"
              << a.usage();
    return a.help() ? 0 : 2;
  }
  IDEM_CHECK((what != "train" && what != "ops") || !a.has("task"), "idem bench",
             "--task applies to bench it3 only (bench ", what, " times --model)");
  const Device device = Device::parse(resolve_device(a));
  init::manual_seed(uint64_t(a.integer("seed")));
  if (what == "it3") return bench_it3(a, device);
  if (what == "train") return bench_train(a, device);
  if (what == "ops") return bench_ops(a, device);
  fail("idem bench", "unknown benchmark '", what, "' (expected it3, train or ops)");
}

}  // namespace idem::cli
