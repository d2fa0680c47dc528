// The reverse-mode engine, on one page (micrograd's idea without recursion):
//   1. collect every node reachable from the root with an explicit stack and count, for each
//      node, how many edges point at it (its consumers);
//   2. run nodes in an order where a node runs only after all its consumers have sent their
//      gradient (a ready queue keyed by dependency count);
//   3. each node maps its output gradient to its inputs' gradients; those flow into the next
//      node's buffer or into a leaf's .grad.
#include "autograd/engine.h"

#include "core/profiler.h"

#include <atomic>
#include <unordered_map>
#include <utility>
#include <vector>

#include "autograd/anomaly.h"
#include "autograd/node.h"
#include "core/ops/elementwise.h"

namespace idem {

namespace {

std::atomic<uint64_t> g_backward_nodes{0};

Tensor accumulate(const Tensor& acc, const Tensor& g) {
  return acc.defined() ? ops::binary(acc, g, BinaryOp::add) : g;
}

// A leaf's stored gradient must own its memory: backward functions may pass the upstream
// buffer through unchanged (add, sub, reshape), which would otherwise make x.grad alias the
// caller's grad_output or another leaf's .grad.
Tensor accumulate_into_leaf(const Tensor& acc, const Tensor& g, const Tensor& upstream) {
  if (acc.defined()) return ops::binary(acc, g, BinaryOp::add);
  return g.same_storage(upstream) ? g.clone_data() : g;
}

void check_grad(const Node& node, size_t i, const Edge& e, const Tensor& g) {
  IDEM_CHECK(g.shape() == e.shape && g.dtype() == e.dtype, std::string("backward of ") + node.name(),
             "gradient for input ", i, " has ", dtype_name(g.dtype()), " ", shape_str(g.shape()),
             " but the input is ", dtype_name(e.dtype), " ", shape_str(e.shape));
}

}  // namespace

namespace {
// What Node::gradient_starts_empty reads: the node whose backward() this thread is running,
// the engine's buffers and the slot of each node. Thread-local, so two threads running
// backward over one graph never see each other's buffers.
struct GradientSlots {
  const Node* node;
  const std::unordered_map<Node*, size_t>& slot_of;
  const std::vector<Tensor>& buffers;
};
thread_local const GradientSlots* t_slots = nullptr;
}  // namespace

bool Node::gradient_starts_empty(size_t i) const {
  if (t_slots == nullptr || t_slots->node != this || !needs_grad(i)) return false;
  const Edge& e = next()[i];
  if (e.leaf) return !e.leaf->grad.defined();
  const auto it = t_slots->slot_of.find(e.fn.get());
  return it != t_slots->slot_of.end() && !t_slots->buffers[it->second].defined();
}

uint64_t backward_node_count() { return g_backward_nodes.load(); }

void run_backward(const Tensor& root, const Tensor& grad_output) {
  IDEM_CHECK(root.defined(), "backward", "called on an undefined tensor");
  IDEM_CHECK(root.requires_grad(), "backward",
             "the tensor does not require grad and has no grad_fn (did you call requires_grad_() "
             "on the inputs, or compute it under NoGradGuard?)");
  Tensor g0 = grad_output;
  if (!g0.defined()) {
    IDEM_CHECK(root.numel() == 1, "backward", "grad_output can be omitted only for a tensor with "
               "one element, got ", shape_str(root.shape()));
    g0 = full(root.shape(), 1.0, root.options());
  }
  IDEM_CHECK(g0.shape() == root.shape() && g0.dtype() == root.dtype() &&
                 g0.device() == root.device(),
             "backward", "grad_output ", dtype_name(g0.dtype()), " ", shape_str(g0.shape()), " on ",
             g0.device().str(), " does not match the tensor ", dtype_name(root.dtype()), " ",
             shape_str(root.shape()), " on ", root.device().str());

  NoGradGuard no_grad;
  std::shared_ptr<Node> root_fn = root.grad_fn();
  if (!root_fn) {  // a leaf: its gradient is grad_output itself
    auto& meta = root.impl().autograd;
    meta->grad = accumulate_into_leaf(meta->grad, g0, grad_output.defined() ? g0 : Tensor());
    return;
  }

  // 1. dependency counts over the reachable graph. Each node gets a slot (the order it was
  // found in) for its count and its gradient buffer: one hash lookup per edge, no other map.
  std::unordered_map<Node*, size_t> slot_of;
  std::vector<int> deps{0};
  std::vector<Node*> stack{root_fn.get()};
  slot_of.emplace(root_fn.get(), 0);
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next()) {
      if (!e.fn) continue;
      const auto [it, found_now] = slot_of.emplace(e.fn.get(), deps.size());
      if (found_now) {
        deps.push_back(1);
        stack.push_back(e.fn.get());
      } else {
        ++deps[it->second];
      }
    }
  }

  // 2-3. run nodes whose consumers are all done
  const bool anomaly = anomaly_mode();  // read once: the only cost of the mode when it is off
  std::vector<Tensor> buffers(deps.size());
  buffers[0] = g0;
  std::vector<std::pair<Node*, size_t>> ready{{root_fn.get(), 0}};
  while (!ready.empty()) {
    Node* const n = ready.back().first;
    Tensor g = std::move(buffers[ready.back().second]);
    ready.pop_back();
    // A node none of whose consumers produced a gradient passes nothing on, but still
    // releases its inputs' dependency counts.
    std::vector<Tensor> grads(n->next().size());
    if (g.defined()) {
      if (anomaly) detail::anomaly_check_grad_in(*n, g);
      // The node may ask which of its inputs' gradients are still empty; the context is
      // restored on every way out of backward().
      const GradientSlots slots{n, slot_of, buffers};
      const GradientSlots* const outer = t_slots;  // a backward() may run a nested backward
      t_slots = &slots;
      try {
        grads = n->backward(g);
      } catch (...) {
        t_slots = outer;
        throw;
      }
      t_slots = outer;
      g_backward_nodes.fetch_add(1);
      if (profiler::active()) {
        double bytes = double(g.nbytes());
        for (const Tensor& t : grads)
          if (t.defined()) bytes += double(t.nbytes());
        profiler::mark(n->name(), "backward", bytes);
      }
    }
    const auto& next = n->next();
    IDEM_CHECK(grads.size() == next.size(), std::string("backward of ") + n->name(), "returned ",
               grads.size(), " gradients for ", next.size(), " inputs");
    if (anomaly) detail::anomaly_check_grads_out(*n, grads);
    for (size_t i = 0; i < next.size(); ++i) {
      const Edge& e = next[i];
      if (!e.defined()) continue;
      if (grads[i].defined()) check_grad(*n, i, e, grads[i]);
      if (e.fn) {
        const size_t j = slot_of.find(e.fn.get())->second;
        if (grads[i].defined()) buffers[j] = accumulate(buffers[j], grads[i]);
        if (--deps[j] == 0) ready.push_back({e.fn.get(), j});
      } else if (grads[i].defined()) {
        e.leaf->grad = accumulate_into_leaf(e.leaf->grad, grads[i], g);
      }
    }
  }
}

}  // namespace idem
