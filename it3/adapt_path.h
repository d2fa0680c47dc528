// Level L4: the adaptation on the fastest path that applies — what `idem adapt` and `idem demo`
// run (docs/it3.md, "Execution paths").
//
// An IT³ adaptation of a small model is bound by launches, not arithmetic: on an H100 one eager
// adaptation of the bench `mlp_tab` issues ~30 kernels from the host (~7 µs of host time each),
// while a CUDA graph replays them all with one launch. The paths:
//   eager   Adapter::predict: one host call per op (any device, any options)
//   graph   the whole adaptation of one batch captured once per input shape in a CUDA graph
//           (core/kernels/cuda_graph.h) and replayed per batch; the batch is copied into the
//           captured input first; a feature-injection model's fused head (it3/fused_head.h)
//           is captured only when asked for (fused_head on) or kFusedHeadAutoInGraphs
//   fused   the whole adaptation as ONE fused kernel call (it3/fused_adapt.h): small concat
//           MLPs with IT³ offline; on the CPU too when named (the plain-loop reference)
//   auto    fused where it applies on a GPU and the batch runs as one block of the kernels (the
//           only size where they beat a graph on an H100), else graph where it applies, else eager
// Every path gives the same predictions (the graph replays exactly the eager kernels; tests
// compare them) and fills the same Cost counters, so a results table can say which one ran.
//
// When the graph path applies: a CUDA device, a batch without graph structure (each GNN batch has
// its own edges, which a replay cannot change), and options whose per-batch work is the same
// every batch: the state is reset per batch (or nothing steps). Host-side values such as Adam's
// bias correction of step t are baked into a capture; with a reset they repeat every batch.
// The eager path checks each step's loss before stepping (check_finite); a replay cannot stop
// half-way, so the graph path checks the first and last loss and the prediction after the replay
// and throws the same kind of error.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "it3/adapt.h"

namespace idem::it3 {

enum class AdaptPath : uint8_t { automatic, fused, graph, eager };
const char* adapt_path_name(AdaptPath p);  // "auto", "fused", "graph", "eager"
// Throws idem::Error listing the valid names.
AdaptPath parse_adapt_path(const std::string& name);

// Why the graph path cannot run `options` on `device` ("" when it can). Inputs with graph
// structure are refused per batch (automatic then runs that batch eagerly).
std::string graph_path_blocker(const AdaptOptions& options, Device device);

// The options of an Adapter whose adaptation is captured in a CUDA graph (PathAdapter's graph
// path, `idem bench it3 --path graph`): no fused call (the graph replays the ops), no loss
// read back between steps (a replay cannot stop; the losses are checked after it), and the
// fused head only where fused_head_in_graph keeps it.
AdaptOptions graph_capture_options(AdaptOptions options);

class PathAdapter {
 public:
  // `path` automatic picks per the rules above; fused or graph asked for explicitly and not
  // applicable throws idem::Error with the reason (no silent fallback when the user named one).
  // The path decides options.fused: on for fused, off for graph and eager (they time the ops),
  // automatic (GPU only) for auto. A batch the fused kernel does not take (over 256 rows, or
  // under auto more work than one block does well) runs in a CUDA graph under auto where one
  // applies, else op by op.
  PathAdapter(const std::shared_ptr<RecursiveModel>& trained, AdaptOptions options,
              ActmadStats stats = {}, AdaptPath path = AdaptPath::automatic);
  ~PathAdapter();
  PathAdapter(const PathAdapter&) = delete;
  PathAdapter& operator=(const PathAdapter&) = delete;

  // Adapts on x and predicts, like Adapter::predict (same requirements, same result fields).
  // The prediction is the caller's own tensor (a later batch never overwrites it).
  AdaptResult predict(const Input& x);

  // The path the last predict() took (before any: the path chosen at construction); fused only
  // when the batch really ran as one fused call.
  AdaptPath path() const { return last_path_; }
  // Totals over every predict() since construction. A capture's one-time cost (two warm-up
  // adaptations and the capture itself) is not in wall_us: it is in setup_us().
  const Cost& total() const { return total_; }
  double setup_us() const { return setup_us_; }
  // CUDA graphs captured so far (one per input shape).
  size_t captures() const { return captures_.size(); }
  bool needs_batch_of_two() const { return adapter_->needs_batch_of_two(); }
  Adapter& adapter() { return *adapter_; }

 private:
  struct Capture;
  AdaptResult predict_graph(const Input& x);
  Capture& capture_for(const Input& x);
  // The Adapter a capture records: adapter_ on the graph path; on the fused path under auto, a
  // second Adapter with the fused kernel off (made at the first batch the kernel does not take).
  Adapter& graph_adapter();

  std::shared_ptr<RecursiveModel> trained_;
  ActmadStats stats_;
  AdaptPath asked_;
  AdaptPath chosen_;
  AdaptPath last_path_;
  bool check_finite_;  // the user's wish; the graph path's Adapter runs with it off
  // The graph path: its options before graph_capture_options, for the eager rebuild that
  // batches with graph structure force.
  std::optional<AdaptOptions> eager_options_;
  std::unique_ptr<Adapter> adapter_;
  std::optional<AdaptOptions> graph_options_;  // set: auto may send unfused batches to a graph
  std::unique_ptr<Adapter> graph_adapter_;
  std::vector<std::unique_ptr<Capture>> captures_;
  Cost total_;
  double setup_us_ = 0.0;
};

}  // namespace idem::it3
