// Backward nodes and the autograd metadata that hangs off a TensorImpl.
//
// A differentiable function computes its output with L1 ops, then, if grad mode is on and any
// input requires grad, records a Node that knows how to map d(output) to d(inputs). Nodes save
// detached aliases of the tensors they need (never the Tensor they produce: no cycles), and
// compute an input's gradient only when needs_grad(i) says somebody wants it.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace idem {

class Node;
struct CreationSite;
// The inputs of one call, as the functions write them: needs_history({a, b}). A braced list of
// references, so the per-op check copies no Tensor (no refcount traffic) and allocates nothing.
using TensorRefs = std::initializer_list<std::reference_wrapper<const Tensor>>;  // autograd/anomaly.h
namespace detail {
void anomaly_on_record(Node& node, const std::vector<Tensor>& inputs, const Tensor& output);
}

// Per-tensor autograd state. A leaf that requires grad has no grad_fn and accumulates `grad`;
// a non-leaf has a grad_fn.
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
};

// Where an input's gradient goes: into another node, or into a leaf's `grad`. Undefined when
// the input does not need a gradient.
struct Edge {
  std::shared_ptr<Node> fn;
  std::shared_ptr<AutogradMeta> leaf;
  Shape shape;  // the input's shape, so the engine can check what backward returns
  DType dtype = DType::f32;
  bool defined() const { return fn || leaf; }
};

class Node {
 public:
  // Releases the chain of nodes behind this one iteratively: a plain member-wise destructor
  // would recurse once per node and overflow the stack on very long graphs.
  virtual ~Node();
  // The op's name, used in engine error messages ("[backward of matmul] ...").
  virtual const char* name() const = 0;
  // One gradient per input; an entry may be undefined when !needs_grad(i).
  // requires: grad_out has the output's shape. Runs with grad mode off.
  virtual std::vector<Tensor> backward(const Tensor& grad_out) = 0;

  bool needs_grad(size_t i) const { return i < next_.size() && next_[i].defined(); }
  // Asked during this node's backward(), on the thread running it: whether input i's gradient
  // holds nothing yet, so that what this node returns for it starts the sum. A node that
  // returns two terms for the same input (an input recorded twice) may then return their sum
  // as one, in one pass instead of an add — the engine would have added the second to the
  // first alone, provided no other edge of the node between them targets the same input
  // (same_input). False outside backward() and for an input that needs no gradient.
  bool gradient_starts_empty(size_t i) const;
  // Whether inputs i and j are the same tensor (their gradients go to the same place).
  bool same_input(size_t i, size_t j) const {
    return needs_grad(i) && needs_grad(j) && next_[i].fn == next_[j].fn &&
           next_[i].leaf == next_[j].leaf;
  }
  const std::vector<Edge>& next() const { return next_; }
  uint64_t sequence() const { return sequence_; }
  // Where the node was recorded; null unless anomaly mode was on then (autograd/anomaly.h).
  const CreationSite* creation_site() const { return site_.get(); }

 private:
  friend void record(const std::shared_ptr<Node>&, const std::vector<Tensor>&, const Tensor&);
  friend void record(const std::shared_ptr<Node>&, TensorRefs, const Tensor&);
  template <typename Inputs>
  friend void record_inputs(Node&, const Inputs&);
  friend void detail::anomaly_on_record(Node&, const std::vector<Tensor>&, const Tensor&);
  std::vector<Edge> next_;
  uint64_t sequence_ = 0;
  std::shared_ptr<const CreationSite> site_;
};

// ---- grad mode ----
bool grad_enabled();
// Disables recording for its lifetime (inference, optimizer updates, backward itself).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any of `inputs` requires grad.
bool needs_history(const std::vector<Tensor>& inputs);
bool needs_history(TensorRefs inputs);
// Wires `node` to `inputs` and makes `output` a non-leaf produced by it.
void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const Tensor& output);
void record(const std::shared_ptr<Node>& node, TensorRefs inputs, const Tensor& output);
// A detached alias to keep inside a node (same storage, no autograd metadata).
inline Tensor saved(const Tensor& t) { return t.defined() ? t.detach() : t; }

// Counts every backward node executed by the engine (tests use it to check that frozen
// modules compute no weight gradients). Monotonic; never reset.
uint64_t backward_node_count();

}  // namespace idem
