// Tensor: the one user-facing array type.
//
// A Tensor is a cheap handle (shared_ptr) to a TensorImpl: shape, dtype, device, shared storage
// and an element offset. Tensors are always contiguous row-major; views (reshape, flatten, dim-0
// slices) share storage, everything else copies. Autograd metadata hangs off the impl as an
// opaque pointer that only autograd/ interprets.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace idem {

struct AutogradMeta;  // defined in autograd/variable.h
class Node;           // defined in autograd/node.h

struct TensorImpl {
  Shape shape;
  DType dtype = DType::f32;
  Device device;
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;                     // in elements
  std::shared_ptr<AutogradMeta> autograd;  // null unless autograd touched this tensor
};

// dtype + device for factories: zeros({2, 3}, {DType::f64}), ones({4}, {DType::f32, dev}).
struct Options {
  DType dtype = DType::f32;
  Device device = Device::cpu();
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return numel_of(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device; }
  Options options() const { return {dtype(), device()}; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  void* raw_data() const {
    const TensorImpl& i = impl();
    if (!i.storage || !i.storage->data()) return nullptr;
    return static_cast<char*>(i.storage->data()) + i.offset * dtype_size(i.dtype);
  }
  // Typed pointer; throws when T does not match dtype().
  template <typename T> T* data() const;

  // ---- storage-level (non-differentiable) operations, level L1 ----
  // Same storage, new shape (numel must match); -1 infers one extent.
  Tensor view_as_shape(const Shape& s) const;
  // Rows [begin, end) along dim 0, sharing storage.
  Tensor slice0(int64_t begin, int64_t end) const;
  // A contiguous copy on the same device.
  Tensor clone_data() const;
  // Copies values from src (same shape and dtype, any device) into this tensor's storage.
  void copy_(const Tensor& src) const;
  Tensor to(Device d) const;  // returns *this when already there
  Tensor to(DType t) const;   // returns *this when already that dtype
  bool same_storage(const Tensor& o) const { return impl().storage == o.impl().storage; }

  // Test/debug element access (copies to the host when needed).
  double item() const;  // one-element tensors only
  double at(const std::vector<int64_t>& index) const;
  template <typename T> std::vector<T> to_vector() const;
  std::string str() const;

  // ---- autograd (level L2; defined in autograd/variable.cpp) ----
  bool requires_grad() const;
  const Tensor& requires_grad_(bool on = true) const;
  Tensor grad() const;             // undefined Tensor until a backward reached this leaf
  void zero_grad() const;          // drops the accumulated gradient
  bool is_leaf() const;
  std::shared_ptr<Node> grad_fn() const;
  Tensor detach() const;           // shares storage, no history
  void backward(const Tensor& grad_output = Tensor()) const;

  // ---- differentiable shape helpers (defined in autograd/shape_functions.cpp) ----
  Tensor reshape(const Shape& s) const;
  Tensor view(const Shape& s) const { return reshape(s); }
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;

  // Inline: every accessor goes through it, several times per op (docs/performance.md, host
  // time per op); the error path stays out of line.
  TensorImpl& impl() const {
    if (!impl_) undefined_tensor();
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  [[noreturn]] static void undefined_tensor();
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- factories ----
Tensor empty(Shape shape, Options o = {});  // by value: a temporary shape is moved in
Tensor zeros(const Shape& shape, Options o = {});
Tensor ones(const Shape& shape, Options o = {});
Tensor full(const Shape& shape, double value, Options o = {});
Tensor arange(int64_t n, Options o = {});  // 0, 1, ..., n-1
Tensor arange(double start, double stop, double step, Options o = {});
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
Tensor scalar_tensor(double value, Options o = {});  // 0-dim

// Counter-based random tensors (Philox 4x32-10): element i of a draw with (seed, offset) is a
// pure function of (seed, offset, i), identical on every platform and on the GPU.
Tensor rand(const Shape& shape, uint64_t seed, Options o = {}, uint64_t offset = 0);   // U[0,1)
Tensor randn(const Shape& shape, uint64_t seed, Options o = {}, uint64_t offset = 0);  // N(0,1)
Tensor uniform(const Shape& shape, double lo, double hi, uint64_t seed, Options o = {},
               uint64_t offset = 0);

// ---- template definitions ----
template <typename T>
T* Tensor::data() const {
  if (dtype_of<T>() != dtype())
    fail("data", "requested ", dtype_name(dtype_of<T>()), " pointer from a ", dtype_name(dtype()),
         " tensor");
  return static_cast<T*>(raw_data());
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor h = to(Device::cpu()).to(dtype_of<T>());
  const T* p = h.data<T>();
  return std::vector<T>(p, p + h.numel());
}

}  // namespace idem
