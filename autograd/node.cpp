#include "autograd/node.h"

#include <atomic>

namespace idem {

namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence{1};
}  // namespace

bool grad_enabled() { return g_grad_enabled; }

NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

bool needs_history(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const Tensor& output) {
  node->next_.clear();
  node->next_.reserve(inputs.size());
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
    node->next_.push_back(std::move(e));
  }
  node->sequence_ = g_next_sequence.fetch_add(1);
  auto meta = std::make_shared<AutogradMeta>();
  meta->requires_grad = true;
  meta->grad_fn = node;
  output.impl().autograd = std::move(meta);
}

}  // namespace idem
