// Kernel contract: softmax / log_softmax along one dim, seen as (outer, D, inner).
//   fwd: out = softmax(in) or log_softmax(in) along D (max-subtracted, stable).
//   bwd: softmax:     grad_in = y * (g - sum_D(g * y))
//        log_softmax: grad_in = g - exp(y) * sum_D(g)        (y = forward output)
#pragma once
#include <cstdint>

#include "core/kernels/reduce.h"

namespace idem {

namespace cpu {
void softmax_fwd(const Tensor& out, const Tensor& in, ReduceShape s, bool log);
void softmax_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& out, ReduceShape s,
                 bool log);
}  // namespace cpu
namespace cuda {
void softmax_fwd(const Tensor& out, const Tensor& in, ReduceShape s, bool log);
void softmax_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& out, ReduceShape s,
                 bool log);
}  // namespace cuda

}  // namespace idem
