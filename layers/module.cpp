#include "layers/module.h"

#include <algorithm>
#include <ostream>
#include <sstream>

namespace idem {

namespace {

// Rebinds t's TensorImpl to src's storage (same shape), so every handle to t sees the new
// device/dtype. src must be a fresh contiguous tensor that nobody else writes to.
void rebind(const Tensor& t, const Tensor& src) {
  TensorImpl& d = t.impl();
  d.storage = src.impl().storage;
  d.offset = src.impl().offset;
  d.device = src.device();
  d.dtype = src.dtype();
  d.shape = src.shape();
  t.zero_grad();  // a gradient on the old device/dtype is meaningless now
}

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", \"" : "\"") + names[i] + "\"";
  return s;
}

std::string describe(const Tensor& t) {
  return std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape());
}

// Indents every line after the first by two spaces (PyTorch's _addindent).
std::string indent(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '\n') out += "  ";
  }
  return out;
}

}  // namespace

Tensor Module::forward(const Tensor&) {
  fail(type_name_, "this module has no single-input forward(x); call its own forward(...)");
}

// ---- registration ----

void Module::check_new_name(const std::string& name) const {
  IDEM_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_,
             "invalid member name \"", name, "\" (must be non-empty and contain no '.')");
  auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
  };
  IDEM_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), type_name_, "the name \"",
             name, "\" is already registered");
}

Tensor Module::register_parameter(const std::string& name, const Tensor& t, bool requires_grad) {
  check_new_name(name);
  IDEM_CHECK(t.defined(), type_name_, "parameter \"", name, "\" is an undefined tensor");
  IDEM_CHECK(is_floating(t.dtype()), type_name_, "parameter \"", name, "\" must be floating, got ",
             describe(t));
  // A parameter is a leaf: cut any history the initializer may have recorded.
  Tensor p = t.is_leaf() ? t : t.detach();
  p.requires_grad_(requires_grad);
  params_.emplace_back(name, p);
  return p;
}

Tensor Module::register_buffer(const std::string& name, const Tensor& t) {
  check_new_name(name);
  IDEM_CHECK(t.defined(), type_name_, "buffer \"", name, "\" is an undefined tensor");
  Tensor b = t.is_leaf() ? t : t.detach();
  buffers_.emplace_back(name, b);
  return b;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  IDEM_CHECK(m != nullptr, type_name_, "submodule \"", name, "\" is null");
  IDEM_CHECK(m.get() != this, type_name_, "a module cannot contain itself");
  children_.emplace_back(name, std::move(m));
}

std::shared_ptr<Module> Module::clone_impl() const {
  fail("clone", type_name_, " does not implement clone_impl()");
}

// ---- recursive views ----

void Module::collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out,
                     std::vector<const TensorImpl*>& seen) const {
  for (const auto& [name, t] : params ? params_ : buffers_) {
    const TensorImpl* id = t.impl_ptr().get();
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
    seen.push_back(id);
    out.emplace_back(prefix + name, t);
  }
  if (!recurse) return;
  for (const auto& [name, c] : children_) c->collect(prefix + name + ".", params, true, out, seen);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", true, recurse, out, seen);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", false, recurse, out, seen);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [name, c] : children_)
    for (auto& [sub, m] : c->named_modules())
      out.emplace_back(sub.empty() ? name : name + "." + sub, m);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out;
  for (auto& [n, m] : const_cast<Module*>(this)->named_modules()) out.emplace_back(n, m);
  return out;
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  const size_t dot = name.find('.');
  const std::string head = name.substr(0, dot);
  for (const auto& [n, c] : children_)
    if (n == head) return dot == std::string::npos ? c : c->child(name.substr(dot + 1));
  fail(type_name_, "no submodule named \"", name, "\"");
}

namespace {
const Tensor* find_own(const NamedTensors& list, const std::string& name) {
  for (const auto& [n, t] : list)
    if (n == name) return &t;
  return nullptr;
}
}  // namespace

bool Module::has_parameter(const std::string& name) const {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return find_own(params_, name) != nullptr;
  for (const auto& [n, m] : named_modules())
    if (n == name.substr(0, dot)) return m->has_parameter(name.substr(dot + 1));
  return false;
}

bool Module::has_buffer(const std::string& name) const {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return find_own(buffers_, name) != nullptr;
  for (const auto& [n, m] : named_modules())
    if (n == name.substr(0, dot)) return m->has_buffer(name.substr(dot + 1));
  return false;
}

Tensor Module::parameter(const std::string& name) const {
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos) return child(name.substr(0, dot))->parameter(name.substr(dot + 1));
  const Tensor* t = find_own(params_, name);
  if (!t) fail(type_name_, "no parameter named \"", name, "\"");
  return *t;
}

Tensor Module::buffer(const std::string& name) const {
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos) return child(name.substr(0, dot))->buffer(name.substr(dot + 1));
  const Tensor* t = find_own(buffers_, name);
  if (!t) fail(type_name_, "no buffer named \"", name, "\"");
  return *t;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

// ---- checkpoints ----

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [n, t] : named_parameters()) out[n] = t.detach();
  for (auto& [n, t] : named_buffers()) out[n] = t.detach();
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NamedTensors mine = named_parameters();
  for (auto& nb : named_buffers()) mine.push_back(nb);
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [n, t] : mine) {
    auto it = state.find(n);
    if (it == state.end()) {
      missing.push_back(n);
    } else if (!it->second.defined() || it->second.shape() != t.shape()) {
      mismatched.push_back(n + ": checkpoint has " +
                           (it->second.defined() ? describe(it->second) : "undefined") +
                           ", the module has " + describe(t));
    } else if (is_floating(t.dtype()) != is_floating(it->second.dtype())) {
      mismatched.push_back(n + ": checkpoint has " + describe(it->second) + ", the module has " +
                           describe(t) + " (floating vs integer)");
    }
  }
  for (const auto& [n, t] : state)
    if (std::none_of(mine.begin(), mine.end(), [&](const auto& e) { return e.first == n; }))
      unexpected.push_back(n);
  if (!strict) missing.clear(), unexpected.clear();
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream os;
    os << "error(s) in loading the state dict for " << type_name_ << ":";
    if (!missing.empty()) os << " missing key(s): " << join_names(missing) << ".";
    if (!unexpected.empty()) os << " unexpected key(s): " << join_names(unexpected) << ".";
    for (const auto& m : mismatched) os << " size mismatch for " << m << ".";
    fail("load_state_dict", os.str());
  }
  for (const auto& [n, t] : mine) {
    auto it = state.find(n);
    if (it == state.end()) continue;
    t.copy_(it->second.to(t.dtype()));
  }
}

// ---- modes and gradients ----

Module& Module::train(bool on) {
  training_ = on;
  on_train(on);
  for (auto& [n, c] : children_) c->train(on);
  return *this;
}

void Module::zero_grad() {
  for (const Tensor& p : parameters()) p.zero_grad();
}

Module& Module::set_requires_grad(bool on) {
  for (const Tensor& p : parameters()) {
    p.requires_grad_(on);
    if (!on) p.zero_grad();
  }
  return *this;
}

// ---- devices, dtypes, copies ----

Module& Module::to(Device device) {
  for (auto* list : {&params_, &buffers_})
    for (auto& [n, t] : *list)
      if (t.device() != device) rebind(t, t.to(device));
  for (auto& [n, c] : children_) c->to(device);
  return *this;
}

Module& Module::to(DType dtype) {
  IDEM_CHECK(is_floating(dtype), "to", type_name_,
             ": modules convert to floating dtypes only, got ", dtype_name(dtype));
  for (auto* list : {&params_, &buffers_})
    for (auto& [n, t] : *list)
      if (is_floating(t.dtype()) && t.dtype() != dtype) rebind(t, t.to(dtype));
  for (auto& [n, c] : children_) c->to(dtype);
  return *this;
}

Device Module::device() const {
  for (auto& [n, t] : named_parameters()) return t.device();
  for (auto& [n, t] : named_buffers()) return t.device();
  return Device::cpu();
}

namespace {
// Pairs up the tensors of two modules by name; throws naming `op` on any difference in names,
// shapes or (when check_dtype) dtypes.
void check_same_structure(const NamedTensors& a, const NamedTensors& b, const char* op,
                          const std::string& what, bool check_dtype) {
  IDEM_CHECK(a.size() == b.size(), op, what, ": ", a.size(), " vs ", b.size(),
             " tensors; the modules have different structures");
  for (size_t i = 0; i < a.size(); ++i) {
    IDEM_CHECK(a[i].first == b[i].first, op, what, " #", i, " is \"", a[i].first, "\" vs \"",
               b[i].first, "\"; the modules have different structures");
    IDEM_CHECK(a[i].second.shape() == b[i].second.shape() &&
                   (!check_dtype || a[i].second.dtype() == b[i].second.dtype()),
               op, "\"", a[i].first, "\" is ", describe(a[i].second), " vs ",
               describe(b[i].second));
  }
}
}  // namespace

void Module::copy_from(const Module& other) {
  if (&other == this) return;
  const NamedTensors dp = named_parameters(), sp = other.named_parameters();
  const NamedTensors db = named_buffers(), sb = other.named_buffers();
  check_same_structure(dp, sp, "copy_from", "parameter", true);
  check_same_structure(db, sb, "copy_from", "buffer", true);
  for (size_t i = 0; i < dp.size(); ++i) dp[i].second.copy_(sp[i].second);
  for (size_t i = 0; i < db.size(); ++i) db[i].second.copy_(sb[i].second);
}

std::shared_ptr<Module> Module::clone() const {
  std::shared_ptr<Module> copy = clone_impl();
  IDEM_CHECK(copy != nullptr, "clone", type_name_, "::clone_impl returned null");
  const NamedTensors dp = copy->named_parameters(), sp = named_parameters();
  const NamedTensors db = copy->named_buffers(), sb = named_buffers();
  check_same_structure(dp, sp, "clone", type_name_ + "::clone_impl built a different parameter",
                       false);
  check_same_structure(db, sb, "clone", type_name_ + "::clone_impl built a different buffer",
                       false);
  // Fresh storage with the source's values, device and dtype; keep requires_grad.
  for (size_t i = 0; i < dp.size(); ++i) {
    rebind(dp[i].second, sp[i].second.clone_data());
    dp[i].second.requires_grad_(sp[i].second.requires_grad());
  }
  for (size_t i = 0; i < db.size(); ++i) rebind(db[i].second, sb[i].second.clone_data());
  // Modes may differ per submodule (e.g. BatchNorm left in train mode inside an eval model).
  auto dm = copy->named_modules();
  auto sm = named_modules();
  IDEM_CHECK(dm.size() == sm.size(), "clone", type_name_,
             "::clone_impl built a different module tree");
  for (size_t i = 0; i < dm.size(); ++i) {
    dm[i].second->training_ = sm[i].second->training_;
    dm[i].second->on_train(sm[i].second->training_);
  }
  return copy;
}

// ---- printing ----

std::string Module::repr() const {
  std::string extra = extra_repr();
  if (children_.empty()) return type_name_ + "(" + extra + ")";
  std::string s = type_name_ + "(\n";
  if (!extra.empty()) s += "  " + indent(extra) + "\n";
  for (const auto& [name, c] : children_) s += "  (" + name + "): " + indent(c->repr()) + "\n";
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& m) {
  return os << m.repr();
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& [n, c] : children_) c->apply(fn);
}

}  // namespace idem
