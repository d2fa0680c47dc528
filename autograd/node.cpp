#include "autograd/node.h"

#include "core/profiler.h"

#include "autograd/anomaly.h"

#include <atomic>
#include <vector>

namespace idem {

namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence{1};
}  // namespace

bool grad_enabled() { return g_grad_enabled; }

Node::~Node() {
  std::vector<std::shared_ptr<Node>> pending;
  for (Edge& e : next_)
    if (e.fn) pending.push_back(std::move(e.fn));
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    // Only the last owner takes the node's edges apart; then dropping n frees no chain.
    if (n.use_count() == 1)
      for (Edge& e : n->next_)
        if (e.fn) pending.push_back(std::move(e.fn));
  }
}

NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

bool needs_history(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_history(TensorRefs inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// The edges of `node`, one per input (Inputs: a range of Tensor or of references to one).
template <typename Inputs>
void record_inputs(Node& node, const Inputs& inputs) {
  node.next_.clear();
  node.next_.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      auto& meta = t.impl().autograd;
      if (meta->grad_fn)
        e.fn = meta->grad_fn;
      else
        e.leaf = meta;
      e.shape = t.shape();
      e.dtype = t.dtype();
    }
    node.next_.push_back(std::move(e));
  }
  node.sequence_ = g_next_sequence.fetch_add(1);
}

namespace {

// What record() does after the edges: the output becomes a non-leaf, then the optional hooks.
template <typename Inputs>
void record_output(const std::shared_ptr<Node>& node, const Inputs& inputs, const Tensor& output) {
  auto meta = std::make_shared<AutogradMeta>();
  meta->requires_grad = true;
  meta->grad_fn = node;
  output.impl().autograd = std::move(meta);
  if (anomaly_mode())  // the one branch when off
    detail::anomaly_on_record(*node, std::vector<Tensor>(inputs.begin(), inputs.end()), output);
  if (profiler::active()) {
    double bytes = double(output.nbytes());
    for (const Tensor& t : inputs)
      if (t.defined()) bytes += double(t.nbytes());
    profiler::mark(node->name(), "forward", bytes);
  }
}

}  // namespace

void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const Tensor& output) {
  record_inputs(*node, inputs);
  record_output(node, inputs, output);
}

void record(const std::shared_ptr<Node>& node, TensorRefs inputs, const Tensor& output) {
  record_inputs(*node, inputs);
  record_output(node, inputs, output);
}

}  // namespace idem
