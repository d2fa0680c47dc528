// Level L2: differentiable functions. Each computes its result with L1 ops (core/ops) and, when
// grad mode is on and an input requires grad, records a backward node. This is the API that
// layers, IT³ and users call.
#pragma once
#include <vector>

#include "autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/tensor.h"

namespace idem {

// ---- elementwise unary (autograd/elementwise_functions.cpp) ----
// Any listed op (core/kernels/elementwise.h), differentiable; the named functions below are
// shorthands for it. p.alpha is leaky_relu's slope or the scalar of the *_scalar ops.
Tensor unary_op(const Tensor& x, UnaryOp op, UnaryParams p = {});
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double slope = 0.01);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor square(const Tensor& x);

// ---- elementwise binary with NumPy broadcasting, and scalar variants ----
// Any listed op: differentiable for arithmetic ops, a u8 mask without history for comparisons.
Tensor binary_op(const Tensor& a, const Tensor& b, BinaryOp op);
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor pow(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor rdiv(double s, const Tensor& a);  // s / a

Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);

// ---- comparisons (u8 masks, not differentiable) and where ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
// cond ? a : b with broadcasting; differentiable in a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- reductions (autograd/reduce_functions.cpp); empty dims = all dims ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Maximum values; the gradient goes to the maximal elements (split evenly between ties).
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, not differentiable
// Variance with `correction` (1 = unbiased, as torch.var's default; 0 = population).
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1,
           bool keepdim = false);
// Broadcasts x to `shape` (the adjoint sums back).
Tensor expand(const Tensor& x, const Shape& shape);

// ---- matmul (autograd/matmul_functions.cpp) ----
// 2-D: op(a) (M,K) · op(b) (K,N); 3-D: batched (B,M,K)·(B,K,N); a 2-D operand is shared
// across the batch of the other.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// ---- softmax (autograd/softmax_functions.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

// ---- shape and indexing (autograd/shape_functions.cpp, index_functions.cpp) ----
Tensor reshape(const Tensor& x, const Shape& shape);  // shares storage
Tensor flatten(const Tensor& x, int64_t start = 0, int64_t end = -1);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor permute(const Tensor& x, const std::vector<int64_t>& perm);  // copies
Tensor transpose(const Tensor& x, int64_t d0 = -2, int64_t d1 = -1);  // copies
Tensor concat(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim = 0);
// Pieces of `size` along dim (the last may be shorter).
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype = DType::f32);

}  // namespace idem
