// Level L4: recursive-input models f(x, s) for IT³ (docs/it3.md).
//
// A recursive-input model takes the input x and a second signal s with the shape of the
// prediction: the true target y during training, the model's own prediction during test-time
// adaptation, or the neutral "don't know" signal ∅. RecursiveModel is a Module (parameters,
// state_dict, clone, copy_from all work as for any layer) whose forward takes (Input, s).
//
// Where s enters the network is the model's injection mode:
//   concat   s is concatenated to the input features; for graphs, s of each graph is repeated on
//            every node of that graph (ConcatModel, GraphModel);
//   plane    s is broadcast to constant extra input channels of an image (PlaneModel);
//   feature  a small embedding network of s is added to an intermediate feature map, broadcast
//            over space (FeatureModel: head(body(x) + embed(s))).
//
// Activation taps (ActMAD): when a TapSink is installed, a model reports the outputs of its
// activation modules (ReLU, LeakyReLU, ...) under their dotted module names, so a baseline can
// align their statistics without the model knowing about it. Without a sink, forward takes the
// plain (fused) path.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/gnn.h"
#include "layers/graph_batch.h"

namespace idem::it3 {

enum class TaskKind : uint8_t { regression, classification };
enum class Injection : uint8_t { concat, plane, feature };
const char* task_name(TaskKind t);
const char* injection_name(Injection i);

// One batch of model input: a feature matrix (B, d), images (B, C, H, W), or node features
// (V, F) of a batch of graphs (graph set, B = graph->num_graphs).
struct Input {
  Tensor x;
  std::shared_ptr<const Graph> graph;

  Input() = default;
  explicit Input(Tensor x_) : x(std::move(x_)) {}
  Input(Tensor x_, std::shared_ptr<const Graph> g) : x(std::move(x_)), graph(std::move(g)) {}

  // Number of samples: rows of x, or graphs in the batch.
  int64_t batch_size() const;
  Device device() const { return x.device(); }
  // A copy on `device` (the graph is copied too, once).
  Input to(Device device) const;
};

// What the signal s looks like: its width (1 for scalar regression, C for C classes) and the
// neutral value ∅ (docs/it3.md: regression a constant far outside the standardized target range;
// classification the uniform vector 1/C, or zeros).
struct SignalSpec {
  TaskKind task = TaskKind::regression;
  int64_t dim = 1;
  double neutral_value = 50.0;  // regression: the constant; classification: ignored
  bool neutral_zeros = false;   // classification: zeros instead of 1/C

  static SignalSpec regression(int64_t dim = 1, double neutral = 50.0);
  static SignalSpec classification(int64_t classes, bool zeros = false);
  // The fill value of ∅ (neutral_value, 1/dim or 0).
  double neutral_fill() const;
};

// Receives (name, activation) pairs during a forward (ActMAD collects statistics this way).
using TapSink = std::function<void(const std::string& name, const Tensor& activation)>;

class RecursiveModel : public Module {
 public:
  using Module::forward;
  using Module::operator();

  // f(x, s). requires: s is (B, signal dim) on x's device with x's dtype (checked: a wrong
  // shape names the model, the expected and the given shape). Returns (B, signal dim): logits
  // for classification, values for regression.
  Tensor forward(const Input& in, const Tensor& s);
  Tensor operator()(const Input& in, const Tensor& s) { return forward(in, s); }
  // f(x, ∅).
  Tensor forward_neutral(const Input& in);
  // Module's single-tensor forward: f(x, ∅) for non-graph models.
  Tensor forward(const Tensor& x) override { return forward_neutral(Input(x)); }

  // ∅ for a batch of `batch` samples: (batch, dim) filled with spec().neutral_fill(). Cached
  // per (batch, device, dtype), so repeated calls allocate nothing (the tensor must not be
  // written to).
  Tensor neutral(int64_t batch, Device device, DType dtype = DType::f32) const;
  // The signal a prediction feeds back: softmax(prediction) for classification, the
  // prediction itself for regression (docs/it3.md, "Adaptation").
  Tensor to_signal(const Tensor& prediction) const;
  // The signal of a target: one-hot of i64 labels (B) for classification, y itself (B, dim)
  // for regression.
  Tensor target_signal(const Tensor& y) const;

  const SignalSpec& spec() const { return spec_; }
  TaskKind task() const { return spec_.task; }
  int64_t signal_dim() const { return spec_.dim; }
  Injection injection() const { return injection_; }

  // Names the model reports to a TapSink (dotted module names of its activation layers).
  std::vector<std::string> tap_names();
  // Installs (or clears, with nullptr) the sink; forwards report to it while it is set.
  void set_tap_sink(TapSink sink) { sink_ = std::move(sink); }
  bool has_tap_sink() const { return static_cast<bool>(sink_); }

 protected:
  RecursiveModel(std::string type_name, SignalSpec spec, Injection injection);
  virtual Tensor forward_impl(const Input& in, const Tensor& s) = 0;
  // Runs `m` on x. With a sink installed and m a Sequential (or an MLP), runs the children
  // one by one (a FusedSequential's fused steps stay fused) and reports every activation
  // module's output as prefix + "." + child name.
  Tensor run(Module& m, const Tensor& x, const std::string& prefix);
  void tap(const std::string& name, const Tensor& t) {
    if (sink_) sink_(name, t);
  }

  SignalSpec spec_;
  Injection injection_;

 private:
  TapSink sink_;
  mutable std::map<std::string, Tensor> neutral_cache_;
};

// f(x, s) = net(concat(x, s)) for feature tables. net's input width is d + spec.dim.
class ConcatModel : public RecursiveModel {
 public:
  ConcatModel(std::shared_ptr<Module> net, SignalSpec spec);
  const std::shared_ptr<Module>& net() const { return net_; }

 protected:
  Tensor forward_impl(const Input& in, const Tensor& s) override;
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::shared_ptr<Module> net_;
};

// f(x, s) = net(concat(x, s broadcast to (B, dim, H, W)) over channels) for images.
class PlaneModel : public RecursiveModel {
 public:
  PlaneModel(std::shared_ptr<Module> net, SignalSpec spec);
  const std::shared_ptr<Module>& net() const { return net_; }

 protected:
  Tensor forward_impl(const Input& in, const Tensor& s) override;
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::shared_ptr<Module> net_;
};

// f(x, s) = head(body(x) + embed(s)), embed(s) (B, C) broadcast over the spatial dims of the
// body's feature map (B, C, H, W) or added directly to (B, C) features. Children "body",
// "embed", "head" (so a checkpoint reads body.0.weight, embed.0.weight, head.2.bias, ...).
class FeatureModel : public RecursiveModel {
 public:
  FeatureModel(std::shared_ptr<Module> body, std::shared_ptr<Module> embed,
               std::shared_ptr<Module> head, SignalSpec spec);
  const std::shared_ptr<Module>& body() const { return body_; }
  const std::shared_ptr<Module>& embed() const { return embed_; }
  const std::shared_ptr<Module>& head() const { return head_; }
  // The two halves of forward: features(x) = body(x); from_features(h, s) = head(h + embed(s)).
  // The head-only anchor of IT³ (it3/adapt.h) runs a frozen model's from_features on the
  // adapted model's features.
  Tensor features(const Input& in);
  Tensor from_features(const Tensor& h, const Tensor& s);

  // An auxiliary self-supervised head on the body's features, for test-time training
  // (it3/aux_head.h builds it): child "aux", so a checkpoint holds aux.0.weight, ... next to the
  // task's weights and clone() copies it. `kind` names its task ("rotation", "masked"). It is
  // not part of forward(); only the TTT losses run it. Set once (a second call throws).
  void set_aux_head(const std::string& kind, std::shared_ptr<Module> head);
  const std::shared_ptr<Module>& aux_head() const { return aux_; }  // null without one
  const std::string& aux_kind() const { return aux_kind_; }          // "" without one

 protected:
  Tensor forward_impl(const Input& in, const Tensor& s) override;
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::shared_ptr<Module> body_, embed_, head_, aux_;
  std::string aux_kind_;
};

// A GNN over batched graphs: node features h0 = concat(x, s[batch]) (concat injection), then
// h ← act(conv_i(h, graph)) for every conv, global mean pooling per graph, then head(pooled).
// Children "convs" (a container: convs.0.lin_l.weight, ...) and "head".
class GraphModel : public RecursiveModel {
 public:
  GraphModel(std::vector<std::shared_ptr<GraphLayer>> convs, std::shared_ptr<Module> head,
             SignalSpec spec, Activation activation = Activation::relu, double slope = 0.01);
  const std::vector<std::shared_ptr<GraphLayer>>& convs() const { return convs_; }
  const std::shared_ptr<Module>& head() const { return head_; }

 protected:
  Tensor forward_impl(const Input& in, const Tensor& s) override;
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::vector<std::shared_ptr<GraphLayer>> convs_;
  std::shared_ptr<Module> head_;
  Activation act_;
  double slope_;
};

}  // namespace idem::it3
