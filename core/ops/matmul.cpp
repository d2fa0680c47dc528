// L1 matmul: validate shapes/dtypes/devices, allocate C, dispatch one (batched) GEMM.
#include "core/ops/matmul.h"

#include "core/bool_str.h"
#include "core/ops/checks.h"

namespace idem::ops {

namespace {

// "(80x513) and (1x513) on cpu" plus, when a transpose flag is set, what op(a)/op(b) were, so
// the user sees which extents had to agree. (a and b are on one device: checked before.)
[[noreturn]] void fail_inner(const Tensor& a, const Tensor& b, bool ta, bool tb, int64_t ka,
                             int64_t kb) {
  if (!ta && !tb)
    fail("matmul", "shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " on ",
         a.device().str(), " cannot be multiplied");
  fail("matmul", "shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " on ",
       a.device().str(), " cannot be multiplied (trans_a=", bool_str(ta), ", trans_b=",
       bool_str(tb), ": op(a) has K=", ka, ", op(b) has K=", kb, ")");
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  const char* op = "matmul";
  check_defined(a, op, "a");
  check_defined(b, op, "b");
  check_same_device({&a, &b}, op);
  check_same_dtype(a, b, op);
  check_floating(a, op);
  check_cuda_dtype(b, op);
  const int64_t da = a.dim(), db = b.dim();
  IDEM_CHECK((da == 2 || da == 3) && (db == 2 || db == 3), op,
             "expected 2-D or 3-D (batched) operands, got ", shape_str(a.shape()), " and ",
             shape_str(b.shape()), " on ", a.device().str());

  // The last two dims hold each matrix; a leading dim is the batch.
  const int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
  MatmulParams p;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.M = trans_a ? ac : ar;
  p.N = trans_b ? br : bc;
  const int64_t ka = trans_a ? ar : ac, kb = trans_b ? bc : br;
  if (ka != kb) fail_inner(a, b, trans_a, trans_b, ka, kb);
  p.K = ka;

  if (da == 3 && db == 3)
    IDEM_CHECK(a.size(0) == b.size(0), op, "batch sizes differ: shapes ", shape_str(a.shape()),
               " and ", shape_str(b.shape()), " on ", a.device().str(), " (dim 0: ", a.size(0),
               " vs ", b.size(0), ")");
  const bool batched = da == 3 || db == 3;
  p.batch = da == 3 ? a.size(0) : (db == 3 ? b.size(0) : 1);
  // A 2-D operand against a 3-D one is the same matrix for every batch entry: stride 0.
  p.stride_a = da == 3 ? ar * ac : 0;
  p.stride_b = db == 3 ? br * bc : 0;
  p.stride_c = p.M * p.N;

  const Shape out_shape = batched ? Shape{p.batch, p.M, p.N} : Shape{p.M, p.N};
  // (B,M,K) x shared (K,N): the rows of every batch entry are contiguous, so the whole batch
  // is one (B·M,K)x(K,N) GEMM: one kernel launch instead of a batched one, same bytes out.
  if (da == 3 && db == 2 && !trans_a) {
    p.M *= p.batch;
    p.batch = 1;
    p.stride_a = p.M * p.K;
    p.stride_c = p.M * p.N;
  }
  // An empty inner dim sums nothing: zeros, without asking a kernel to handle K = 0.
  if (p.K == 0) return zeros(out_shape, a.options());
  Tensor c = empty(out_shape, a.options());
  if (c.numel() == 0) return c;
  dispatch(
      c, [&] { cpu::matmul_fwd(c, a, b, p); }, [&] { cuda::matmul_fwd(c, a, b, p); });
  return c;
}

}  // namespace idem::ops
