#include "it3/adapt_path.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/kernels/cuda_graph.h"
#include "core/kernels/runtime.h"

namespace idem::it3 {

const char* adapt_path_name(AdaptPath p) {
  switch (p) {
    case AdaptPath::automatic: return "auto";
    case AdaptPath::fused: return "fused";
    case AdaptPath::graph: return "graph";
    case AdaptPath::eager: return "eager";
  }
  return "?";
}

AdaptPath parse_adapt_path(const std::string& name) {
  if (name == "auto") return AdaptPath::automatic;
  if (name == "fused") return AdaptPath::fused;
  if (name == "graph") return AdaptPath::graph;
  if (name == "eager") return AdaptPath::eager;
  fail("it3 adaptation path", "unknown path '", name, "' (expected auto, fused, graph or eager)");
}

AdaptOptions graph_capture_options(AdaptOptions options) {
  options.fused = FusedMode::off;
  options.check_finite = false;
  options.fused_head = fused_head_in_graph(options.fused_head);
  return options;
}

std::string graph_path_blocker(const AdaptOptions& o, Device device) {
  if (!device.is_cuda()) return "the graph path needs a CUDA device, the model is on " + device.str();
  const bool steps = o.steps > 0 && o.method != Method::none && o.method != Method::bn;
  // Without a reset, θ, the moments and Adam's step count carry over: the bias correction
  // baked into a capture would be wrong from the second batch on.
  if (steps && o.reset != ResetPolicy::per_batch)
    return std::string(method_name(o.method)) + " keeps its state between batches (reset never)";
  if (steps && o.persistent_moments)
    return "persistent optimizer moments carry the step count between batches";
  // Draws seeded per batch would repeat the captured batch's draws on every replay.
  if (o.neutral == NeutralSignal::random_one_hot)
    return "a random one-hot ∅ is drawn anew for every batch";
  if (o.method == Method::random_step && o.steps > 0)
    return "random-step draws a new direction for every batch";
  if (o.method == Method::deyo && o.steps > 0)
    return "deyo draws a new patch shuffle for every batch";
  if (o.method == Method::memo && o.steps > 0)
    return "memo draws new augmentations for every batch";
  if (o.method == Method::masked_ttt && o.steps > 0)
    return "masked-ttt draws new masks for every batch";
  // EATA's redundancy filter keeps a moving average that a reset reallocates (and that carries
  // over between batches without one): not in the buffers a capture replays.
  if (o.method == Method::eata && o.steps > 0)
    return "eata's redundancy filter keeps a moving average outside the captured buffers";
  return "";
}

// One captured adaptation for one input shape: the static input the graph reads, the outputs
// every replay rewrites, and the counters of the adaptation it recorded.
struct PathAdapter::Capture {
  std::vector<int64_t> shape;
  Tensor x;  // static input
  Tensor prediction, first_loss, last_loss;
  Cost counted;  // forwards, backwards, steps, reset bytes of one adaptation
  cuda::Graph graph;
};

PathAdapter::PathAdapter(const std::shared_ptr<RecursiveModel>& trained, AdaptOptions options,
                         ActmadStats stats, AdaptPath path)
    : trained_(trained), stats_(stats), asked_(path), check_finite_(options.check_finite) {
  IDEM_CHECK(trained != nullptr, "it3::PathAdapter", "the trained model is null");
  // The fused path first: one kernel call per batch beats a replay of ~30 kernels.
  options.fused = path == AdaptPath::fused       ? FusedMode::on
                  : path == AdaptPath::automatic ? FusedMode::automatic
                                                 : FusedMode::off;
  const std::string fused_why = fused_ineligible_reason(*trained, options);
  if (path == AdaptPath::fused && !fused_why.empty())
    fail("it3::PathAdapter", "--path fused cannot run ", method_name(options.method), ": ", fused_why,
         " (use --path auto, graph or eager)");
  if (fused_why.empty()) {
    chosen_ = last_path_ = AdaptPath::fused;
    // auto: a batch the fused kernel does not take (too large for one block, or over 256 rows)
    // goes to a CUDA graph where one applies, else op by op; --path fused runs it op by op.
    const AdaptOptions graph_options = graph_capture_options(options);
    if (path == AdaptPath::automatic && graph_path_blocker(graph_options, trained->device()).empty())
      graph_options_ = graph_options;
    adapter_ = std::make_unique<Adapter>(trained, options, stats_);
    return;
  }
  options.fused = FusedMode::off;
  const std::string blocker = graph_path_blocker(options, trained->device());
  if (path == AdaptPath::graph && !blocker.empty())
    fail("it3::PathAdapter", "--path graph cannot run ", method_name(options.method), ": ", blocker,
         " (use --path auto or eager)");
  chosen_ = path == AdaptPath::eager || !blocker.empty() ? AdaptPath::eager : AdaptPath::graph;
  last_path_ = chosen_;
  // A replay never reads a value back; the graph path checks the losses after the replay.
  if (chosen_ == AdaptPath::graph) {
    eager_options_ = options;
    options = graph_capture_options(options);
  }
  adapter_ = std::make_unique<Adapter>(trained, options, stats_);
}

PathAdapter::~PathAdapter() = default;

Adapter& PathAdapter::graph_adapter() {
  if (!graph_options_) return *adapter_;
  if (!graph_adapter_) graph_adapter_ = std::make_unique<Adapter>(trained_, *graph_options_, stats_);
  return *graph_adapter_;
}

AdaptResult PathAdapter::predict(const Input& x) {
  if (chosen_ == AdaptPath::graph && x.graph) {
    // Each GNN batch has its own edges, which a replay cannot change.
    IDEM_CHECK(asked_ != AdaptPath::graph, "it3::PathAdapter",
               "--path graph cannot replay batches with graph structure (every batch has its own "
               "edges); use --path auto or eager");
    // Rebuild once as a plain eager adapter: every later batch of this task has edges too.
    adapter_ = std::make_unique<Adapter>(trained_, *eager_options_, stats_);
    chosen_ = AdaptPath::eager;
  }
  if (chosen_ == AdaptPath::fused) {
    if (!adapter_->uses_fused(x) && graph_options_ && !x.graph) {
      last_path_ = AdaptPath::graph;
      return predict_graph(x);
    }
    last_path_ = adapter_->uses_fused(x) ? AdaptPath::fused : AdaptPath::eager;
    AdaptResult r = adapter_->predict(x);
    total_ += r.cost;
    return r;
  }
  AdaptResult r = chosen_ == AdaptPath::graph ? predict_graph(x) : adapter_->predict(x);
  last_path_ = chosen_;
  if (chosen_ == AdaptPath::eager) total_ += r.cost;
  return r;
}

PathAdapter::Capture& PathAdapter::capture_for(const Input& x) {
  const std::vector<int64_t> shape = x.x.shape();
  for (auto& c : captures_)
    if (c->shape == shape) return *c;
  const auto t0 = std::chrono::steady_clock::now();
  auto c = std::make_unique<Capture>();
  c->shape = shape;
  c->x = x.x.clone_data();
  const Input in(c->x);
  const int device = x.device().index;
  {
    // Warm up on the capture stream (fills the allocator's cache, creates library handles),
    // twice because the outputs of one run are alive while the next allocates its own. The
    // warm-ups keep the step losses exactly as the capture will: a loss held past its step
    // holds a cached block, and a warm-up that let it go could leave the capture one block
    // short (ttt's capture failed that way on an H100 with 96 bytes "missed the cache").
    cuda::CaptureStream stream(device);
    for (int i = 0; i < 2; ++i)
      c->prediction = graph_adapter().adapt_and_predict(in, nullptr, &c->first_loss, &c->last_loss);
    Cost counted;
    c->graph = cuda::Graph::capture(
        [&] { c->prediction = graph_adapter().adapt_and_predict(in, &counted, &c->first_loss, &c->last_loss); },
        stream);
    c->counted = counted;
  }
  cuda::synchronize(device);
  setup_us_ += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  captures_.push_back(std::move(c));
  return *captures_.back();
}

AdaptResult PathAdapter::predict_graph(const Input& x) {
  Capture& c = capture_for(x);
  AdaptResult r;
  r.cost = c.counted;
  r.cost.batches = 1;
  r.cost.samples = uint64_t(x.batch_size());
  r.cost.gpu_launches = 0;
  r.cost.wall_us = 0.0;
  CostMeter meter(x.device());
  c.x.copy_(x.x);   // the batch into the captured input
  c.graph.replay();  // one launch: reset, K steps, prediction
  r.prediction = c.prediction.clone_data();
  meter.stop(r.cost);
  const double nan = std::nan("");
  r.loss_before = c.first_loss.defined() ? c.first_loss.item() : nan;
  r.loss_after = c.last_loss.defined() ? c.last_loss.item() : nan;
  if (check_finite_ && c.first_loss.defined() &&
      !(std::isfinite(r.loss_before) && std::isfinite(r.loss_after)))
    fail("it3::PathAdapter", "non-finite adaptation loss (first step ", r.loss_before, ", last step ",
         r.loss_after, ") in the graph-replayed ", method_name(adapter_->options().method),
         " adaptation of a batch of ", x.batch_size(),
         "; a replay cannot stop before the step, so rerun with --path eager to stop at the first "
         "bad step (and IDEM_ANOMALY=1 to find the op)");
  total_ += r.cost;
  return r;
}

}  // namespace idem::it3
