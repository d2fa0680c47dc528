#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/kernels/elementwise.h"
#include "core/kernels/runtime.h"
#include "core/ops/checks.h"
#include "core/ops/elementwise.h"

namespace idem {

namespace {

std::shared_ptr<TensorImpl> make_impl(Shape&& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    IDEM_CHECK(d >= 0, "empty", "negative extent in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = std::move(shape);
  impl->dtype = dtype;
  impl->device = device;
  impl->storage = std::make_shared<Storage>(
      static_cast<size_t>(numel_of(impl->shape)) * dtype_size(dtype), device);
  return impl;
}

void check_device_usable(Device d, const char* op) {
  if (d.is_cpu()) return;
  IDEM_CHECK(cuda::compiled(), op, "idem was built without CUDA; cannot use ", d.str());
  IDEM_CHECK(d.index < cuda::device_count(), op, "device ", d.str(), " is not available (",
             cuda::device_count(), " CUDA device(s) visible; ", cuda::device_summary(), ")");
}

}  // namespace

void Tensor::undefined_tensor() { fail("tensor", "use of an undefined tensor"); }

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }

Tensor Tensor::view_as_shape(const Shape& s) const {
  Shape target = s;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == -1) {
      IDEM_CHECK(infer < 0, "reshape", "only one dimension can be -1, got ", shape_str(s));
      infer = static_cast<int64_t>(i);
    } else {
      IDEM_CHECK(target[i] >= 0, "reshape", "invalid extent ", target[i], " in ", shape_str(s));
      known *= target[i];
    }
  }
  if (infer >= 0) {
    IDEM_CHECK(known != 0 && numel() % known == 0, "reshape", "shape ", shape_str(s),
               " is invalid for input of shape ", shape_str(shape()));
    target[infer] = numel() / known;
  }
  IDEM_CHECK(numel_of(target) == numel(), "reshape", "shape ", shape_str(s),
             " is invalid for input of shape ", shape_str(shape()), " (", numel(), " elements)");
  auto v = std::make_shared<TensorImpl>(impl());
  v->shape = target;
  v->autograd = nullptr;
  return Tensor(v);
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  IDEM_CHECK(dim() >= 1, "slice0", "cannot slice a 0-dim tensor");
  int64_t n = shape()[0];
  IDEM_CHECK(0 <= begin && begin <= end && end <= n, "slice0", "range [", begin, ", ", end,
             ") out of bounds for dim 0 of size ", n, " in ", shape_str(shape()));
  auto v = std::make_shared<TensorImpl>(impl());
  v->shape[0] = end - begin;
  v->offset += begin * (n == 0 ? 0 : numel() / n);
  v->autograd = nullptr;
  return Tensor(v);
}

Tensor Tensor::clone_data() const {
  Tensor out = empty(shape(), options());
  copy_bytes(out.raw_data(), device(), raw_data(), device(), nbytes());
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  ops::check_defined(src, "copy_", "source");
  IDEM_CHECK(src.shape() == shape() && src.dtype() == dtype(), "copy_", "destination ",
             dtype_name(dtype()), " ", shape_str(shape()), " and source ", dtype_name(src.dtype()),
             " ", shape_str(src.shape()), " must have the same shape and dtype");
  copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  check_device_usable(d, "to");
  Tensor out = empty(shape(), {dtype(), d});
  copy_bytes(out.raw_data(), d, raw_data(), device(), nbytes());
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  return ops::cast(*this, t);
}

double Tensor::item() const {
  IDEM_CHECK(numel() == 1, "item", "expected a tensor with one element, got ", shape_str(shape()));
  return at(std::vector<int64_t>(shape().size(), 0));
}

double Tensor::at(const std::vector<int64_t>& index) const {
  IDEM_CHECK(static_cast<int64_t>(index.size()) == dim(), "at", "got ", index.size(),
             " indices for a tensor of ", dim(), " dims ", shape_str(shape()));
  int64_t flat = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    IDEM_CHECK(index[i] >= 0 && index[i] < shape()[i], "at", "index ", index[i],
               " out of range for dim ", i, " of size ", shape()[i]);
    flat = flat * shape()[i] + index[i];
  }
  size_t es = dtype_size(dtype());
  unsigned char buf[8] = {};
  copy_bytes(buf, Device::cpu(), static_cast<const char*>(raw_data()) + flat * es, device(), es);
  double v = 0;
  IDEM_DISPATCH_ALL(dtype(), "at", [&] {
    scalar_t x;
    std::memcpy(&x, buf, sizeof(x));
    v = static_cast<double>(x);
  });
  return v;
}

std::string Tensor::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  Tensor h = t.to(Device::cpu()).to(DType::f64);
  const double* p = h.data<double>();
  const int64_t n = h.numel(), limit = 64;
  os << "Tensor(" << dtype_name(t.dtype()) << ", " << shape_str(t.shape()) << ", "
     << t.device().str() << ") [";
  for (int64_t i = 0; i < std::min(n, limit); ++i) os << (i ? ", " : "") << std::setprecision(6) << p[i];
  if (n > limit) os << ", ... (" << n - limit << " more)";
  return os << "]";
}

// ---- factories ----

Tensor empty(Shape shape, Options o) {
  check_device_usable(o.device, "empty");
  return Tensor(make_impl(std::move(shape), o.dtype, o.device));
}

Tensor full(const Shape& shape, double value, Options o) {
  Tensor t = empty(shape, o);
  ops::fill_(t, value);
  return t;
}

Tensor zeros(const Shape& shape, Options o) { return full(shape, 0.0, o); }
Tensor ones(const Shape& shape, Options o) { return full(shape, 1.0, o); }
Tensor scalar_tensor(double value, Options o) { return full({}, value, o); }

Tensor arange(int64_t n, Options o) { return arange(0.0, static_cast<double>(n), 1.0, o); }

Tensor arange(double start, double stop, double step, Options o) {
  IDEM_CHECK(step != 0.0, "arange", "step must be non-zero");
  double span = (stop - start) / step;
  int64_t n = span > 0 ? static_cast<int64_t>(std::ceil(span)) : 0;
  Tensor t = empty({n}, o);
  if (n == 0) return t;
  ops::dispatch(
      t, [&] { cpu::arange_fill(t, start, step); }, [&] { cuda::arange_fill(t, start, step); });
  return t;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  IDEM_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape), "from_vector", "got ",
             values.size(), " values for shape ", shape_str(shape), " (", numel_of(shape),
             " elements)");
  Tensor t = empty(shape, {dtype_of<T>(), device});
  copy_bytes(t.raw_data(), device, values.data(), Device::cpu(), values.size() * sizeof(T));
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);

namespace {
Tensor random_tensor(const Shape& shape, RandomDist dist, double a, double b, uint64_t seed,
                     Options o, uint64_t offset) {
  IDEM_CHECK(is_floating(o.dtype), "random", "random tensors must be f32 or f64, got ",
             dtype_name(o.dtype));
  Tensor t = empty(shape, o);
  ops::check_cuda_dtype(t, "random");
  if (t.numel() == 0) return t;
  ops::dispatch(
      t, [&] { cpu::random_fill(t, dist, a, b, seed, offset); },
      [&] { cuda::random_fill(t, dist, a, b, seed, offset); });
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, uint64_t seed, Options o, uint64_t offset) {
  return random_tensor(shape, RandomDist::uniform, 0.0, 1.0, seed, o, offset);
}
Tensor randn(const Shape& shape, uint64_t seed, Options o, uint64_t offset) {
  return random_tensor(shape, RandomDist::normal, 0.0, 1.0, seed, o, offset);
}
Tensor uniform(const Shape& shape, double lo, double hi, uint64_t seed, Options o,
               uint64_t offset) {
  return random_tensor(shape, RandomDist::uniform, lo, hi, seed, o, offset);
}

}  // namespace idem
