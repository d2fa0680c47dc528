#include "it3/recursive_model.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "layers/activation.h"
#include "layers/mlp.h"

namespace idem::it3 {

const char* task_name(TaskKind t) {
  return t == TaskKind::regression ? "regression" : "classification";
}
const char* injection_name(Injection i) {
  switch (i) {
    case Injection::concat: return "concat";
    case Injection::plane: return "plane";
    case Injection::feature: return "feature";
  }
  return "?";
}

// ---- Input ----

int64_t Input::batch_size() const {
  if (graph) return graph->num_graphs;
  IDEM_CHECK(x.defined() && x.dim() >= 1, "it3::Input", "an input needs a tensor x with a batch dim");
  return x.size(0);
}

Input Input::to(Device device) const {
  Input out;
  out.x = x.defined() ? x.to(device) : x;
  if (graph) out.graph = std::make_shared<const Graph>(graph->to(device));
  return out;
}

// ---- SignalSpec ----

SignalSpec SignalSpec::regression(int64_t dim, double neutral) {
  IDEM_CHECK(dim >= 1, "it3::SignalSpec", "regression signal width must be >= 1, got ", dim);
  return {TaskKind::regression, dim, neutral, false};
}
SignalSpec SignalSpec::classification(int64_t classes, bool zeros) {
  IDEM_CHECK(classes >= 2, "it3::SignalSpec", "classification needs >= 2 classes, got ", classes);
  return {TaskKind::classification, classes, 0.0, zeros};
}
double SignalSpec::neutral_fill() const {
  if (task == TaskKind::regression) return neutral_value;
  return neutral_zeros ? 0.0 : 1.0 / double(dim);
}

// ---- RecursiveModel ----

RecursiveModel::RecursiveModel(std::string type_name, SignalSpec spec, Injection injection)
    : Module(std::move(type_name)), spec_(spec), injection_(injection) {}

Tensor RecursiveModel::forward(const Input& in, const Tensor& s) {
  IDEM_CHECK(in.x.defined(), type_name(), "the input tensor x is undefined");
  const int64_t b = in.batch_size();
  if (!s.defined() || s.dim() != 2 || s.size(0) != b || s.size(1) != spec_.dim)
    fail(type_name(), "signal of shape ", s.defined() ? shape_str(s.shape()) : std::string("(undefined)"),
         " does not fit: expected (", b, ", ", spec_.dim, ") = (batch, ",
         spec_.task == TaskKind::classification ? "classes" : "target width", ")");
  if (s.device() != in.x.device())
    fail(type_name(), "signal on ", s.device().str(), " but input on ", in.x.device().str());
  if (s.dtype() != in.x.dtype())
    fail(type_name(), "signal dtype ", dtype_name(s.dtype()), " differs from input dtype ",
         dtype_name(in.x.dtype()));
  Tensor y = forward_impl(in, s);
  IDEM_CHECK(y.dim() == 2 && y.size(0) == b && y.size(1) == spec_.dim, type_name(),
             "network output ", shape_str(y.shape()), " is not (", b, ", ", spec_.dim,
             "): the head's width must equal the signal width");
  return y;
}

Tensor RecursiveModel::forward_neutral(const Input& in) {
  return forward(in, neutral(in.batch_size(), in.x.device(), in.x.dtype()));
}

Tensor RecursiveModel::neutral(int64_t batch, Device device, DType dtype) const {
  std::ostringstream key;
  key << batch << '/' << device.str() << '/' << dtype_name(dtype);
  auto it = neutral_cache_.find(key.str());
  if (it != neutral_cache_.end()) return it->second;
  // A small cache: evaluation loops use one or two batch sizes.
  if (neutral_cache_.size() > 16) neutral_cache_.clear();
  Tensor t = idem::full({batch, spec_.dim}, spec_.neutral_fill(), Options{dtype, device});
  neutral_cache_.emplace(key.str(), t);
  return t;
}

Tensor RecursiveModel::to_signal(const Tensor& prediction) const {
  return spec_.task == TaskKind::classification ? softmax(prediction, 1) : prediction;
}

Tensor RecursiveModel::target_signal(const Tensor& y) const {
  if (spec_.task == TaskKind::classification) {
    IDEM_CHECK(y.dim() == 1 && y.dtype() == DType::i64, type_name(),
               "classification targets must be (B) i64 labels, got ", shape_str(y.shape()), " ",
               dtype_name(y.dtype()));
    return one_hot(y, spec_.dim, DType::f32);
  }
  IDEM_CHECK(y.dim() == 2 && y.size(1) == spec_.dim, type_name(), "regression targets must be (B, ",
             spec_.dim, "), got ", shape_str(y.shape()));
  return y;
}

namespace {
bool is_activation(const Module& m) {
  return dynamic_cast<const ActivationModule*>(&m) != nullptr;
}
}  // namespace

Tensor RecursiveModel::run(Module& m, const Tensor& x, const std::string& prefix) {
  Sequential* seq = dynamic_cast<Sequential*>(&m);
  std::string pre = prefix;
  if (!seq) {
    if (auto* mlp = dynamic_cast<MLP*>(&m)) {
      seq = mlp->layers().get();
      pre = prefix + ".layers";
    }
  }
  if (!seq) return m.forward(x);
  if (!sink_) return seq->forward(x);
  // With a sink: report every activation module's output under its dotted name. A
  // FusedSequential reports a fused Linear + activation under the activation's name.
  const auto& kids = seq->children();
  auto report = [&](size_t i, const Tensor& h) {
    if (is_activation(*kids[i].second)) tap(pre + "." + kids[i].first, h);
  };
  if (auto* fused = dynamic_cast<FusedSequential*>(seq)) return fused->forward_with(x, report);
  Tensor h = x;
  for (size_t i = 0; i < kids.size(); ++i) {
    h = kids[i].second->forward(h);
    report(i, h);
  }
  return h;
}

std::vector<std::string> RecursiveModel::tap_names() {
  std::vector<std::string> names;
  for (auto& [name, m] : named_modules())
    if (is_activation(*m)) names.push_back(name);
  return names;
}

// ---- concat ----

ConcatModel::ConcatModel(std::shared_ptr<Module> net, SignalSpec spec)
    : RecursiveModel("ConcatModel", spec, Injection::concat), net_(std::move(net)) {
  IDEM_CHECK(net_ != nullptr, "ConcatModel", "net is null");
  register_module("net", net_);
}

Tensor ConcatModel::forward_impl(const Input& in, const Tensor& s) {
  IDEM_CHECK(in.x.dim() == 2, "ConcatModel", "expects features (B, d), got ", shape_str(in.x.shape()));
  return run(*net_, concat({in.x, s}, 1), "net");
}

std::shared_ptr<Module> ConcatModel::clone_impl() const {
  return std::make_shared<ConcatModel>(net_->clone(), spec_);
}

// ---- plane ----

PlaneModel::PlaneModel(std::shared_ptr<Module> net, SignalSpec spec)
    : RecursiveModel("PlaneModel", spec, Injection::plane), net_(std::move(net)) {
  IDEM_CHECK(net_ != nullptr, "PlaneModel", "net is null");
  register_module("net", net_);
}

Tensor PlaneModel::forward_impl(const Input& in, const Tensor& s) {
  const Tensor& x = in.x;
  IDEM_CHECK(x.dim() == 4, "PlaneModel", "expects images (B, C, H, W), got ", shape_str(x.shape()));
  // s (B, S) -> (B, S, H, W): constant planes, one per signal entry.
  Tensor planes = expand(reshape(s, {s.size(0), s.size(1), 1, 1}),
                         {s.size(0), s.size(1), x.size(2), x.size(3)});
  return run(*net_, concat({x, planes}, 1), "net");
}

std::shared_ptr<Module> PlaneModel::clone_impl() const {
  return std::make_shared<PlaneModel>(net_->clone(), spec_);
}

// ---- feature ----

FeatureModel::FeatureModel(std::shared_ptr<Module> body, std::shared_ptr<Module> embed,
                           std::shared_ptr<Module> head, SignalSpec spec)
    : RecursiveModel("FeatureModel", spec, Injection::feature),
      body_(std::move(body)),
      embed_(std::move(embed)),
      head_(std::move(head)) {
  IDEM_CHECK(body_ && embed_ && head_, "FeatureModel", "body, embed and head must all be set");
  register_module("body", body_);
  register_module("embed", embed_);
  register_module("head", head_);
}

Tensor FeatureModel::forward_impl(const Input& in, const Tensor& s) {
  return from_features(features(in), s);
}

Tensor FeatureModel::features(const Input& in) { return run(*body_, in.x, "body"); }

Tensor FeatureModel::from_features(const Tensor& h, const Tensor& s) {
  Tensor e = run(*embed_, s, "embed");
  IDEM_CHECK(e.dim() == 2 && h.dim() >= 2 && e.size(1) == h.size(1), "FeatureModel",
             "embedding ", shape_str(e.shape()), " does not match the feature map ",
             shape_str(h.shape()), " (need (B, C) with C = the map's channels)");
  if (h.dim() > 2) {
    // Broadcast (B, C) over the spatial dims: (B, C, 1, ..., 1).
    Shape es = e.shape();
    while (int64_t(es.size()) < h.dim()) es.push_back(1);
    e = reshape(e, es);
  }
  return run(*head_, h + e, "head");
}

void FeatureModel::set_aux_head(const std::string& kind, std::shared_ptr<Module> head) {
  IDEM_CHECK(head != nullptr && !kind.empty(), "FeatureModel", "an auxiliary head needs a kind and a module");
  IDEM_CHECK(aux_ == nullptr, "FeatureModel", "already has a '", aux_kind_, "' auxiliary head");
  aux_ = register_module("aux", std::move(head));
  aux_kind_ = kind;
}

std::shared_ptr<Module> FeatureModel::clone_impl() const {
  auto m = std::make_shared<FeatureModel>(body_->clone(), embed_->clone(), head_->clone(), spec_);
  if (aux_) m->set_aux_head(aux_kind_, aux_->clone());
  return m;
}

// ---- graph ----

GraphModel::GraphModel(std::vector<std::shared_ptr<GraphLayer>> convs,
                       std::shared_ptr<Module> head, SignalSpec spec, Activation activation,
                       double slope)
    : RecursiveModel("GraphModel", spec, Injection::concat),
      convs_(std::move(convs)),
      head_(std::move(head)),
      act_(activation),
      slope_(slope) {
  IDEM_CHECK(!convs_.empty() && head_, "GraphModel", "needs at least one conv and a head");
  auto list = std::make_shared<Sequential>();
  for (const auto& c : convs_) {
    IDEM_CHECK(c != nullptr, "GraphModel", "a conv layer is null");
    list->push_back(c);
  }
  register_module("convs", list);
  register_module("head", head_);
}

Tensor GraphModel::forward_impl(const Input& in, const Tensor& s) {
  IDEM_CHECK(in.graph != nullptr, "GraphModel", "the input has no graph (Input::graph)");
  const Graph& g = *in.graph;
  IDEM_CHECK(in.x.dim() == 2 && in.x.size(0) == g.num_nodes, "GraphModel", "node features ",
             shape_str(in.x.shape()), " do not match the graph's ", g.num_nodes, " nodes");
  const Tensor& batch = g.batch_vector();
  // Concat injection on graphs: each node gets its graph's signal.
  Tensor h = concat({in.x, index_select_grouped(s, batch, g.batch_groups())}, 1);
  // An activation with a fused code (relu, leaky_relu with slope >= 0) runs inside a
  // SAGEConv's fused op (one pass fewer each way).
  const std::optional<FusedAct> fused = fused_act_code(act_, slope_);
  for (size_t i = 0; i < convs_.size(); ++i) {
    auto* sage = fused ? dynamic_cast<SAGEConv*>(convs_[i].get()) : nullptr;
    h = sage ? sage->forward_act(h, g, *fused, slope_)
             : activate(convs_[i]->forward(h, g), act_, slope_);
    tap("convs." + std::to_string(i), h);
  }
  Tensor pooled = segment_mean_grouped(h, g.batch_groups());  // global mean pool, no sort
  return run(*head_, pooled, "head");
}

std::shared_ptr<Module> GraphModel::clone_impl() const {
  std::vector<std::shared_ptr<GraphLayer>> convs;
  for (const auto& c : convs_) {
    auto copy = std::dynamic_pointer_cast<GraphLayer>(c->clone());
    IDEM_CHECK(copy != nullptr, "GraphModel", "clone of ", c->type_name(), " is not a GraphLayer");
    convs.push_back(copy);
  }
  return std::make_shared<GraphModel>(convs, head_->clone(), spec_, act_, slope_);
}

}  // namespace idem::it3
