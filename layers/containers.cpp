#include "layers/containers.h"

namespace idem {

// ---- Sequential ----

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules)
    : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Sequential& Sequential::push_back(std::shared_ptr<Module> m) {
  return push_back(std::to_string(size()), std::move(m));
}

Sequential& Sequential::push_back(const std::string& name, std::shared_ptr<Module> m) {
  add_child(name, std::move(m));
  return *this;
}

std::shared_ptr<Module> Sequential::operator[](size_t i) const {
  IDEM_CHECK(i < size(), "Sequential", "index ", i, " out of range for ", size(), " modules");
  return children()[i].second;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& [name, m] : children()) h = m->forward(h);
  return h;
}

std::shared_ptr<Module> Sequential::clone_impl() const {
  auto s = std::make_shared<Sequential>();
  for (const auto& [name, m] : children()) s->push_back(name, m->clone());
  return s;
}

// ---- Residual ----

Residual::Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> shortcut)
    : Module("Residual"), body_(std::move(body)), shortcut_(std::move(shortcut)) {
  register_module("body", body_);
  if (shortcut_) register_module("shortcut", shortcut_);
}

Tensor Residual::forward(const Tensor& x) {
  Tensor f = body_->forward(x);
  Tensor s = shortcut_ ? shortcut_->forward(x) : x;
  IDEM_CHECK(f.shape() == s.shape(), "Residual", "body output ", shape_str(f.shape()),
             " does not match the shortcut ", shape_str(s.shape()));
  return s + f;
}

std::shared_ptr<Module> Residual::clone_impl() const {
  return std::make_shared<Residual>(body_->clone(), shortcut_ ? shortcut_->clone() : nullptr);
}

}  // namespace idem
