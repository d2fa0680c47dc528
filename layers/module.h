// Level L3: Module — the base of every layer and model.
//
// A Module owns named parameters (leaf tensors that require grad), named buffers (state that is
// saved but not trained, e.g. BatchNorm's running statistics) and named submodules, in
// registration order. Names compose PyTorch-style: "layers.0.weight", "bn.running_mean", so
// checkpoints move between idem and PyTorch.
//
// Identity of a parameter is its TensorImpl: to(), copy_from() and load_state_dict() change a
// parameter's storage or values *in place*, so Tensor handles held by a layer or an optimizer
// stay valid. Modules are shared by std::shared_ptr (containers hold children that way) and are
// neither copyable nor movable; clone() makes an independent deep copy.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/functions.h"

namespace idem {

// Name -> tensor, as stored in a checkpoint. The tensors of state_dict() alias the module's
// storage (detached); clone_data() them to take a snapshot.
using StateDict = std::map<std::string, Tensor>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The layer's computation for single-input layers. The default throws: modules with other
  // signatures (graph layers take (x, graph)) declare their own forward.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  // "Linear", "BatchNorm2d", ... (the class name, as PyTorch prints it).
  const std::string& type_name() const { return type_name_; }

  // ---- parameters, buffers, submodules ----
  // Direct (own) entries only; the recursive views are below.
  const NamedTensors& own_parameters() const { return params_; }
  const NamedTensors& own_buffers() const { return buffers_; }
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  // Recursive, in registration order (own entries first, then each child's, depth first).
  // A tensor registered twice (shared weights) is listed once, under its first name.
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  // Every module of the tree with its dotted path; this module first, with name "".
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  // Lookup by (dotted) name; throws idem::Error naming the missing key.
  Tensor parameter(const std::string& name) const;
  Tensor buffer(const std::string& name) const;
  std::shared_ptr<Module> child(const std::string& name) const;
  bool has_parameter(const std::string& name) const;
  bool has_buffer(const std::string& name) const;
  // Total number of parameter elements.
  int64_t num_parameters() const;

  // ---- checkpoints ----
  // Parameters and buffers under their dotted names (aliases of the module's storage).
  StateDict state_dict() const;
  // Copies values into the existing tensors (any device/dtype is converted). Everything is
  // validated before anything is written: a shape mismatch always fails; with `strict`,
  // missing or unexpected names fail too. The error lists every problem.
  void load_state_dict(const StateDict& state, bool strict = true);

  // ---- modes ----
  // Sets training mode here and in every submodule (BatchNorm and Dropout read it).
  Module& train(bool on = true);
  Module& eval() { return train(false); }
  bool is_training() const { return training_; }

  // ---- gradients ----
  // Drops every parameter's accumulated gradient (PyTorch's set_to_none=True).
  void zero_grad();
  // Freezes (false) or unfreezes (true) every parameter. A frozen module records no history
  // for its weights but still passes gradients to its input.
  Module& set_requires_grad(bool on);

  // ---- devices, dtypes, copies ----
  // Moves every parameter and buffer in place (the same Tensor handles now live on `device`);
  // requires_grad is kept, accumulated gradients are dropped.
  Module& to(Device device);
  // Converts floating parameters and buffers to `dtype` in place (integer buffers such as
  // num_batches_tracked keep theirs).
  Module& to(DType dtype);
  // Device of the first parameter or buffer (cpu for a module without any).
  Device device() const;
  // A deep copy: same structure, configuration, values, requires_grad flags and mode, new
  // storage on the same device. Layers supply clone_impl(); containers clone their children.
  // A tensor shared by two submodules (tied weights) is not supported: clone() throws.
  std::shared_ptr<Module> clone() const;
  // Copies other's parameter and buffer VALUES into this module's existing storage (no
  // allocation, storage pointers unchanged; IT³ resets a model this way every test batch).
  // requires: the same names, shapes and dtypes (checked; devices may differ).
  void copy_from(const Module& other);

  // ---- printing ----
  // PyTorch-style repr: "Linear(in_features=3, out_features=4, bias=True)", containers nest.
  std::string repr() const;
  // The text between the parentheses for a leaf layer ("" by default).
  virtual std::string extra_repr() const { return ""; }

  // Calls fn on this module and every submodule, depth first (parents before children).
  void apply(const std::function<void(Module&)>& fn);

 protected:
  // Registration, for constructors. Names are non-empty, contain no '.', and are unique
  // across this module's parameters, buffers and children.
  // A parameter is a leaf that requires grad; returns the handle to keep as a member.
  Tensor register_parameter(const std::string& name, const Tensor& t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, const Tensor& t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  void add_child(const std::string& name, std::shared_ptr<Module> m);

  // A new module with this one's configuration (its values are then overwritten by clone()).
  // The default throws: every concrete layer overrides it.
  virtual std::shared_ptr<Module> clone_impl() const;
  // Called by train(); lets a layer react to a mode change (default: nothing).
  virtual void on_train(bool on) {}

 private:
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out,
               std::vector<const TensorImpl*>& seen) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

// clone() with the concrete type: auto copy = clone_as(*model);  (a std::shared_ptr<M>)
template <typename M>
std::shared_ptr<M> clone_as(const M& m) {
  auto c = std::dynamic_pointer_cast<M>(m.clone());
  if (!c) fail("clone", m.type_name(), "::clone_impl returned another type");
  return c;
}

// "True"/"False", as PyTorch reprs print booleans.
inline const char* repr_bool(bool b) {
  return b ? "True" : "False";
}

}  // namespace idem
