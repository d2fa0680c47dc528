// Numerical safety: anomaly mode and the non-finite-loss check.
//
// Anomaly mode (off by default; a debugging aid, slow when on) makes autograd check
//   - every forward output of a recorded op (an op whose inputs require grad, with grad mode
//     on) for NaN/Inf, and
//   - every gradient a backward node produces (and the gradient flowing into it),
// and throw idem::Error at the first non-finite value, naming the op and where it was created:
//   [anomaly] backward of div (BinaryNode) produced Inf in input 1's gradient (f32 (4,3):
//   12 of 12 elements non-finite, first at index 0); the op was created at:
//       #0 idem::div(idem::Tensor const&, idem::Tensor const&)
//       #1 my_model_forward(...)
// The creation site is a short backtrace captured when the node is recorded (function names
// need the executable linked with -rdynamic, which the test and CLI targets are; otherwise the
// frames are "binary+0xoffset", readable with addr2line), plus the labels of the AnomalyScopes
// open at that moment. With the mode off, recording costs one branch.
//
// Legitimate non-finite values (a -inf attention mask, say) also trip the forward check: the
// mode is for hunting the first NaN, not for production runs.
//
// The initial value comes from the environment variable IDEM_ANOMALY ("1", "true", "on").
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace idem {

class Node;

// Process-wide (an atomic flag), so a guard in main() covers worker threads too.
void set_anomaly_mode(bool on);
bool anomaly_mode();

// Turns anomaly mode on (or off) for its lifetime and restores the previous value.
class AnomalyGuard {
 public:
  explicit AnomalyGuard(bool on = true);
  ~AnomalyGuard();
  AnomalyGuard(const AnomalyGuard&) = delete;
  AnomalyGuard& operator=(const AnomalyGuard&) = delete;

 private:
  bool prev_;
};

// A label ("encoder", "block 2", "adaptation step 7") that nodes recorded in its lifetime carry
// in their creation site; scopes nest (thread-local stack). Costs a vector push when anomaly
// mode is off too, so put them around blocks, not inside elementwise loops.
class AnomalyScope {
 public:
  explicit AnomalyScope(std::string label);
  ~AnomalyScope();
  AnomalyScope(const AnomalyScope&) = delete;
  AnomalyScope& operator=(const AnomalyScope&) = delete;
};

// Where a node was recorded: raw return addresses (symbolized only when reported) and the
// AnomalyScope labels joined with " > ".
struct CreationSite {
  std::vector<void*> frames;
  std::string scope;
  // "    #0 idem::log(idem::Tensor const&)\n    #1 ...", then "    in scope: a > b".
  std::string describe() const;
};

// Non-finite elements of a tensor (copied to the host first). Integer tensors are always finite.
struct FiniteReport {
  int64_t numel = 0, nan = 0, pos_inf = 0, neg_inf = 0;
  int64_t first = -1;  // flat index of the first non-finite element
  bool finite() const { return nan == 0 && pos_inf == 0 && neg_inf == 0; }
  // "NaN" / "Inf" / "-Inf" / "NaN and Inf" — what the first report line names.
  std::string kind() const;
  // "f32 (4,3): 2 of 12 elements non-finite, first at index 5" (dtype/shape given by caller).
  std::string detail(const Tensor& t) const;
};
FiniteReport count_non_finite(const Tensor& t);

// Call before the optimizer step of a training or adaptation loop. Throws idem::Error
//   "[anomaly] non-finite loss (nan) at step 12 in <where>; weights were not updated ..."
// when any element of `loss` is NaN or ±Inf (the value is read on the host: on a GPU this
// synchronizes, so call it outside a captured CUDA graph).
void check_finite_loss(const Tensor& loss, int64_t step, const std::string& where);

namespace detail {
// Called by record() (autograd/node.cpp) only in anomaly mode: stores the creation site in
// the node and checks the forward output.
void anomaly_on_record(Node& node, const std::vector<Tensor>& inputs, const Tensor& output);
// Called by the engine only in anomaly mode, around one node's backward.
void anomaly_check_grad_in(const Node& node, const Tensor& grad_out);
void anomaly_check_grads_out(const Node& node, const std::vector<Tensor>& grads);
}  // namespace detail

}  // namespace idem
