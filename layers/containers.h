// Level L3: the containers Sequential and Residual.
#pragma once
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "layers/module.h"

namespace idem {

// Applies its children in order; children are named "0", "1", ... unless named explicitly.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);

  Sequential& push_back(std::shared_ptr<Module> m);
  Sequential& push_back(const std::string& name, std::shared_ptr<Module> m);
  // Constructs a module in place and returns it: auto fc = seq.emplace<Linear>(3, 4);
  template <typename M, typename... Args>
  std::shared_ptr<M> emplace(Args&&... args) {
    auto m = std::make_shared<M>(std::forward<Args>(args)...);
    push_back(m);
    return m;
  }

  size_t size() const { return children().size(); }
  bool empty() const { return children().empty(); }
  // requires: i < size() (checked).
  std::shared_ptr<Module> operator[](size_t i) const;
  // The i-th child as M; throws when it is another type.
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    if (!m) fail("Sequential", "child ", i, " is a ", (*this)[i]->type_name());
    return m;
  }

  Tensor forward(const Tensor& x) override;

 protected:
  std::shared_ptr<Module> clone_impl() const override;
};

// y = body(x) + shortcut(x), shortcut = identity unless given (e.g. a 1x1 projection).
class Residual : public Module {
 public:
  explicit Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> shortcut = nullptr);
  Tensor forward(const Tensor& x) override;
  const std::shared_ptr<Module>& body() const { return body_; }
  const std::shared_ptr<Module>& shortcut() const { return shortcut_; }  // null: identity

 protected:
  std::shared_ptr<Module> clone_impl() const override;

 private:
  std::shared_ptr<Module> body_, shortcut_;
};

}  // namespace idem
