// Differentiable data movement: permute/transpose, concat/stack, split/narrow, index_select,
// gather, and one_hot (not differentiable). Each backward is the adjoint data movement:
// permute by the inverse, narrow <-> pad with zeros, index_select <-> index_add,
// gather <-> scatter_add.
#include <algorithm>

#include "autograd/functions.h"
#include "core/ops/index.h"

namespace idem {

namespace {

class PermuteNode : public Node {
 public:
  explicit PermuteNode(std::vector<int64_t> inverse) : inverse_(std::move(inverse)) {}
  const char* name() const override { return "permute"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx = permute(g, perm⁻¹) : out.shape[k] = x.shape[perm[k]] -> x.shape
    if (!needs_grad(0)) return {Tensor()};
    return {ops::permute(g, inverse_)};
  }

 private:
  std::vector<int64_t> inverse_;
};

class ConcatNode : public Node {
 public:
  ConcatNode(int64_t dim, std::vector<int64_t> sizes) : dim_(dim), sizes_(std::move(sizes)) {}
  const char* name() const override { return "concat"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx_i = g[…, off_i : off_i + n_i, …] : (…, Σn, …) -> (…, n_i, …)
    std::vector<Tensor> grads(sizes_.size());
    int64_t offset = 0;
    for (size_t i = 0; i < sizes_.size(); ++i) {
      if (needs_grad(i)) grads[i] = ops::narrow(g, dim_, offset, sizes_[i]);
      offset += sizes_[i];
    }
    return grads;
  }

 private:
  int64_t dim_;
  std::vector<int64_t> sizes_;
};

class NarrowNode : public Node {
 public:
  NarrowNode(Shape full, int64_t dim, int64_t start)
      : full_(std::move(full)), dim_(dim), start_(start) {}
  const char* name() const override { return "narrow"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx = zeros(x.shape) with g at [start, start+len) along dim : (…,len,…) -> (…,n,…)
    if (!needs_grad(0)) return {Tensor()};
    return {ops::narrow_backward(g, full_, dim_, start_)};
  }

 private:
  Shape full_;
  int64_t dim_, start_;
};

class IndexSelectNode : public Node {
 public:
  IndexSelectNode(Shape full, int64_t dim, Tensor index)
      : full_(std::move(full)), dim_(dim), index_(std::move(index)) {}
  const char* name() const override { return "index_select"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[…, index[j], …] += g[…, j, …] : (…,J,…) -> (…,n,…); repeated indices accumulate
    if (!needs_grad(0)) return {Tensor()};
    return {ops::index_add(full_, dim_, index_, g)};
  }

 private:
  Shape full_;
  int64_t dim_;
  Tensor index_;
};

class GatherNode : public Node {
 public:
  GatherNode(Shape full, int64_t dim, Tensor index)
      : full_(std::move(full)), dim_(dim), index_(std::move(index)) {}
  const char* name() const override { return "gather"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    // dx[o, index[o,j,i], i] += g[o, j, i] : index.shape -> x.shape
    if (!needs_grad(0)) return {Tensor()};
    return {ops::scatter_add(full_, dim_, index_, g)};
  }

 private:
  Shape full_;
  int64_t dim_;
  Tensor index_;
};

void check_has_dims(const Tensor& x, const char* op) {
  IDEM_CHECK(x.defined(), op, "input is an undefined tensor");
  IDEM_CHECK(x.dim() >= 1, op, "expected a tensor with at least one dim, got a 0-dim tensor");
}

}  // namespace

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm) {
  Tensor y = ops::permute(x, perm);  // validates perm
  if (needs_history({x})) {
    std::vector<int64_t> inverse(perm.size());
    for (size_t k = 0; k < perm.size(); ++k)
      inverse[wrap_dim(perm[k], x.dim(), "permute")] = static_cast<int64_t>(k);
    record(std::make_shared<PermuteNode>(std::move(inverse)), {x}, y);
  }
  return y;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  IDEM_CHECK(x.defined(), "transpose", "input is an undefined tensor");
  const int64_t a = wrap_dim(d0, x.dim(), "transpose");
  const int64_t b = wrap_dim(d1, x.dim(), "transpose");
  std::vector<int64_t> perm(x.dim());
  for (int64_t k = 0; k < x.dim(); ++k) perm[k] = k;
  std::swap(perm[a], perm[b]);
  return permute(x, perm);
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor y = ops::concat(xs, dim);  // validates the list, shapes, dtypes and devices
  if (needs_history(xs)) {
    const int64_t d = wrap_dim(dim, xs[0].dim(), "concat");
    std::vector<int64_t> sizes;
    sizes.reserve(xs.size());
    for (const Tensor& x : xs) sizes.push_back(x.size(d));
    record(std::make_shared<ConcatNode>(d, std::move(sizes)), xs, y);
  }
  return y;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  const char* op = "stack";
  IDEM_CHECK(!xs.empty(), op, "expected a non-empty list of tensors");
  for (size_t i = 0; i < xs.size(); ++i) {
    IDEM_CHECK(xs[i].defined(), op, "input ", i, " is an undefined tensor");
    IDEM_CHECK(xs[i].shape() == xs[0].shape(), op, "all tensors must have the same shape, got ",
               shape_str(xs[0].shape()), " (input 0) and ", shape_str(xs[i].shape()), " (input ", i,
               ")");
  }
  // The new dim may be placed after the last one: wrap against ndim + 1.
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, op);
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (const Tensor& x : xs) parts.push_back(unsqueeze(x, d));
  return concat(parts, d);
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  const char* op = "narrow";
  check_has_dims(x, op);
  const int64_t d = wrap_dim(dim, x.dim(), op);
  const int64_t n = x.size(d);
  IDEM_CHECK(start >= -n && start <= n, op, "start ", start, " out of range for dim ", d,
             " of size ", n, " in ", shape_str(x.shape()));
  if (start < 0) start += n;
  IDEM_CHECK(length >= 0 && start + length <= n, op, "start ", start, " + length ", length,
             " exceeds dim ", d, " of size ", n, " in ", shape_str(x.shape()));
  // Rows along dim 0 are contiguous: share storage instead of copying (docs/design.md#tensors). The
  // backward does not depend on the sharing: it pads g with zeros into a fresh tensor.
  Tensor y = d == 0 ? x.slice0(start, start + length) : ops::narrow(x, d, start, length);
  if (needs_history({x})) record(std::make_shared<NarrowNode>(x.shape(), d, start), {x}, y);
  return y;
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  const char* op = "split";
  check_has_dims(x, op);
  const int64_t d = wrap_dim(dim, x.dim(), op);
  IDEM_CHECK(size > 0, op, "split size must be positive, got ", size);
  const int64_t n = x.size(d);
  std::vector<Tensor> pieces;
  if (n == 0) {
    pieces.push_back(narrow(x, d, 0, 0));  // as torch: one empty piece
    return pieces;
  }
  for (int64_t start = 0; start < n; start += size)
    pieces.push_back(narrow(x, d, start, std::min(size, n - start)));
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const char* op = "split";
  check_has_dims(x, op);
  const int64_t d = wrap_dim(dim, x.dim(), op);
  IDEM_CHECK(!sizes.empty(), op, "expected a non-empty list of sizes");
  int64_t total = 0;
  for (int64_t s : sizes) {
    IDEM_CHECK(s >= 0, op, "split sizes must be non-negative, got ", s);
    total += s;
  }
  IDEM_CHECK(total == x.size(d), op, "split sizes sum to ", total, " but dim ", d, " of ",
             shape_str(x.shape()), " has size ", x.size(d));
  std::vector<Tensor> pieces;
  pieces.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(narrow(x, d, start, s));
    start += s;
  }
  return pieces;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor y = ops::index_select(x, dim, index);  // validates dim, index dtype and range
  if (needs_history({x})) {
    const int64_t d = wrap_dim(dim, x.dim(), "index_select");
    record(std::make_shared<IndexSelectNode>(x.shape(), d, saved(index)), {x}, y);
  }
  return y;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor y = ops::gather(x, dim, index);
  if (needs_history({x})) {
    const int64_t d = wrap_dim(dim, x.dim(), "gather");
    record(std::make_shared<GatherNode>(x.shape(), d, saved(index)), {x}, y);
  }
  return y;
}

Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype) {
  // Integer labels have no gradient: nothing to record.
  return ops::one_hot(index, num_classes, dtype);
}

}  // namespace idem
