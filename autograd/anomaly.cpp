// Anomaly mode and the non-finite-loss check. Contract: autograd/anomaly.h.
#include "autograd/anomaly.h"

#include <cxxabi.h>
#include <execinfo.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <typeinfo>

#include "autograd/node.h"
#include "core/env.h"

namespace idem {

namespace {

// Process-wide on purpose: the mode is a debugging switch for the whole run (set once in main
// or by a test's guard), and record() must read it without a context object.
// set_anomaly_mode overrides IDEM_ANOMALY, a bad value included (EnvSetting).
bool read_env() { return env_flag("IDEM_ANOMALY"); }
EnvSetting<bool>& anomaly_flag() {
  static EnvSetting<bool> on{read_env};
  return on;
}

// The open AnomalyScope labels of this thread, outermost first.
std::vector<std::string>& scope_stack() {
  thread_local std::vector<std::string> stack;
  return stack;
}

constexpr int kMaxFrames = 24;    // captured per node
constexpr int kShownFrames = 12;  // printed in a report

std::string demangle(const char* mangled) {
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || !out) return mangled;
  std::string s(out);
  std::free(out);  // allocated by __cxa_demangle with malloc
  return s;
}

// "binary(mangled+0x2d) [0x55..]" -> the demangled function, or "binary+0xoffset" when the
// symbol is not exported (then `addr2line -e binary -f -C 0xoffset` names it).
std::string pretty_frame(const char* line) {
  const std::string s(line);
  const size_t open = s.find('('), plus = s.find('+', open), close = s.find(')', open);
  if (open == std::string::npos || close == std::string::npos) return s;
  const std::string binary = s.substr(0, open);
  if (plus != std::string::npos && plus > open + 1 && plus < close)
    return demangle(s.substr(open + 1, plus - open - 1).c_str());
  if (plus != std::string::npos && plus < close) return binary + s.substr(plus, close - plus);
  return s;
}

// "UnaryNode" from "idem::(anonymous namespace)::UnaryNode".
std::string node_type(const Node& node) {
  const std::string full = demangle(typeid(node).name());
  const size_t colon = full.rfind("::");
  return colon == std::string::npos ? full : full.substr(colon + 2);
}

std::string op_label(const Node& node) {
  return std::string(node.name()) + " (" + node_type(node) + ")";
}

std::string site_text(const Node& node) {
  const CreationSite* site = node.creation_site();
  if (!site) return "; the op was created before anomaly mode was turned on (no creation site)";
  return "; the op was created at:\n" + site->describe();
}

template <typename T>
void scan(const T* p, int64_t n, FiniteReport& r) {
  for (int64_t i = 0; i < n; ++i) {
    const T v = p[i];
    if (std::isfinite(v)) continue;
    if (std::isnan(v))
      ++r.nan;
    else if (v > 0)
      ++r.pos_inf;
    else
      ++r.neg_inf;
    if (r.first < 0) r.first = i;
  }
}

// The capture and the record hook are kept out of line so that the number of frames to skip
// (this function, anomaly_on_record, record) is fixed.
__attribute__((noinline)) std::shared_ptr<const CreationSite> capture_site() {
  auto site = std::make_shared<CreationSite>();
  void* frames[kMaxFrames + 3];
  const int n = ::backtrace(frames, kMaxFrames + 3);
  const int skip = 3;
  if (n > skip) site->frames.assign(frames + skip, frames + n);
  const auto& stack = scope_stack();
  for (size_t i = 0; i < stack.size(); ++i) site->scope += (i ? " > " : "") + stack[i];
  return site;
}

}  // namespace

void set_anomaly_mode(bool on) {
  anomaly_flag().set(on);
}
bool anomaly_mode() {
  return anomaly_flag().get();
}

AnomalyGuard::AnomalyGuard(bool on) : prev_(anomaly_mode()) {
  set_anomaly_mode(on);
}
AnomalyGuard::~AnomalyGuard() {
  set_anomaly_mode(prev_);
}

AnomalyScope::AnomalyScope(std::string label) {
  scope_stack().push_back(std::move(label));
}
AnomalyScope::~AnomalyScope() {
  scope_stack().pop_back();
}

std::string CreationSite::describe() const {
  std::ostringstream os;
  if (!frames.empty()) {
    const int n = static_cast<int>(std::min<size_t>(frames.size(), kShownFrames));
    // backtrace_symbols mallocs one block holding every string.
    char** lines = ::backtrace_symbols(frames.data(), n);
    for (int i = 0; i < n; ++i) {
      const std::string f = lines ? pretty_frame(lines[i]) : std::string("?");
      os << "    #" << i << " " << f << "\n";
      if (f == "main") break;  // what lies below main is the C runtime
    }
    std::free(lines);
  }
  if (!scope.empty()) os << "    in scope: " << scope << "\n";
  std::string s = os.str();
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

std::string FiniteReport::kind() const {
  std::string k;
  auto add = [&](int64_t count, const char* name) {
    if (count == 0) return;
    if (!k.empty()) k += " and ";
    k += name;
  };
  add(nan, "NaN");
  add(pos_inf, "Inf");
  add(neg_inf, "-Inf");
  return k;
}

std::string FiniteReport::detail(const Tensor& t) const {
  std::ostringstream os;
  os << dtype_name(t.dtype()) << " " << shape_str(t.shape()) << ": " << (nan + pos_inf + neg_inf)
     << " of " << numel << " elements non-finite, first at index " << first;
  return os.str();
}

FiniteReport count_non_finite(const Tensor& t) {
  FiniteReport r;
  if (!t.defined()) return r;
  r.numel = t.numel();
  if (!is_floating(t.dtype()) || r.numel == 0) return r;
  const Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
  if (h.dtype() == DType::f32)
    scan(h.data<float>(), r.numel, r);
  else
    scan(h.data<double>(), r.numel, r);
  return r;
}

void check_finite_loss(const Tensor& loss, int64_t step, const std::string& where) {
  IDEM_CHECK(loss.defined(), "anomaly", "check_finite_loss: the loss at step ", step, " in ", where,
             " is undefined");
  const FiniteReport r = count_non_finite(loss);
  if (r.finite()) return;
  // The value as printf would show it, so "nan" / "inf" / "-inf" match the logged losses.
  const char* what = r.nan ? "nan" : r.pos_inf ? "inf" : "-inf";
  std::ostringstream counts;
  if (r.numel > 1)
    counts << " in " << (r.nan + r.pos_inf + r.neg_inf) << " of " << r.numel << " elements";
  fail("anomaly", "non-finite loss (", what, ")", counts.str(), " at step ", step, " in ", where,
       "; weights were not updated (rerun with IDEM_ANOMALY=1 to find the op that produced it)");
}

namespace detail {

__attribute__((noinline)) void anomaly_on_record(Node& node, const std::vector<Tensor>& inputs,
                                                 const Tensor& output) {
  node.site_ = capture_site();
  const FiniteReport r = count_non_finite(output);
  if (r.finite()) return;
  std::ostringstream cause;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const FiniteReport ri = count_non_finite(inputs[i]);
    if (ri.finite()) continue;
    cause << "; its input " << i << " already held " << ri.kind() << " (" << ri.detail(inputs[i])
          << "), so the value comes from before this op: a leaf, or a tensor computed without "
             "autograd";
    break;
  }
  fail("anomaly", "forward of ", op_label(node), " produced ", r.kind(), " in its output (",
       r.detail(output), ")", cause.str(), site_text(node));
}

void anomaly_check_grad_in(const Node& node, const Tensor& grad_out) {
  const FiniteReport r = count_non_finite(grad_out);
  if (r.finite()) return;
  fail("anomaly", "the gradient flowing into backward of ", op_label(node), " holds ", r.kind(),
       " (", r.detail(grad_out),
       "): it is the grad_output passed to backward(), or the sum of finite gradients from this "
       "op's consumers that overflowed",
       site_text(node));
}

void anomaly_check_grads_out(const Node& node, const std::vector<Tensor>& grads) {
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!node.needs_grad(i)) continue;  // nobody reads it (e.g. add passes g to both inputs)
    const FiniteReport r = count_non_finite(grads[i]);
    if (r.finite()) continue;
    fail("anomaly", "backward of ", op_label(node), " produced ", r.kind(), " in input ", i,
         "'s gradient (", r.detail(grads[i]), ")", site_text(node));
  }
}

}  // namespace detail

}  // namespace idem
