#include "core/ops/sage_conv.h"

#include "core/kernels/matmul.h"
#include "core/ops/csr_aggregate.h"
#include "core/ops/fused.h"

namespace idem::ops {

bool sage_conv_takes_fused(const Tensor& x, int64_t out) {
  return x.device().is_cuda() && sage_conv_path() == SageConvPath::fused &&
         gemm_backend() == GemmBackend::hand && x.dtype() == DType::f32 && x.dim() == 2 &&
         sage_conv_fused_fits(x.size(1), out);
}

SageConvResult sage_conv(const Tensor& x, const CsrAggregateIndex& idx, const Tensor& weight_l,
                         const Tensor& bias, const Tensor& weight_r, FusedAct act, double slope,
                         bool keep_mean) {
  const char* op = "sage_conv";
  const CsrAggregateShape s = csr_mean_aggregate_shape(x, idx, op);
  IDEM_CHECK(x.dim() == 2 && s.rows == s.sources, op, "x must be (V, in) for the V = ", s.rows,
             " nodes of row_ptr ", shape_str(idx.row_ptr.shape()),
             " (the sources and the destinations are one node set), got x ", shape_str(x.shape()));
  // The mean has x's shape (one node set), so x stands in for it in the shape checks.
  const LinearActParams p = sage_linear_params(x, weight_l, bias, x, weight_r, act, slope, op);
  SageConvResult r;
  if (!sage_conv_takes_fused(x, p.out)) {
    r.mean = csr_mean_aggregate(x, idx);
    r.y = sage_linear(r.mean, weight_l, bias, x, weight_r, act, slope);
    if (!keep_mean) r.mean = Tensor();
    return r;
  }
  r.y = empty({p.N, p.out}, x.options());
  if (keep_mean) r.mean = empty(x.shape(), x.options());
  cuda::sage_conv_fwd(r.y, r.mean, x, idx.row_ptr, idx.col, s.edges, weight_l, bias, weight_r, p);
  return r;
}

}  // namespace idem::ops
