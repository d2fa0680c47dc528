// L1 data-movement ops: validate, allocate, dispatch. Every op views its tensors as
// (outer, D, inner) around the dim it works on, so the kernels stay one-dimensional.
//
// Index values: on CPU tensors every index is checked against its range before a kernel runs.
// On CUDA tensors the values are NOT checked here: that would cost a device->host copy and a
// synchronization per call (and break CUDA-graph capture of the IT³ step); the CUDA kernels
// must therefore not be handed untrusted indices (see core/kernels/index.h).
#include "core/ops/index.h"

#include <string>

#include "core/ops/checks.h"

namespace idem::ops {

namespace {

void check_index_tensor(const Tensor& index, const Tensor& x, const char* op) {
  check_defined(index, op, "index");
  check_dtype(index, DType::i64, op, "index");
  check_same_device({&x, &index}, op);
}

// Every index value must lie in [0, high). CPU only (see the file comment).
// `range` names what the index addresses, e.g. "dim 0 of size 5".
void check_index_values(const Tensor& index, int64_t high, const char* op,
                        const std::string& range) {
  if (!index.device().is_cpu()) return;
  const int64_t* p = index.data<int64_t>();
  for (int64_t k = 0; k < index.numel(); ++k)
    IDEM_CHECK(p[k] >= 0 && p[k] < high, op, "index ", p[k], " (at flat position ", k,
               ") is out of range for ", range);
}

std::string dim_range(int64_t d, int64_t size) {
  return "dim " + std::to_string(d) + " of size " + std::to_string(size);
}

// Shape `s` with s[d] replaced by n.
Shape with_dim(Shape s, int64_t d, int64_t n) {
  s[d] = n;
  return s;
}

// Index/src shapes must agree with `full` on every dim except d (the kernels see a shared
// (outer, ·, inner) layout, so this is exact equality, stricter than torch.gather's <=).
void check_same_except(const Shape& full, const Shape& other, int64_t d, const char* op,
                       const char* full_name, const char* other_name) {
  IDEM_CHECK(full.size() == other.size(), op, full_name, " ", shape_str(full), " and ", other_name,
             " ", shape_str(other), " must have the same number of dims");
  for (size_t k = 0; k < full.size(); ++k)
    IDEM_CHECK(static_cast<int64_t>(k) == d || full[k] == other[k], op, full_name, " ",
               shape_str(full), " and ", other_name, " ", shape_str(other), " differ in dim ", k,
               " (only dim ", d, " may differ)");
}

void check_rank(int64_t ndim, const char* op) {
  IDEM_CHECK(ndim >= 1, op, "expected a tensor with at least one dim, got a 0-dim tensor");
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  const char* op = "concat";
  IDEM_CHECK(!xs.empty(), op, "expected a non-empty list of tensors");
  const Tensor& x0 = xs[0];
  check_defined(x0, op, "input 0");
  check_rank(x0.dim(), op);
  check_cuda_dtype(x0, op);
  const int64_t d = wrap_dim(dim, x0.dim(), op);
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    IDEM_CHECK(x.defined(), op, "input ", i, " is an undefined tensor");
    IDEM_CHECK(x.device() == x0.device(), op, "expected all tensors on one device, got ",
               x0.device().str(), " (input 0) and ", x.device().str(), " (input ", i, ")");
    IDEM_CHECK(x.dtype() == x0.dtype(), op, "dtype mismatch: ", dtype_name(x0.dtype()),
               " (input 0) and ", dtype_name(x.dtype()), " (input ", i, ")");
    IDEM_CHECK(x.dim() == x0.dim(), op, "shapes ", shape_str(x0.shape()), " (input 0) and ",
               shape_str(x.shape()), " (input ", i, ") have different numbers of dims");
    for (int64_t k = 0; k < x0.dim(); ++k)
      IDEM_CHECK(k == d || x.size(k) == x0.size(k), op, "shapes ", shape_str(x0.shape()),
                 " (input 0) and ", shape_str(x.shape()), " (input ", i, ") differ in dim ", k,
                 "; only dim ", d, " may differ");
    total += x.size(d);
  }
  Tensor out = empty(with_dim(x0.shape(), d, total), x0.options());
  if (out.numel() == 0) return out;
  int64_t outer, mid, inner;
  split_around(out.shape(), d, outer, mid, inner);
  // CUDA: every input in one launch (per 8 inputs); CPU: one slice copy per input.
  auto cpu_concat = [&] {
    int64_t offset = 0;
    for (const Tensor& x : xs) {
      const int64_t n = x.size(d);
      if (n > 0) cpu::slice_copy(out, x, SliceCopy{outer, inner, n, 0, total, offset, n});
      offset += n;
    }
  };
  dispatch(out, cpu_concat, [&] { cuda::concat(out, xs, ConcatShape{outer, inner, total}); });
  return out;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  const char* op = "narrow";
  check_defined(x, op, "x");
  check_rank(x.dim(), op);
  check_cuda_dtype(x, op);
  const int64_t d = wrap_dim(dim, x.dim(), op);
  const int64_t size = x.size(d);
  IDEM_CHECK(start >= -size && start <= size, op, "start ", start, " out of range for dim ", d,
             " of size ", size, " in ", shape_str(x.shape()));
  if (start < 0) start += size;
  IDEM_CHECK(length >= 0 && start + length <= size, op, "start ", start, " + length ", length,
             " exceeds dim ", d, " of size ", size, " in ", shape_str(x.shape()));
  Tensor out = empty(with_dim(x.shape(), d, length), x.options());
  if (out.numel() == 0) return out;
  int64_t outer, mid, inner;
  split_around(x.shape(), d, outer, mid, inner);
  const SliceCopy s{outer, inner, size, start, length, 0, length};
  dispatch(
      out, [&] { cpu::slice_copy(out, x, s); }, [&] { cuda::slice_copy(out, x, s); });
  return out;
}

Tensor narrow_backward(const Tensor& g, const Shape& full_shape, int64_t dim, int64_t start) {
  const char* op = "narrow_backward";
  check_defined(g, op, "grad");
  check_rank(static_cast<int64_t>(full_shape.size()), op);
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(full_shape.size()), op);
  check_same_except(full_shape, g.shape(), d, op, "full shape", "grad");
  const int64_t n = g.size(d);
  IDEM_CHECK(start >= 0 && start + n <= full_shape[d], op, "slice [", start, ", ", start + n,
             ") does not fit dim ", d, " of ", shape_str(full_shape));
  Tensor out = zeros(full_shape, g.options());
  if (g.numel() == 0) return out;
  int64_t outer, mid, inner;
  split_around(full_shape, d, outer, mid, inner);
  const SliceCopy s{outer, inner, n, 0, full_shape[d], start, n};
  dispatch(
      out, [&] { cpu::slice_copy(out, g, s); }, [&] { cuda::slice_copy(out, g, s); });
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  check_defined(x, op, "x");
  check_rank(x.dim(), op);
  check_cuda_dtype(x, op);
  check_index_tensor(index, x, op);
  IDEM_CHECK(index.dim() <= 1, op, "index must be 1-D, got ", shape_str(index.shape()));
  const int64_t d = wrap_dim(dim, x.dim(), op);
  check_index_values(index, x.size(d), op, dim_range(d, x.size(d)));
  IndexShape s;
  split_around(x.shape(), d, s.outer, s.in_dim, s.inner);
  s.n_index = index.numel();
  Tensor out = empty(with_dim(x.shape(), d, s.n_index), x.options());
  if (out.numel() == 0) return out;
  dispatch(
      out, [&] { cpu::index_select_fwd(out, x, index, s); },
      [&] { cuda::index_select_fwd(out, x, index, s); });
  return out;
}

Tensor index_add(const Shape& full_shape, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "index_add";
  check_defined(src, op, "src");
  check_rank(static_cast<int64_t>(full_shape.size()), op);
  check_cuda_dtype(src, op);
  check_index_tensor(index, src, op);
  IDEM_CHECK(index.dim() <= 1, op, "index must be 1-D, got ", shape_str(index.shape()));
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(full_shape.size()), op);
  IDEM_CHECK(src.shape() == with_dim(full_shape, d, index.numel()), op, "src ",
             shape_str(src.shape()), " must be ", shape_str(with_dim(full_shape, d, index.numel())),
             " (full shape ", shape_str(full_shape), " with dim ", d, " = number of indices)");
  check_index_values(index, full_shape[d], op, dim_range(d, full_shape[d]));
  Tensor out = zeros(full_shape, src.options());
  if (src.numel() == 0) return out;
  IndexShape s;
  split_around(full_shape, d, s.outer, s.in_dim, s.inner);
  s.n_index = index.numel();
  dispatch(
      out, [&] { cpu::index_add(out, src, index, s); },
      [&] { cuda::index_add(out, src, index, s); });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  check_defined(x, op, "x");
  check_rank(x.dim(), op);
  check_cuda_dtype(x, op);
  check_index_tensor(index, x, op);
  const int64_t d = wrap_dim(dim, x.dim(), op);
  check_same_except(x.shape(), index.shape(), d, op, "x", "index");
  check_index_values(index, x.size(d), op, dim_range(d, x.size(d)));
  GatherShape s;
  split_around(x.shape(), d, s.outer, s.in_dim, s.inner);
  s.idx_dim = index.size(d);
  Tensor out = empty(index.shape(), x.options());
  if (out.numel() == 0) return out;
  dispatch(
      out, [&] { cpu::gather_fwd(out, x, index, s); }, [&] { cuda::gather_fwd(out, x, index, s); });
  return out;
}

Tensor scatter_add(const Shape& full_shape, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add";
  check_defined(src, op, "src");
  check_rank(static_cast<int64_t>(full_shape.size()), op);
  check_cuda_dtype(src, op);
  check_index_tensor(index, src, op);
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(full_shape.size()), op);
  IDEM_CHECK(src.shape() == index.shape(), op, "src ", shape_str(src.shape()), " and index ",
             shape_str(index.shape()), " must have the same shape");
  check_same_except(full_shape, index.shape(), d, op, "full shape", "index");
  check_index_values(index, full_shape[d], op, dim_range(d, full_shape[d]));
  Tensor out = zeros(full_shape, src.options());
  if (src.numel() == 0) return out;
  GatherShape s;
  split_around(full_shape, d, s.outer, s.in_dim, s.inner);
  s.idx_dim = index.size(d);
  dispatch(
      out, [&] { cpu::scatter_add(out, src, index, s); },
      [&] { cuda::scatter_add(out, src, index, s); });
  return out;
}

Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype) {
  const char* op = "one_hot";
  check_defined(index, op, "index");
  check_dtype(index, DType::i64, op, "index");
  IDEM_CHECK(num_classes >= 1, op, "num_classes must be >= 1, got ", num_classes);
  IDEM_CHECK(!(index.device().is_cuda() && dtype == DType::f64), op,
             "f64 tensors are CPU-only (CUDA kernels are f32); requested an f64 one-hot on ",
             index.device().str());
  check_index_values(index, num_classes, op, "num_classes " + std::to_string(num_classes));
  // Any index shape S gives S + (C); the kernel sees it flattened to (N, C).
  Shape out_shape = index.shape();
  out_shape.push_back(num_classes);
  Tensor out = empty(out_shape, {dtype, index.device()});
  if (out.numel() == 0) return out;
  dispatch(
      out, [&] { cpu::one_hot(out, index, num_classes); },
      [&] { cuda::one_hot(out, index, num_classes); });
  return out;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm) {
  const char* op = "permute";
  check_defined(x, op, "x");
  check_cuda_dtype(x, op);
  const int64_t nd = x.dim();
  IDEM_CHECK(static_cast<int64_t>(perm.size()) == nd, op, "permutation of length ", perm.size(),
             " does not match ", shape_str(x.shape()), " (", nd, " dims)");
  std::vector<int64_t> p(nd);
  std::vector<bool> seen(nd, false);
  Shape out_shape(nd);
  for (int64_t k = 0; k < nd; ++k) {
    p[k] = wrap_dim(perm[k], nd, op);
    IDEM_CHECK(!seen[p[k]], op, "dim ", p[k], " appears twice in the permutation");
    seen[p[k]] = true;
    out_shape[k] = x.size(p[k]);
  }
  Tensor out = empty(out_shape, x.options());
  if (out.numel() == 0) return out;
  dispatch(
      out, [&] { cpu::permute(out, x, p); }, [&] { cuda::permute(out, x, p); });
  return out;
}

}  // namespace idem::ops
