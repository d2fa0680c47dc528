// Validation helpers shared by the L1 ops. Each throws idem::Error prefixed with the op name.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/tensor.h"

namespace idem {
enum class FusedAct : uint8_t;  // core/kernels/fused.h
}

namespace idem::ops {

void check_defined(const Tensor& t, const char* op, const char* what = "input");
// All tensors defined and on the same device.
void check_same_device(std::initializer_list<const Tensor*> ts, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_floating(const Tensor& t, const char* op);
void check_dtype(const Tensor& t, DType want, const char* op, const char* what);
// CUDA kernels are f32 (indices i64, masks u8): reject f64 on the GPU with a clear message.
void check_cuda_dtype(const Tensor& t, const char* op);
// Row-major (rows, ...) tensors, as the graph ops take them: elements per row, and the same
// shape with another row count.
int64_t row_features(const Shape& s);
Shape with_rows(Shape s, int64_t rows);
// Defined, floating and with a row dim (rows, ...).
void check_rows_tensor(const Tensor& t, const char* op, const char* what);
// The activation of a fused op (linear_act, sage_linear, max_pool2d_act): one of FusedAct's
// values, and for leaky_relu a finite slope >= 0 (the backward reads the activation's
// derivative from its output y, which needs y > 0 <=> z > 0).
void check_fused_act(FusedAct act, double slope, const char* op);
// Splits `shape` around `dim` into (outer, shape[dim], inner).
void split_around(const Shape& shape, int64_t dim, int64_t& outer, int64_t& mid, int64_t& inner);

// Runs cpu_fn() or cuda_fn() for the device of `t`.
template <typename CpuFn, typename CudaFn>
void dispatch(const Tensor& t, CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
  if (t.device().is_cpu())
    cpu_fn();
  else
    cuda_fn();
}

}  // namespace idem::ops
